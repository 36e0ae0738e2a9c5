"""The emulator's ``GET /v1/responses`` (and ``DELETE /v1/responses/{id}``) over real loopback HTTP."""

from __future__ import annotations

import json
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import date, datetime, timezone
from typing import Any

import pytest
import requests

from cloudglue_dagster.emulator import (
    BOUNDARY_READINGS,
    RESPONSES_ENDPOINT,
    Dataset,
    Emulator,
    ResponsesDataset,
    ResponsesDayTruth,
)
from cloudglue_dagster.emulator.__main__ import build_parser

KEY = "emulator-key"
D1, D2, D3, D4, D5 = (date(2026, 1, d) for d in range(1, 6))
DAY_MS = 86_400_000
STATUSES = ("in_progress", "completed", "failed", "cancelled")
COUNTS = ("input_tokens", "output_tokens", "total_tokens")


def ms_of(day: date) -> int:
    """Epoch ms of a UTC day's 00:00:00.000."""
    return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()) * 1000


def get(
    emu: Emulator, session: requests.Session | None = None, key: str | None = KEY, **params: Any
) -> requests.Response:
    """GET /responses with the given query params."""
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return (session or requests).get(f"{emu.base_url}/responses", params=params, headers=headers, timeout=10)


def delete(emu: Emulator, response_id: str, key: str | None = KEY) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return requests.delete(f"{emu.base_url}/responses/{response_id}", headers=headers, timeout=10)


def fetch_all(emu: Emulator, limit: int = 100, **filters: Any) -> tuple[list[dict[str, Any]], int]:
    """Every response of a window, paging by records received; returns (records, total)."""
    out: list[dict[str, Any]] = []
    totals = set()
    with requests.Session() as s:
        while True:
            r = get(emu, s, limit=limit, offset=len(out), **filters)
            assert r.status_code == 200, r.text
            body = r.json()
            totals.add(body["total"])
            out.extend(body["data"])
            if not body["data"] or len(out) >= body["total"]:
                break
    assert len(totals) == 1
    return out, totals.pop()


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def small() -> Iterator[Emulator]:
    """Read-only: 5 days, ~60 responses a day (some in progress), chat data alongside."""
    responses = ResponsesDataset(D1, D5, per_day=60, seed=3, in_progress_rate=0.1)
    with Emulator(Dataset(D1, D5, per_day=40, seed=3), responses=responses) as emu:
        yield emu


@pytest.fixture
def edges() -> Iterator[Emulator]:
    """Five days with exactly two responses each, at 00:00:00.000 and 23:59:59.999, served in ms."""
    responses = ResponsesDataset(D1, D5, counts={d: 2 for d in (D1, D2, D3, D4, D5)})
    with Emulator(Dataset(D1, D5, per_day=2), responses=responses, responses_timestamp_unit="ms") as emu:
        yield emu


# ------------------------------------------------------------------ listing


@pytest.mark.parametrize("limit", [7, 100])
def test_paging_a_multi_day_window_returns_every_response_once(small: Emulator, limit: int) -> None:
    records, total = fetch_all(small, limit=limit, created_after="2026-01-02", created_before="2026-01-04")
    ids = [r["id"] for r in records]
    truth = small.responses_ground_truth_range(D2, D4)
    assert len(ids) == len(set(ids)) == total == sum(t.count for t in truth.values()) > 100
    assert set(ids) == frozenset().union(*(t.ids for t in truth.values()))
    everything, total = fetch_all(small)
    assert total == len(everything) == small.responses.total


def test_the_default_page_has_the_list_envelope_and_the_sdk_field_order(small: Emulator) -> None:
    r = get(small)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    assert r.content.startswith(b'{"object":"list","data":[{"id":"resp_')
    body = r.json()
    assert set(body) == {"object", "data", "total", "limit", "offset"}
    assert (body["limit"], body["offset"], len(body["data"])) == (50, 0, 50)
    order = ["id", "object", "status", "created_at", "model", "instructions", "usage"]
    for rec in body["data"]:
        assert [k for k in rec if k in order] == [k for k in order if k in rec]
        assert rec["object"] == "response" and re.fullmatch(r"resp_[0-9a-f]{24}", rec["id"])


