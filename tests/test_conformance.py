"""The official ``cloudglue`` SDK, an independent reading of the spec, accepts the emulator.

* its pydantic models parse every page the emulator serves, in every
  timestamp unit the spec's ``number`` allows (ms, s);
* its own client lists through the emulator and gets the expected records;
* its client surfaces a 401 for a wrong key;
* the same for ``GET /v1/responses``: its ``ResponseList`` model parses every page in each
  integer unit (``int-s``, ``ms``), and its client lists (and deletes) through the emulator.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
import requests

pytest.importorskip("cloudglue")

from cloudglue import Cloudglue  # noqa: E402
from cloudglue.client.resources.base import CloudglueError  # noqa: E402
from cloudglue.sdk.models.chat_completion_list import ChatCompletionList  # noqa: E402
from cloudglue.sdk.models.response_list import ResponseList  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from cloudglue_dagster.emulator import Dataset, Emulator, ResponsesDataset  # noqa: E402
from cloudglue_dagster.emulator.faults import FaultPlan  # noqa: E402

KEY = "conformance-key"
D1, D2, D7 = date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 7)


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    """7 days x ~150 completions (every optional-field variant occurs)."""
    with Emulator(Dataset(D1, D7, per_day=150, seed=11), api_key=KEY) as e:
        yield e


def _pages(emu: Emulator, path: str = "chat/completions", **filters: Any) -> Iterator[requests.Response]:
    offset = 0
    with requests.Session() as s:
        s.headers["Authorization"] = f"Bearer {KEY}"
        while True:
            params = {"limit": 100, "offset": offset, **filters}
            r = s.get(f"{emu.base_url}/{path}", params=params, timeout=10)
            r.raise_for_status()
            yield r
            n = len(r.json()["data"])
            offset += n
            if n == 0 or offset >= r.json()["total"]:
                return


def _variants(record: dict[str, Any]) -> set[str]:
    """Labels of the optional-field variants a raw record exhibits."""
    usage_keys = tuple(sorted(k for k in record["usage"] if k.endswith("_tokens")))
    out = {f"usage:{','.join(usage_keys) or 'empty'}"}
    payload = record["payload"]
    out.add("temperature" if "temperature" in payload else "no-temperature")
    out |= {f"filter:{k}" for k in payload.get("filter", {})} or {"no-filter"}
    if any("name" in c["message"] for c in record["choices"]):
        out.add("choice-name")
    if any("name" in m for m in payload["messages"]):
        out.add("message-name")
    if len(record["choices"]) == 2:
        out.add("two-choices")
    if set(record) - {"id", "created_at", "object", "model", "usage", "choices", "payload"}:
        out.add("unknown-field")
    return out


@pytest.mark.parametrize("unit", ["ms", "s"])
def test_sdk_models_parse_every_page(emu: Emulator, unit: str) -> None:
    emu.timestamp_unit = unit
    try:
        seen: set[str] = set()
        ids: list[str] = []
        for r in _pages(emu):
            parsed = ChatCompletionList.from_json(r.text)
            again = ChatCompletionList.from_dict(r.json())
            assert parsed is not None and parsed == again
            assert parsed.total == emu.dataset.total and len(parsed.data) == len(r.json()["data"])
            for raw, model in zip(r.json()["data"], parsed.data):
                assert model.id == raw["id"] and model.created_at == raw["created_at"]
                assert isinstance(model.created_at, int if unit == "ms" else float)
                assert model.usage.total_tokens == raw["usage"].get("total_tokens")
                seen |= _variants(raw)
            ids.extend(m.id for m in parsed.data)
        assert len(ids) == len(set(ids)) == emu.dataset.total
        expected = {
            "usage:completion_tokens,prompt_tokens,total_tokens",
            "usage:empty",
            "usage:total_tokens",
            "usage:completion_tokens,prompt_tokens",
            "temperature",
            "no-temperature",
            "no-filter",
            "filter:metadata",
            "filter:video_info",
            "filter:file",
            "choice-name",
            "message-name",
            "two-choices",
            "unknown-field",
        }
        assert expected <= seen, expected - seen
    finally:
        emu.timestamp_unit = "ms"


def test_iso_unit_is_outside_the_spec(emu: Emulator) -> None:
    """The ``iso`` unit is a robustness extra: the spec's models reject it."""
    emu.timestamp_unit = "iso"
    try:
        r = next(_pages(emu))
        with pytest.raises(ValidationError):
            ChatCompletionList.from_json(r.text)
    finally:
        emu.timestamp_unit = "ms"


