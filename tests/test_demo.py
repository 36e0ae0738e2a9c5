"""`python -m cloudglue_dagster.demo` (make demo) end to end: emulator subprocess, the Dagster CLI
backfill into a DuckDB file, runs recorded in a DAGSTER_HOME, the summary read back, failures."""

from __future__ import annotations

import datetime as dt
import re
import socket
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
from support.pipeline import read_table

from cloudglue_dagster import demo
from cloudglue_dagster.demo.settings import Settings
from cloudglue_dagster.demo.summary import read_summary, verify
from cloudglue_dagster.emulator import Dataset

DAYS, PER_DAY = 4, 60
KEY_RE = re.compile(r"demo-[0-9a-f]{32}")


def run_demo(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cloudglue_dagster.demo", *args],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def summary_block(stdout: str) -> str:
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("day (UTC)"))
    end = next(i for i, line in enumerate(lines) if line.startswith("(per model:"))
    return "\n".join(lines[start : end + 1])


def table(database: Path, name: str, order: str) -> pd.DataFrame:
    return read_table(database, name, f"ORDER BY {order}")


def window() -> tuple[dt.date, dt.date]:
    start, end = demo.resolve_window(None, DAYS, dt.datetime.now(dt.timezone.utc).date())
    return start, end


@pytest.mark.processes
def test_demo_twice_gives_the_same_verified_tables_and_records_both_runs(tmp_path: Path):
    home = tmp_path / "home"
    args = ("--home", str(home), "--days", str(DAYS), "--per-day", str(PER_DAY))
    first = run_demo(*args)
    assert first.returncode == 0, first.stdout + first.stderr
    chat_1 = table(home / "warehouse.duckdb", "chat_completions", "id")
    usage_1 = table(home / "warehouse.duckdb", "token_usage", "date, model")
    second = run_demo(*args)
    assert second.returncode == 0, second.stdout + second.stderr

    # Same summary, same tables: the second run replaced the partitions with the same rows.
    assert summary_block(first.stdout) == summary_block(second.stdout)
    pd.testing.assert_frame_equal(chat_1, table(home / "warehouse.duckdb", "chat_completions", "id"))
    pd.testing.assert_frame_equal(usage_1, table(home / "warehouse.duckdb", "token_usage", "date, model"))

    # ... and both equal what the emulator served (its data set is deterministic).
    start, end = window()
    truth = Dataset(start, end, per_day=PER_DAY, seed=0).ground_truth_range(start, end)
    assert set(chat_1["id"]) == set().union(*(t.ids for t in truth.values()))
    assert len(chat_1) == sum(t.count for t in truth.values())
    assert int(usage_1["total_tokens"].sum()) == sum(t.total_tokens for t in truth.values())
    block = summary_block(first.stdout)
    for day, t in truth.items():
        row = next(line for line in block.splitlines() if line.startswith(day.isoformat()))
        assert row.split()[1:3] == [f"{t.count:,}", f"{t.total_tokens:,}"], row
    assert "Verified against the emulator" in first.stdout
    assert "4 partitions materialized" in first.stdout  # progress lines from the Dagster CLI's log
    assert re.search(r"\d+ check evaluations passed, 0 failed", first.stdout)

    # The runs are recorded in the demo's DAGSTER_HOME (what `make ui` shows), checks included.
    assert (home / "dagster.yaml").read_text().count("enabled: false") == 2
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 2 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        usage_key = dg.AssetKey(["cloudglue", "token_usage"])
        assert instance.get_materialized_partitions(usage_key) == {
            (start + dt.timedelta(days=i)).isoformat() for i in range(DAYS)
        }
        check = dg.AssetCheckKey(usage_key, "sums_match_chat_completions")
        records = instance.event_log_storage.get_asset_check_execution_history(check, limit=100)
        assert len(records) == 2 * DAYS

    # The generated API key never shows: not in the output, not in the backfill's log.
    for text in (first.stdout, first.stderr, (home / "demo-backfill.log").read_text()):
        assert not KEY_RE.search(text)

    # The verification reads the third table too: a completion without its answer is caught.
    settings = Settings(home=home, duckdb=home / "warehouse.duckdb", start=start, end=end, per_day=PER_DAY)
    summary = read_summary(settings)
    assert verify(settings, summary) == []
    with duckdb.connect(str(home / "warehouse.duckdb")) as conn:
        conn.execute(
            "DELETE FROM cloudglue.chat_messages WHERE completion_id = ? AND source = 'choice'", [chat_1["id"][0]]
        )
    assert [p for p in verify(settings, summary) if "chat_messages holds a prompt and an answer for" in p] != []


@pytest.mark.processes
def test_a_busy_emulator_port_fails_clearly(tmp_path: Path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_demo("--home", str(tmp_path / "home"), "--days", "2", "--per-day", "5",
                          "--emulator-port", str(port))  # fmt: skip
    assert result.returncode == 1
    assert "demo failed: the Cloudglue emulator did not start" in result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


@pytest.mark.processes
def test_a_locked_duckdb_file_fails_clearly(tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir()
    holder = duckdb.connect(str(home / "warehouse.duckdb"))  # a DuckDB shell or notebook, say
    try:
        result = run_demo("--home", str(home), "--days", "2", "--per-day", "5")
    finally:
        holder.close()
    assert result.returncode == 1
    assert "is locked by another process" in result.stderr
    assert "Starting the Cloudglue emulator" not in result.stdout  # failed before starting anything


@pytest.mark.processes
def test_a_window_that_has_not_ended_is_refused():
    result = run_demo("--start", "2999-01-01")
    assert result.returncode == 1
    assert "is not over yet" in result.stderr


@pytest.mark.processes
def test_an_api_error_is_shown_with_its_cause(tmp_path: Path):
    """The backfill's failure names the exception (here a 401), not just "exit status 1"."""
    start, end = window()
    settings = demo.Settings(home=tmp_path / "home", duckdb=tmp_path / "home" / "w.duckdb",
                             start=start, end=end, per_day=5)  # fmt: skip
    demo.prepare_home(settings.home)
    out = tmp_path / "progress.txt"
    with demo.EmulatorProcess(settings, "the-right-key") as emulator, open(out, "w") as progress:
        env = demo.dagster_env(settings, emulator.base_url, "a-wrong-key")
        with pytest.raises(demo.DemoError) as failure:
            demo.run_backfill(settings, env, out=progress)
    message = str(failure.value)
    assert "the Dagster backfill failed" in message
    assert "AuthenticationError" in message and "401" in message
    assert "a-wrong-key" not in message + out.read_text()


def test_resolve_window():
    today = dt.date(2026, 5, 20)
    assert demo.resolve_window(None, 14, today) == (dt.date(2026, 5, 6), dt.date(2026, 5, 19))
    assert demo.resolve_window(dt.date(2026, 3, 1), 14, today) == (dt.date(2026, 3, 1), dt.date(2026, 3, 14))
    with pytest.raises(demo.DemoError, match="not over yet"):
        demo.resolve_window(dt.date(2026, 5, 10), 14, today)
