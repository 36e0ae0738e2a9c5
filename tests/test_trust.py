"""The warehouse is the witness, and a stored day is never split or shrunk.

Each test goes through the real ``dagster asset materialize`` (the CLI a user runs) against
the emulator behind a loopback proxy that lies in one chosen way (``support/hostile_server.py``),
into a real DuckDB file. It starts from an honest load (made once per run by the same CLI,
copied for each test with the DAGSTER_HOME that recorded it), then lets the server lie,
and compares every row of all three tables before and after.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from support import shared
from support.hostile_server import HostileProxy
from support.pipeline import TABLES, TEST_KEY, Pipeline, assert_tables_unchanged, stored_tables
from support.reliability import cli_env, materialize_cmd, read_table

from cloudglue_dagster import CloudglueResource, HeldTooMuchError
from cloudglue_dagster.assets.guards import allow_shrink_config
from cloudglue_dagster.emulator import Dataset, Emulator
from cloudglue_dagster.io_managers.duckdb.progress import PROGRESS_TABLE

START = dt.date(2026, 5, 1)
FIRST, LAST = "2026-05-03", "2026-05-06"
RUN_DAYS = ["2026-05-03", "2026-05-04", "2026-05-05", "2026-05-06"]
TIME_COLUMN = {"chat_completions": "created_at", "chat_messages": "date", "token_usage": "date"}
OP = "cloudglue__tables"


def dataset() -> Dataset:
    days = [START + dt.timedelta(days=i) for i in range(8)]
    return Dataset(START, days[-1], seed=11, counts={d: 30 + 7 * i for i, d in enumerate(days)})


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(dataset(), api_key=TEST_KEY) as server:
        yield server


@pytest.fixture
def proxy(emu: Emulator) -> Iterator[HostileProxy]:
    with HostileProxy(emu) as server:
        yield server


def run_cli(proxy: HostileProxy, database: Path, home: Path | None, *extra: str) -> subprocess.CompletedProcess:
    """``dagster asset materialize`` of every table for FIRST...LAST; ``home`` None: no
    DAGSTER_HOME at all (the CLI then runs on an ephemeral instance)."""
    env = cli_env(
        key=TEST_KEY,
        base_url=proxy.base_url,
        start=START.isoformat(),
        database=database,
        home=home or database.parent / "unused",
    )
    if home is None:
        env.pop("DAGSTER_HOME")
    command = materialize_cmd("--partition-range", f"{FIRST}...{LAST}", *extra)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=database.parent)


def rows_per_day(frames: dict[str, pd.DataFrame]) -> dict[str, dict[str, int]]:
    """table -> day -> rows."""
    return {
        name: frame[TIME_COLUMN[name]].dt.strftime("%Y-%m-%d").value_counts().to_dict()
        for name, frame in frames.items()
    }


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An honest load of FIRST...LAST by the CLI, once for the run (whatever the xdist
    workers): the DuckDB file and the DAGSTER_HOME that recorded it, from an emulator of the
    same data set as ``emu``'s."""

    def load(root: Path) -> None:
        with Emulator(dataset(), api_key=TEST_KEY) as server, HostileProxy(server) as proxy:
            done = run_cli(proxy, root / "w.duckdb", root / "home")
        assert done.returncode == 0, done.stderr[-3000:]

    return shared.once_per_run(tmp_path_factory, "trust-seeded", load)


def seed(seeded: Path, tmp_path: Path) -> tuple[Path, dict[str, pd.DataFrame]]:
    """This test's copy of the honest load (``tmp_path / "w.duckdb"``, its DAGSTER_HOME
    ``tmp_path / "home"``); returns the database and its rows."""
    shutil.copytree(seeded / "home", tmp_path / "home")
    for file in seeded.glob("w.duckdb*"):  # and a write-ahead log, if DuckDB left one
        shutil.copy(file, tmp_path / file.name)
    database = tmp_path / "w.duckdb"
    return database, stored_tables(database)


