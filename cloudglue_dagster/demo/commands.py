"""The demo's two commands: ``run`` (the backfill and its summary) and ``ui`` (``dagster dev``)."""

from __future__ import annotations

import secrets
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from .backfill import run_backfill
from .processes import (
    EmulatorProcess,
    check_duckdb_unlocked,
    dagster_env,
    port_free,
    prepare_home,
    spawn_process,
    stop_process,
    wait_http,
)
from .settings import DEFINITIONS_MODULE, DemoError, Settings, demo_dataset, last_lines, say, shown_path
from .summary import Summary, format_summary, read_summary, verify

__all__ = ["run_demo", "run_ui"]

# -- the commands --------------------------------------------------------------------------------


def run_demo(settings: Settings, *, out: IO[str] | None = None) -> Summary:
    """Emulator, backfill, verified summary; the emulator is stopped on every path."""
    out = out or sys.stdout
    began = time.monotonic()
    prepare_home(settings.home)
    check_duckdb_unlocked(settings.duckdb)
    dataset = demo_dataset(settings)
    api_key = "demo-" + secrets.token_hex(16)
    say(
        f"[1/3] Starting the Cloudglue emulator: {dataset.total:,} completions over {settings.days} UTC days"
        f" ({settings.start}..{settings.end}; {len(dataset.empty_days)} empty), seed {settings.seed}",
        out=out,
    )
    with EmulatorProcess(settings, api_key) as emulator:
        assert emulator.base_url is not None
        say(f"  emulator listening on {emulator.base_url}", out=out)
        say(
            f"[2/3] Backfilling {settings.partition_range} ({settings.days} daily partitions, one run) into"
            f" {shown_path(settings.duckdb)}; Dagster home {shown_path(settings.home)}",
            out=out,
        )
        result = run_backfill(settings, dagster_env(settings, emulator.base_url, api_key), out=out)
    say(f"  emulator stopped; backfill took {result.seconds:.1f} s", out=out)
    say(f"[3/3] Reading back {shown_path(settings.duckdb)}", out=out)
    summary = read_summary(settings)
    problems = verify(settings, summary)
    say("", out=out)
    say(format_summary(summary), out=out)
    say("", out=out)
    if problems:
        raise DemoError(
            "the stored tables differ from what the emulator served:\n" + "\n".join("    " + p for p in problems)
        )
    say(
        f"Verified against the emulator: {summary.completions:,} completions and"
        f" {summary.total_tokens:,} total tokens in {settings.days} days, every id once, each with its messages;"
        f" {result.passed} asset check evaluations passed.",
        out=out,
    )
    say(
        f"Done in {time.monotonic() - began:.0f} s. Run {result.run_id} is recorded in {shown_path(settings.home)}:"
        " `make ui` shows it.",
        out=out,
    )
    return summary


def _has_data(settings: Settings) -> bool:
    """Whether the DuckDB file holds every day of the window (day counts as served)."""
    if not settings.duckdb.exists():
        return False
    try:
        read = read_summary(settings)
    except DemoError:
        return False
    dataset = demo_dataset(settings)
    return all(row.completions == dataset.count(row.day) for row in read.rows)


def run_ui(settings: Settings, host: str, port: int, *, out: IO[str] | None = None) -> int:
    """Emulator + ``dagster dev`` on the demo's Dagster home, until Ctrl-C."""
    out = out or sys.stdout
    if not port_free(host, port):
        raise DemoError(
            f"port {port} on {host} is already in use (another `make ui` or `dagster dev`?)."
            f" Stop it, or pick another port: make ui UI_PORT={port + 1}"
        )
    prepare_home(settings.home)
    api_key = "demo-" + secrets.token_hex(16)
    workspace = Path("workspace.yaml")
    location = ["-w", str(workspace)] if workspace.is_file() else ["-m", DEFINITIONS_MODULE]
    log_path = settings.home / "dagster-dev.log"
    with EmulatorProcess(settings, api_key) as emulator:
        assert emulator.base_url is not None
        say(f"Cloudglue emulator listening on {emulator.base_url} ({settings.start}..{settings.end})", out=out)
        env = dagster_env(settings, emulator.base_url, api_key)
        if not _has_data(settings):
            say(
                f"{shown_path(settings.duckdb)} lacks days of {settings.start}..{settings.end}: running the backfill first.",
                out=out,
            )
            check_duckdb_unlocked(settings.duckdb)
            run_backfill(settings, env, out=out)
        shown = ["dagster", "dev", *location, "-h", host, "-p", str(port)]
        say(
            f"Starting: {shlex.join(shown)}  (DAGSTER_HOME={shown_path(settings.home)}, log: {shown_path(log_path)})",
            out=out,
        )
        with open(log_path, "w", encoding="utf-8") as log:
            proc = spawn_process(
                [sys.executable, "-m", "dagster", *shown[1:]], env, stdout=log, stderr=subprocess.STDOUT
            )
            try:
                url_host = f"[{host}]" if ":" in host else host
                url = f"http://{url_host}:{port}"
                if not wait_http(f"{url}/server_info", proc, timeout=180):
                    log.flush()
                    lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
                    raise DemoError(
                        f"`dagster dev` did not start. Last lines of {shown_path(log_path)}:\n{last_lines(lines)}"
                    )
                say("", out=out)
                say(f"Dagster UI: {url}", out=out)
                say(f"  asset lineage:   {url}/asset-groups/cloudglue", out=out)
                say(
                    f"  token usage:     {url}/assets/cloudglue/token_usage  (Metadata > Plots: tokens per partition)",
                    out=out,
                )
                say(f"  demo runs:       {url}/runs", out=out)
                say("Press Ctrl-C to stop (the emulator stops with it).", out=out)
                code = proc.wait()
                if code != 0:
                    raise DemoError(f"`dagster dev` exited with status {code}; see {shown_path(log_path)}")
                return 0
            finally:
                stop_process(proc, signal.SIGINT)
