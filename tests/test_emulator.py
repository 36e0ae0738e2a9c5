"""Tests of the Cloudglue emulator over real loopback HTTP (``requests``)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
import requests
import urllib3

from cloudglue_dagster.emulator import (
    ALL_FAULT_KINDS,
    BOUNDARY_READINGS,
    FAULT_KINDS,
    Dataset,
    DayTruth,
    Emulator,
)

KEY = "emulator-key"
D1, D2, D3, D4, D5 = (date(2026, 1, d) for d in range(1, 6))
DAY_MS = 86_400_000


def ms_of(day: date, h: int = 0, m: int = 0, s: int = 0, milli: int = 0) -> int:
    """Epoch ms of a UTC day and time of day."""
    dt = datetime(day.year, day.month, day.day, h, m, s, tzinfo=timezone.utc)
    return int(dt.timestamp()) * 1000 + milli


def get(
    emu: Emulator, session: requests.Session | None = None, key: str | None = KEY, **params: Any
) -> requests.Response:
    """GET /chat/completions with the given query params."""
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return (session or requests).get(f"{emu.base_url}/chat/completions", params=params, headers=headers, timeout=10)


def fetch_all(emu: Emulator, limit: int = 100, **filters: Any) -> tuple[list[dict[str, Any]], int]:
    """Every record of a window, paging by records received; returns (records, total)."""
    out: list[dict[str, Any]] = []
    totals = set()
    with requests.Session() as s:
        while True:
            body = get(emu, s, limit=limit, offset=len(out), **filters).json()
            totals.add(body["total"])
            out.extend(body["data"])
            if not body["data"] or len(out) >= body["total"]:
                break
    assert len(totals) == 1
    return out, totals.pop()


@pytest.fixture(scope="module")
def small() -> Iterator[Emulator]:
    """Read-only emulator, 3 days x ~60 (tests must not change its settings)."""
    with Emulator(Dataset(D1, D3, per_day=60, seed=1)) as emu:
        yield emu


@pytest.fixture
def edges(cloudglue_emulator_factory: Any) -> Emulator:
    """Five days with exactly two records each: 00:00:00.000 and 23:59:59.999."""
    return cloudglue_emulator_factory(start=D1, end=D5, counts={d: 2 for d in (D1, D2, D3, D4, D5)})


# ---------------------------------------------------------------- protocol


def test_auth_missing_wrong_and_not_echoed(cloudglue_emulator_factory: Any) -> None:
    emu = cloudglue_emulator_factory(api_key="right-key")
    for key in (None, "wrong-token-123"):
        r = get(emu, key=key)
        assert r.status_code == 401
        assert r.headers["Content-Type"].startswith("application/json")
        assert isinstance(r.json()["error"], str)
        assert "wrong-token-123" not in r.text and "right-key" not in r.text
    r = requests.get(f"{emu.base_url}/chat/completions", headers={"Authorization": "Basic right-key"}, timeout=5)
    assert r.status_code == 401
    assert get(emu, key="right-key").status_code == 200


def test_404_and_405(small: Emulator) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    r = requests.get(small.base_url + "/files", headers=auth, timeout=5)
    assert r.status_code == 404 and r.json() == {"error": "Not found"}
    r = requests.post(small.base_url + "/chat/completions", json={}, headers=auth, timeout=5)
    assert r.status_code == 405 and "error" in r.json()


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"limit": "x"},
        {"limit": ""},
        {"limit": "1.5"},
        {"offset": -1},
        {"offset": "abc"},
        {"created_after": "2026-1-01"},
        {"created_after": "2026-13-01"},
        {"created_before": "yesterday"},
        {"created_before": "2026-01-01T00:00:00Z"},
    ],
)
def test_bad_params_400(small: Emulator, params: dict[str, Any]) -> None:
    r = get(small, **params)
    assert r.status_code == 400
    assert isinstance(r.json()["error"], str)


def test_response_shape_defaults_and_headers(small: Emulator) -> None:
    r = get(small, unknown_param="ignored")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert int(r.headers["Content-Length"]) == len(r.content)
    assert r.content.startswith(b'{"object":"list","data":[')  # compact JSON
    body = r.json()
    assert set(body) == {"object", "data", "total", "limit", "offset"}
    assert body["object"] == "list" and body["limit"] == 50 and body["offset"] == 0
    assert len(body["data"]) == 50 and body["total"] == small.dataset.total
    past = get(small, offset=body["total"] + 5).json()
    assert past["data"] == [] and past["total"] == body["total"]


@pytest.mark.parametrize("boundary", BOUNDARY_READINGS)
def test_extreme_dates(small: Emulator, boundary: str) -> None:
    small.boundary = boundary
    try:
        assert get(small, created_after="9999-12-31").json()["total"] == 0
        assert get(small, created_before="0001-01-01").json()["total"] == 0
        wide = get(small, created_after="0001-01-01", created_before="9999-12-31").json()
        assert wide["total"] == small.dataset.total
    finally:
        small.boundary = "inclusive"


# ------------------------------------------------------------------ paging


@pytest.mark.parametrize("limit", [7, 100])
def test_paging_covers_every_record_once(small: Emulator, limit: int) -> None:
    records, total = fetch_all(small, limit=limit)
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == total == small.dataset.total
    truth = small.ground_truth_range(D1, D3)
    assert set(ids) == frozenset().union(*(t.ids for t in truth.values()))


def test_paging_a_filtered_window(small: Emulator) -> None:
    records, total = fetch_all(small, limit=13, created_after="2026-01-02", created_before="2026-01-02")
    assert total == small.dataset.count(D2) and {r["id"] for r in records} == small.ground_truth(D2).ids


def test_concurrent_paging_is_consistent(cloudglue_emulator_factory: Any) -> None:
    emu = cloudglue_emulator_factory(dataset=Dataset(D1, date(2026, 1, 20), per_day=120, seed=5, cache_days=4))
    total = emu.dataset.total
    local = threading.local()

    def page(offset: int) -> list[str]:
        if not hasattr(local, "s"):
            local.s = requests.Session()
        return [r["id"] for r in get(emu, local.s, limit=100, offset=offset).json()["data"]]

    with ThreadPoolExecutor(8) as pool:
        ids = [i for chunk in pool.map(page, range(0, total, 100)) for i in chunk]
    assert len(ids) == len(set(ids)) == total
    assert ids == [r["id"] for r in fetch_all(emu)[0]]


def test_max_page_size_caps_limit(cloudglue_emulator_factory: Any) -> None:
    emu = cloudglue_emulator_factory(max_page_size=7)
    body = get(emu, limit=100).json()
    assert body["limit"] == 7 and len(body["data"]) == 7
    records, total = fetch_all(emu, limit=100)
    assert len({r["id"] for r in records}) == total == emu.dataset.total
    assert all(e.query.get("limit") == "100" for e in emu.request_log)


def test_order_newest_and_oldest(cloudglue_emulator_factory: Any) -> None:
    emu = cloudglue_emulator_factory()
    newest, _ = fetch_all(emu, limit=17)
    keys = [(r["created_at"], r["id"]) for r in newest]
    assert keys == sorted(keys, reverse=True)
    emu.order = "oldest"
    oldest, _ = fetch_all(emu, limit=17)
    assert [r["id"] for r in oldest] == [r["id"] for r in reversed(newest)]


# -------------------------------------------------------------- boundaries

# Expected (day, is_last_instant) kept for created_after=D2 & created_before=D4,
# with records only at 00:00:00.000 (False) and 23:59:59.999 (True) each day.
_BOTH = {"inclusive": [D2, D3, D4], "exclusive": [D3], "half-open": [D2, D3], "strict": [D3]}


@pytest.mark.parametrize("boundary", BOUNDARY_READINGS)
def test_boundary_readings(edges: Emulator, boundary: str) -> None:
    edges.boundary = boundary

    def kept(**filters: str) -> set[int]:
        records, total = fetch_all(edges, **filters)
        assert total == len(records)
        return {r["created_at"] for r in records}

    def instants(days: list[date]) -> set[int]:
        return {ms_of(d) for d in days} | {ms_of(d) + DAY_MS - 1 for d in days}

    both = instants(_BOTH[boundary])
    if boundary == "strict":
        both.add(ms_of(D2) + DAY_MS - 1)  # D2 23:59:59.999 is strictly after D2 00:00
    assert kept(created_after="2026-01-02", created_before="2026-01-04") == both

    after = {
        "inclusive": [D2, D3, D4, D5],
        "exclusive": [D3, D4, D5],
        "half-open": [D2, D3, D4, D5],
        "strict": [D3, D4, D5],
    }
    expect_after = instants(after[boundary]) | ({ms_of(D2) + DAY_MS - 1} if boundary == "strict" else set())
    assert kept(created_after="2026-01-02") == expect_after

    before = {"inclusive": [D1, D2], "exclusive": [D1], "half-open": [D1], "strict": [D1]}
    assert kept(created_before="2026-01-02") == instants(before[boundary])

    same_day = {"inclusive": instants([D3]), "exclusive": set(), "half-open": set(), "strict": set()}
    assert kept(created_after="2026-01-03", created_before="2026-01-03") == same_day[boundary]


def test_boundary_records_exist_each_day(small: Emulator) -> None:
    for day in (D1, D2, D3):
        times = {r["created_at"] for r in small.records(day)}
        assert ms_of(day) in times and ms_of(day, 23, 59, 59, 999) in times
        assert all(ms_of(day) <= t < ms_of(day) + DAY_MS for t in times)


# ------------------------------------------------------------------- units


def test_timestamp_units(edges: Emulator) -> None:
    last = ms_of(D1, 23, 59, 59, 999)

    def d1_times() -> list[Any]:
        body = get(edges, created_after="2026-01-01", created_before="2026-01-01").json()
        return [r["created_at"] for r in body["data"]]

    edges.timestamp_unit = "ms"
    assert d1_times() == [last, 1767225600000]
    assert all(type(t) is int for t in d1_times())
    edges.timestamp_unit = "s"
    assert d1_times() == [1767311999.999, 1767225600.0]
    assert all(type(t) is float for t in d1_times())
    edges.timestamp_unit = "iso"
    assert d1_times() == ["2026-01-01T23:59:59.999Z", "2026-01-01T00:00:00.000Z"]
    assert edges.records(D1)[0]["created_at"] == "2026-01-01T00:00:00.000Z"


# ------------------------------------------------------------------ dataset


def test_empty_days_default_rule_and_handling(cloudglue_emulator_factory: Any) -> None:
    start = date(2026, 2, 1)
    for seed in range(5):
        ds = Dataset(start, start + timedelta(days=13), per_day=5, seed=seed)
        assert ds.empty_days, seed
        assert ds.days[0] not in ds.empty_days and ds.days[-1] not in ds.empty_days
    emu = cloudglue_emulator_factory(dataset=Dataset(start, start + timedelta(days=13), per_day=20, seed=0))
    day = emu.dataset.empty_days[0]
    body = get(emu, created_after=day.isoformat(), created_before=day.isoformat()).json()
    assert body == {"object": "list", "data": [], "total": 0, "limit": 50, "offset": 0}
    assert emu.ground_truth(day) == DayTruth(frozenset(), 0, 0, 0, 0, 0, {})
    counts = [emu.dataset.count(d) for d in emu.dataset.days]
    assert len(set(counts)) > 5  # counts vary day to day


def test_empty_days_and_counts_overrides() -> None:
    ds = Dataset(D1, D5, per_day=10, seed=0, empty_days=[D2, D5], counts={D3: 1, D5: 4})
    assert [ds.count(d) for d in ds.days] == [ds.count(D1), 0, 1, ds.count(D4), 4]
    assert ds.empty_days == [D2]
    with pytest.raises(ValueError):
        Dataset(D1, D2, counts={D5: 1})


def test_determinism_same_seed_same_records() -> None:
    a, b, c = (Dataset(D1, D3, per_day=40, seed=s) for s in (7, 7, 8))
    assert [a.count(d) for d in a.days] == [b.count(d) for d in b.days]
    assert a.records(D2) == b.records(D2)
    assert a.ground_truth(D2).ids != c.ground_truth(D2).ids


def test_content_variety(small: Emulator) -> None:
    recs = [r for d in (D1, D2, D3) for r in small.records(d)]
    usages = Counter(tuple(sorted(k for k in r["usage"] if k.endswith("_tokens"))) for r in recs)
    assert usages[()] and usages[("total_tokens",)] and usages[("completion_tokens", "prompt_tokens", "total_tokens")]
    full = [r["usage"] for r in recs if "prompt_tokens" in r["usage"] and "total_tokens" in r["usage"]]
    assert all(u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"] for u in full)
    assert {r["model"] for r in recs} >= {"nimbus-001", "nimbus-002"}
    assert any("temperature" not in r["payload"] for r in recs) and any("temperature" in r["payload"] for r in recs)
    assert any("filter" in r["payload"] for r in recs) and any("filter" not in r["payload"] for r in recs)
    assert all(r["payload"]["messages"][-1]["role"] == "user" for r in recs)
    assert all(1 <= len(r["payload"]["messages"]) <= 4 and r["payload"]["collections"] for r in recs)
    assert all(1 <= len(r["choices"]) <= 2 for r in recs) and any(len(r["choices"]) == 2 for r in recs)
    text = json.dumps(recs, ensure_ascii=False)
    for needle in ("é", "视频", "🎬", '\\"', "\\\\", "\\n"):
        assert needle in text, needle
    contents = [c["message"]["content"] for r in recs for c in r["choices"]]
    assert max(len(c) for c in contents) > 2000
    uuid4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
    assert all(uuid4.fullmatch(r["id"]) for r in recs)


def _contents(recs: list[dict[str, Any]]) -> list[str]:
    """Every prompt message and choice content of ``recs``."""
    return [m["content"] for r in recs for m in r["payload"]["messages"]] + [
        c["message"]["content"] for r in recs for c in r["choices"]
    ]


def test_realistic_texts_are_distinct_sized_and_multilingual() -> None:
    ds = Dataset(D1, D5, per_day=400, seed=2)
    assert ds.text == "realistic"  # the default
    recs = [r for d in ds.days for r in ds.records(d)]
    texts = _contents(recs)
    assert len(texts) > 3 * len(recs) and len(set(texts)) == len(texts)  # no text twice
    sizes = [len(json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode()) for r in recs]
    assert 1_250 <= sum(sizes) / len(sizes) <= 1_650  # bytes of JSON a completion, as real data
    assert sum(s > 4_000 for s in sizes) >= len(recs) // 200  # about 1 in 40 has a 2-8 KB choice
    cjk = sum(bool(re.search("[\u3040-\u30ff\u4e00-\u9fff]", t)) for t in texts)
    accented = sum(bool(re.search("[àáâãäåçèéêëíîïñóôõöúûüß]", t)) for t in texts)
    assert cjk > len(texts) // 30 and accented > len(texts) // 15


def test_realistic_words_need_no_escaping() -> None:
    """The phrase tables are pre-escaped: words must hold nothing JSON would escape."""
    from cloudglue_dagster.emulator import text

    for words in (text._english(), text._EU_WORDS, text._CJK_WORDS):
        assert words and all(json.dumps(w, ensure_ascii=False) == f'"{w}"' for w in words)


def test_text_modes_share_everything_but_the_texts() -> None:
    real, compact = (Dataset(D1, D3, per_day=150, seed=4, text=t) for t in ("realistic", "compact"))
    assert compact.text == "compact"
    for day in real.days:
        assert real.ground_truth(day) == compact.ground_truth(day)
        for a, b in zip(real.records(day), compact.records(day), strict=True):
            for field in ("id", "created_at", "object", "model", "usage", "system_fingerprint"):
                assert a.get(field) == b.get(field), field
    compact_texts = _contents([r for d in compact.days for r in compact.records(d)])
    assert len(set(compact_texts)) < len(compact_texts) // 2  # the pool repeats its texts
    with pytest.raises(ValueError):
        Dataset(D1, D3, text="lorem")


def test_realistic_texts_are_regenerated_not_kept() -> None:
    ds = Dataset(D1, D3, per_day=200, seed=6, cache_days=8)
    first = ds.select(None, None, 0, 100, "oldest")
    assert ds.select(None, None, 0, 100, "oldest") == first  # the same bytes each time
    cached = ds._day(D1).recs
    kept = sum(len(r.head) + len(r.tail) for r in cached)
    served = sum(len(r.render("ms")) for r in cached)
    assert kept < served / 3  # a cached day holds the JSON around the texts, not the texts
    other = Dataset(D1, D3, per_day=200, seed=7)
    assert not set(_contents(ds.records(D2))) & set(_contents(other.records(D2)))


@pytest.mark.processes
def test_realistic_texts_are_the_same_in_another_process() -> None:
    """The emulator often runs in a process of its own: nothing may depend on hash seeds."""
    code = (
        "import hashlib, sys; from datetime import date; from cloudglue_dagster.emulator import Dataset; "
        "ds = Dataset(date(2026, 1, 1), date(2026, 1, 3), per_day=120, seed=9); "
        "print(hashlib.sha256(b''.join(ds.select(None, None, 0, 100)[1])).hexdigest())"
    )
    ds = Dataset(D1, D3, per_day=120, seed=9)
    here = hashlib.sha256(b"".join(ds.select(None, None, 0, 100)[1])).hexdigest()
    hash_seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"  # not this process's
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == here


def test_lazy_scaling_365_days(cloudglue_emulator_factory: Any) -> None:
    ds = Dataset(date(2025, 1, 1), date(2025, 12, 31), per_day=1000, seed=0)
    emu = cloudglue_emulator_factory(dataset=ds)
    total = ds.total
    body = get(emu, limit=100, offset=total // 2).json()
    assert body["total"] == total > 250_000 and len(body["data"]) == 100
    assert len(ds._cache) <= 2  # only the day(s) holding the page were generated


# ---------------------------------------------------------------- injection


def test_add_record_live_and_ground_truth(cloudglue_emulator_factory: Any) -> None:
    emu = cloudglue_emulator_factory()
    today = datetime.now(timezone.utc).date()
    before = get(emu).json()["total"]
    now_ms = int(time.time() * 1000)
    emu.add_record(
        {
            "id": "live-1",
            "created_at": now_ms,
            "object": "chat.completion",
            "model": "nimbus-001",
            "usage": {"total_tokens": 42},
            "choices": [],
            "payload": {"messages": []},
        }
    )
    body = get(emu, created_after=today.isoformat()).json()
    assert body["total"] == 1 and body["data"][0]["id"] == "live-1" and body["data"][0]["created_at"] == now_ms
    assert get(emu).json()["total"] == before + 1
    truth = emu.ground_truth(today)
    assert truth.ids == {"live-1"} and truth.total_tokens == 42 and truth.prompt_tokens == 0 and truth.no_usage == 0
    # Into an existing (cached) day, a verbatim malformed created_at, and a rendered one.
    emu.add_record({"id": "odd", "created_at": "not-a-time", "model": "m", "usage": {}}, at_ms=ms_of(D2, 12))
    emu.add_record({"id": "noat", "model": "m", "usage": {}}, at_ms=ms_of(D2, 12, 0, 0, 1))
    emu.timestamp_unit = "s"
    got = {r["id"]: r for r in fetch_all(emu, created_after="2026-01-02", created_before="2026-01-02")[0]}
    assert got["odd"]["created_at"] == "not-a-time"
    assert got["noat"]["created_at"] == ms_of(D2, 12, 0, 0, 1) / 1000
    assert list(got["noat"]) == ["id", "created_at", "model", "usage"]
    truth = emu.ground_truth(D2)
    assert {"odd", "noat"} <= truth.ids and truth.count == len(got) and truth.no_usage >= 2
    with pytest.raises(ValueError):
        emu.add_record({"id": "x", "created_at": "2026-01-01"})


def test_ground_truth_equals_full_paging(small: Emulator) -> None:
    records, _ = fetch_all(small)
    by_day: dict[date, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_day[datetime.fromtimestamp(r["created_at"] / 1000, timezone.utc).date()].append(r)
    truth = small.ground_truth_range(D1, D3)
    assert set(by_day) == set(truth)
    for day, recs in by_day.items():
        t = truth[day]
        assert t.ids == {r["id"] for r in recs} and t.count == len(recs)
        for field in ("prompt_tokens", "completion_tokens", "total_tokens"):
            assert getattr(t, field) == sum(r["usage"].get(field, 0) for r in recs)
        assert t.no_usage == sum(1 for r in recs if not any(f.endswith("_tokens") for f in r["usage"]))
        assert t.by_model == dict(Counter(r["model"] for r in recs))


# ------------------------------------------------------------------- faults


def _faulty(factory: Any, kind: str) -> Emulator:
    return factory(fault_rate=1.0, fault_kinds=[kind], slow_seconds=0.3, retry_after_seconds=2)


@pytest.mark.parametrize("kind", ["429", "500", "502_html", "503"])
def test_fault_error_statuses(cloudglue_emulator_factory: Any, kind: str) -> None:
    emu = _faulty(cloudglue_emulator_factory, kind)
    r = get(emu)
    assert r.status_code == int(kind[:3])
    if kind in ("429", "503"):
        assert r.headers["Retry-After"] == "2"
    if kind == "429":
        assert r.json() == {"error": "Rate limit reached"}
    if kind == "502_html":
        assert r.headers["Content-Type"].startswith("text/html") and r.text.lstrip().startswith("<html")
    assert emu.faults_injected[kind] == 1
    assert get(emu, key="wrong").status_code == 401  # auth comes first, never faulted
    assert emu.faults_injected[kind] == 1


def test_fault_drop(cloudglue_emulator_factory: Any) -> None:
    emu = _faulty(cloudglue_emulator_factory, "drop")
    with pytest.raises(requests.ConnectionError):
        get(emu)
    assert emu.request_log[-1].status == 0


def test_fault_truncated(cloudglue_emulator_factory: Any) -> None:
    emu = _faulty(cloudglue_emulator_factory, "truncated")
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.ConnectionError)):
        get(emu)
    with requests.get(
        f"{emu.base_url}/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, stream=True, timeout=5
    ) as r:
        declared = int(r.headers["Content-Length"])
        got = b""
        with pytest.raises(urllib3.exceptions.ProtocolError):
            for chunk in r.raw.stream(1024, decode_content=False):
                got += chunk
        assert 0 < len(got) < declared


def test_fault_malformed(cloudglue_emulator_factory: Any) -> None:
    emu = _faulty(cloudglue_emulator_factory, "malformed")
    for _ in range(4):
        r = get(emu)
        assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
        with pytest.raises(ValueError):
            r.json()


def test_fault_slow(cloudglue_emulator_factory: Any) -> None:
    emu = _faulty(cloudglue_emulator_factory, "slow")
    with pytest.raises(requests.ReadTimeout):
        requests.get(f"{emu.base_url}/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=0.1)
    r = get(emu)
    assert r.status_code == 200 and r.elapsed.total_seconds() >= 0.3


def test_fault_determinism_and_reset(cloudglue_emulator_factory: Any) -> None:
    kinds = ("429", "500", "503", "502_html")

    def statuses(emu: Emulator) -> list[int]:
        with requests.Session() as s:
            return [get(emu, s).status_code for _ in range(40)]

    a = cloudglue_emulator_factory(fault_rate=0.4, fault_seed=3, fault_kinds=kinds)
    b = cloudglue_emulator_factory(fault_rate=0.4, fault_seed=3, fault_kinds=kinds)
    c = cloudglue_emulator_factory(fault_rate=0.4, fault_seed=4, fault_kinds=kinds)
    first = statuses(a)
    assert first == statuses(b) != statuses(c)
    assert 5 <= sum(s != 200 for s in first) <= 30
    assert sum(a.faults_injected.values()) == sum(s != 200 for s in first)
    a.reset_stats()
    assert a.requests_served == 0 and a.request_log == [] and not any(a.faults_injected.values())
    assert statuses(a) == first
    a.fault_rate = 0.0
    assert set(statuses(a)) == {200}
    assert set(ALL_FAULT_KINDS) == set(FAULT_KINDS) >= {"429", "drop", "truncated", "malformed", "slow"}


def test_request_log_and_counters(cloudglue_emulator_factory: Any) -> None:
    emu = cloudglue_emulator_factory()
    get(emu, limit=5, offset=2, created_after="2026-01-01")
    get(emu, key="bad")
    assert emu.requests_served == 2
    assert [tuple(e) for e in emu.request_log] == [
        ("/v1/chat/completions", {"limit": "5", "offset": "2", "created_after": "2026-01-01"}, 200),
        ("/v1/chat/completions", {}, 401),
    ]


def test_the_emulator_counts_requests_and_sweeps_in_flight(cloudglue_emulator_factory: Any) -> None:
    emu = cloudglue_emulator_factory(latency_seconds=0.3)
    windows = [("2026-01-01", "2026-01-03"), ("2026-01-01", "2026-01-03"), ("2026-01-02", "2026-01-04")]
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda w: get(emu, created_after=w[0], created_before=w[1]), windows))
    assert (emu.peak_in_flight, emu.peak_windows_in_flight) == (3, 2)
    get(emu)
    # The server counts a request out after writing its answer, a moment after the client has it
    # (under load, long enough for reset_stats to find it still in flight): reset once it is out.
    deadline = time.monotonic() + 5
    emu.reset_stats()
    while emu.peak_in_flight:
        assert time.monotonic() < deadline, "a request stayed in flight"
        time.sleep(0.01)
        emu.reset_stats()
    get(emu)
    assert (emu.peak_in_flight, emu.peak_windows_in_flight) == (1, 1)


def test_latency_and_stop_does_not_hang(cloudglue_emulator_factory: Any) -> None:
    emu = cloudglue_emulator_factory(latency_seconds=0.2)
    assert get(emu).elapsed.total_seconds() >= 0.2
    emu.latency_seconds = 0.0
    emu.fault_rate, emu.fault_kinds, emu.slow_seconds = 1.0, ["slow"], 30.0
    session = requests.Session()
    errors: list[BaseException] = []

    def call() -> None:
        try:
            get(emu, session)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.2)
    started = time.monotonic()
    emu.stop()
    t.join(10)
    assert time.monotonic() - started < 5 and not t.is_alive()
    assert errors and isinstance(errors[0], requests.ConnectionError)
    assert not emu.running


# ---------------------------------------------------------- fixtures & CLI


def test_fixture_defaults(cloudglue_emulator: Emulator, cloudglue_emulator_factory: Any) -> None:
    assert cloudglue_emulator.running and cloudglue_emulator.base_url.startswith("http://127.0.0.1:")
    assert cloudglue_emulator.dataset.days == [D1, D2, D3]
    assert get(cloudglue_emulator).json()["total"] == cloudglue_emulator.dataset.total > 0
    other = cloudglue_emulator_factory(start=D4, per_day=5, seed=2, boundary="strict", api_key="k2")
    assert other.dataset.days == [D4, D5, date(2026, 1, 6)] and other.boundary == "strict"
    assert get(other, key="k2").status_code == 200 and other.port != cloudglue_emulator.port
    with pytest.raises(TypeError):
        cloudglue_emulator_factory(dataset=other.dataset, per_day=3)


@pytest.mark.processes
def test_cli_serves_and_stops_on_sigterm() -> None:
    env = {**os.environ, "CLOUDGLUE_API_KEY": "cli-key", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cloudglue_dagster.emulator",
            "--port",
            "0",
            "--start",
            "2026-01-01",
            "--days",
            "3",
            "--per-day",
            "20",
            "--boundary",
            "exclusive",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        m = re.match(
            r"Cloudglue emulator listening on (http://127\.0\.0\.1:(\d+)/v1) "
            r"\((\d+) completions, 2026-01-01\.\.2026-01-03\)",
            line,
        )
        assert m, line
        auth = {"Authorization": "Bearer cli-key"}
        r = requests.get(m.group(1) + "/chat/completions", headers=auth, timeout=5)
        assert r.status_code == 200 and r.json()["total"] == int(m.group(3))
        window = {"created_after": "2026-01-01", "created_before": "2026-01-03"}
        r = requests.get(m.group(1) + "/chat/completions", params=window, headers=auth, timeout=5)
        assert r.json()["total"] == Dataset(D1, D3, per_day=20, seed=0).count(D2)  # exclusive reading
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=10)
    assert rc == 0


def test_cli_text_option() -> None:
    from cloudglue_dagster.emulator.__main__ import build_parser

    assert build_parser().parse_args([]).text == "realistic"
    assert build_parser().parse_args(["--text", "compact"]).text == "compact"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--text", "lorem"])


@pytest.mark.processes
def test_cli_refuses_remote_host() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cloudglue_dagster.emulator", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode == 2 and "--allow-remote" in proc.stderr
