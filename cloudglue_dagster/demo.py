"""The one-command demo (``make demo``) and the UI launcher (``make ui``).

``python -m cloudglue_dagster.demo`` (the ``run`` command, the default):

1. starts the local Cloudglue emulator in a background process over a
   deterministic data set (by default the 14 UTC days ending yesterday, ~250
   completions a day, seed 0: a few thousand completions, quiet, busy and
   empty days; a day's completions depend only on the seed and the date) with
   a freshly generated API key that is never printed;
2. runs a real Dagster backfill of those days through
   ``cloudglue_dagster.definitions`` with the Dagster CLI
   (``dagster asset materialize ... --partition-range A...B``: one run, the
   asset checks included), recorded in a project-local ``DAGSTER_HOME``
   (``./.dagster_home``) so that ``make ui`` shows the run afterwards, and
   writing the DuckDB file ``./.dagster_home/warehouse.duckdb``;
3. reads both tables back from DuckDB, verifies them against the emulator's
   ground truth and prints a per-day summary (completions and tokens, by model);
4. stops the emulator, on every exit path.

Running it again replaces the same partitions with the same rows. Any failure
ends with ``demo failed: <reason>`` on stderr and exit status 1 (130 after
Ctrl-C).

``python -m cloudglue_dagster.demo ui`` starts the emulator over the same data
set and ``dagster dev -w workspace.yaml`` on the same ``DAGSTER_HOME`` and
DuckDB file (running the backfill first if the DuckDB file lacks a day of
the window), prints the URL and serves until Ctrl-C (exit status 0).

Child processes run in their own process groups and are stopped as groups
(POSIX only, like the Makefile).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

__all__ = [
    "BackfillResult",
    "DEFAULT_DAYS",
    "DEFAULT_HOME",
    "DEFAULT_PER_DAY",
    "DEFAULT_SEED",
    "DayRow",
    "DemoError",
    "EmulatorProcess",
    "Settings",
    "Summary",
    "dagster_env",
    "format_summary",
    "main",
    "prepare_home",
    "read_summary",
    "resolve_window",
    "run_backfill",
    "run_demo",
    "run_ui",
    "verify",
]

DEFAULT_DAYS = 14
DEFAULT_PER_DAY = 250
DEFAULT_SEED = 0
DEFAULT_HOME = ".dagster_home"
DUCKDB_FILE = "warehouse.duckdb"
SCHEMA = "cloudglue"
ASSET_SELECTION = 'key:"cloudglue/*"'
DEFINITIONS_MODULE = "cloudglue_dagster.definitions"

_DAGSTER_YAML_HEADER = "# Written by `python -m cloudglue_dagster.demo`"
_DAGSTER_YAML = f"""\
{_DAGSTER_YAML_HEADER} (make demo / make ui): the demo's Dagster
# instance. Runs, event logs and schedules live in SQLite files next to this one. Delete this
# file's first line to keep your own edits (the demo then leaves the file alone).
telemetry:
  enabled: false
nux:
  enabled: false  # no "join the community" dialog in the UI
"""


class DemoError(Exception):
    """A failure with a message meant for the user (printed as ``demo failed: ...``)."""


@dataclass(frozen=True)
class Settings:
    """Where the demo writes and which data set it serves."""

    home: Path
    duckdb: Path
    start: dt.date
    end: dt.date  # inclusive
    per_day: int = DEFAULT_PER_DAY
    seed: int = DEFAULT_SEED
    emulator_port: int = 0

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def partition_range(self) -> str:
        return f"{self.start.isoformat()}...{self.end.isoformat()}"


def _say(message: str = "", *, out: IO[str] | None = None) -> None:
    print(message, file=out or sys.stdout, flush=True)


def _display(path: Path) -> str:
    """``path`` relative to the working directory when it is inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _tail(lines: Sequence[str], n: int = 30) -> str:
    kept = [line.rstrip("\n") for line in lines if not _is_noise(line)]
    return "\n".join("    " + line for line in kept[-n:])


_WARNING_RE = re.compile(r"^\S+\.py:\d+: \w*Warning: ")


