"""Hostile answers through real runs: nothing stored is replaced by a worse answer.

Each test first stores good rows (a real Dagster run against the emulator into a real DuckDB
file), then lets a server lie in one way (``tests/support/hostile_server.py``, a loopback proxy in
front of the emulator) and runs again, with the default step retry policy in force. The
second run must fail at once (no step retry) with an error that says what happened, and
every stored row must be exactly as before.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from support.hostile_server import ABSURD_TOTAL, HostileProxy
from support.pipeline import TEST_KEY, Pipeline, assert_tables_unchanged, stored_tables
from support.reliability import cli_env, materialize_cmd, read_table

from cloudglue_dagster import (
    CloudglueClient,
    CloudglueConfigError,
    CloudglueError,
    CloudglueResource,
    InconsistentResponseError,
    InvalidResponseError,
    RetriesExhaustedError,
    WindowTooLargeError,
)
from cloudglue_dagster.api.client import LOOKAHEAD_PAGES
from cloudglue_dagster.api.sweep import DEFAULT_MAX_WINDOW_RECORDS, MAX_REREADS
from cloudglue_dagster.assets.factory import DEFAULT_RETRY_POLICY
from cloudglue_dagster.assets.guards import ALLOW_SHRINK_TAG, ShrinkGuard
from cloudglue_dagster.assets.run_control import policy_delay, retry_delay
from cloudglue_dagster.emulator import Dataset, Emulator
from cloudglue_dagster.errors import CloudglueRequestError, is_transient
from cloudglue_dagster.io_managers.duckdb.progress import PROGRESS_TABLE

START = dt.date(2026, 5, 1)
FIRST, LAST = "2026-05-03", "2026-05-05"


@pytest.fixture
def emu() -> Iterator[Emulator]:
    days = [START + dt.timedelta(days=i) for i in range(8)]
    dataset = Dataset(START, days[-1], seed=11, counts={d: 30 + 7 * i for i, d in enumerate(days)})
    with Emulator(dataset, api_key=TEST_KEY) as server:
        yield server


@pytest.fixture
def proxy(emu: Emulator) -> Iterator[HostileProxy]:
    with HostileProxy(emu) as server:
        yield server


def pipeline_through(proxy: HostileProxy, database: Path, *, page_size: int = 10) -> Pipeline:
    """Our assets with the default step retry policy, reading the API through ``proxy``."""
    pipeline = Pipeline(proxy.emu, database, START.isoformat(), retry_policy=DEFAULT_RETRY_POLICY)
    pipeline.resources["cloudglue"] = CloudglueResource(
        api_key=TEST_KEY, base_url=proxy.base_url, max_retries=1, page_size=page_size, max_concurrent_requests=4
    )
    return pipeline


def failed_at_once(result: dg.ExecuteInProcessResult) -> str:
    """The run failed, without any step retry; returns the failure's message."""
    assert not result.success
    kinds = [e.event_type_value for e in result.all_events]
    assert "STEP_UP_FOR_RETRY" not in kinds, "a permanent error was retried"
    return result.get_step_failure_events()[0].step_failure_data.error.to_string()


# -- 1. self-contradictory sweeps --------------------------------------------------------------


@pytest.mark.parametrize("lie", ["empty_first_page", "same_page", "more_than_total"])
def test_a_self_contradictory_sweep_fails_at_once_and_keeps_every_row(
    proxy: HostileProxy, tmp_path: Path, lie: str
) -> None:
    """An empty first page while total > 0, the same page for every offset, and pages holding
    more records than total: each used to succeed and delete stored rows. Now the window is
    read again (page by page), and when the answer stays inconsistent the run fails with
    InconsistentResponseError naming the window, the offsets and the counts."""
    pipeline = pipeline_through(proxy, tmp_path / "w.duckdb")
    assert pipeline.materialize(FIRST, LAST).success
    before = stored_tables(pipeline.database)
    assert len(before["chat_completions"]) > 60
    proxy.lie, proxy.requests = lie, 0
    message = failed_at_once(pipeline.materialize(FIRST, LAST, raise_on_error=False))
    assert "InconsistentResponseError" in message or "self-contradictory" in message
    assert "created_after=2026-05-02 created_before=2026-05-06" in message
    assert f"{1 + MAX_REREADS} times in a row" in message and "offset" in message
    assert proxy.seen_offsets.count(0) >= 1 + MAX_REREADS  # it did read the window again
    assert_tables_unchanged(before, pipeline.database)


