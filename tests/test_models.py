"""Parsing raw API JSON into typed records (pure functions, no HTTP)."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone

import pytest

from cloudglue_dagster.api.decoding import decode_page
from cloudglue_dagster.api.models import ChatCompletion, ChatMessage, Choice, CompletionJSON, Usage, parse_created_at
from cloudglue_dagster.api.parsing import parse_completion, parse_page
from cloudglue_dagster.errors import InvalidResponseError

UTC = timezone.utc

RAW = {
    "id": "0b8e7c1e-3f55-4b8a-9d43-6f1f0d7f2a10",
    "created_at": 1767225600000,
    "object": "chat.completion",
    "model": "nimbus-001",
    "usage": {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42},
    "choices": [{"index": 0, "message": {"role": "assistant", "content": 'Hé "quoted"\nline', "name": "bot"}}],
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
    assert c.choices[0].message.content == 'Hé "quoted"\nline'
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
@pytest.mark.parametrize("as_bytes", [False, True], ids=["decoded", "bytes"])
def test_wrong_shape_names_completion_and_field(mutate, field: str, has_id: bool, as_bytes: bool) -> None:
    record = raw()
    mutate(record)
    body = {
        "object": "list",
        "data": [raw(id=f"ok-{i}") for i in range(3)] + [record],
        "total": 4,
        "limit": 100,
        "offset": 0,
    }
    with pytest.raises(InvalidResponseError) as info:
        parse_page(compact(body) if as_bytes else body)
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


# -- the fast path (bytes -> records) and the careful path (json.loads -> records) agree ---------


def compact(value: object) -> bytes:
    """JSON as the emulator (and, the spec suggests, the API) writes it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def spelled(value: object) -> str:
    """The text of a JSON column, as it always was: json's compact spelling of the value."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def page_of(*records: dict) -> dict:
    return {"object": "list", "data": list(records), "total": len(records), "limit": 100, "offset": 0}


AWKWARD = 'Zoë 视频 🎬 "q" \\ back\\u2028 \n\r\t\b\f \x01\x1f \x7f \u2028\u2029 </script> \\/ é'
VARIANTS = [
    raw(),
    raw(
        id="awkward",
        choices=[{"index": 0, "message": {"role": "assistant", "content": AWKWARD}}],
        payload={
            "messages": [{"role": "user", "content": AWKWARD, "name": "zoë"}],
            "collections": ["c-é"],
            "filter": {"metadata": [{"path": "speaker", "valueText": AWKWARD}]},
        },
    ),
    raw(id="sparse", usage={"total_tokens": 7}, payload={}),
    raw(
        id="nulls",
        usage={"prompt_tokens": None},
        payload={"messages": None, "collections": None, "filter": None, "temperature": None},
    ),
    raw(id="empty", choices=[], payload={"messages": [], "collections": []}),
    raw(id="name-null", choices=[{"index": 0, "message": {"role": "assistant", "content": "x", "name": None}}]),
    raw(
        id="grown",
        usage={"total_tokens": 3, "prompt_tokens_details": {"cached_tokens": 1}},
        choices=[
            {
                "index": 1,
                "message": {"role": "assistant", "content": "a", "refusal": None},
                "finish_reason": "stop",
                "logprobs": {"content": [{"token": "a", "logprob": -1e-07}]},
            },
            {"message": {"content": "b", "role": "assistant"}, "index": 0},
        ],
        payload={
            "messages": [{"content": "q", "role": "user", "attachments": [{"kind": "video", "seconds": 2.5}]}],
            "collections": ["c1"],
            "temperature": 1,
            "new_knob": [1.5, -0.0, 10**20],
            "filter": {"file": [{"path": "bytes", "operator": "GreaterThan", "valueNumber": 1048576.0}]},
        },
        system_fingerprint="fp_1",
    ),
    raw(id="seconds", created_at=1767225600.25),
    raw(id="iso", created_at="2026-01-01T00:00:00.250Z"),
    raw(id="small-int", created_at=1767225600, payload={"temperature": 0}),
]


def assert_same_records(fast: object, careful: object) -> None:
    assert fast == careful
    for a, b in zip(fast.data, careful.data):
        assert a.raw == b.raw
        assert (a.created_at, a.temperature, type(a.temperature)) == (b.created_at, b.temperature, type(b.temperature))


@pytest.mark.parametrize(
    "dumps",
    [compact, lambda v: json.dumps(v).encode(), lambda v: json.dumps(v, indent=2).encode()],
    ids=["compact", "ascii-spaced", "indented"],
)
def test_fast_path_reads_a_page_as_the_careful_path_does(dumps) -> None:
    body = dumps(page_of(*VARIANTS))
    fast = decode_page(body)
    assert fast is not None
    assert_same_records(fast, parse_page(json.loads(body)))
    assert_same_records(parse_page(body), fast)


def test_json_columns_keep_their_spelling_whatever_the_api_spacing_or_escaping() -> None:
    """The text is json's compact spelling of the API's value, on either path: the API's
    own bytes when they are that already, a re-encoding when they are not (spaces, \\u
    escapes, a float json spells otherwise, an unknown field in another order)."""
    for dumps in (compact, lambda v: json.dumps(v).encode()):
        for c in decode_page(dumps(page_of(*VARIANTS))).data:
            source = next(v for v in VARIANTS if v["id"] == c.id)
            payload = source["payload"]
            assert c.raw == CompletionJSON(
                spelled(payload.get("messages") or []),
                spelled(source["choices"]),
                spelled(payload.get("collections") or []),
                None if payload.get("filter") is None else spelled(payload["filter"]),
            )
    grown = decode_page(compact(page_of(VARIANTS[6]))).data[0]
    assert '"logprob":-1e-07' in grown.raw.choices and '"seconds":2.5' in grown.raw.payload_messages
    assert '"valueNumber":1048576.0' in grown.raw.filter and grown.filter == VARIANTS[6]["payload"]["filter"]


def test_numbers_spelled_otherwise_by_the_api_are_spelled_as_json_does() -> None:
    body = compact(page_of(VARIANTS[6]))
    for ours, theirs in (
        (b"-1e-07", b"-1e-7"),
        (b"1048576.0", b"1.048576E6"),
        (b"-0.0", b"-0.00"),
        (b'"index":0', b'"index":-0'),
    ):
        assert ours in body
        body = body.replace(ours, theirs)
    fast = decode_page(body)
    assert fast is not None
    assert_same_records(fast, parse_page(json.loads(body)))
    c = fast.data[0]
    assert '"logprob":-1e-07' in c.raw.choices and c.raw.choices.endswith('"index":0}]')
    assert '"valueNumber":1048576.0' in c.raw.filter


def test_a_compact_page_passes_the_apis_bytes_through() -> None:
    body = compact(page_of(*VARIANTS))
    for c in decode_page(body).data:
        for text in (c.raw.payload_messages, c.raw.choices, c.raw.collections, c.raw.filter):
            assert text is None or text == "[]" or text.encode() in body


@pytest.mark.parametrize(
    ("record", "why"),
    [
        (raw(usage={"prompt_tokens": 3.0}), "an integral float token count"),
        (raw(choices=[{"index": 0.0, "message": {"role": "assistant", "content": "x"}}]), "an integral float index"),
        (raw(choices=[{"index": 0, "message": {"role": "assistant", "content": "\ud800"}}]), "a lone surrogate"),
    ],
)
def test_what_the_fast_path_does_not_take_the_careful_path_reads(record: dict, why: str) -> None:
    body = json.dumps(page_of(record)).encode()  # json.dumps escapes the surrogate: valid JSON
    assert decode_page(body) is None, why
    assert_same_records(parse_page(body), parse_page(json.loads(body)))


def test_a_utf8_bom_is_read_as_json_reads_it() -> None:
    body = b"\xef\xbb\xbf" + compact(page_of(RAW))
    assert decode_page(body) is None
    assert parse_page(body).data[0].id == RAW["id"]


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (b'"temperature":NaN', "payload.temperature"),
        (b'"temperature":Infinity', "payload.temperature"),
        (b'"temperature":1e400', "payload.temperature"),
        (b'"temperature":%d' % 2**60, "payload.temperature"),
        (b'"temperature":true', "payload.temperature"),
    ],
)
def test_temperatures_that_are_not_finite_numbers_are_refused(text: bytes, field: str) -> None:
    body = compact(page_of(RAW)).replace(b'"temperature":0.2', text)
    assert decode_page(body) is None
    with pytest.raises(InvalidResponseError) as info:
        parse_page(body)
    assert (info.value.field, info.value.completion_id) == (field, RAW["id"])


@pytest.mark.parametrize(
    ("record", "field"),
    [
        (raw(usage={"total_tokens": 2**63}), "usage.total_tokens"),
        (raw(usage={"prompt_tokens": -(2**63) - 1}), "usage.prompt_tokens"),
        (raw(usage={"completion_tokens": 2**70}), "usage.completion_tokens"),
        (raw(choices=[{"index": 2**64, "message": {"role": "assistant", "content": "x"}}]), "choices[0].index"),
    ],
)
def test_integers_beyond_64_bits_are_refused_on_either_path(record: dict, field: str) -> None:
    body = compact(page_of(record))
    assert decode_page(body) is None
    with pytest.raises(InvalidResponseError) as info:
        parse_page(body)
    assert (info.value.field, info.value.completion_id) == (field, RAW["id"])


def test_64_bit_extremes_are_read() -> None:
    record = raw(
        usage={"prompt_tokens": 2**63 - 1, "completion_tokens": -(2**63), "total_tokens": 0},
        choices=[{"index": 2**63 - 1, "message": {"role": "assistant", "content": "x"}}],
    )
    body = compact({**page_of(record), "total": 2**63 - 1, "offset": 2**63 - 1, "limit": -(2**63)})
    assert_same_records(decode_page(body), parse_page(json.loads(body)))


@pytest.mark.parametrize("envelope", [{"total": 2**63}, {"offset": -1}, {"total": -1}, {"limit": 1.0}, {"data": {}}])
def test_bad_envelope_bytes(envelope: dict) -> None:
    body = compact({**page_of(RAW), **envelope})
    assert decode_page(body) is None
    with pytest.raises(InvalidResponseError):
        parse_page(body)


def test_hostile_bodies_never_crash_the_fast_path() -> None:
    """A 5,000-digit integer or 100,000-deep nesting: the fast path gives up, and json's own
    error is what the transport turns into an InvalidResponseError."""
    long_integer = b'{"object":"list","data":[],"limit":100,"offset":0,"total":' + b"9" * 5000 + b"}"
    deep = b"[" * 100_000 + b"]" * 100_000
    deep_in_a_column = compact(page_of(RAW)).replace(
        b'"collections":[', b'"collections":' + b"[" * 100_000 + b'"x"' + b"]" * 100_000 + b',"c":['
    )
    for body, error in ((long_integer, ValueError), (deep, RecursionError), (deep_in_a_column, RecursionError)):
        assert decode_page(body) is None
        with pytest.raises(error):
            parse_page(body)
    assert decode_page(b"\xff\xfe") is None and decode_page(b"") is None and decode_page(b'{"data":[') is None


def test_an_empty_page() -> None:
    body = compact({"object": "list", "data": [], "total": 0, "limit": 100, "offset": 0})
    assert decode_page(body) == parse_page(json.loads(body))


def test_records_compare_hash_and_print_without_their_raw_json() -> None:
    a = parse_completion(raw(payload={"messages": [{"role": "user", "content": "q"}]}))
    b = decode_page(json.dumps(page_of(raw(payload={"messages": [{"role": "user", "content": "q"}]}))).encode()).data[0]
    assert a == b and hash(a) == hash(b) and a != "x"
    assert "raw" not in repr(a) and repr(a).startswith(
        f"ChatCompletion(id={RAW['id']!r}, created_at=datetime.datetime("
    )
    with pytest.raises(AttributeError):
        a.id = "other"  # type: ignore[misc]
    assert ChatMessage("user", "q") == ChatMessage(role="user", content="q", name=None)
    assert Choice(0, ChatMessage("assistant", "a")).message.content == "a"
    assert repr(Usage(1)) == "Usage(prompt_tokens=1, completion_tokens=None, total_tokens=None)"
    assert isinstance(b, ChatCompletion) and isinstance(b.raw.choices, str)