def test_sdk_client_lists_through_the_emulator(emu: Emulator) -> None:
    client = Cloudglue(api_key=KEY, host=emu.base_url)  # not closed: the SDK's close() is broken
    truth = emu.ground_truth(D2)
    page = client.chat.completions.list(limit=10, offset=5, created_after="2026-03-02", created_before="2026-03-02")
    assert isinstance(page, ChatCompletionList)
    assert page.total == truth.count and page.offset == 5 and page.limit == 10 and len(page.data) == 10
    assert {c.id for c in page.data} <= truth.ids
    raw = next(_pages(emu, created_after="2026-03-02", created_before="2026-03-02"))
    assert [c.id for c in page.data] == [r["id"] for r in raw.json()["data"][5:15]]
    got: list[str] = []
    while len(got) < truth.count:
        p = client.chat.completions.list(limit=100, offset=len(got), created_after=D2, created_before=D2)
        got.extend(c.id for c in p.data)
    assert set(got) == truth.ids and len(got) == truth.count
    everything = client.chat.completions.list(limit=100)
    assert everything.total == emu.dataset.total and len(everything.data) == 100


def test_sdk_client_wrong_key_gets_401(emu: Emulator) -> None:
    client = Cloudglue(api_key="not-the-key", host=emu.base_url)
    with pytest.raises(CloudglueError) as info:
        client.chat.completions.list(limit=1)
    assert info.value.status_code == 401
    assert "not-the-key" not in str(info.value.data)


def test_sdk_retries_a_429_with_retry_after() -> None:
    """README: the SDK (urllib3) retries 429/503 that carry Retry-After."""
    seed = next(s for s in range(1000) if FaultPlan.draw(s, 0)[0] < 0.5 <= FaultPlan.draw(s, 1)[0])
    ds = Dataset(D1, D1, per_day=10, seed=0)
    with Emulator(ds, api_key=KEY, fault_rate=0.5, fault_seed=seed, fault_kinds=["429"], retry_after_seconds=0) as e:
        page = Cloudglue(api_key=KEY, host=e.base_url).chat.completions.list(limit=5)
        assert page.total == ds.total
        assert [x.status for x in e.request_log] == [429, 200]


# ---------------------------------------------------------------- responses


@pytest.fixture(scope="module")
def resp_emu() -> Iterator[Emulator]:
    """7 days x ~80 responses, 10% in progress (every optional-field variant occurs)."""
    responses = ResponsesDataset(D1, D7, per_day=80, seed=11, in_progress_rate=0.1)
    with Emulator(Dataset(D1, D7, per_day=10, seed=11), responses=responses, api_key=KEY) as e:
        yield e


def _response_variants(record: dict[str, Any]) -> set[str]:
    """Labels of the optional-field variants a raw response exhibits."""
    out = {f"status:{record['status']}"}
    usage = record.get("usage")
    out.add("no-usage" if usage is None else f"usage:{','.join(sorted(usage)) or 'empty'}")
    if "instructions" not in record:
        out.add("no-instructions")
    else:
        out.add("instructions" if record["instructions"] is not None else "null-instructions")
    if set(record) - {"id", "object", "status", "created_at", "model", "instructions", "usage"}:
        out.add("unknown-field")
    return out