def _is_noise(line: str) -> bool:
    """Python warnings (Beta/Preview/Supersession) and the source line that follows them."""
    return bool(_WARNING_RE.match(line)) or line.startswith("  return ")


# -- child processes -----------------------------------------------------------------------------


def _spawn(cmd: Sequence[str], env: Mapping[str, str], **kwargs: Any) -> subprocess.Popen[Any]:
    """Start ``cmd`` in its own process group, so that it and every process it starts can be
    stopped together (`dagster dev` runs a webserver, a daemon and code servers)."""
    return subprocess.Popen(list(cmd), env=dict(env), stdin=subprocess.DEVNULL, start_new_session=True, **kwargs)


def _stop(proc: subprocess.Popen[Any], sig: int, timeout: float = 20.0) -> None:
    """Stop a process group started by :func:`_spawn`: ``sig`` (SIGINT is how `dagster dev`
    and `dagster asset materialize` shut down cleanly), then SIGKILL for whatever is left
    after ``timeout`` seconds. Nothing happens if the process has exited already."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # the leader if it hung, and any straggler of its group
    proc.wait()


# -- the data set and its window ---------------------------------------------------------------


def resolve_window(start: dt.date | None, days: int, today: dt.date) -> tuple[dt.date, dt.date]:
    """First and last UTC day of the demo's data set.

    By default the ``days`` days ending yesterday (UTC): daily partitions end yesterday, and
    the UI plots the latest partitions, so the demo's days are the ones it shows. A day's
    completions depend only on the seed and the date, so re-running (the same day) writes
    the same rows again. ``start`` pins the window instead; it must have ended.
    """
    if days < 1:
        raise DemoError(f"--days must be >= 1, got {days}")
    yesterday = today - dt.timedelta(days=1)
    if start is None:
        return yesterday - dt.timedelta(days=days - 1), yesterday
    end = start + dt.timedelta(days=days - 1)
    if end > yesterday:
        raise DemoError(
            f"the window {start}..{end} is not over yet: daily partitions end yesterday"
            f" ({yesterday}, UTC). Choose an earlier --start or fewer --days."
        )
    return start, end


def _dataset(settings: Settings):  # -> Dataset (imported lazily: keeps `--help` fast)
    from .emulator import Dataset

    return Dataset(settings.start, settings.end, per_day=settings.per_day, seed=settings.seed)


# -- the emulator in a background process ------------------------------------------------------


_LISTENING_RE = re.compile(r"listening on (http://\S+)")


class EmulatorProcess:
    """``python -m cloudglue_dagster.emulator`` in a child process; a context manager.

    The API key travels in the child's environment (``CLOUDGLUE_API_KEY``), not on its
    command line, so it never shows in ``ps``.
    """

    def __init__(self, settings: Settings, api_key: str, *, startup_timeout: float = 60.0) -> None:
        self.settings = settings
        self._api_key = api_key
        self._startup_timeout = startup_timeout
        self.proc: subprocess.Popen[str] | None = None
        self.base_url: str | None = None
        self.output: deque[str] = deque(maxlen=200)
        self._ready = threading.Event()

    def __enter__(self) -> EmulatorProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> str:
        s = self.settings
        cmd = [
            sys.executable, "-m", "cloudglue_dagster.emulator",
            "--host", "127.0.0.1", "--port", str(s.emulator_port),
            "--start", s.start.isoformat(), "--end", s.end.isoformat(),
            "--per-day", str(s.per_day), "--seed", str(s.seed),
        ]  # fmt: skip
        env = {**os.environ, "CLOUDGLUE_API_KEY": self._api_key, "PYTHONUNBUFFERED": "1"}
        self.proc = _spawn(cmd, env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           encoding="utf-8", errors="replace")  # fmt: skip
        threading.Thread(target=self._read, name="emulator-output", daemon=True).start()
        if not self._ready.wait(self._startup_timeout) or self.base_url is None:
            self.stop()
            raise DemoError(
                f"the Cloudglue emulator did not start (port {s.emulator_port or 'any'} on 127.0.0.1):\n"
                + (_tail(list(self.output)) or "    (no output)")
            )
        return self.base_url

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            match = _LISTENING_RE.search(line)
            if match and self.base_url is None:
                self.base_url = match.group(1)
                self._ready.set()
        self._ready.set()  # exited: wake start()

    def stop(self) -> None:
        """Stop the emulator (SIGTERM, then SIGKILL after 5 s); idempotent."""
        proc = self.proc
        if proc is None:
            return
        _stop(proc, signal.SIGTERM, timeout=5.0)
        if proc.stdout is not None:
            proc.stdout.close()


# -- the Dagster instance ----------------------------------------------------------------------


def prepare_home(home: Path) -> None:
    """Create ``home`` with the demo's ``dagster.yaml`` (telemetry and the UI's welcome dialog off).

    A ``dagster.yaml`` the demo did not write is left alone.
    """
    try:
        home.mkdir(parents=True, exist_ok=True)
        config = home / "dagster.yaml"
        if not config.exists() or (
            config.read_text(encoding="utf-8").startswith(_DAGSTER_YAML_HEADER)
            and config.read_text(encoding="utf-8") != _DAGSTER_YAML
        ):
            config.write_text(_DAGSTER_YAML, encoding="utf-8")
    except OSError as exc:
        raise DemoError(f"cannot create the Dagster home {home}: {exc}") from exc


def dagster_env(settings: Settings, base_url: str, api_key: str) -> dict[str, str]:
    """The environment of the Dagster processes: instance, definitions' settings, key."""
    env = dict(os.environ)
    env.update(
        DAGSTER_HOME=str(settings.home.resolve()),
        CLOUDGLUE_BASE_URL=base_url,
        CLOUDGLUE_API_KEY=api_key,
        CLOUDGLUE_START_DATE=settings.start.isoformat(),
        CLOUDGLUE_DUCKDB_PATH=str(settings.duckdb.resolve()),
        PYTHONUNBUFFERED="1",
    )
    return env