def output(done: subprocess.CompletedProcess) -> str:
    return done.stdout + done.stderr


# -- 1. the warehouse is the witness --------------------------------------------------------------


@pytest.mark.processes
@pytest.mark.parametrize("home", ["new DAGSTER_HOME", "no DAGSTER_HOME"])
def test_an_empty_answer_cannot_replace_stored_days_whatever_the_instance_remembers(
    seeded: Path, proxy: HostileProxy, tmp_path: Path, home: str
) -> None:
    """A key of another, empty account (or an outage answering empty lists) answers total 0. With
    a new DAGSTER_HOME, or none (an ephemeral instance), nothing recorded the stored days, and
    they used to be replaced by nothing (610 -> 0, exit 0). The guard now compares with the rows
    the warehouse holds: every day is refused, named with its stored and new counts, and kept
    in all three tables. The override works from the command line (--config-json), and an
    honest deletion then empties the days in every table."""
    database, before = seed(seeded, tmp_path)
    counts = rows_per_day(before)["chat_completions"]
    proxy.lie = "empty_account"
    instance = tmp_path / "home2" if home.startswith("new") else None

    refused = run_cli(proxy, database, instance)
    assert refused.returncode != 0
    said = output(refused)
    assert f"Refused to replace {len(RUN_DAYS)} stored day(s) with far fewer rows" in said
    for day in RUN_DAYS:
        assert f"{day}: {counts[day]} -> 0" in said
    assert "the rows the warehouse holds" in said and "--config-json" in said
    assert_tables_unchanged(before, database)

    allowed = run_cli(proxy, database, instance, "--config-json", allow_shrink_config(OP))
    assert allowed.returncode == 0, output(allowed)[-3000:]
    after = rows_per_day(stored_tables(database))
    for name in TABLES:
        assert not set(after[name]) & set(RUN_DAYS), (name, after[name])


# -- 2. a day is never split or left partly replaced ------------------------------------------------


