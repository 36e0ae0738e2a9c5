"""Range runs write day by day: a failure keeps what was committed, a retry fetches the rest.

Real multi-process Dagster runs (``dg.execute_job`` of ``tests/streaming_job.py`` on a real
instance in a temp directory) against the emulator behind a loopback proxy that can break
at a chosen request, into a real DuckDB file. Each test holds the tables to the emulator's
ground truth.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import streaming_job
from dagster._core.definitions.reconstruct import ReconstructableJob
from support.hostile_server import HostileProxy
from support.pipeline import TEST_KEY, Pipeline
from support.reliability import expected_for, ms, read_table

from cloudglue_dagster.emulator import Dataset, Emulator
from cloudglue_dagster.io_managers.duckdb import day_stream
from cloudglue_dagster.io_managers.duckdb.progress import PROGRESS_TABLE

START = dt.date(2026, 4, 1)
DAYS = 16
FIRST, LAST = START + dt.timedelta(days=1), START + dt.timedelta(days=DAYS - 2)  # data on both sides
CHAT = dg.AssetKey(["cloudglue", "chat_completions"])
JOB_FILE = str(Path(__file__).with_name("streaming_job.py"))


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    days = [START + dt.timedelta(days=i) for i in range(DAYS)]
    dataset = Dataset(START, days[-1], seed=5, counts={d: 14 + (i * 5) % 9 for i, d in enumerate(days)})
    with Emulator(dataset, api_key=TEST_KEY) as server:
        yield server


@pytest.fixture
def proxy(emu: Emulator) -> Iterator[HostileProxy]:
    with HostileProxy(emu) as server:
        yield server


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as inst:
        yield inst


@pytest.fixture
def job_env(proxy: HostileProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    database = tmp_path / "w.duckdb"
    monkeypatch.setenv("STREAM_BASE_URL", proxy.base_url)
    monkeypatch.setenv("STREAM_DUCKDB", str(database))
    monkeypatch.setenv("STREAM_START", START.isoformat())
    monkeypatch.setenv("STREAM_RETRY_DELAY", "4")
    monkeypatch.setenv("STREAM_KEY", TEST_KEY)
    return database


RANGE_TAGS = {
    "dagster/asset_partition_range_start": FIRST.isoformat(),
    "dagster/asset_partition_range_end": LAST.isoformat(),
}


def run_range(instance: dg.DagsterInstance, **kwargs) -> dg.ExecuteJobResult:
    """A run of FIRST..LAST as a deployment makes it: a process per step."""
    # By file: the step subprocesses import it without tests/ on their path.
    job = ReconstructableJob.for_file(JOB_FILE, "daily_job")
    with dg.execute_job(job, instance=instance, tags=RANGE_TAGS, raise_on_error=False, **kwargs) as result:
        return result


def assert_exact(emu: Emulator, database: Path, moves: dict[str, dt.date] | None = None) -> None:
    """chat_completions and token_usage hold exactly the emulator's records of every day."""
    wanted = [FIRST + dt.timedelta(days=i) for i in range((LAST - FIRST).days + 1)]
    expected = expected_for(
        emu, [w - dt.timedelta(days=1) for w in wanted[:1]] + wanted + [LAST + dt.timedelta(days=1)]
    )
    for cid, day in (moves or {}).items():
        for ids in expected.ids.values():
            ids.discard(cid)
        expected.ids[day].add(cid)
    chat = read_table(database, "chat_completions")
    assert chat["id"].is_unique
    got: dict[dt.date, set[str]] = {}
    for cid, at in zip(chat["id"], chat["created_at"]):
        got.setdefault(at.date(), set()).add(cid)
    assert {d: got.get(d, set()) for d in wanted} == {d: expected.ids[d] for d in wanted}
    usage = read_table(database, "token_usage")
    assert int(usage["completions"].sum()) == sum(len(expected.ids[d]) for d in wanted)
    messages = read_table(database, "chat_messages")
    assert set(messages["completion_id"]) == set(chat["id"])


def materialized_days(instance: dg.DagsterInstance, run_id: str) -> dict[str, dict]:
    """chat_completions' materializations of the run, by partition (each recorded once)."""
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=CHAT), limit=1000).records
    mine = [r for r in records if r.run_id == run_id]
    days = {
        r.asset_materialization.partition: {k: v.value for k, v in r.asset_materialization.metadata.items()}
        for r in mine
    }
    assert len(days) == len(mine), "a day was recorded twice"
    return days


