"""What a broken or hostile server makes of the Responses API's paging: the same refusals as for
completions (the sweep and the transport are shared), worded for responses, and the API key
masked wherever a server echoes it into a response's fields."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from support.hostile_server import HostileProxy
from support.pipeline import TEST_KEY, Pipeline, day_range
from support.reliability import Seen, http_server

from cloudglue_dagster import CloudglueClient, CloudglueResource
from cloudglue_dagster.emulator import Dataset, Emulator, ResponsesDataset
from cloudglue_dagster.errors import (
    InconsistentResponseError,
    InvalidResponseError,
    ResponseTooLargeError,
    is_transient,
)

MARCH_2 = int(dt.datetime(2026, 3, 2, 12, tzinfo=dt.timezone.utc).timestamp())


def _body(data: list[dict[str, Any]], total: int) -> bytes:
    return json.dumps({"object": "list", "data": data, "total": total, "limit": 100, "offset": 0}).encode()


def _item(rid: str, created_at: Any = MARCH_2, **fields: Any) -> dict[str, Any]:
    return {"id": rid, "object": "response", "status": "completed", "created_at": created_at, **fields}


def _sweep(reply: Any, **client: Any) -> list[Any]:
    with http_server("127.0.0.1", lambda seen: reply(seen)) as (root, _):
        with CloudglueClient(TEST_KEY, f"{root}/v1", max_retries=0, **client) as c:
            return list(c.iter_responses("2026-03-01", "2026-03-03"))


def test_pages_that_never_account_for_total_fail_after_the_rereads_naming_responses() -> None:
    with pytest.raises(InconsistentResponseError) as info:
        _sweep(lambda seen: (200, {}, _body([_item("a"), _item("b")], total=3)))
    assert "3 times in a row" in str(info.value) and "total 3" in str(info.value)
    assert not is_transient(info.value)


def test_a_response_outside_the_dates_asked_is_refused_as_a_wrong_answer() -> None:
    far = int(dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc).timestamp())
    with pytest.raises(InconsistentResponseError) as info:
        _sweep(lambda seen: (200, {}, _body([_item("old", far)], total=1)))
    assert "response 'old' created_at 2026-01-01" in str(info.value)


def test_a_malformed_response_fails_at_once_naming_it_and_the_field() -> None:
    calls: list[Seen] = []

    def reply(seen: Seen) -> tuple[int, dict[str, str], bytes]:
        calls.append(seen)
        return 200, {}, _body([_item("r1", usage={"input_tokens": "many"})], total=1)

    with pytest.raises(InvalidResponseError) as info:
        _sweep(reply)
    assert "response 'r1'" in str(info.value) and info.value.field == "usage.input_tokens"
    assert len(calls) == 1  # permanent: not asked again


def test_a_page_past_max_response_bytes_is_refused_without_holding_it() -> None:
    huge = _body([_item(f"r{i}", instructions="x" * 2000) for i in range(100)], total=100)
    with pytest.raises(ResponseTooLargeError):
        _sweep(lambda seen: (200, {}, huge), max_response_bytes=64 * 1024)


def test_a_key_a_server_echoes_into_a_response_never_reaches_dagsters_storage(tmp_path: Path) -> None:
    day = dt.date(2026, 3, 2)
    responses = ResponsesDataset(day, day, per_day=3, seed=1)
    at = int(dt.datetime(2026, 3, 2, 9, tzinfo=dt.timezone.utc).timestamp() * 1000)
    responses.add_record(
        {
            "id": "echo",
            "object": "response",
            "status": "completed",
            "model": TEST_KEY,
            "instructions": f"key={TEST_KEY}",
        },
        at_ms=at,
    )
    with Emulator(Dataset(day, day, per_day=3, seed=1), responses=responses, api_key=TEST_KEY) as emu:
        pipeline = Pipeline(emu, tmp_path / "w.duckdb", "2026-03-01", responses=True)
        assert pipeline.materialize("2026-03-02").success
        records = pipeline.instance.get_event_records(
            dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        )
        logs = pipeline.instance.all_logs(next(iter(r.event_log_entry.run_id for r in records)))
        stored = "\n".join(dg.serialize_value(entry) for entry in logs)
        assert "instructions" in stored or "preview" in stored  # the previews are there...
        assert TEST_KEY not in stored  # ...masked
        assert "echo" in set(pipeline.table("responses")["id"])  # the row itself is kept, as sent


def test_a_step_retry_of_the_responses_step_resumes_the_days_it_had_committed(tmp_path: Path) -> None:
    """An outage in the middle of the responses' sweep: the step retry reads back the days the
    first attempt committed (their rows, for their metadata and checks) and fetches the rest."""
    first, last = dt.date(2026, 3, 2), dt.date(2026, 3, 5)
    responses = ResponsesDataset(dt.date(2026, 3, 1), dt.date(2026, 3, 6), per_day=40, seed=7)
    dataset = Dataset(dt.date(2026, 3, 1), dt.date(2026, 3, 6), per_day=5, seed=7)
    with Emulator(dataset, responses=responses, api_key=TEST_KEY) as emu, HostileProxy(emu) as proxy:
        pipeline = Pipeline(
            emu,
            tmp_path / "w.duckdb",
            "2026-03-01",
            responses=True,
            retry_policy=dg.RetryPolicy(max_retries=1, delay=2),
        )
        pipeline.resources["cloudglue"] = CloudglueResource(
            api_key=TEST_KEY, base_url=proxy.base_url, max_retries=0, page_size=10, max_concurrent_requests=1
        )

        def outage(n: int) -> None:
            if n == 14:  # most of the way through the padded window's ~24 pages
                proxy.down_until = time.monotonic() + 1

        proxy.on_request = outage
        keys = pipeline.built.keys
        result = pipeline.materialize(first.isoformat(), last.isoformat(), selection=[keys["responses"]])
        assert result.success
        assert [e.event_type_value for e in result.all_events].count("STEP_UP_FOR_RETRY") == 1
        stored = pipeline.table("responses")
        for day in day_range(first, last):
            assert set(stored.loc[stored["created_at"].dt.date == day, "id"]) == set(
                emu.responses_ground_truth(day).ids
            )
        resumed = [
            e.partition
            for e in result.get_asset_materialization_events()
            if "resumed_from_run" in e.materialization.metadata
        ]
        assert resumed, "the retry read back no committed day"
        assert all(e.passed or e.severity == dg.AssetCheckSeverity.WARN for e in result.get_asset_check_evaluations())