def test_the_chat_endpoint_is_unchanged_beside_responses(small: Emulator) -> None:
    r = requests.get(f"{small.base_url}/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    assert r.json()["total"] == small.dataset.total != small.responses.total
    assert all(rec["object"] == "chat.completion" for rec in r.json()["data"])


@pytest.mark.parametrize("boundary", BOUNDARY_READINGS)
def test_each_boundary_reading_keeps_the_same_edges_as_for_chat(edges: Emulator, boundary: str) -> None:
    edges.boundary = boundary

    def kept(**filters: str) -> set[int]:
        records, total = fetch_all(edges, **filters)
        assert total == len(records)
        return {r["created_at"] for r in records}

    def instants(days: list[date]) -> set[int]:
        return {ms_of(d) for d in days} | {ms_of(d) + DAY_MS - 1 for d in days}

    both = {"inclusive": [D2, D3, D4], "exclusive": [D3], "half-open": [D2, D3], "strict": [D3]}[boundary]
    extra = {ms_of(D2) + DAY_MS - 1} if boundary == "strict" else set()
    assert kept(created_after="2026-01-02", created_before="2026-01-04") == instants(both) | extra
    before = {"inclusive": [D1, D2], "exclusive": [D1], "half-open": [D1], "strict": [D1]}[boundary]
    assert kept(created_before="2026-01-02") == instants(before)
    same_day = instants([D3]) if boundary == "inclusive" else set()
    assert kept(created_after="2026-01-03", created_before="2026-01-03") == same_day


def test_newest_and_oldest_orders_are_exact_reverses(cloudglue_emulator_factory: Any) -> None:
    emu = cloudglue_emulator_factory(responses_per_day=40, responses_timestamp_unit="ms")
    newest, _ = fetch_all(emu, limit=13)
    keys = [(r["created_at"], r["id"]) for r in newest]
    assert keys == sorted(keys, reverse=True) and len(keys) > 60
    emu.order = "oldest"
    oldest, _ = fetch_all(emu, limit=13)
    assert [r["id"] for r in oldest] == [r["id"] for r in reversed(newest)]


def test_each_timestamp_unit_renders_created_at(edges: Emulator) -> None:
    last = ms_of(D1) + DAY_MS - 1

    def d1_times() -> list[Any]:
        body = get(edges, created_after="2026-01-01", created_before="2026-01-01").json()
        return [r["created_at"] for r in body["data"]]

    expected = {
        "int-s": [last // 1000, ms_of(D1) // 1000],  # 23:59:59.999 floors to 23:59:59, same day
        "ms": [last, ms_of(D1)],
        "s": [last / 1000, ms_of(D1) / 1000],
        "iso": ["2026-01-01T23:59:59.999Z", "2026-01-01T00:00:00.000Z"],
    }
    kinds = {"int-s": int, "ms": int, "s": float, "iso": str}
    for unit, times in expected.items():
        edges.responses_timestamp_unit = unit
        assert d1_times() == times and all(type(t) is kinds[unit] for t in d1_times()), unit
    assert edges.timestamp_unit == "ms"  # the chat endpoint's unit is its own
    with pytest.raises(ValueError):
        edges.responses_timestamp_unit = "ns"


def test_int_s_is_a_unit_of_the_chat_endpoint_too(edges: Emulator) -> None:
    edges.timestamp_unit = "int-s"
    r = requests.get(f"{edges.base_url}/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    assert all(type(rec["created_at"]) is int and rec["created_at"] < 10**11 for rec in r.json()["data"])


def test_max_page_size_caps_the_responses_limit(cloudglue_emulator_factory: Any) -> None:
    emu = cloudglue_emulator_factory(max_page_size=9)
    body = get(emu, limit=100).json()
    assert body["limit"] == 9 and len(body["data"]) == 9


# ------------------------------------------------------------------- status


def test_the_status_filter_keeps_exact_matches_and_totals_add_up(small: Emulator) -> None:
    totals = {}
    for status in STATUSES:
        records, totals[status] = fetch_all(small, limit=25, status=status)
        assert {r["status"] for r in records} <= {status} and len(records) == totals[status]
    assert sum(totals.values()) == small.responses.total and all(totals.values())
    records, total = fetch_all(small, status="completed", created_after="2026-01-03", created_before="2026-01-03")
    assert total == small.responses_ground_truth(D3).by_status["completed"] == len(records)


def test_an_unknown_status_is_a_400_that_names_the_statuses(small: Emulator) -> None:
    for bad in ("done", "", "COMPLETED"):
        r = get(small, status=bad)
        assert r.status_code == 400 and r.json() == {"error": "status must be one of " + ", ".join(STATUSES)}


def test_in_progress_responses_complete_and_read_back_with_full_usage(cloudglue_emulator_factory: Any) -> None:
    emu = cloudglue_emulator_factory(responses_per_day=40, in_progress_rate=0.25)
    running, n = fetch_all(emu, status="in_progress", created_after="2026-01-02", created_before="2026-01-02")
    assert n == round(0.25 * emu.responses.count(D2)) and all("usage" not in r for r in running)
    assert emu.responses_ground_truth(D2).by_status["in_progress"] == n
    assert emu.responses.complete(D2) == n and emu.responses.complete(D2) == 0
    assert get(emu, status="in_progress", created_after="2026-01-02", created_before="2026-01-02").json()["total"] == 0
    after = {r["id"]: r for r in fetch_all(emu, created_after="2026-01-02", created_before="2026-01-02")[0]}
    for rec in running:
        done = after[rec["id"]]
        assert done["status"] == "completed" and set(done["usage"]) == set(COUNTS)
        assert done["usage"]["total_tokens"] == done["usage"]["input_tokens"] + done["usage"]["output_tokens"]
    assert get(emu, status="in_progress").json()["total"] > 0  # other days are still running
    # The usage a completion gives is a function of (seed, id): another data set agrees.
    twin = ResponsesDataset(D1, D3, per_day=40, seed=0, in_progress_rate=0.25)
    twin.complete()
    assert {r["id"]: r["usage"] for r in twin.records(D2)} == {i: r.get("usage") for i, r in after.items()}


def test_set_status_changes_what_is_listed_and_counted(cloudglue_emulator_factory: Any) -> None:
    emu = cloudglue_emulator_factory()
    rid = emu.responses.records(D1)[3]["id"]
    emu.responses.set_status(rid, "cancelled", {"input_tokens": 5})
    got = next(r for r in fetch_all(emu)[0] if r["id"] == rid)
    assert got["status"] == "cancelled" and got["usage"] == {"input_tokens": 5}
    assert emu.responses_ground_truth(D1).statuses[rid] == "cancelled"
    emu.responses.set_status(rid, "in_progress")
    assert "usage" not in next(r for r in emu.responses.records(D1) if r["id"] == rid)
    with pytest.raises(KeyError):
        emu.responses.set_status("resp_nope", "completed")
    with pytest.raises(ValueError):
        emu.responses.set_status(rid, "queued")


def test_settle_after_seconds_turns_in_progress_into_completed_over_time(cloudglue_emulator_factory: Any) -> None:
    emu = cloudglue_emulator_factory(responses_per_day=30, in_progress_rate=0.2, settle_after_seconds=0.3)
    before, n = fetch_all(emu, status="in_progress")
    assert n > 0 and all("usage" not in r for r in before)
    wait_for(lambda: get(emu, status="in_progress").json()["total"] == 0)
    after = {r["id"]: r for r in fetch_all(emu)[0]}
    assert all(after[r["id"]]["status"] == "completed" and "total_tokens" in after[r["id"]]["usage"] for r in before)
    truth = emu.responses_ground_truth_range(D1, D3)
    assert sum(t.by_status.get("in_progress", 0) for t in truth.values()) == 0


# ------------------------------------------------------------------- delete


def test_delete_over_http_removes_a_response_from_listing_totals_and_ground_truth(
    cloudglue_emulator_factory: Any,
) -> None:
    emu = cloudglue_emulator_factory(responses_per_day=20)
    total = get(emu).json()["total"]
    rid = emu.responses.records(D2)[0]["id"]
    count = emu.responses.count(D2)
    r = delete(emu, rid)
    assert r.status_code == 200 and r.json() == {"id": rid, "object": "response", "deleted": True}
    ids = {rec["id"] for rec in fetch_all(emu)[0]}
    assert rid not in ids and len(ids) == total - 1 == get(emu).json()["total"] == emu.responses.total
    truth = emu.responses_ground_truth(D2)
    assert rid not in truth.ids and truth.count == count - 1 == emu.responses.count(D2)
    r = delete(emu, rid)
    assert r.status_code == 404 and isinstance(r.json()["error"], str)
    assert delete(emu, "resp_" + "0" * 24, key="wrong").status_code == 401


# ------------------------------------------------------------------ protocol


def test_auth_errors_are_401_and_do_not_echo_the_token(cloudglue_emulator_factory: Any) -> None:
    emu = cloudglue_emulator_factory(api_key="right-key")
    for key in (None, "wrong-token-123"):
        r = get(emu, key=key)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
        assert "wrong-token-123" not in r.text and "right-key" not in r.text
    assert get(emu, key="right-key").status_code == 200


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 101}, {"offset": -1}, {"created_after": "2026-1-1"}])
def test_bad_paging_and_dates_are_400_as_for_chat(small: Emulator, params: dict[str, Any]) -> None:
    r = get(small, **params)
    assert r.status_code == 400 and isinstance(r.json()["error"], str)