@pytest.mark.parametrize("unit", ["int-s", "ms"])
def test_sdk_response_list_model_parses_every_page(resp_emu: Emulator, unit: str) -> None:
    resp_emu.responses_timestamp_unit = unit
    try:
        seen: set[str] = set()
        ids: list[str] = []
        for r in _pages(resp_emu, "responses"):
            parsed = ResponseList.from_json(r.text)
            assert parsed is not None and parsed == ResponseList.model_validate(r.json())
            assert parsed.total == resp_emu.responses.total and len(parsed.data or []) == len(r.json()["data"])
            for raw, model in zip(r.json()["data"], parsed.data or []):
                assert model.id == raw["id"] and model.created_at == raw["created_at"]
                assert model.status == raw["status"] and model.instructions == raw.get("instructions")
                assert (model.created_at > 10**12) == (unit == "ms")
                usage = raw.get("usage")
                assert (model.usage is None) == (usage is None)
                if model.usage is not None:
                    assert model.usage.total_tokens == usage.get("total_tokens")
                    assert model.usage.input_tokens == usage.get("input_tokens")
                seen |= _response_variants(raw)
            ids.extend(m.id for m in parsed.data or [] if m.id)
        assert len(ids) == len(set(ids)) == resp_emu.responses.total
        counts = ("input_tokens", "output_tokens", "total_tokens")
        expected = {f"status:{s}" for s in ("in_progress", "completed", "failed", "cancelled")}
        expected |= {"no-usage", f"usage:{','.join(counts)}", "no-instructions", "null-instructions"}
        expected |= {"instructions", "unknown-field"}
        expected |= {f"usage:{','.join(c for c in counts if c != gone)}" for gone in counts}
        assert expected <= seen, expected - seen
    finally:
        resp_emu.responses_timestamp_unit = "int-s"


def test_sdk_client_lists_and_deletes_responses_through_the_emulator(cloudglue_emulator_factory: Any) -> None:
    emu = cloudglue_emulator_factory(start=D1, per_day=120, api_key=KEY, in_progress_rate=0.2)
    client = Cloudglue(api_key=KEY, host=emu.base_url)  # not closed: the SDK's close() is broken
    truth = emu.responses_ground_truth(D2)
    page = client.responses.list(limit=10, offset=2, created_after="2026-03-02", created_before="2026-03-02")
    assert isinstance(page, ResponseList)
    assert page.total == truth.count and page.offset == 2 and page.limit == 10 and len(page.data or []) == 10
    raw = next(_pages(emu, "responses", created_after="2026-03-02", created_before="2026-03-02"))
    assert [x.id for x in page.data or []] == [r["id"] for r in raw.json()["data"][2:12]]
    got: list[str] = []
    while len(got) < truth.count:
        p = client.responses.list(limit=100, offset=len(got), created_after="2026-03-02", created_before="2026-03-02")
        got.extend(x.id for x in p.data or [] if x.id)
    assert set(got) == truth.ids and len(got) == truth.count
    running = client.responses.list(limit=100, status="in_progress")
    days = emu.responses_ground_truth_range(D1, emu.responses.end).values()
    assert running.total == sum(t.by_status.get("in_progress", 0) for t in days) > 0
    assert {x.status for x in running.data or []} == {"in_progress"}
    gone = got[0]
    result = client.responses.delete(gone)
    assert (result.id, result.object, result.deleted) == (gone, "response", True)
    assert gone not in emu.responses_ground_truth(D2).ids
    with pytest.raises(CloudglueError) as info:
        client.responses.delete(gone)
    assert info.value.status_code == 404


@pytest.mark.parametrize("unit", ["s", "iso"])
def test_non_integer_units_are_outside_the_responses_schema(resp_emu: Emulator, unit: str) -> None:
    """The SDK types a response's ``created_at`` as an integer: float seconds and ISO strings fail."""
    resp_emu.responses_timestamp_unit = unit
    try:
        with pytest.raises(ValidationError):
            ResponseList.from_json(next(_pages(resp_emu, "responses")).text)
    finally:
        resp_emu.responses_timestamp_unit = "int-s"