def _check_duckdb_unlocked(path: Path, wait_seconds: float = 5.0) -> None:
    """Fail fast, with a clear message, when another process holds the DuckDB file's lock."""
    import duckdb

    from .duckdb.connections import is_lock_error

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DemoError(f"cannot create the folder of the DuckDB file {path}: {exc}") from exc
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            duckdb.connect(str(path)).close()
            return
        except duckdb.IOException as exc:
            if not is_lock_error(exc):
                raise DemoError(f"cannot open the DuckDB file {_display(path)}: {exc}") from exc
            if time.monotonic() >= deadline:
                raise DemoError(
                    f"the DuckDB file {_display(path)} is locked by another process (a DuckDB shell,"
                    " a notebook, or a Dagster run still writing it). Close it and run again."
                    f" DuckDB said: {exc}"
                ) from exc
            time.sleep(0.5)


# -- the backfill, with progress ---------------------------------------------------------------


_LOG_RE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} - dagster - (?P<level>[A-Z]+) - \S+ - (?P<run>[0-9a-f-]{36})"
    r" - (?:\d+ - )?(?:(?P<step>[a-z0-9_]+(?:\[[^\]]*\])?) - )?(?:(?P<event>[A-Z][A-Z_]+) - )?(?P<msg>.*)$"
)
_RETRY_RE = re.compile(r"retry in ([0-9.]+) seconds")
# "module.ExceptionType: message" lines of a traceback (Dagster prints the chained causes too).
_EXCEPTION_RE = re.compile(r"^(?P<type>(?:[\w]+\.)*\w*(?:Error|Exception|Failure|Exit))(?:: (?P<msg>.*))?$")
_CHECK_RE = re.compile(r"^Asset check '(?P<check>[^']+)' on '(?P<asset>[^']+)' (?P<outcome>passed|failed)")


@dataclass
class BackfillResult:
    """What the backfill's log said."""

    run_id: str | None = None
    materializations: Counter[str] = field(default_factory=Counter)
    checks_passed: Counter[str] = field(default_factory=Counter)
    checks_failed: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)  # exceptions of failed steps, as logged
    seconds: float = 0.0

    @property
    def passed(self) -> int:
        return sum(self.checks_passed.values())

    @property
    def failed(self) -> int:
        return sum(self.checks_failed.values())