def test_other_methods_and_paths_are_405_and_404(small: Emulator) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    r = requests.post(f"{small.base_url}/responses", json={}, headers=auth, timeout=5)
    assert r.status_code == 405 and r.headers["Allow"] == "GET" and "error" in r.json()
    r = requests.get(f"{small.base_url}/responses/resp_x", headers=auth, timeout=5)
    assert r.status_code == 405 and r.headers["Allow"] == "DELETE"
    for path in ("/responses/a/b", "/responses/", "/responsesx"):
        r = requests.get(small.base_url + path, headers=auth, timeout=5)
        assert r.status_code == 404 and r.json() == {"error": "Not found"}, path


def test_faults_apply_to_the_list_but_not_to_delete(cloudglue_emulator_factory: Any) -> None:
    emu = cloudglue_emulator_factory(fault_rate=1.0, fault_kinds=["429"], retry_after_seconds=2)
    r = get(emu)
    assert r.status_code == 429 and r.headers["Retry-After"] == "2" and r.json() == {"error": "Rate limit reached"}
    assert emu.faults_injected["429"] == 1
    assert delete(emu, emu.responses.records(D1)[0]["id"]).status_code == 200
    assert emu.faults_injected["429"] == 1
    emu.fault_kinds = ["malformed"]
    r = get(emu)
    assert r.status_code == 200
    with pytest.raises(ValueError):
        r.json()


