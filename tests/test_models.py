"""Parsing raw API JSON into typed records (pure functions, no HTTP)."""

from __future__ import annotations

import copy
from datetime import datetime, timezone

import pytest

from cloudglue_dagster.errors import InvalidResponseError
from cloudglue_dagster.models import parse_completion, parse_created_at, parse_page

UTC = timezone.utc

RAW = {
    "id": "0b8e7c1e-3f55-4b8a-9d43-6f1f0d7f2a10",
    "created_at": 1767225600000,
    "object": "chat.completion",
    "model": "nimbus-001",
    "usage": {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42},
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hé \"quoted\"\nline", "name": "bot"}}],
    "payload": {
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "what is in the video?"},
        ],
        "temperature": 0.2,
        "filter": {"metadata": [{"path": "speaker", "operator": "Equal", "valueText": "Ana"}]},
        "collections": ["c0ffee00-0000-4000-8000-000000000001"],
    },
}


def raw(**changes: object) -> dict:
    record = copy.deepcopy(RAW)
    record.update(changes)
    return record


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1767225600000, datetime(2026, 1, 1, tzinfo=UTC)),  # ms
        (1767311999999, datetime(2026, 1, 1, 23, 59, 59, 999000, tzinfo=UTC)),  # ms, last ms of day
        (1767225600, datetime(2026, 1, 1, tzinfo=UTC)),  # seconds
        (1767311999.999, datetime(2026, 1, 1, 23, 59, 59, 999000, tzinfo=UTC)),  # float seconds
        (1767311999999.0, datetime(2026, 1, 1, 23, 59, 59, 999000, tzinfo=UTC)),  # float ms
        (99_999_999_999, datetime.fromtimestamp(99_999_999_999, UTC)),  # just under 1e11: seconds
        (100_000_000_000, datetime(1973, 3, 3, 9, 46, 40, tzinfo=UTC)),  # 1e11: milliseconds
        ("2026-01-01T23:59:59.999Z", datetime(2026, 1, 1, 23, 59, 59, 999000, tzinfo=UTC)),
        ("2026-01-02T01:00:00+02:00", datetime(2026, 1, 1, 23, 0, tzinfo=UTC)),
        ("2026-01-01T00:00:00", datetime(2026, 1, 1, tzinfo=UTC)),  # naive string: UTC
    ],
)
def test_created_at_units(value: object, expected: datetime) -> None:
    parsed = parse_created_at(value)
    assert parsed == expected
    assert parsed.tzinfo is not None and parsed.utcoffset().total_seconds() == 0


@pytest.mark.parametrize("value", [True, None, "yesterday", float("nan"), float("inf"), [1], {"t": 1}])
def test_created_at_rejects_garbage(value: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        parse_created_at(value)


def test_created_at_does_not_depend_on_local_time_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # UTC+14
    time.tzset()
    try:
        assert parse_created_at(1767225600000) == datetime(2026, 1, 1, tzinfo=UTC)
        assert parse_created_at(1767225600.0) == datetime(2026, 1, 1, tzinfo=UTC)
    finally:
        monkeypatch.undo()
        time.tzset()


def test_full_record() -> None:
    c = parse_completion(RAW)
    assert c.id == RAW["id"]
    assert c.created_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert c.model == "nimbus-001"
    assert (c.usage.prompt_tokens, c.usage.completion_tokens, c.usage.total_tokens) == (12, 30, 42)
    assert c.usage.reported
    assert c.choices[0].message.content == "Hé \"quoted\"\nline"
    assert c.choices[0].message.name == "bot"
    assert [m.role for m in c.messages] == ["system", "user"]
    assert c.messages[0].name is None
    assert c.temperature == 0.2
    assert c.filter == RAW["payload"]["filter"]
    assert c.collections == ("c0ffee00-0000-4000-8000-000000000001",)


def test_optional_fields_missing_become_none() -> None:
    record = raw(usage={}, payload={})
    c = parse_completion(record)
    assert (c.usage.prompt_tokens, c.usage.completion_tokens, c.usage.total_tokens) == (None, None, None)
    assert not c.usage.reported
    assert c.temperature is None and c.filter is None
    assert c.messages == () and c.collections == ()


def test_partial_usage_and_unknown_fields() -> None:
    record = raw(usage={"total_tokens": 7, "cached_tokens": 3}, brand_new_field={"x": 1})
    record["payload"]["new_knob"] = True
    c = parse_completion(record)
    assert (c.usage.prompt_tokens, c.usage.completion_tokens, c.usage.total_tokens) == (None, None, 7)


@pytest.mark.parametrize(
    ("mutate", "field", "has_id"),
    [
        (lambda r: r.pop("id"), "data[3].id", False),
        (lambda r: r.update(id=17), "data[3].id", False),
        (lambda r: r.update(created_at="soon"), "created_at", True),
        (lambda r: r.pop("created_at"), "created_at", True),
        (lambda r: r.update(created_at=True), "created_at", True),
        (lambda r: r.pop("model"), "model", True),
        (lambda r: r.update(usage=[1, 2]), "usage", True),
        (lambda r: r["usage"].update(total_tokens="42"), "usage.total_tokens", True),
        (lambda r: r["usage"].update(prompt_tokens=1.5), "usage.prompt_tokens", True),
        (lambda r: r.update(choices={"0": {}}), "choices", True),
        (lambda r: r["choices"][0]["message"].update(content=None), "choices[0].message.content", True),
        (lambda r: r["payload"]["messages"][1].update(role=3), "payload.messages[1].role", True),
        (lambda r: r["payload"].update(temperature="hot"), "payload.temperature", True),
        (lambda r: r["payload"].update(collections=[1]), "payload.collections[0]", True),
        (lambda r: r.pop("payload"), "payload", True),
    ],
)
def test_wrong_shape_names_completion_and_field(mutate, field: str, has_id: bool) -> None:
    record = raw()
    mutate(record)
    with pytest.raises(InvalidResponseError) as info:
        parse_page({"object": "list", "data": [raw(id=f"ok-{i}") for i in range(3)] + [record],
                    "total": 4, "limit": 100, "offset": 0})
    assert info.value.field == field
    assert info.value.completion_id == (RAW["id"] if has_id else None)
    assert field in str(info.value)
    if has_id:
        assert RAW["id"] in str(info.value)


def test_integral_float_tokens_are_integers() -> None:
    c = parse_completion(raw(usage={"prompt_tokens": 3.0}))
    assert c.usage.prompt_tokens == 3 and isinstance(c.usage.prompt_tokens, int)


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"data": [], "limit": 1, "offset": 0},
        {"data": {}, "total": 0, "limit": 1, "offset": 0},
        {"data": [], "total": "3", "limit": 1, "offset": 0},
        {"data": [], "total": -1, "limit": 1, "offset": 0},
    ],
)
def test_bad_envelope(body: object) -> None:
    with pytest.raises(InvalidResponseError):
        parse_page(body)


def test_page() -> None:
    page = parse_page({"object": "list", "data": [RAW], "total": 250, "limit": 100, "offset": 100})
    assert (page.total, page.limit, page.offset, len(page.data)) == (250, 100, 100, 1)