def failed_partitions(instance: dg.DagsterInstance) -> set[str]:
    """chat_completions' partitions the UI shows as failed (Dagster's partition status cache)."""
    from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value

    partitions = dg.DailyPartitionsDefinition(start_date=START.isoformat())
    status = get_and_update_asset_status_cache_value(instance, CHAT, partitions)
    assert status is not None
    return set(status.deserialize_failed_partition_subsets(partitions).get_partition_keys())


def checked_days(instance: dg.DagsterInstance, run_id: str) -> dict[str, bool]:
    """chat_completions' check evaluations of the run: partition -> passed."""
    evaluations = [
        e.get_dagster_event().event_specific_data
        for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    return {e.partition: e.passed for e in evaluations if e.asset_key == CHAT}


def logs(instance: dg.DagsterInstance, run_id: str) -> str:
    return "\n".join(e.message or "" for e in instance.all_logs(run_id))


def full_sweep(instance: dg.DagsterInstance, proxy: HostileProxy, emu: Emulator, database: Path) -> int:
    """A first, honest run of FIRST..LAST, the same job in this process (the test is about the
    runs after it; its steps would cost a process each); returns its request count."""
    proxy.requests = 0
    result = streaming_job.daily_job().execute_in_process(instance=instance, tags=RANGE_TAGS)
    assert result.success
    assert_exact(emu, database)
    return proxy.requests


@pytest.mark.processes
def test_a_step_retry_after_an_outage_fetches_only_the_days_the_first_attempt_had_not_committed(
    emu: Emulator, proxy: HostileProxy, instance: dg.DagsterInstance, job_env: Path
) -> None:
    """The API goes away at 80% of the sweep for longer than the client's retries: the step
    fails, its days committed so far stay, and the step retry (same run) fetches the rest."""
    full = full_sweep(instance, proxy, emu, job_env)

    def outage(n: int) -> None:
        if n == int(full * 0.8):
            proxy.down_until = time.monotonic() + 3
            proxy.recovered_at = None
        elif proxy.down_until and time.monotonic() >= proxy.down_until and proxy.recovered_at is None:
            proxy.recovered_at = n

    proxy.requests, proxy.on_request, proxy.recovered_at = 0, outage, None
    result = run_range(instance)
    assert result.success
    kinds = [e.event_type_value for e in result.all_events]
    assert kinds.count("STEP_UP_FOR_RETRY") == 1
    retried = proxy.requests - proxy.recovered_at + 1
    assert retried <= 0.4 * full, (retried, full)
    text = logs(instance, result.run_id)
    resumed = int(re.search(r"Resuming: (\d+) of (\d+) day", text).group(1))
    assert resumed >= 0.5 * (LAST - FIRST).days
    assert_exact(emu, job_env)
    days = materialized_days(instance, result.run_id)
    assert len(days) == (LAST - FIRST).days + 1  # every day reported once, resumed or fetched
    assert sum(1 for md in days.values() if md.get("resumed_from_run") == result.run_id) == resumed


@pytest.mark.processes
def test_a_reexecution_of_a_failed_range_run_fetches_only_the_days_it_had_not_committed(
    emu: Emulator, proxy: HostileProxy, instance: dg.DagsterInstance, job_env: Path
) -> None:
    """A permanent error at 80% fails the run; the days it committed are kept. Dagster's
    re-execution from failure fetches only the others; a fresh run replaces every day."""
    full = full_sweep(instance, proxy, emu, job_env)
    proxy.requests = 0
    proxy.on_request = lambda n: setattr(proxy, "lie", "huge_tokens") if n == int(full * 0.8) else None
    failed = run_range(instance)
    assert not failed.success
    committed = read_table(
        job_env, PROGRESS_TABLE, f"WHERE run_id = '{failed.run_id}' AND asset_key LIKE '%chat_completions'"
    )
    assert len(committed) >= 0.5 * (LAST - FIRST).days
    assert_exact(emu, job_env)  # committed days are new and exact, the others still the first run's
    # Dagster records materializations once the output is handled; the failing step reports
    # the days it committed itself, each with its metadata and checks, and its log names them.
    reported = materialized_days(instance, failed.run_id)
    assert set(reported) == set(committed["partition_key"])
    assert {md["dagster/table_name"] for md in reported.values()} == {"w.cloudglue.chat_completions"}
    assert all(
        reported[k]["dagster/partition_row_count"] == n
        for k, n in zip(committed["partition_key"], committed["row_count"])
    )
    assert checked_days(instance, failed.run_id) == dict.fromkeys(reported, True)
    # What the UI's partition bar shows: only the days the failed run did not commit are failed.
    run_keys = {(FIRST + dt.timedelta(days=i)).isoformat() for i in range((LAST - FIRST).days + 1)}
    assert failed_partitions(instance) == run_keys - set(reported)
    kept = re.search(
        r"This attempt committed (\d+) of (\d+) day\(s\) \((\S+)\.\.(\S+)\) before it failed",
        logs(instance, failed.run_id),
    )
    assert kept is not None
    assert (int(kept[1]), int(kept[2])) == (len(committed), (LAST - FIRST).days + 1)
    assert (kept[3], kept[4]) == (min(committed["partition_key"]), max(committed["partition_key"]))

    proxy.lie, proxy.on_request, proxy.requests = None, None, 0
    options = dg.ReexecutionOptions.from_failure(failed.run_id, instance)
    again = run_range(instance, reexecution_options=options)
    assert again.success
    assert proxy.requests <= 0.4 * full, (proxy.requests, full)
    assert f"committed by run(s) {failed.run_id}" in logs(instance, again.run_id)
    days = materialized_days(instance, again.run_id)
    assert len(days) == (LAST - FIRST).days + 1
    assert sum(1 for md in days.values() if md.get("resumed_from_run") == failed.run_id) == len(committed)
    assert_exact(emu, job_env)

    proxy.requests = 0
    # A new run, not a re-execution; in this process: what a step resumes comes from its run's
    # parent and its retry number (assets/steps/base.py resume_runs), not from how it was launched.
    fresh = streaming_job.daily_job().execute_in_process(instance=instance, tags=RANGE_TAGS)
    assert fresh.success and proxy.requests >= full  # replaces every day
    assert "Resuming" not in logs(instance, fresh.run_id)


@pytest.mark.processes
def test_a_completion_arriving_after_its_day_was_written_makes_that_day_be_read_again(
    emu: Emulator, proxy: HostileProxy, instance: dg.DagsterInstance, job_env: Path
) -> None:
    """The listing breaks its order (a record listed among a later day's claims an earlier
    day): the days handed on too early are marked unwritten and read again; the tables are
    what a whole-range read gives."""
    day = START + dt.timedelta(days=DAYS * 2 // 3)
    target = emu.dataset.records(day, "ms")[len(emu.dataset.records(day, "ms")) // 2]["id"]
    earlier = day - dt.timedelta(days=2)
    proxy.moves = {target: ms(dt.datetime.combine(earlier, dt.time(12), dt.timezone.utc))}
    result = run_range(instance)
    assert result.success
    text = logs(instance, result.run_id)
    assert "arrived after that day was handed on" in text
    assert_exact(emu, job_env, moves={target: earlier})


def test_a_range_run_logs_how_many_days_it_has_committed_as_it_goes(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its materializations come when the step ends, so the log tells the progress: with the
    interval at 0 a line per commit, counting up; at the default (30 s) none in a short run."""
    pipeline = Pipeline(emu, tmp_path / "w.duckdb", START.isoformat())
    monkeypatch.setattr(day_stream, "PROGRESS_EVERY_SECONDS", 0.0)
    result = pipeline.materialize(FIRST.isoformat(), LAST.isoformat())
    days = (LAST - FIRST).days + 1
    counts: dict[str, list[int]] = {}
    for entry in pipeline.instance.all_logs(result.run_id):
        found = re.match(r"Committed (\d+) of (\d+) day\(s\) so far \(the last committed: (\S+)\)", entry.user_message)
        if found:
            assert int(found[2]) == days
            counts.setdefault(entry.step_key or "", []).append(int(found[1]))
    assert counts == {"cloudglue__tables": list(range(1, days + 1))}  # one step writes every table

    monkeypatch.undo()
    again = pipeline.materialize(FIRST.isoformat(), LAST.isoformat())
    assert not [e for e in pipeline.instance.all_logs(again.run_id) if e.user_message.startswith("Committed ")]