def _step_label(step: str) -> str:
    if step.endswith("_checks"):
        return f"checks of {step[: -len('_checks')].replace('__', '/')}"
    return step.replace("__", "/")


class _Progress:
    """Turns the Dagster CLI's event log into a few progress lines."""

    def __init__(self, result: BackfillResult, out: IO[str]) -> None:
        self.result = result
        self.out = out
        self.started: dict[str, float] = {}
        self.checks: dict[str, Counter[str]] = {}
        self.causes: list[str] | None = None  # collecting the error lines of a failed step

    def feed(self, line: str) -> None:
        m = _LOG_RE.match(line.rstrip("\n"))
        if not m:
            self._traceback_line(line.strip())
            return
        self.causes = None
        event, step, msg = m.group("event"), m.group("step"), m.group("msg")
        r = self.result
        if event == "RUN_START":
            r.run_id = m.group("run")
            _say(f"  run {r.run_id} started", out=self.out)
        elif event == "STEP_START" and step:
            self.started[step] = time.monotonic()
            _say(f"  {_step_label(step)}: started", out=self.out)
        elif event == "ASSET_MATERIALIZATION" and step:
            r.materializations[step] += 1
        elif event == "ASSET_CHECK_EVALUATION" and step:
            c = _CHECK_RE.match(msg)
            if c:
                counter = r.checks_passed if c.group("outcome") == "passed" else r.checks_failed
                counter[c.group("check")] += 1
                self.checks.setdefault(step, Counter())[c.group("outcome")] += 1
                if c.group("outcome") == "failed":
                    _say(f"  {_step_label(step)}: {msg}", out=self.out)
        elif event == "STEP_SUCCESS" and step:
            took = time.monotonic() - self.started.get(step, time.monotonic())
            parts = []
            if r.materializations[step]:
                parts.append(f"{r.materializations[step]} partitions materialized")
            if step in self.checks:
                n = self.checks[step]
                parts.append(f"{n['passed']} check evaluations passed, {n['failed']} failed")
            detail = "; ".join(parts) or "nothing to report"
            _say(f"  {_step_label(step)}: done, {detail} ({took:.1f} s)", out=self.out)
        elif event == "STEP_UP_FOR_RETRY" and step:
            delay = _RETRY_RE.search(msg)
            when = f" in {float(delay.group(1)):.0f} s" if delay else ""
            _say(f"  {_step_label(step)}: failed; Dagster retries the step{when} (its retry policy)", out=self.out)
            self.causes = []
        elif event == "STEP_FAILURE" and step:
            _say(f"  {_step_label(step)}: FAILED", out=self.out)
            self.causes = []
        elif event == "RUN_FAILURE" or (event is None and m.group("level") == "ERROR"):
            _say(f"  {_step_label(step) + ': ' if step else ''}{msg}", out=self.out)
        elif event is None and step and m.group("level") == "INFO" and msg:
            _say(f"  {_step_label(step)}: {msg}", out=self.out)  # the assets' own log lines
        elif event == "RUN_SUCCESS":
            _say("  run succeeded", out=self.out)

    def _traceback_line(self, line: str) -> None:
        """Show the exceptions of a failed step's traceback (Dagster's own wrappers left out)."""
        if self.causes is None or len(self.causes) >= 3:
            return
        m = _EXCEPTION_RE.match(line)
        if not m or m.group("type").startswith("dagster.") or line in self.causes:
            return
        self.causes.append(line)
        if line not in self.result.errors:
            self.result.errors.append(line)
        shown = line if len(line) <= 300 else line[:297] + "..."
        _say(f"      {shown}", out=self.out)