def test_client_reads_an_inconsistent_window_again_and_then_gives_up(proxy: HostileProxy) -> None:
    """The same lies against the client alone: each read is checked, re-read MAX_REREADS
    times, and the error is permanent and carries what each read found."""
    for lie in ("empty_first_page", "same_page", "more_than_total"):
        proxy.lie = lie
        with CloudglueClient(TEST_KEY, proxy.base_url, max_concurrent_requests=4) as client:
            with pytest.raises(InconsistentResponseError) as info:
                list(client.iter_chat_completions("2026-05-02", "2026-05-06", page_size=10))
        error = info.value
        assert (error.created_after, error.created_before, error.reads) == ("2026-05-02", "2026-05-06", 1 + MAX_REREADS)
        assert not is_transient(error) and all("offset" in p or "distinct" in p for p in error.problems), error.problems


def test_honest_answers_pass_the_checks_with_no_extra_request(proxy: HostileProxy) -> None:
    """The verification costs nothing on honest answers: one request per page."""
    with CloudglueClient(TEST_KEY, proxy.base_url, max_concurrent_requests=4) as client:
        ids = [c.id for c in client.iter_chat_completions("2026-05-02", "2026-05-06", page_size=10)]
    assert len(ids) == len(set(ids)) and proxy.requests == -(-len(ids) // 10)


# -- 2. the shrink guard -----------------------------------------------------------------------


def test_a_sharp_shrink_is_refused_unless_the_run_allows_it(emu: Emulator, tmp_path: Path) -> None:
    """A self-consistent answer with far fewer records (here: another account's key and
    data, 3 a day instead of 30) is refused before any day is written: every refused day is
    named with its stored and new counts, and the run tag cloudglue/allow_shrink=true
    accepts them."""
    pipeline = Pipeline(emu, tmp_path / "w.duckdb", START.isoformat(), retry_policy=DEFAULT_RETRY_POLICY)
    assert pipeline.materialize(FIRST, LAST).success
    before = stored_tables(pipeline.database)
    days = [START + dt.timedelta(days=i) for i in range(8)]
    with Emulator(Dataset(START, days[-1], seed=12, counts=dict.fromkeys(days, 3)), api_key="other-account") as other:
        pipeline.resources["cloudglue"] = CloudglueResource(api_key="other-account", base_url=other.base_url)
        message = failed_at_once(pipeline.materialize(FIRST, LAST, raise_on_error=False))
        assert "Refused to replace 3 stored day(s) with far fewer rows (" in message
        for day in (FIRST, "2026-05-04", LAST):
            stored_rows = (before["chat_completions"]["created_at"].dt.strftime("%Y-%m-%d") == day).sum()
            assert f"{day}: {stored_rows} -> 3" in message
        assert f"{ALLOW_SHRINK_TAG}=true" in message and "This attempt committed none of its 3 day(s)" in message
        assert_tables_unchanged(before, pipeline.database)

        allowed = dg.materialize(
            [*pipeline.built.assets, *pipeline.built.asset_checks],
            resources=pipeline.resources,
            instance=pipeline.instance,
            tags={
                "dagster/asset_partition_range_start": FIRST,
                "dagster/asset_partition_range_end": LAST,
                ALLOW_SHRINK_TAG: "true",
            },
        )
        assert allowed.success
        truth = sum(other.ground_truth(dt.date.fromisoformat(d)).count for d in (FIRST, "2026-05-04", LAST))
        assert len(pipeline.table("chat_completions")) == truth < len(before["chat_completions"]) / 5


def test_the_shrink_guard_rule() -> None:
    guard = ShrinkGuard(max_loss_fraction=0.5, min_stored_rows=20)
    stored_counts = {"a": 40, "b": 40, "c": 19, "d": 100}
    new = {"a": 20, "b": 19, "c": 0, "d": 0, "e": 0}
    # a halves (allowed), b loses more than half, c is too small to guard, e was never stored
    assert guard.shrinking(stored_counts, new) == [("b", 40, 19), ("d", 100, 0)]
    with pytest.raises(CloudglueError):
        ShrinkGuard(max_loss_fraction=1.0)


# -- 3. permanent errors fail at once ----------------------------------------------------------


@pytest.mark.parametrize(
    ("lie", "expected"),
    [
        ("huge_tokens", "usage.total_tokens"),
        ("deep_json", "nests deeper"),
        ("redirect_loop", "redirected more than"),
    ],
)
def test_a_permanent_api_error_fails_at_once_and_keeps_every_row(
    proxy: HostileProxy, tmp_path: Path, lie: str, expected: str
) -> None:
    """A token count of 2**70, a body nested 100,000 deep, a redirect loop: each is
    permanent (it used to cost three step retries with a full re-fetch each)."""
    pipeline = pipeline_through(proxy, tmp_path / "w.duckdb")
    assert pipeline.materialize(FIRST, LAST).success
    before = stored_tables(pipeline.database)
    proxy.lie = lie
    message = failed_at_once(pipeline.materialize(FIRST, LAST, raise_on_error=False))
    assert expected in message
    assert_tables_unchanged(before, pipeline.database)


def test_a_value_duckdb_refuses_fails_naming_its_cause_table_partitions_and_completion(
    proxy: HostileProxy, tmp_path: Path
) -> None:
    """A lone surrogate (valid JSON, not valid text) used to fail as "Current transaction is
    aborted", hiding DuckDB's own error, and was retried three times. Now the message has
    DuckDB's cause, the table, the day being written and the completion at fault; nothing is
    retried and the rows stay (the day written before it got the same rows again)."""
    pipeline = pipeline_through(proxy, tmp_path / "w.duckdb")
    assert pipeline.materialize(FIRST, LAST).success
    before = stored_tables(pipeline.database)
    chat = before["chat_completions"]
    target = chat.loc[chat["created_at"].dt.date == dt.date(2026, 5, 4), "id"].iloc[0]
    proxy.lie, proxy.targets = "lone_surrogate", {target}
    message = failed_at_once(pipeline.materialize(FIRST, LAST, raise_on_error=False))
    assert "Current transaction is aborted" not in message
    assert "chat_completions (partition 2026-05-04)" in message
    assert target in message and "response" in message
    assert_tables_unchanged(before, pipeline.database)


def test_only_cloudglue_errors_leave_the_client(proxy: HostileProxy) -> None:
    """Deep nesting, huge integers and redirect loops are typed, permanent errors that name
    the completion and field where there is one; a trickling body is cut at the deadline."""
    expected = {
        "huge_tokens": InvalidResponseError,
        "huge_total": InvalidResponseError,
        "long_integer": InvalidResponseError,
        "deep_json": InvalidResponseError,
        "redirect_loop": CloudglueRequestError,
    }
    for lie, kind in expected.items():
        proxy.lie = lie
        with CloudglueClient(TEST_KEY, proxy.base_url) as client:
            with pytest.raises(kind) as info:
                client.list_chat_completions(created_after="2026-05-02", created_before="2026-05-06")
        assert not is_transient(info.value) and isinstance(info.value, CloudglueError)
        if lie == "huge_tokens":
            assert info.value.field == "usage.total_tokens" and info.value.completion_id


def test_a_trickling_server_is_cut_at_the_request_deadline(proxy: HostileProxy) -> None:
    """The read timeout is between bytes; a byte every 0.2 s never trips it. The deadline
    cuts each attempt, counted as a transient failure, and the retries end."""
    proxy.lie = "trickle"
    started = time.monotonic()
    with CloudglueClient(TEST_KEY, proxy.base_url, request_deadline=1.0, read_timeout=5, max_retries=1) as client:
        with pytest.raises(RetriesExhaustedError) as info:
            client.list_chat_completions(limit=5)
    assert "deadline of 1s" in info.value.last_error and info.value.attempts == 2
    assert is_transient(info.value)
    assert time.monotonic() - started < 15  # the body alone would take over an hour


# -- 4. stopping when told ---------------------------------------------------------------------


def terminated_dataset() -> Dataset:
    days = [START + dt.timedelta(days=i) for i in range(8)]
    return Dataset(START, days[-1], seed=5, counts=dict.fromkeys(days, 300))


@pytest.fixture(scope="module")
def loaded_by_the_cli(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FIRST..LAST of :func:`terminated_dataset` loaded by the CLI once for the module: the
    DuckDB file and the DAGSTER_HOME that ran it (each test takes a copy)."""
    root = tmp_path_factory.mktemp("loaded")
    with Emulator(terminated_dataset(), api_key=TEST_KEY) as emu:
        env = cli_env(
            key=TEST_KEY,
            base_url=emu.base_url,
            start=START.isoformat(),
            database=root / "w.duckdb",
            home=root / "home",
            CLOUDGLUE_MAX_CONCURRENT_REQUESTS="2",
        )
        seeded = subprocess.run(
            materialize_cmd("--partition-range", f"{FIRST}...{LAST}"),
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
    assert seeded.returncode == 0, seeded.stderr[-3000:]
    return root


@pytest.mark.processes
@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "ui-terminate"])
def test_a_terminated_run_stops_within_seconds_without_retry_and_keeps_every_row(
    loaded_by_the_cli: Path, tmp_path: Path, how: str
) -> None:
    """SIGTERM and SIGINT (what the UI's Terminate and Ctrl-C send) during the API step used to
    become step retries: the run re-fetched, wrote and ended RUN_SUCCESS with exit code 0. A
    run marked CANCELING by the UI's Terminate (here: the run launcher's own terminate(), which
    the webserver calls; a CLI run has no process it can signal) also succeeded. Now each ends
    the run as failed within seconds, without a step retry, and the stored rows stay."""
    home, database = tmp_path / "home", tmp_path / "w.duckdb"
    shutil.copytree(loaded_by_the_cli / "home", home)
    for file in loaded_by_the_cli.glob("w.duckdb*"):  # and a write-ahead log, if DuckDB left one
        shutil.copy(file, tmp_path / file.name)
    with Emulator(terminated_dataset(), api_key=TEST_KEY) as emu:
        env = cli_env(
            key=TEST_KEY,
            base_url=emu.base_url,
            start=START.isoformat(),
            database=database,
            home=home,
            CLOUDGLUE_MAX_CONCURRENT_REQUESTS="2",
        )
        command = materialize_cmd("--partition-range", f"{FIRST}...{LAST}")
        before = stored_tables(database)
        emu.latency_seconds = 1.0  # 15 pages, 2 at a time: the sweep takes about 8 s
        served = emu.requests_served
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 60
            while emu.requests_served < served + 2:  # the sweep is under way
                assert proc.poll() is None and time.monotonic() < deadline, "the run never reached the API"
                time.sleep(0.05)
            stopped_at = time.monotonic()
            instance = dg.DagsterInstance.from_config(str(home))
            run_id = instance.get_runs(limit=1)[0].run_id
            if how == "ui-terminate":
                instance.run_launcher.terminate(run_id)
            else:
                proc.send_signal(getattr(signal, how))
            output, _ = proc.communicate(timeout=60)
            took = time.monotonic() - stopped_at
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode != 0, output[-3000:]
    assert took < 10, took  # it used to run to completion: a full re-fetch after a 30 s retry delay
    run = instance.get_run_by_id(run_id)
    assert run is not None and run.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
    events = [record.dagster_event for record in instance.all_logs(run_id) if record.dagster_event]
    assert "STEP_UP_FOR_RETRY" not in [e.event_type_value for e in events]
    # A stopped step reports only the days it committed before it stopped (usually none here).
    reported = {e.partition for e in events if e.event_type_value == "ASSET_MATERIALIZATION"}
    committed = read_table(database, PROGRESS_TABLE, f"WHERE run_id = '{run_id}'") if reported else None
    assert not reported or reported == set(committed["partition_key"])
    assert_tables_unchanged(before, database)
    instance.dispose()


# -- 5. step retries, for transient errors only --------------------------------------------------


def test_transient_errors_get_step_retries_and_the_delays_are_dagsters(emu: Emulator, tmp_path: Path) -> None:
    """An outage that outlasts the client's retries is transient: the step is retried per the
    factory's retry_policy, then fails; the rows stay. The default policy's delays are
    Dagster's exponential backoff, (2**n - 1) x 30 s +- 30 s: about 30, 90 and 210 s."""
    pipeline = Pipeline(
        emu, tmp_path / "w.duckdb", START.isoformat(), retry_policy=dg.RetryPolicy(max_retries=2, delay=0.1)
    )
    assert pipeline.materialize(FIRST, LAST).success
    before = stored_tables(pipeline.database)
    pipeline.resources["cloudglue"] = CloudglueResource(api_key=TEST_KEY, base_url=emu.base_url, max_retries=0)
    emu.fault_kinds, emu.fault_rate = ("500",), 1.0
    result = pipeline.materialize(FIRST, LAST, raise_on_error=False)
    assert not result.success
    kinds = [e.event_type_value for e in result.all_events]
    assert (
        kinds.count("STEP_UP_FOR_RETRY") == 2
        and "RetriesExhaustedError" in result.get_step_failure_events()[0].step_failure_data.error.to_string()
    )
    assert_tables_unchanged(before, pipeline.database)
    for retry, base in enumerate((30, 90, 210)):
        delays = {
            round(retry_delay(DEFAULT_RETRY_POLICY, retry, run_id=f"run-{i}", step_key="step")) for i in range(200)
        }
        assert base - 30 <= min(delays) and max(delays) <= base + 30 and len(delays) > 10


@pytest.mark.parametrize("backoff", [None, dg.Backoff.LINEAR, dg.Backoff.EXPONENTIAL])
@pytest.mark.parametrize("jitter", [None, dg.Jitter.FULL, dg.Jitter.PLUS_MINUS])
def test_the_delays_follow_dagsters_retry_policy_rules_with_the_jitter_drawn_once_per_retry(
    backoff: dg.Backoff | None, jitter: dg.Jitter | None
) -> None:
    """policy_delay is Dagster's own RetryPolicy.calculate_delay given the random number it
    would draw (Dagster's code run with the global random generator seeded); retry_delay draws
    that number from the run, the step and the retry: the same retry, the same delay, while
    runs spread over the jitter's range."""
    saved = random.getstate()
    try:
        for delay, retry, seed in itertools.product((0.5, 2, 30), range(4), range(5)):
            policy = dg.RetryPolicy(max_retries=5, delay=delay, backoff=backoff, jitter=jitter)
            random.seed(seed)
            dagsters = policy.calculate_delay(retry + 1)
            random.seed(seed)
            assert policy_delay(policy, retry, random.random()) == dagsters
    finally:
        random.setstate(saved)
    policy = dg.RetryPolicy(max_retries=3, delay=30, backoff=backoff, jitter=jitter)
    delays = [retry_delay(policy, 1, run_id=f"run-{i}", step_key="step") for i in range(100)]
    assert delays == [retry_delay(policy, 1, run_id=f"run-{i}", step_key="step") for i in range(100)]
    assert len(set(delays)) == (1 if jitter is None else 100)


# -- 6. decisions ---------------------------------------------------------------------------------


def test_a_completion_that_moves_to_another_day_is_stored_where_each_load_saw_it(
    proxy: HostileProxy, tmp_path: Path
) -> None:
    """Decision (README, "Guarantees"): each day holds what the API said of it when it was
    loaded. A completion whose created_at the API moves from D to D+1 is kept on D by D's
    earlier load and added to D+1 by D+1's load, until D is loaded again; a run covering both
    days stores it once, on D+1."""
    pipeline = pipeline_through(proxy, tmp_path / "w.duckdb")
    for day in ("2026-05-03", "2026-05-04"):
        assert pipeline.materialize(day).success
    chat = pipeline.table("chat_completions")
    moved = chat.loc[chat["created_at"].dt.date == dt.date(2026, 5, 3), "id"].iloc[0]
    proxy.moves[moved] = int(dt.datetime(2026, 5, 4, 12, tzinfo=dt.timezone.utc).timestamp() * 1000)

    def days_of(completion_id: str) -> list[str]:
        table = pipeline.table("chat_completions")
        return sorted(table.loc[table["id"] == completion_id, "created_at"].dt.strftime("%Y-%m-%d"))

    assert pipeline.materialize("2026-05-04").success
    assert days_of(moved) == ["2026-05-03", "2026-05-04"]
    assert pipeline.materialize("2026-05-03", "2026-05-04").success
    assert days_of(moved) == ["2026-05-04"]


# -- 7. records outside the dates asked, a total that keeps growing, an absurd total --------------

ASKED = ("2026-05-02", "2026-05-06")
"""The dates a client sends for the run's days 2026-05-03..05 (padded by a day each side)."""
OUTSIDE_EPOCH = "1969-12-31T23:59:55+00:00"
"""How ``created_at = -5`` (epoch seconds, below 1e11) reads."""


def sweep_ids(
    proxy: HostileProxy, after: str | None = ASKED[0], before: str | None = ASKED[1], **client: object
) -> list[str]:
    """Every id of one sweep through ``proxy`` (10 a page, 4 pages in flight)."""
    client.setdefault("max_concurrent_requests", 4)
    with CloudglueClient(TEST_KEY, proxy.base_url, **client) as api:  # type: ignore[arg-type]
        return [c.id for c in api.iter_chat_completions(after, before, page_size=10)]


def test_client_reads_a_window_holding_a_record_created_outside_the_dates_asked_again_and_then_gives_up(
    proxy: HostileProxy,
) -> None:
    """A record created outside the dates asked under every reading of their boundaries
    (before created_after 00:00 UTC, or from the day after created_before on) used to be
    dropped by the assets as "outside the window", and its day lost it. It is a page problem
    now: the window is read again MAX_REREADS times, then a permanent
    InconsistentResponseError names the record, its created_at and the dates asked."""
    stray = sweep_ids(proxy)[25]
    proxy.moves[stray] = -5
    with pytest.raises(InconsistentResponseError) as info:
        sweep_ids(proxy)
    error = info.value
    assert not is_transient(error) and error.reads == 1 + MAX_REREADS
    for problem in error.problems:
        assert f"completion {stray!r} created_at {OUTSIDE_EPOCH} lies outside the dates asked" in problem
        assert "(created_after=2026-05-02 created_before=2026-05-06, which hold at most" in problem
    assert "stored" not in str(error)  # the client cannot know what its caller stored


def test_client_accepts_records_up_to_the_edges_of_the_widest_reading_and_unbounded_dates_bound_nothing(
    proxy: HostileProxy,
) -> None:
    honest = sweep_ids(proxy)
    first, last, early = honest[3], honest[30], honest[40]
    proxy.moves[first] = int(dt.datetime(2026, 5, 2, tzinfo=dt.timezone.utc).timestamp() * 1000)
    proxy.moves[last] = int(dt.datetime(2026, 5, 7, tzinfo=dt.timezone.utc).timestamp() * 1000) - 1
    assert sorted(sweep_ids(proxy)) == sorted(honest)
    proxy.moves[early] = -5
    everything = sweep_ids(proxy, None, None)
    assert early in everything and set(honest) <= set(everything)
    assert early in sweep_ids(proxy, None, ASKED[1])
    with pytest.raises(InconsistentResponseError):
        sweep_ids(proxy, ASKED[0], None)


def test_client_ends_a_read_whose_total_keeps_growing_as_drift(proxy: HostileProxy) -> None:
    """A total that grows faster than a page-by-page read advances, with fresh records on
    every page, used to keep a re-read going forever. A read now stops once its total passes
    half again its first total plus 1,000 (total_growth_limit); after MAX_REREADS re-reads the
    sweep fails with a transient InconsistentResponseError, as drift does."""
    proxy.lie = "swelling_total"
    started = time.monotonic()
    with pytest.raises(InconsistentResponseError) as info:
        sweep_ids(proxy)
    error = info.value
    assert is_transient(error) and error.reads == 1 + MAX_REREADS
    assert "while it was paged" in error.problems[0]  # the concurrent first read sees total move
    for problem in error.problems[1:]:
        assert "during one read, past the" in problem and "half the first total + 1000" in problem
    assert proxy.requests < 300 and time.monotonic() - started < 30, proxy.requests


def test_client_refuses_a_window_announcing_an_absurd_total_after_one_request(proxy: HostileProxy) -> None:
    """total = 10**9 with fresh records on every page used to be paged for as long as memory
    lasted (12,949 requests and 2.75 GB in 90 s). The first page now stops the sweep with a
    permanent WindowTooLargeError naming the figure, the window and the fix; a total that
    jumps past the bound mid-sweep stops it at that page, with the pages in flight cancelled."""
    proxy.lie = "absurd_total"
    with pytest.raises(WindowTooLargeError) as info:
        sweep_ids(proxy)
    error = info.value
    assert proxy.requests == 1 and not is_transient(error)
    assert (error.total, error.offset, error.max_window_records) == (ABSURD_TOTAL, 0, DEFAULT_MAX_WINDOW_RECORDS)
    assert str(error).startswith(
        "The Cloudglue API announced total=1,000,000,000 completions for the window"
        " created_after=2026-05-02 created_before=2026-05-06 (page at offset 0), more than"
        " max_window_records=10,000,000; the sweep stopped without paging it"
    )
    assert "max_partitions_per_run" in str(error) and "raise max_window_records" in str(error)

    proxy.lie, proxy.requests = "absurd_total_later", 0
    with pytest.raises(WindowTooLargeError) as info:
        sweep_ids(proxy)
    # The first page and at most the pages asked for ahead of the consumer: how many of those
    # the 4 threads reach before the consumer cancels the rest depends on the scheduler (the
    # suite in parallel once saw 12 requests here, where 1 + 2 * 4 had held on an idle machine).
    assert info.value.offset > 0 and proxy.requests <= 1 + max(LOOKAHEAD_PAGES, 2 * 4)


def test_max_window_records_bounds_an_honest_window_too_and_is_checked_when_the_client_is_built(
    proxy: HostileProxy,
) -> None:
    total = len(sweep_ids(proxy))
    assert len(sweep_ids(proxy, max_window_records=total)) == total
    proxy.requests = 0
    with pytest.raises(WindowTooLargeError) as info:
        sweep_ids(proxy, max_window_records=total - 1)
    assert info.value.total == total and proxy.requests == 1
    for bad in (0, -1, True, 1.5, "10"):
        with pytest.raises(CloudglueConfigError, match="max_window_records must be an integer >= 1"):
            CloudglueClient(TEST_KEY, proxy.base_url, max_window_records=bad)  # type: ignore[arg-type]


# Through the real Dagster CLI: an honest load of the run's days, then the hostile answer.

NO_STEP_RETRIES = json.dumps({"execution": {"config": {"retries": {"disabled": {}}}}})
"""Run config turning a step retry into a failure: a transient error fails the run at once
instead of after the default policy's 30 + 90 + 210 s (the same sweep, failing the same way)."""


@dataclass
class CliRun:
    """One ``dagster asset materialize`` process: its exit code, its output (stdout and
    stderr), its peak resident memory in KiB (``ru_maxrss`` from ``os.wait4``, the process and
    the children it waited for) and its wall time in seconds."""

    code: int
    output: str
    peak_rss_kib: int
    seconds: float


def run_cli(command: Sequence[str], env: dict[str, str], log: Path, *, timeout: float) -> CliRun:
    """Run ``command`` to its end, or kill it after ``timeout`` seconds and fail the test."""
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    # Reaped with os.wait4, not Popen.wait, for its rusage: Popen is told the exit code.
    while not (reaped := os.wait4(proc.pid, os.WNOHANG))[0]:
        if time.monotonic() - started > timeout:
            proc.kill()
            os.wait4(proc.pid, 0)
            proc.returncode = -signal.SIGKILL
            pytest.fail(f"still running after {timeout:.0f}s, killed; its output ended:\n{log.read_text()[-2000:]}")
        time.sleep(0.1)
    _, status, usage = reaped
    proc.returncode = os.waitstatus_to_exitcode(status)
    return CliRun(proc.returncode, log.read_text(), usage.ru_maxrss, time.monotonic() - started)


def honest_cli_load(proxy: HostileProxy, tmp_path: Path) -> tuple[dict[str, str], Path, CliRun]:
    """The run's days loaded honestly through ``proxy`` by the CLI: its env, database and run."""
    database = tmp_path / "w.duckdb"
    env = cli_env(
        key=TEST_KEY, base_url=proxy.base_url, start=START.isoformat(), database=database, home=tmp_path / "home"
    )
    run = run_cli(materialize_cmd("--partition-range", f"{FIRST}...{LAST}"), env, tmp_path / "honest.log", timeout=180)
    assert run.code == 0, run.output[-3000:]
    proxy.requests = 0
    return env, database, run


@pytest.mark.processes
def test_a_record_created_outside_the_dates_asked_fails_the_cli_run_and_keeps_every_row(
    proxy: HostileProxy, tmp_path: Path
) -> None:
    """It used to be dropped with an INFO line ("dropped N outside the window"): the run
    succeeded and its day silently lost the record."""
    env, database, _ = honest_cli_load(proxy, tmp_path)
    before = stored_tables(database)
    chat = before["chat_completions"]
    stray = chat.loc[chat["created_at"].dt.date == dt.date(2026, 5, 4), "id"].iloc[0]
    proxy.moves[stray] = -5
    run = run_cli(materialize_cmd("--partition-range", f"{FIRST}...{LAST}"), env, tmp_path / "run.log", timeout=180)
    assert run.code != 0, run.output[-3000:]
    assert "The Cloudglue API gave a self-contradictory answer for the window created_after=2026-05-02" in run.output
    assert f"completion {stray!r} created_at {OUTSIDE_EPOCH} lies outside the dates asked" in run.output
    assert "STEP_UP_FOR_RETRY" not in run.output  # permanent: no step retry
    assert_tables_unchanged(before, database)


@pytest.mark.processes
def test_a_total_that_keeps_growing_fails_the_cli_run_and_keeps_every_row(proxy: HostileProxy, tmp_path: Path) -> None:
    """It used to keep the run paging forever. The sweep now fails as drift (transient); with
    step retries disabled by run config the run fails at once."""
    env, database, _ = honest_cli_load(proxy, tmp_path)
    before = stored_tables(database)
    proxy.lie = "swelling_total"
    command = [*materialize_cmd("--partition-range", f"{FIRST}...{LAST}"), "--config-json", NO_STEP_RETRIES]
    run = run_cli(command, env, tmp_path / "run.log", timeout=120)
    assert run.code != 0, run.output[-3000:]
    assert "The Cloudglue API kept changing while it was read for the window created_after=2026-05-02" in run.output
    assert "during one read, past the" in run.output
    assert proxy.requests < 300, proxy.requests
    assert_tables_unchanged(before, database)


@pytest.mark.processes
def test_an_absurd_total_fails_the_cli_run_after_one_request_in_bounded_memory_and_keeps_every_row(
    proxy: HostileProxy, tmp_path: Path
) -> None:
    """total = 10**9 with fresh records on every page used to run until memory ran out
    (12,949 requests, 2.75 GB resident and growing after 90 s)."""
    env, database, honest = honest_cli_load(proxy, tmp_path)
    before = stored_tables(database)
    proxy.lie = "absurd_total"
    run = run_cli(materialize_cmd("--partition-range", f"{FIRST}...{LAST}"), env, tmp_path / "run.log", timeout=90)
    assert run.code != 0, run.output[-3000:]
    assert "announced total=1,000,000,000 completions for the window created_after=2026-05-02" in run.output
    assert "max_partitions_per_run" in run.output
    assert proxy.requests == 1, proxy.requests
    # No more memory than the honest load of the same days took (which also wrote them).
    assert run.peak_rss_kib <= honest.peak_rss_kib + 64 * 1024, (run.peak_rss_kib, honest.peak_rss_kib)
    assert_tables_unchanged(before, database)