def _move_to_the_end_of(day: str) -> Any:
    """A reorder: the first record of ``day`` listed among the window's oldest (the padding day
    before FIRST), so every run day is complete, by the listing's order, before it comes."""

    def reorder(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        on_day = [r for r in records if _day(r) == day]
        records.remove(on_day[0])
        records.insert(len(records) - 35, on_day[0])  # among the padding day's 37, before the last page
        return records

    return reorder


def _oldest_second(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A reorder: the oldest record of the run's days listed second, so it jumps over every other day."""
    oldest = [r for r in records if _day(r) == FIRST][-1]
    records.remove(oldest)
    records.insert(1, oldest)
    return records


def _day(record: dict[str, Any]) -> str:
    return dt.datetime.fromtimestamp(record["created_at"] / 1000, dt.timezone.utc).date().isoformat()


@pytest.mark.processes
@pytest.mark.parametrize("listing", ["a late record", "the oldest listed second"])
@pytest.mark.parametrize("home", ["same DAGSTER_HOME", "new DAGSTER_HOME"])
def test_a_listing_out_of_order_then_a_failure_leaves_every_day_as_it_was_in_every_table(
    seeded: Path, emu: Emulator, proxy: HostileProxy, tmp_path: Path, listing: str, home: str
) -> None:
    """A record listed after its day was handed on reopens the day; when the run then fails (a
    401 after it), chat_completions used to keep the first, incomplete commit (180 -> 179) while
    the other tables held the day before, and with the oldest record listed second the days it
    jumped over were emptied (250 -> 0) with a new DAGSTER_HOME, or refused as a false shrink
    with the old one. Now every day handed on is put back as it was, in every table, the moment
    the order breaks, the error is the 401's, and error and log agree that nothing was kept."""
    database, before = seed(seeded, tmp_path)
    emu.add_record(
        {
            "id": "late-arrival",
            "object": "chat.completion",
            "model": "nimbus-001",
            "usage": {},
            "choices": [],
            "payload": {},
        },
        at_ms=int(dt.datetime(2026, 5, 4, 12, tzinfo=dt.timezone.utc).timestamp() * 1000),
    )  # so a day written again differs from the stored one
    proxy.reorder = _move_to_the_end_of("2026-05-04") if listing == "a late record" else _oldest_second
    proxy.refuse_from_offset = 300  # the listing's last page (327 records, 100 a page)

    failed = run_cli(proxy, database, tmp_path / ("home" if home.startswith("same") else "home2"))
    assert failed.returncode != 0
    assert_tables_unchanged(before, database)
    said = output(failed)
    assert "AuthenticationError" in said and "ShrinkRefusedError" not in said
    assert "This attempt committed none of its 4 day(s)" in said

    proxy.refuse_from_offset = None  # the same listing, honest to the end: exact, and no false refusal
    done = run_cli(proxy, database, tmp_path / "home")
    assert done.returncode == 0, output(done)[-3000:]
    after = rows_per_day(stored_tables(database))
    for day in RUN_DAYS:
        assert after["chat_completions"][day] == emu.ground_truth(dt.date.fromisoformat(day)).count
    assert "late-arrival" in set(read_table(database, "chat_completions")["id"])


@pytest.mark.processes
def test_a_failure_in_one_table_leaves_the_day_as_it_was_in_every_table(
    seeded: Path, emu: Emulator, proxy: HostileProxy, tmp_path: Path
) -> None:
    """The last table of a day refuses its rows (its column type was altered outside the
    pipeline): chat_completions and chat_messages, already written in that day's transaction,
    are rolled back with it. The three tables used to be written by three steps, so a failure in
    one left the day split (chat_completions new, token_usage old)."""
    database, before = seed(seeded, tmp_path)
    emu.add_record(
        {
            "id": "new-one",
            "object": "chat.completion",
            "model": "nimbus-001",
            "usage": {"total_tokens": 5},
            "choices": [],
            "payload": {},
        },
        at_ms=int(dt.datetime(2026, 5, 3, 12, tzinfo=dt.timezone.utc).timestamp() * 1000),
    )
    import duckdb

    with duckdb.connect(str(database)) as conn:
        conn.execute("ALTER TABLE w.cloudglue.token_usage ALTER COLUMN total_tokens TYPE INTEGER")
    before["token_usage"] = stored_tables(database)["token_usage"]

    failed = run_cli(proxy, database, tmp_path / "home")
    assert failed.returncode != 0
    assert_tables_unchanged(before, database)
    said = output(failed)
    assert "DuckDBSchemaError" in said and "token_usage" in said


@pytest.mark.processes
def test_a_60_mb_answer_is_stored_whole_in_every_table(
    seeded: Path, emu: Emulator, proxy: HostileProxy, tmp_path: Path
) -> None:
    """One answer of 60 MB outgrows DuckDB's default memory cap: its day is retried without the
    cap, all tables at once. It used to be stored in chat_completions while chat_messages failed
    reading it back, leaving the day split."""
    database, _ = seed(seeded, tmp_path)
    text = "x" * (60 << 20)
    emu.add_record(
        {
            "id": "huge",
            "object": "chat.completion",
            "model": "nimbus-001",
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
            "payload": {"messages": [{"role": "user", "content": "say x"}]},
        },
        at_ms=int(dt.datetime(2026, 5, 5, 12, tzinfo=dt.timezone.utc).timestamp() * 1000),
    )
    done = run_cli(proxy, database, tmp_path / "home")
    assert done.returncode == 0, output(done)[-3000:]
    assert "retrying that day once with DuckDB's own limit" in output(done)
    chat = read_table(database, "chat_completions", "WHERE id = 'huge'")
    messages = read_table(database, "chat_messages", "WHERE completion_id = 'huge'")
    usage = read_table(database, "token_usage", "WHERE date = '2026-05-05' AND model = 'nimbus-001'")
    assert len(chat) == 1 and len(chat["response"][0]) == len(text)
    assert sorted(messages["source"]) == ["choice", "prompt"] and messages["content"].str.len().max() == len(text)
    truth = emu.ground_truth(dt.date(2026, 5, 5))
    assert int(read_table(database, "token_usage", "WHERE date = '2026-05-05'")["completions"].sum()) == truth.count
    assert len(usage) == 1


# -- 3. messages that agree -----------------------------------------------------------------------


@pytest.mark.processes
def test_after_a_failure_the_error_and_the_log_name_the_same_committed_days(
    seeded: Path, proxy: HostileProxy, tmp_path: Path
) -> None:
    """A 401 in the middle of the sweep: the days committed before it are kept, whole in every
    table; the step's error and its log say so with the same count and span, and the progress
    table agrees (it used to say "Nothing was stored" next to "committed 1 of 4 day(s)")."""
    database, _ = seed(seeded, tmp_path)
    proxy.refuse_from_offset = 200  # a 401 after 05-06 and 05-05 are complete
    failed = run_cli(proxy, database, tmp_path / "home2")
    assert failed.returncode != 0
    said = output(failed)
    marks = read_table(database, PROGRESS_TABLE, "WHERE asset_key = 'cloudglue.chat_completions'")
    failing_run = marks.sort_values("committed_at")["run_id"].iloc[-1]
    days = sorted(marks.loc[marks["run_id"] == failing_run, "partition_key"])
    assert days == ["2026-05-05", "2026-05-06"], days
    assert days, said[-3000:]
    claim = f"This attempt committed {len(days)} of 4 day(s) ({days[0]}..{days[-1]})"
    assert said.count(claim) >= 2, said[-3000:]  # the log line and the error
    assert "Nothing was stored" not in said


# -- 4. memory ---------------------------------------------------------------------------------------


def test_an_unsorted_listing_held_past_max_held_bytes_fails_clearly_keeping_what_it_names(tmp_path: Path) -> None:
    """An unsorted listing holds every day to the end of the sweep; past max_held_bytes the run
    fails with HeldTooMuchError naming the bound and the fix, instead of growing until the
    kernel kills it. Here the oldest record comes first (the sweep drops the padding days'):
    the listing looks oldest-first, then breaks, so 05-03..05-05 are reopened and held for a
    re-read that outgrows the bound, while 05-06, complete when the sweep ended, is written
    whole: exactly the day the error says it kept."""
    days = [START + dt.timedelta(days=i) for i in range(8)]
    dataset = Dataset(START, days[-1], seed=3, counts=dict.fromkeys(days, 300))
    database = tmp_path / "w.duckdb"
    with Emulator(dataset, api_key=TEST_KEY) as emu, HostileProxy(emu) as proxy:
        pipeline = Pipeline(emu, database, START.isoformat(), max_held_bytes=1 << 20)
        pipeline.resources["cloudglue"] = CloudglueResource(api_key=TEST_KEY, base_url=proxy.base_url, max_retries=6)
        proxy.reorder = _oldest_second
        result = pipeline.materialize(FIRST, LAST, raise_on_error=False)
    assert not result.success
    [failure] = result.get_step_failure_events()
    message = failure.step_failure_data.error.to_string()
    assert HeldTooMuchError.__name__ in message and "max_held_bytes=1,048,576" in message
    assert "not sorted" in message and "max_partitions_per_run" in message
    assert "This attempt committed 1 of 4 day(s) (2026-05-06) before it failed" in message
    assert rows_per_day(stored_tables(database)) == {name: {"2026-05-06": n} for name, n in _day_rows(database).items()}
    assert rows_per_day(stored_tables(database))["chat_completions"] == {"2026-05-06": 300}


def _day_rows(database: Path) -> dict[str, int]:
    return {name: len(read_table(database, name)) for name in TABLES}
