"""Reliability end to end: faults, parallel runs, schema drift and bad input lose nothing.

Every test here runs our real assets (in-process ``dg.materialize`` runs or the real
``dagster`` CLI) against the emulator or a tiny loopback server, into a real DuckDB file, and
compares the warehouse with what the API holds.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import duckdb
import pandas as pd
import pytest
from support.pipeline import TEST_KEY, Pipeline, run_figures
from support.reliability import (
    EMPTY_PAGE,
    UTC,
    assert_tables_equal_truth,
    cli_env,
    dagster,
    days,
    describe,
    faults_before_success,
    http_server,
    json_reply,
    materialize_cmd,
    ms,
    pages,
    pick_fault_seed,
    read_table,
)

from cloudglue_dagster import CloudglueClient, CloudglueResource
from cloudglue_dagster.emulator import BOUNDARY_READINGS, FAULT_KINDS, Dataset, Emulator
from cloudglue_dagster.tables.frames import CHAT_COMPLETIONS_COLUMNS, TOKEN_USAGE_COLUMNS

KEY = TEST_KEY  # the key Pipeline configures

# The DuckDB type each contract dtype must be stored as (docs/tables.md).
DUCKDB_TYPE = {
    "string": "VARCHAR",
    "datetime64[ns, UTC]": "TIMESTAMP WITH TIME ZONE",
    "datetime64[us]": "TIMESTAMP",
    "Int64": "BIGINT",
    "Float64": "DOUBLE",
}


def chat_metadata(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    return {
        e.partition: {k: v.value for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
        if e.asset_key.path[-1] == "chat_completions"
    }


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    failures = result.get_step_failure_events()
    assert failures, "the run did not fail"
    return failures[0].step_failure_data.error.to_string()


# -- 1. faults of every kind, end to end ----------------------------------------------------------

FAULT_RATE = 0.25
MAX_RETRIES = 10
PAGE_SIZE = 20
F_START, F_END = dt.date(2026, 4, 1), dt.date(2026, 5, 8)  # the API's data
F_FIRST, F_LAST = dt.date(2026, 4, 2), dt.date(2026, 5, 6)  # the backfill: 35 days


@pytest.mark.processes
def test_backfill_under_faults_of_every_kind_equals_ground_truth(tmp_path: Path) -> None:
    """35 days backfilled through real runs while 25% of requests fail in every way the
    emulator can (429 with Retry-After, 500, HTML 502/503 pages, dropped connections,
    truncated and malformed 200 bodies, answers slower than the read timeout): the tables
    equal the API's ground truth after a range run, after single-day and sub-range re-runs,
    and after a range run through the real ``dagster`` CLI.

    Exhaustion would need one page to fail 11 times in a row: 0.25**11 = 2.4e-7 per page,
    under 1e-4 for all the pages of the in-process runs together (asserted below). The CLI run
    (default ``max_retries=5``) gets a fault seed under which its pages meet at most 5
    failures in all, so it cannot exhaust either. No Dagster step retries are configured:
    only the client's retries can save a run.
    """
    dataset = Dataset(F_START, F_END, per_day=40, seed=606)
    database = tmp_path / "warehouse.duckdb"
    with Emulator(
        dataset, api_key=KEY, fault_rate=FAULT_RATE, fault_seed=2026, retry_after_seconds=0, slow_seconds=1.0
    ) as emu:
        pipeline = Pipeline(emu, database, F_START.isoformat())
        pipeline.resources["cloudglue"] = CloudglueResource(
            api_key=KEY,
            base_url=emu.base_url,
            timeout_seconds=0.5,
            connect_timeout_seconds=5,
            max_retries=MAX_RETRIES,
            page_size=PAGE_SIZE,
            max_concurrent_requests=8,
        )
        wanted = days(F_FIRST, F_LAST)
        accounted = {"requests": 0, "rate_limited": 0, "pages": 0}
        served_before, limited_before = emu.requests_served, emu.faults_injected["429"]

        def run(first: dt.date, last: dt.date | None = None) -> None:
            result = pipeline.materialize(first.isoformat(), last and last.isoformat())
            assert result.success
            md = chat_metadata(result)
            assert sorted(md) == [d.isoformat() for d in days(first, last or first)]
            sweep = run_figures(result, "chat_completions")  # the run's sweep, reported once
            assert sweep["run_partitions"] == len(md) and sweep["days_written"] == len(md)
            accounted["requests"] += sweep["api_requests"]
            accounted["rate_limited"] += sweep["api_rate_limited"]
            accounted["pages"] += pages(emu, first, last or first, PAGE_SIZE)

        run(F_FIRST, F_LAST)  # the whole backfill as one run
        assert_tables_equal_truth(database, emu, wanted)

        empty = [d for d in wanted if emu.ground_truth(d).count == 0]
        busiest = max(wanted, key=lambda d: emu.ground_truth(d).count)
        assert empty and emu.ground_truth(busiest).count > 60
        for day in sorted({F_FIRST, F_LAST, empty[0], busiest}):
            run(day)
        run(dt.date(2026, 4, 10), dt.date(2026, 4, 16))
        assert_tables_equal_truth(database, emu, wanted)

        time.sleep(0.3)  # a request abandoned on a read timeout may still be reaching the server
        injected = emu.faults_injected
        assert all(injected[kind] >= 2 for kind in FAULT_KINDS), injected
        assert sum(injected.values()) >= 0.15 * emu.requests_served
        assert FAULT_RATE ** (MAX_RETRIES + 1) * accounted["pages"] < 1e-4
        # The metadata accounts for every request sent, retries and 429s included.
        assert accounted["requests"] == emu.requests_served - served_before > accounted["pages"]
        assert accounted["rate_limited"] == injected["429"] - limited_before > 0

        # The real CLI over a range already stored, faults again (default timeouts: a slow
        # answer only delays). The seed is chosen so its pages meet >= 4 kinds of failure
        # but at most max_retries=5 failures in all.
        cli_first, cli_last = dt.date(2026, 4, 20), dt.date(2026, 4, 26)
        needed = pages(emu, cli_first, cli_last, 100)
        emu.fault_rate = 0.5
        emu.fault_seed = pick_fault_seed(0.5, FAULT_KINDS, needed, max_faults=5, min_kinds=4)
        emu.slow_seconds = 0.3
        emu.reset_stats()  # restart the fault sequence at request 0
        env = cli_env(
            key=KEY, base_url=emu.base_url, start=F_START.isoformat(), database=database, home=tmp_path / "home"
        )
        done = subprocess.run(
            materialize_cmd("--partition-range", f"{cli_first}...{cli_last}"),
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr[-4000:]
        met = faults_before_success(emu.fault_seed, 0.5, FAULT_KINDS, needed)
        assert {k: n for k, n in emu.faults_injected.items() if n and k != "slow"} == Counter(met)
        assert emu.requests_served == needed + len(met)
        assert "retry" in done.stderr
        assert_tables_equal_truth(database, emu, wanted)


# -- 2. parallel runs ---------------------------------------------------------------------------


LOCKED = "is locked by another process"  # the run's log line when it first finds the file locked


@pytest.mark.processes
def test_four_parallel_cli_runs_write_one_partition_each(tmp_path: Path) -> None:
    """Four ``dagster asset materialize --partition DAY`` processes started together on one
    DuckDB file and one DAGSTER_HOME all succeed, and the tables equal the ground truth (one
    day empty).

    The test holds the DuckDB file's lock until every run has fetched its day and logged that
    the file is locked, so all of them then contend for it at once. (It ran eight until every
    run had to be seen at the lock: four contend as well, at half the 29 s of CPU.)
    """
    dataset = Dataset(dt.date(2026, 8, 1), dt.date(2026, 8, 12), per_day=40, seed=88, empty_days=[dt.date(2026, 8, 5)])
    database = tmp_path / "warehouse.duckdb"
    partitions = days(dt.date(2026, 8, 3), dt.date(2026, 8, 6))
    with Emulator(dataset, api_key=KEY) as emu:
        env = cli_env(key=KEY, base_url=emu.base_url, start="2026-08-01", database=database, home=tmp_path / "home")
        # Dagster's SQLite instance storage cannot be created by several processes at once
        # (CREATE TABLE races in Dagster itself); an existing instance is what runs share.
        subprocess.run(dagster("instance", "migrate"), env=env, check=True, capture_output=True, timeout=120)
        holder = duckdb.connect(str(database))  # an empty file, locked by this process
        procs: list[subprocess.Popen] = []
        try:
            procs = [
                subprocess.Popen(
                    materialize_cmd("--partition", day.isoformat()),
                    env=env,
                    text=True,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                )
                for day in partitions
            ]
            lines: list[list[str]] = [[] for _ in procs]
            readers = [threading.Thread(target=seen.extend, args=(proc.stdout,)) for proc, seen in zip(procs, lines)]
            for reader in readers:
                reader.start()
            # Every run has fetched its day and met the locked file (each logs it once).
            deadline = time.monotonic() + 120
            while (met := sum(any(LOCKED in line for line in seen) for seen in lines)) < len(procs):
                assert time.monotonic() < deadline, f"only {met} of {len(procs)} runs met the lock"
                assert all(p.poll() is None for p in procs), "a run ended before meeting the lock"
                time.sleep(0.05)
            assert len({r.query.get("created_after") for r in emu.request_log}) == len(partitions)
            holder.close()
            for proc in procs:
                proc.wait(timeout=180)
            for reader in readers:
                reader.join(timeout=60)
        finally:
            holder.close()
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
    for day, proc, seen in zip(partitions, procs, lines):
        output = "".join(seen)
        assert proc.returncode == 0, f"{day}:\n{output[-4000:]}"
        assert "RUN_SUCCESS" in output, day
    assert_tables_equal_truth(database, emu, partitions)


# -- 3. schema stability with our assets ------------------------------------------------------

S_DAYS = days(dt.date(2026, 6, 1), dt.date(2026, 6, 7))
SPARSE, EMPTY, GROWN = dt.date(2026, 6, 2), dt.date(2026, 6, 3), dt.date(2026, 6, 4)


def _sparse_records() -> list[tuple[dict, int]]:
    """Completions lacking every optional field: usage, temperature, filter, name, and (for
    the second) the user message and the choices."""
    noon = dt.datetime(2026, 6, 2, 12, tzinfo=UTC)
    base = {"object": "chat.completion", "model": "sparse-model", "usage": {}}
    return [
        (
            {
                **base,
                "id": "sparse-1",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "a"}}],
                "payload": {"messages": [{"role": "user", "content": "q"}], "collections": []},
            },
            ms(noon),
        ),
        ({**base, "id": "sparse-2", "choices": [], "payload": {}}, ms(noon) + 1),
    ]


GROWN_RECORD = {
    "id": "grown-1",
    "object": "chat.completion",
    "model": "nimbus-002",
    "service_tier": "priority",  # unknown top-level fields, some named like our columns
    "system_fingerprint": "fp_123",
    "total_tokens": 999_999,
    "temperature": 9.9,
    "prompt": "TOP-LEVEL, NOT THE PROMPT",
    "metadata": {"team": "a"},
    "usage": {
        "prompt_tokens": 30,
        "completion_tokens": 12,
        "total_tokens": 42,
        "reasoning_tokens": 7,
        "prompt_tokens_details": {"cached_tokens": 5},
    },
    "choices": [
        {"index": 1, "message": {"role": "assistant", "content": "second"}, "finish_reason": "stop"},
        {
            "index": 0,
            "message": {"role": "assistant", "content": "first", "refusal": None, "annotations": [{"type": "url"}]},
            "logprobs": None,
        },
    ],
    "payload": {
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "hello", "name": "ana", "attachments": [{"kind": "video"}]},
        ],
        "collections": ["col-1", "col-2"],
        "temperature": 0.25,
        "filter": {"metadata": [{"path": "speaker", "operator": "Equal", "valueText": "x"}]},
        "top_p": 0.9,
        "prompt": "PAYLOAD FIELD, NOT THE PROMPT",
        "response_format": {"type": "json"},
    },
}


def test_sparse_empty_and_grown_partitions_keep_the_contract(tmp_path: Path) -> None:
    """First write a day whose optional columns are all null, then an empty day, then a day
    whose completions carry fields the API added later, then normal days, then re-run the
    first two. Every run succeeds; the stored column names and DuckDB types are the
    contract's; values land in their columns (unknown fields named like ours change nothing);
    neighbouring partitions keep their rows."""
    dataset = Dataset(S_DAYS[0], S_DAYS[-1], per_day=25, seed=31, counts={SPARSE: 0, EMPTY: 0, GROWN: 0})
    with Emulator(dataset, api_key=KEY) as emu:
        for raw, at in _sparse_records():
            emu.add_record(raw, at_ms=at)
        emu.add_record(GROWN_RECORD, at_ms=ms(dt.datetime(2026, 6, 4, 8, tzinfo=UTC)))
        pipeline = Pipeline(emu, tmp_path / "w.duckdb", "2026-06-01")
        contract = {
            "chat_completions": [(c.name, DUCKDB_TYPE[c.dtype]) for c in CHAT_COMPLETIONS_COLUMNS],
            "token_usage": [(c.name, DUCKDB_TYPE[c.dtype]) for c in TOKEN_USAGE_COLUMNS],
        }
        for partition in [
            SPARSE,
            EMPTY,
            GROWN,
            (dt.date(2026, 6, 5), dt.date(2026, 6, 6)),
            dt.date(2026, 6, 1),
            SPARSE,
            EMPTY,
        ]:
            first, last = partition if isinstance(partition, tuple) else (partition, None)
            assert pipeline.materialize(first.isoformat(), last and last.isoformat()).success, partition
            for table, columns in contract.items():
                assert describe(pipeline.database, table) == columns, (partition, table)
        stored = days(dt.date(2026, 6, 1), dt.date(2026, 6, 6))
        assert_tables_equal_truth(pipeline.database, emu, stored)

        chat = read_table(pipeline.database, "chat_completions").set_index("id")
        sparse = chat.loc[["sparse-1", "sparse-2"]]
        for column in ["prompt_tokens", "completion_tokens", "total_tokens", "temperature", "filter"]:
            assert sparse[column].isna().all(), column
        assert pd.isna(sparse.at["sparse-2", "prompt"]) and pd.isna(sparse.at["sparse-2", "response"])
        assert sparse["collections"].tolist() == ["[]", "[]"]
        assert sparse["message_count"].tolist() == [1, 0] and sparse["choice_count"].tolist() == [1, 0]

        grown = chat.loc["grown-1"]
        assert (grown["prompt_tokens"], grown["completion_tokens"], grown["total_tokens"]) == (30, 12, 42)
        assert grown["temperature"] == 0.25
        assert grown["prompt"] == "hello" and grown["response"] == "first"  # lowest index, not first listed
        assert (grown["message_count"], grown["choice_count"]) == (2, 2)
        assert json.loads(grown["collections"]) == ["col-1", "col-2"]
        assert json.loads(grown["filter"]) == GROWN_RECORD["payload"]["filter"]
        messages = json.loads(grown["payload_messages"])
        assert [(m["role"], m["content"], m.get("name")) for m in messages] == [
            ("system", "sys", None),
            ("user", "hello", "ana"),
        ]
        choices = json.loads(grown["choices"])
        assert sorted((c["index"], c["message"]["content"]) for c in choices) == [(0, "first"), (1, "second")]

        # Normal days still fill the columns that were created all-null.
        normal = chat[~chat.index.str.startswith(("sparse", "grown"))]
        assert len(normal) == sum(emu.ground_truth(d).count for d in stored) - 3
        for column in ["prompt_tokens", "total_tokens", "temperature", "filter", "prompt", "response"]:
            assert normal[column].notna().any(), column

        usage = read_table(pipeline.database, "token_usage")
        sparse_usage = usage[usage["date"] == pd.Timestamp(SPARSE)]
        assert sparse_usage[["model", "completions", "completions_without_usage"]].values.tolist() == [
            ["sparse-model", 2, 2]
        ]
        assert sparse_usage[["prompt_tokens", "completion_tokens", "total_tokens"]].isna().all().all()
        assert usage[usage["date"] == pd.Timestamp(EMPTY)].empty


# -- 4. bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["localhost", "127.0.0.2"])
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_to_another_host_does_not_forward_the_key(status: int, target: str) -> None:
    """The configured host answers with a redirect to another host: the request may follow
    it, but the key must not travel there (not in a header, not in the URL)."""
    with http_server(target, json_reply(EMPTY_PAGE)) as (other, other_seen):
        redirect = lambda request: (status, {"Location": other + request.path}, b"")  # noqa: E731
        with http_server("127.0.0.1", redirect) as (api, api_seen):
            with CloudglueClient(KEY, f"{api}/v1", max_retries=0) as client:
                try:
                    client.list_chat_completions(limit=5, created_after="2026-01-01")
                except Exception as exc:  # refusing to follow is fine too; leaking is not
                    assert KEY not in str(exc)
    assert api_seen and api_seen[0].headers.get("Authorization") == f"Bearer {KEY}"  # the key was sent here
    for request in other_seen:
        assert "authorization" not in {k.lower() for k in request.headers}, request.headers
        assert KEY not in request.path and KEY not in json.dumps(request.headers)


def _envelope_cases() -> list:
    good = {"object": "list", "data": [], "total": 0, "limit": 100, "offset": 0}
    return [
        pytest.param({"data": "nope"}, ["'data'", "an array", "string"], id="data-not-a-list"),
        pytest.param([good], ["expected a list object", "array"], id="body-is-a-list"),
        pytest.param({**good, "total": "3"}, ["'total'", "an integer"], id="total-a-string"),
        pytest.param({k: v for k, v in good.items() if k != "total"}, ["'total'", "missing"], id="total-missing"),
        pytest.param({**good, "data": [7]}, ["data[0]", "completion object"], id="record-not-an-object"),
    ]


@pytest.mark.parametrize(("body", "expected"), _envelope_cases())
def test_wrong_envelope_fails_naming_it_and_keeps_the_partition(
    tmp_path: Path, body: object, expected: list[str]
) -> None:
    """A 200 whose JSON has the wrong shape fails the run at once (no client or step retry),
    with a message saying what is wrong, and leaves the partition's stored rows as they were."""
    day = dt.date(2026, 3, 2)
    database = tmp_path / "w.duckdb"
    with Emulator(Dataset(dt.date(2026, 3, 1), dt.date(2026, 3, 3), per_day=30, seed=4), api_key=KEY) as emu:
        assert Pipeline(emu, database, "2026-03-01").materialize(day.isoformat()).success
    before = {t: read_table(database, t) for t in ("chat_completions", "token_usage")}
    assert len(before["chat_completions"]) == emu.ground_truth(day).count > 0

    with http_server("127.0.0.1", json_reply(body)) as (root, seen):
        bad = Pipeline(
            SimpleNamespace(base_url=f"{root}/v1"),
            database,
            "2026-03-01",  # type: ignore[arg-type]
            retry_policy=dg.RetryPolicy(max_retries=2),
        )
        result = bad.materialize(day.isoformat(), raise_on_error=False)
    assert not result.success
    message = failure_message(result)
    assert "Invalid response from the Cloudglue API" in message
    for part in expected:
        assert part in message, (part, message[-2000:])
    assert len(seen) == 1  # a body of the wrong shape is not retried, by the client or by Dagster
    for table, frame in before.items():
        pd.testing.assert_frame_equal(read_table(database, table), frame)