def test_the_request_log_and_latency_cover_responses(cloudglue_emulator_factory: Any) -> None:
    emu = cloudglue_emulator_factory(latency_seconds=0.1)
    assert get(emu, limit=5, status="failed").elapsed.total_seconds() >= 0.1
    get(emu, key="bad")
    assert [tuple(e) for e in emu.request_log] == [
        (RESPONSES_ENDPOINT, {"limit": "5", "status": "failed"}, 200),
        (RESPONSES_ENDPOINT, {}, 401),
    ]
    assert emu.requests_served == 2 and emu.peak_in_flight >= 1


# ------------------------------------------------------------- ground truth


def test_ground_truth_equals_what_the_listing_returns_per_day(small: Emulator) -> None:
    small.responses_timestamp_unit = "int-s"
    records, _ = fetch_all(small)
    by_day: dict[date, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_day[datetime.fromtimestamp(r["created_at"], timezone.utc).date()].append(r)
    truth = small.responses_ground_truth_range(D1, D5)
    assert {d for d, t in truth.items() if t.count} == set(by_day)
    for day, recs in by_day.items():
        t = truth[day]
        assert isinstance(t, ResponsesDayTruth)
        assert t.ids == {r["id"] for r in recs} and t.count == len(recs)
        assert dict(t.statuses) == {r["id"]: r["status"] for r in recs}
        assert t.by_status == dict(Counter(r["status"] for r in recs))
        for field in COUNTS:
            assert getattr(t, field) == sum(r.get("usage", {}).get(field, 0) for r in recs)
        assert t.no_usage == sum(1 for r in recs if not set(r.get("usage", {})) & set(COUNTS))
        assert t.by_model == dict(Counter(r["model"] for r in recs))


def test_generated_responses_cover_every_variant(small: Emulator) -> None:
    recs = [r for d in small.responses.days for r in small.responses.records(d)]
    assert Counter(r["status"] for r in recs).keys() == set(STATUSES)
    assert all(set(r["usage"]) == set(COUNTS) for r in recs if r["status"] == "completed")
    assert all("usage" not in r for r in recs if r["status"] == "in_progress")
    ended = [tuple(sorted(r.get("usage", {"-": 0}))) for r in recs if r["status"] in ("failed", "cancelled")]
    assert ("-",) in ended and any(len(u) == 2 for u in ended)
    assert any("instructions" not in r for r in recs) and any(r.get("instructions", "") is None for r in recs)
    text = json.dumps([r.get("instructions") for r in recs], ensure_ascii=False)
    for needle in ('\\"', "\\n", "\u201c"):
        assert needle in text, needle
    assert any(re.search("[^\x00-\x7f]", r.get("instructions") or "") for r in recs)
    assert any("service_tier" in r for r in recs)
    full = [d for d in small.responses.days if small.responses.count(d) >= 2]
    assert len(full) >= 3 and small.responses.empty_days  # about 1 day in 7 is empty
    for day in full:
        times = {r["created_at"] for r in small.responses.records(day, "ms")}
        assert {ms_of(day), ms_of(day) + DAY_MS - 1} <= times


def test_responses_are_deterministic_and_differ_from_chat_for_one_seed() -> None:
    a, b = (ResponsesDataset(D1, D3, per_day=30, seed=4) for _ in range(2))
    assert a.records(D2) == b.records(D2)
    assert a.ground_truth(D2).ids != ResponsesDataset(D1, D3, per_day=30, seed=5).ground_truth(D2).ids
    chat = Dataset(D1, D3, per_day=30, seed=4)
    chat_times = {r["created_at"] for r in chat.records(D2)} - {ms_of(D2), ms_of(D2) + DAY_MS - 1}
    assert not chat_times & {r["created_at"] for r in a.records(D2, "ms")}


def test_an_injected_response_is_served_counted_and_completable(cloudglue_emulator_factory: Any) -> None:
    emu = cloudglue_emulator_factory()
    emu.responses.add_record({"id": "live-1", "object": "response", "status": "in_progress", "model": "m"}, ms_of(D2))
    emu.responses.add_record({"id": "odd", "created_at": "soon", "status": "failed", "model": "m"}, ms_of(D2) + 5)
    got = {r["id"]: r for r in fetch_all(emu, created_after="2026-01-02", created_before="2026-01-02")[0]}
    assert list(got["live-1"]) == ["id", "created_at", "object", "status", "model"]
    assert got["live-1"]["created_at"] == ms_of(D2) // 1000 and got["odd"]["created_at"] == "soon"
    truth = emu.responses_ground_truth(D2)
    assert {"live-1", "odd"} <= truth.ids and truth.statuses["live-1"] == "in_progress"
    assert emu.responses.complete() >= 1
    done = next(r for r in emu.responses.records(D2) if r["id"] == "live-1")
    assert done["status"] == "completed" and set(done["usage"]) == set(COUNTS)
    with pytest.raises(ValueError):
        emu.responses.add_record({"id": "x", "created_at": "2026-01-01"})


# ------------------------------------------------------------ fixtures & CLI


def test_the_default_responses_follow_the_chat_data_set(cloudglue_emulator: Emulator) -> None:
    emu = cloudglue_emulator
    assert emu.responses.days == emu.dataset.days and emu.responses.seed == emu.dataset.seed
    assert emu.responses.per_day == emu.dataset.per_day // 4 and emu.responses_timestamp_unit == "int-s"
    assert Emulator(Dataset(D1, D1, per_day=0)).responses.total == 0


def test_the_factory_takes_responses_options(cloudglue_emulator_factory: Any) -> None:
    emu = cloudglue_emulator_factory(responses_per_day=8, in_progress_rate=0.5, responses_timestamp_unit="ms")
    assert emu.responses.per_day == 8 and emu.responses.in_progress_rate == 0.5
    assert get(emu).json()["data"][0]["created_at"] > 10**12
    with pytest.raises(TypeError):
        cloudglue_emulator_factory(responses=emu.responses, responses_per_day=3)


def test_the_cli_parses_the_responses_options() -> None:
    args = build_parser().parse_args([])
    assert (args.responses_per_day, args.responses_timestamp_unit) == (None, "int-s")
    assert (args.in_progress_rate, args.settle_after_seconds) == (0.0, None)
    args = build_parser().parse_args(
        ["--responses-per-day", "7", "--responses-timestamp-unit", "ms", "--in-progress-rate", "0.1"]
        + ["--settle-after-seconds", "2.5"]
    )
    assert (args.responses_per_day, args.responses_timestamp_unit, args.in_progress_rate) == (7, "ms", 0.1)
    assert args.settle_after_seconds == 2.5
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--responses-timestamp-unit", "ns"])