def _error_check_failures(dagster_home: str | None, run_id: str | None) -> Counter[str]:
    """The run's failed check evaluations of ERROR severity, by check name, read from its
    event log (the CLI's log line does not carry the severity; WARN failures are reported in
    the progress, not a failure of the demo)."""
    failures: Counter[str] = Counter()
    if not dagster_home or not run_id:
        return failures
    import dagster as dg

    with dg.DagsterInstance.from_config(dagster_home) as instance:
        records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION, limit=100_000)
        for record in records.records:
            evaluation = record.event_log_entry.dagster_event.event_specific_data
            if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
                failures[f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"] += 1
    return failures


def backfill_command(settings: Settings) -> list[str]:
    """The Dagster CLI command of the backfill (shown to the user, then run)."""
    return [
        "dagster", "asset", "materialize", "-m", DEFINITIONS_MODULE,
        "--select", ASSET_SELECTION, "--partition-range", settings.partition_range,
    ]  # fmt: skip


def run_backfill(settings: Settings, env: Mapping[str, str], *, out: IO[str] | None = None) -> BackfillResult:
    """Run the backfill with the Dagster CLI; its full log goes to ``<home>/demo-backfill.log``."""
    out = out or sys.stdout
    shown = backfill_command(settings)
    _say(f"  $ {shlex.join(shown)}", out=out)
    cmd = [sys.executable, "-m", "dagster", *shown[1:]]
    log_path = settings.home / "demo-backfill.log"
    result = BackfillResult()
    progress = _Progress(result, out)
    recent: deque[str] = deque(maxlen=400)
    began = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log:
        proc = _spawn(cmd, env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                      encoding="utf-8", errors="replace")  # fmt: skip
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                recent.append(line)
                progress.feed(line)
            code = proc.wait()
        finally:
            _stop(proc, signal.SIGINT)  # only when interrupted: otherwise it has exited already
    result.seconds = time.monotonic() - began
    if code != 0:
        if result.errors:
            detail = "\n".join("    " + e for e in result.errors[-5:])
            raise DemoError(f"the Dagster backfill failed (exit status {code}):\n{detail}\nFull log: {_display(log_path)}")
        raise DemoError(
            f"the Dagster backfill failed (exit status {code}). Last lines of its log"
            f" ({_display(log_path)}):\n{_tail(list(recent))}"
        )
    failed = _error_check_failures(env.get("DAGSTER_HOME"), result.run_id) if result.checks_failed else {}
    if failed:
        listed = ", ".join(f"{name} ({n} partitions)" for name, n in sorted(failed.items()))
        raise DemoError(f"asset checks failed: {listed}; see {_display(log_path)} or `make ui`")
    return result


# -- the summary, read back from DuckDB ---------------------------------------------------------


@dataclass(frozen=True)
class DayRow:
    """One UTC day of the summary."""

    day: dt.date
    completions: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    by_model: tuple[tuple[str, int, int], ...]  # (model, completions, total_tokens), by model


@dataclass(frozen=True)
class Summary:
    database: Path
    rows: tuple[DayRow, ...]

    @property
    def models(self) -> list[str]:
        return sorted({m for row in self.rows for m, _, _ in row.by_model})

    @property
    def completions(self) -> int:
        return sum(r.completions for r in self.rows)

    @property
    def total_tokens(self) -> int:
        return sum(r.total_tokens for r in self.rows)


def _connect_read_only(path: Path, wait_seconds: float = 30.0):
    import duckdb

    from .duckdb.connections import is_lock_error

    if not path.exists():
        raise DemoError(f"the DuckDB file {_display(path)} does not exist: the backfill wrote nothing")
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            conn = duckdb.connect(str(path), read_only=True)
            conn.execute("SET TimeZone = 'UTC'")
            return conn
        except duckdb.IOException as exc:
            if not is_lock_error(exc) or time.monotonic() >= deadline:
                raise DemoError(
                    f"cannot read the DuckDB file {_display(path)}: {exc}. If another process holds it"
                    " (a DuckDB shell, a notebook), close it and run again."
                ) from exc
            time.sleep(0.5)


def read_summary(settings: Settings) -> Summary:
    """Both tables of the demo's days, read back from DuckDB (read-only), per UTC day."""
    import duckdb

    lo = settings.start.isoformat()
    hi = (settings.end + dt.timedelta(days=1)).isoformat()
    conn = _connect_read_only(settings.duckdb)
    try:
        usage = conn.execute(
            f"""
            SELECT CAST(date AS DATE) AS day, model, completions,
                   coalesce(prompt_tokens, 0), coalesce(completion_tokens, 0), coalesce(total_tokens, 0)
            FROM {SCHEMA}.token_usage
            WHERE date >= TIMESTAMP '{lo}' AND date < TIMESTAMP '{hi}'
            ORDER BY day, model
            """
        ).fetchall()
    except duckdb.CatalogException as exc:
        raise DemoError(f"the DuckDB file {_display(settings.duckdb)} has no {SCHEMA}.token_usage table: {exc}") from exc
    finally:
        conn.close()
    by_day: dict[dt.date, list[tuple[str, int, int, int, int]]] = {}
    for day, model, n, prompt, completion, total in usage:
        by_day.setdefault(day, []).append((model, int(n), int(prompt), int(completion), int(total)))
    rows = []
    for i in range(settings.days):
        day = settings.start + dt.timedelta(days=i)
        models = by_day.get(day, [])
        rows.append(
            DayRow(
                day=day,
                completions=sum(m[1] for m in models),
                prompt_tokens=sum(m[2] for m in models),
                completion_tokens=sum(m[3] for m in models),
                total_tokens=sum(m[4] for m in models),
                by_model=tuple((m[0], m[1], m[4]) for m in models),
            )
        )
    return Summary(settings.duckdb, tuple(rows))


def verify(settings: Settings, summary: Summary) -> list[str]:
    """Differences between the stored tables and the emulator's ground truth (empty: none)."""
    truth = _dataset(settings).ground_truth_range(settings.start, settings.end)
    lo = settings.start.isoformat()
    hi = (settings.end + dt.timedelta(days=1)).isoformat()
    conn = _connect_read_only(settings.duckdb)
    try:
        ids: dict[dt.date, list[str]] = {}
        for day, cid in conn.execute(
            f"""
            SELECT CAST(created_at AS DATE), id FROM {SCHEMA}.chat_completions
            WHERE created_at >= TIMESTAMPTZ '{lo} 00:00:00+00' AND created_at < TIMESTAMPTZ '{hi} 00:00:00+00'
            """
        ).fetchall():
            ids.setdefault(day, []).append(cid)
    finally:
        conn.close()
    problems: list[str] = []
    for row in summary.rows:
        want = truth[row.day]
        got_ids = ids.get(row.day, [])
        if len(got_ids) != want.count or set(got_ids) != set(want.ids):
            problems.append(
                f"{row.day}: chat_completions holds {len(got_ids)} rows ({len(set(got_ids))} distinct ids),"
                f" the emulator served {want.count}"
            )
        got = (row.completions, row.prompt_tokens, row.completion_tokens, row.total_tokens)
        expected = (want.count, want.prompt_tokens, want.completion_tokens, want.total_tokens)
        if got != expected:
            problems.append(f"{row.day}: token_usage (completions, prompt, completion, total) = {got}, expected {expected}")
        models = {m: n for m, n, _ in row.by_model}
        if models != {m: n for m, n in want.by_model.items() if n}:
            problems.append(f"{row.day}: completions by model {models}, expected {want.by_model}")
    return problems


def _compact(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.2f}M"
    if n >= 10_000:
        return f"{n / 1000:.0f}k"
    if n >= 1000:
        return f"{n / 1000:.1f}k"
    return str(n)


def format_summary(summary: Summary) -> str:
    """The per-day table: date, completions, total tokens, then completions / tokens of each model."""
    models = summary.models
    cells = {m: max(len(m), 13) for m in models}
    header = f"{'day (UTC)':<10}  {'completions':>11}  {'total tokens':>12}"
    header += "".join(f"  {m:>{cells[m]}}" for m in models)
    lines = [header, "-" * len(header)]

    def model_cells(by_model: Mapping[str, tuple[int, int]]) -> str:
        out = ""
        for m in models:
            n, tokens = by_model.get(m, (0, 0))
            text = f"{n:,} / {_compact(tokens)}" if n else "-"
            out += f"  {text:>{cells[m]}}"
        return out

    for row in summary.rows:
        line = f"{row.day.isoformat():<10}  {row.completions:>11,}  {row.total_tokens:>12,}"
        line += model_cells({m: (n, t) for m, n, t in row.by_model})
        if not row.completions:
            line += "   (empty day)"
        lines.append(line)
    lines.append("-" * len(header))
    totals: dict[str, tuple[int, int]] = {}
    for row in summary.rows:
        for m, n, t in row.by_model:
            a, b = totals.get(m, (0, 0))
            totals[m] = (a + n, b + t)
    lines.append(f"{'total':<10}  {summary.completions:>11,}  {summary.total_tokens:>12,}" + model_cells(totals))
    lines.append("(per model: completions / total tokens)")
    return "\n".join(lines)


# -- the commands --------------------------------------------------------------------------------


def run_demo(settings: Settings, *, out: IO[str] | None = None) -> Summary:
    """Emulator, backfill, verified summary; the emulator is stopped on every path."""
    out = out or sys.stdout
    began = time.monotonic()
    prepare_home(settings.home)
    _check_duckdb_unlocked(settings.duckdb)
    dataset = _dataset(settings)
    api_key = "demo-" + secrets.token_hex(16)
    _say(
        f"[1/3] Starting the Cloudglue emulator: {dataset.total:,} completions over {settings.days} UTC days"
        f" ({settings.start}..{settings.end}; {len(dataset.empty_days)} empty), seed {settings.seed}",
        out=out,
    )
    with EmulatorProcess(settings, api_key) as emulator:
        assert emulator.base_url is not None
        _say(f"  emulator listening on {emulator.base_url}", out=out)
        _say(
            f"[2/3] Backfilling {settings.partition_range} ({settings.days} daily partitions, one run) into"
            f" {_display(settings.duckdb)}; Dagster home {_display(settings.home)}",
            out=out,
        )
        result = run_backfill(settings, dagster_env(settings, emulator.base_url, api_key), out=out)
    _say(f"  emulator stopped; backfill took {result.seconds:.1f} s", out=out)
    _say(f"[3/3] Reading back {_display(settings.duckdb)}", out=out)
    summary = read_summary(settings)
    problems = verify(settings, summary)
    _say("", out=out)
    _say(format_summary(summary), out=out)
    _say("", out=out)
    if problems:
        raise DemoError(
            "the stored tables differ from what the emulator served:\n" + "\n".join("    " + p for p in problems)
        )
    _say(
        f"Verified against the emulator: {summary.completions:,} completions and"
        f" {summary.total_tokens:,} total tokens in {settings.days} days, every id once;"
        f" {result.passed} asset check evaluations passed.",
        out=out,
    )
    _say(
        f"Done in {time.monotonic() - began:.0f} s. Run {result.run_id} is recorded in {_display(settings.home)}:"
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
    dataset = _dataset(settings)
    return all(row.completions == dataset.count(row.day) for row in read.rows)


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the webserver binds: connections of a previous server in TIME_WAIT do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _wait_http(url: str, proc: subprocess.Popen[Any], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    return False


def run_ui(settings: Settings, host: str, port: int, *, out: IO[str] | None = None) -> int:
    """Emulator + ``dagster dev`` on the demo's Dagster home, until Ctrl-C."""
    out = out or sys.stdout
    if not _port_free(host, port):
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
        _say(f"Cloudglue emulator listening on {emulator.base_url} ({settings.start}..{settings.end})", out=out)
        env = dagster_env(settings, emulator.base_url, api_key)
        if not _has_data(settings):
            _say(f"{_display(settings.duckdb)} lacks days of {settings.start}..{settings.end}: running the backfill first.", out=out)
            _check_duckdb_unlocked(settings.duckdb)
            run_backfill(settings, env, out=out)
        shown = ["dagster", "dev", *location, "-h", host, "-p", str(port)]
        _say(f"Starting: {shlex.join(shown)}  (DAGSTER_HOME={_display(settings.home)}, log: {_display(log_path)})", out=out)
        with open(log_path, "w", encoding="utf-8") as log:
            proc = _spawn([sys.executable, "-m", "dagster", *shown[1:]], env, stdout=log, stderr=subprocess.STDOUT)
            try:
                url_host = f"[{host}]" if ":" in host else host
                url = f"http://{url_host}:{port}"
                if not _wait_http(f"{url}/server_info", proc, timeout=180):
                    log.flush()
                    lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
                    raise DemoError(f"`dagster dev` did not start. Last lines of {_display(log_path)}:\n{_tail(lines)}")
                _say("", out=out)
                _say(f"Dagster UI: {url}", out=out)
                _say(f"  asset lineage:   {url}/asset-groups/cloudglue", out=out)
                _say(f"  token usage:     {url}/assets/cloudglue/token_usage  (Metadata > Plots: tokens per partition)", out=out)
                _say(f"  demo runs:       {url}/runs", out=out)
                _say("Press Ctrl-C to stop (the emulator stops with it).", out=out)
                code = proc.wait()
                if code != 0:
                    raise DemoError(f"`dagster dev` exited with status {code}; see {_display(log_path)}")
                return 0
            finally:
                _stop(proc, signal.SIGINT)


def _int_at_least(minimum: int):
    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {n}")
        return n

    return parse


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", type=Path, default=Path(DEFAULT_HOME),
                        help=f"Dagster home of the demo (default ./{DEFAULT_HOME})")  # fmt: skip
    common.add_argument("--duckdb", type=Path, default=None,
                        help=f"DuckDB file (default <home>/{DUCKDB_FILE})")  # fmt: skip
    common.add_argument("--start", type=_date, default=None,
                        help="first UTC day of the data set (default: the window ends yesterday, UTC)")  # fmt: skip
    common.add_argument("--days", type=_int_at_least(1), default=DEFAULT_DAYS, help=f"default {DEFAULT_DAYS}")
    common.add_argument("--per-day", type=_int_at_least(0), default=DEFAULT_PER_DAY,
                        help=f"mean completions of a non-empty day (default {DEFAULT_PER_DAY})")  # fmt: skip
    common.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"data set seed (default {DEFAULT_SEED})")
    common.add_argument("--emulator-port", type=_int_at_least(0), default=0,
                        help="port of the emulator (default 0: a free one)")  # fmt: skip
    parser = argparse.ArgumentParser(
        prog="python -m cloudglue_dagster.demo",
        description="Backfill a two-week emulated Cloudglue data set into DuckDB with Dagster (run),"
        " or serve the Dagster UI over it (ui).",
        epilog="Options of both commands (see `run --help`): --home, --duckdb, --start, --days,"
        " --per-day, --seed, --emulator-port. `ui` adds --host and --port.",
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", parents=[common], help="emulator + backfill + summary (the default)")
    ui = commands.add_parser("ui", parents=[common], help="emulator + dagster dev on the demo's Dagster home")
    ui.add_argument("--host", default="127.0.0.1", help="webserver host (default 127.0.0.1)")
    ui.add_argument("--port", type=_int_at_least(1), default=3000, help="webserver port (default 3000)")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    start, end = resolve_window(args.start, args.days, dt.datetime.now(dt.timezone.utc).date())
    home = args.home
    return Settings(
        home=home,
        duckdb=args.duckdb if args.duckdb is not None else home / DUCKDB_FILE,
        start=start,
        end=end,
        per_day=args.per_day,
        seed=args.seed,
        emulator_port=args.emulator_port,
    )


@contextlib.contextmanager
def _interrupts() -> Iterator[None]:
    """Ctrl-C and SIGTERM unwind as ``KeyboardInterrupt``, so the ``finally`` blocks stop the
    child processes (which run in their own process groups and do not see the terminal's
    Ctrl-C). SIGINT is set even if the shell started us with it ignored (``cmd &``)."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("run", "ui", "-h", "--help"):
        argv.insert(0, "run")
    args = build_parser().parse_args(argv)
    out = sys.stdout
    try:
        with _interrupts():
            settings = _settings(args)
            if args.command == "ui":
                return run_ui(settings, args.host, args.port, out=out)
            run_demo(settings, out=out)
            return 0
    except DemoError as exc:
        _say(f"demo failed: {exc}", out=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if args.command == "ui":  # Ctrl-C is how the UI is meant to stop
            _say("stopped: Dagster and the emulator were shut down", out=sys.stderr)
            return 0
        _say("interrupted; the emulator and Dagster processes were stopped", out=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