def _in_window(at_ms: int, after: dt.date, before: dt.date, boundary: str) -> bool:
    """Whether the API returns a record for ``created_after=after&created_before=before`` under a
    boundary reading (see the emulator's BOUNDARY_READINGS), written out independently."""
    start = ms(dt.datetime.combine(after, dt.time(), UTC))
    end = ms(dt.datetime.combine(before, dt.time(), UTC))
    day = 86_400_000
    return {
        "inclusive": start <= at_ms < end + day,
        "exclusive": start + day <= at_ms < end,
        "half-open": start <= at_ms < end,
        "strict": start < at_ms < end,
    }[boundary]


@pytest.mark.parametrize("boundary", BOUNDARY_READINGS)
def test_completions_outside_the_window_are_dropped_and_counted_exactly(pipeline_factory, boundary: str) -> None:
    """A 3-day range asks for the days padded by one on each side. Whatever the server's
    boundary reading, exactly the completions outside the 3 days are dropped, and
    ``window_received`` / ``window_kept`` / ``window_dropped`` say exactly how many."""
    dataset = Dataset(dt.date(2026, 7, 1), dt.date(2026, 7, 8), per_day=30, seed=5, empty_days=[])
    with Emulator(dataset, api_key=KEY, boundary=boundary) as emu:
        pipeline = pipeline_factory(emu, "2026-07-01")
        first, last = dt.date(2026, 7, 3), dt.date(2026, 7, 5)
        result = pipeline.materialize(first.isoformat(), last.isoformat(), checks=False)
        assert result.success
        after, before = first - dt.timedelta(days=1), last + dt.timedelta(days=1)
        served = [
            raw["created_at"]
            for d in days(dt.date(2026, 7, 1), dt.date(2026, 7, 8))
            for raw in emu.dataset.records(d, "ms")
            if _in_window(raw["created_at"], after, before, boundary)
        ]
        kept = sum(emu.ground_truth(d).count for d in days(first, last))
        dropped = len(served) - kept
        assert (
            dropped
            == {
                "inclusive": emu.ground_truth(after).count + emu.ground_truth(before).count,
                "exclusive": 0,
                "half-open": emu.ground_truth(after).count,
                "strict": emu.ground_truth(after).count - 1,
            }[boundary]
        )  # minus 00:00:00.000
        assert sorted(chat_metadata(result)) == [d.isoformat() for d in days(first, last)]
        sweep = run_figures(result, "chat_completions")
        assert (sweep["window_received"], sweep["window_kept"], sweep["window_dropped"]) == (len(served), kept, dropped)
        assert_tables_equal_truth(pipeline.database, emu, days(first, last))


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({}, None, id="valid"),
        pytest.param(
            {"CLOUDGLUE_START_DATE": "2999-01-01"},
            ["start_date", "2999-01-01", "not in the past", "CLOUDGLUE_START_DATE='2999-01-01'"],
            id="start-in-the-future",
        ),
        pytest.param(
            {"CLOUDGLUE_START_DATE": "01/02/2026"}, ["start_date", "01/02/2026", "YYYY-MM-DD"], id="start-not-a-date"
        ),
        pytest.param(
            {"CLOUDGLUE_BASE_URL": "http://example.com/v1"},
            ["base_url", "http://example.com/v1", "unencrypted", "CLOUDGLUE_BASE_URL="],
            id="remote-http",
        ),
        pytest.param(
            {"CLOUDGLUE_BASE_URL": "api.cloudglue.dev/v1"}, ["base_url", "api.cloudglue.dev/v1"], id="no-scheme"
        ),
        pytest.param(
            {"CLOUDGLUE_MAX_CONCURRENT_REQUESTS": "0"},
            ["max_concurrent_requests", "CLOUDGLUE_MAX_CONCURRENT_REQUESTS"],
            id="concurrency-zero",
        ),
    ],
)
@pytest.mark.processes
def test_invalid_config_is_rejected_when_the_definitions_load(tmp_path: Path, env: dict, expected: list | None) -> None:
    """``dagster definitions validate -m cloudglue_dagster.definitions`` fails on an invalid
    environment, before any run, with a message naming the field and the value (and never the
    key); a valid environment validates."""
    base = cli_env(
        key=KEY,
        base_url="https://api.cloudglue.dev/v1",
        start="2026-01-01",
        database=tmp_path / "w.duckdb",
        home=tmp_path / "home",
    )
    done = subprocess.run(
        dagster("definitions", "validate", "-m", "cloudglue_dagster.definitions"),
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert KEY not in output
    if expected is None:
        assert done.returncode == 0, output[-3000:]
        return
    assert done.returncode != 0
    assert "Validation failed" in output
    for part in expected:
        assert part in output, (part, output[-3000:])


# -- docs/guarantees.md names real tests ---------------------------------------------------------


def test_the_guarantees_page_names_existing_tests() -> None:
    """Every ``tests/file.py::test_name`` cited in docs/guarantees.md's "Guarantees" names a
    test that exists, and every test of this file backs a guarantee there."""
    root = Path(__file__).resolve().parent.parent
    text = (root / "docs" / "guarantees.md").read_text()
    section = text.split("\n## Guarantees\n", 1)[1].split("\n## ", 1)[0]
    cited = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", section)
    assert len(cited) >= 20
    for path, name in cited:
        assert re.search(rf"^def {name}\(", (root / path).read_text(), flags=re.M), f"{path}::{name} not found"
    mine = set(re.findall(r"^def (test_\w+)\(", Path(__file__).read_text(), flags=re.M))
    assert mine - {"test_the_guarantees_page_names_existing_tests"} <= {
        n for p, n in cited if p.endswith("test_reliability.py")
    }
