"""Typed records parsed from the API's JSON.

Standard library plus msgspec, no Dagster. Parsing is strict where the spec says a field is
required and lenient where it says optional: a missing optional field becomes None, an
unknown field is ignored (the API grows), and a field of the wrong type raises
:class:`~cloudglue_dagster.errors.InvalidResponseError` naming the completion id and the
field's path.

Two paths, one result. :func:`decode_page` reads a page's bytes straight into the records
with msgspec, the JSON columns passed through as the API's own text; it takes only bodies
that are well formed, and gives up (None) on anything else. The careful path,
``json.loads`` then :func:`parse_page`, reads everything else and explains what is wrong
with it, field by field. Whatever the fast path accepts, the careful path accepts too and
builds the same records from it.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

import msgspec

from .errors import InvalidResponseError

__all__ = [
    "ChatCompletion",
    "CompletionJSON",
    "ChatCompletionPage",
    "ChatMessage",
    "Choice",
    "Usage",
    "decode_page",
    "parse_created_at",
    "parse_completion",
    "parse_page",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# The list schema only says "number"; the rest of the spec documents
# created_at as epoch milliseconds. Below 1e11 a value cannot be a plausible
# millisecond time (1e11 ms is 1973-03-03) but is a plausible second time
# (1e11 s is the year 5138), so smaller numbers are read as seconds.
_MILLISECONDS_THRESHOLD = 1e11

# Integers are stored as 64-bit (pandas Int64, DuckDB BIGINT): a larger one is refused here,
# naming its completion, rather than overflowing later in a frame or the warehouse.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_Int64 = Annotated[int, msgspec.Meta(ge=_INT64_MIN, le=_INT64_MAX)]
_Count = Annotated[int, msgspec.Meta(ge=0, le=_INT64_MAX)]

# The records are msgspec Structs: the fast path decodes JSON straight into them, and one
# costs a tenth of a frozen dataclass to build. They behave as the frozen dataclasses they
# replace did: same fields, positional or keyword construction, immutable, compared and
# hashed by value. The leaves hold only strings and numbers, so they need not be tracked by
# the cyclic garbage collector (gc=False).


class ChatMessage(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """One message: ``role`` (system, user or assistant), ``content``, optional ``name``."""

    role: str
    content: str
    name: str | None = None


class Choice(msgspec.Struct, frozen=True, gc=False):
    """One answer of a completion: its ``index`` and its ``message``."""

    index: _Int64
    message: ChatMessage


class Usage(msgspec.Struct, frozen=True, gc=False):
    """Token counts of a completion. The API may omit any of them: None means not reported."""

    prompt_tokens: _Int64 | None = None
    completion_tokens: _Int64 | None = None
    total_tokens: _Int64 | None = None

    @property
    def reported(self) -> bool:
        """True when the API reported at least one of the three counts."""
        return not (self.prompt_tokens is None and self.completion_tokens is None and self.total_tokens is None)


class CompletionJSON(msgspec.Struct, frozen=True, gc=False):
    """The parts of a completion kept as JSON text (the JSON columns of ``chat_completions``).

    Each is the text ``json.dumps(value, ensure_ascii=False, separators=(",", ":"))`` makes
    of the API's value, unknown fields included: compact, unicode unescaped. The fast path
    passes the API's own bytes through when they already are that text (the usual case) and
    re-encodes them otherwise, so the text does not depend on the path.

    Attributes:
        payload_messages: ``payload.messages``; ``[]`` when absent or null.
        choices: ``choices``.
        collections: ``payload.collections``; ``[]`` when absent or null.
        filter: ``payload.filter``; None when absent or null.
    """

    payload_messages: str
    choices: str
    collections: str
    filter: str | None


class ChatCompletion(msgspec.Struct, frozen=True):
    """A stored chat completion.

    Attributes:
        id: the completion's id.
        created_at: when it was created, timezone-aware, in UTC.
        model: the model that answered.
        usage: token counts (each may be None).
        choices: the answers, in the order the API gave them.
        messages: the prompt's messages (``payload.messages``).
        temperature: ``payload.temperature``, or None when absent.
        filter: ``payload.filter`` as decoded JSON, or None when absent.
        collections: ``payload.collections`` (collection ids).
        raw: the API's JSON text of ``payload.messages``, ``choices``,
            ``payload.collections`` and ``payload.filter`` (:class:`CompletionJSON`),
            unknown fields included. Fields of the completion that no attribute holds are
            not kept. Not part of equality, hashing or the repr.
    """

    id: str
    created_at: datetime
    model: str
    usage: Usage
    choices: tuple[Choice, ...]
    messages: tuple[ChatMessage, ...]
    temperature: float | None
    filter: Mapping[str, Any] | None
    collections: tuple[str, ...]
    raw: CompletionJSON

    def _key(self) -> tuple:
        return (
            self.id,
            self.created_at,
            self.model,
            self.usage,
            self.choices,
            self.messages,
            self.temperature,
            self.filter,
            self.collections,
        )

    def __eq__(self, other: object) -> bool:
        if type(other) is not ChatCompletion:
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"ChatCompletion(id={self.id!r}, created_at={self.created_at!r}, model={self.model!r},"
            f" usage={self.usage!r}, choices={self.choices!r}, messages={self.messages!r},"
            f" temperature={self.temperature!r}, filter={self.filter!r}, collections={self.collections!r})"
        )


class ChatCompletionPage(msgspec.Struct, frozen=True):
    """One page of ``GET /chat/completions``.

    Attributes:
        data: the completions of this page.
        total: how many completions match the filters, over all pages.
        limit: the page size the server applied (it may cap what was asked).
        offset: how many matching completions precede this page.
    """

    data: tuple[ChatCompletion, ...]
    total: int
    limit: int
    offset: int


def parse_created_at(value: Any) -> datetime:
    """Read an API timestamp as a timezone-aware UTC datetime.

    Numbers >= 1e11 are epoch milliseconds, smaller numbers epoch seconds;
    ISO-8601 strings are accepted too (a string without an offset is UTC).

    Raises:
        ValueError: the value is not a finite number or an ISO-8601 string.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a number or ISO-8601 string, got {value!r}")
    if isinstance(value, int):
        if abs(value) >= _MILLISECONDS_THRESHOLD:
            return _EPOCH + timedelta(milliseconds=value)
        return _EPOCH + timedelta(seconds=value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {value!r}")
        # Whole microseconds, rounded once, without the local-time detour of
        # datetime.fromtimestamp.
        scale = 1_000 if abs(value) >= _MILLISECONDS_THRESHOLD else 1_000_000
        return _EPOCH + timedelta(microseconds=round(value * scale))
    if isinstance(value, str):
        text = value.strip()
        # Python 3.10's fromisoformat does not read a trailing "Z".
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=timezone.utc)
        return parsed.astimezone(timezone.utc)
    raise ValueError(f"expected a number or ISO-8601 string, got {type(value).__name__}")


# The JSON columns' text: compact, unicode kept readable (ensure_ascii=False). One encoder
# for every call: json.dumps with options builds a new one per call.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _short(value: Any, width: int = 60) -> str:
    """``repr(value)`` cut to ``width`` characters (a hostile value can be megabytes long)."""
    text = (
        repr(value)
        if not (type(value) is int and abs(value) > 10**width)
        else f"<integer of {len(str(abs(value)))} digits>"
    )
    return text if len(text) <= width else text[: width - 1] + "…"


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return f"number {value!r}"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


# The parser below is on the hot path (hundreds of thousands of records per
# backfill): each check is an inline ``type(x) is ...`` test, and a field's
# path is spelled out only when it is wrong.


def _wrong(completion_id: str | None, path: str, expected: str, value: Any) -> InvalidResponseError:
    if value is None:
        return InvalidResponseError(
            f"required field is missing (expected {expected})", completion_id=completion_id, field=path
        )
    return InvalidResponseError(
        f"expected {expected}, got {_type_name(value)}", completion_id=completion_id, field=path
    )


def _int64(value: int, completion_id: str | None, path: str) -> int:
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise InvalidResponseError(
            f"integer {value if abs(value) < 10**30 else f'of {len(str(abs(value)))} digits'} is out of"
            " the 64-bit range",
            completion_id=completion_id,
            field=path,
        )
    return value


def _token(value: Any, completion_id: str, key: str) -> int | None:
    """An optional token count: None, an int, or an integral float, within 64 bits."""
    if value is None:
        return None
    if type(value) is int:
        return _int64(value, completion_id, f"usage.{key}")
    if type(value) is float and value.is_integer():
        return _int64(int(value), completion_id, f"usage.{key}")
    raise _wrong(completion_id, f"usage.{key}", "an integer", value)


def _message(raw: Any, completion_id: str, path: Callable[[], str]) -> ChatMessage:
    if type(raw) is not dict:
        raise _wrong(completion_id, path(), "an object", raw)
    role, content, name = raw.get("role"), raw.get("content"), raw.get("name")
    if type(role) is not str:
        raise _wrong(completion_id, f"{path()}.role", "a string", role)
    if type(content) is not str:
        raise _wrong(completion_id, f"{path()}.content", "a string", content)
    if name is not None and type(name) is not str:
        raise _wrong(completion_id, f"{path()}.name", "a string", name)
    return ChatMessage(role, content, name)


def parse_completion(raw: Any, *, position: str = "data[]") -> ChatCompletion:
    """Parse one completion object of a list page.

    Args:
        raw: the decoded JSON object.
        position: where it sits in the body, used in errors when it has no id.

    Raises:
        InvalidResponseError: a required field is missing or a field has the
            wrong type; the error names the completion id and the field path.
    """
    if type(raw) is not dict:
        raise InvalidResponseError(f"expected a completion object, got {_type_name(raw)}", field=position)
    cid = raw.get("id")
    if type(cid) is not str or not cid:
        raise InvalidResponseError(
            "completion has no id" if cid is None else f"expected a non-empty string id, got {_type_name(cid)}",
            field=f"{position}.id",
        )

    created_raw = raw.get("created_at")
    if created_raw is None:
        raise _wrong(cid, "created_at", "timestamp", None)
    try:
        created_at = parse_created_at(created_raw)
    except (ValueError, OverflowError) as exc:
        raise InvalidResponseError(
            f"unreadable timestamp {_short(created_raw)}: {exc}", completion_id=cid, field="created_at"
        ) from None

    model = raw.get("model")
    if type(model) is not str:
        raise _wrong(cid, "model", "a string", model)

    usage = raw.get("usage")
    if type(usage) is not dict:
        raise _wrong(cid, "usage", "an object", usage)
    usage_record = Usage(
        _token(usage.get("prompt_tokens"), cid, "prompt_tokens"),
        _token(usage.get("completion_tokens"), cid, "completion_tokens"),
        _token(usage.get("total_tokens"), cid, "total_tokens"),
    )

    raw_choices = raw.get("choices")
    if type(raw_choices) is not list:
        raise _wrong(cid, "choices", "an array", raw_choices)
    choices = []
    for i, choice in enumerate(raw_choices):
        if type(choice) is not dict:
            raise _wrong(cid, f"choices[{i}]", "an object", choice)
        index = choice.get("index")
        if type(index) is not int:
            if type(index) is not float or not index.is_integer():
                raise _wrong(cid, f"choices[{i}].index", "an integer", index)
            index = int(index)
        _int64(index, cid, f"choices[{i}].index")
        choices.append(Choice(index, _message(choice.get("message"), cid, lambda i=i: f"choices[{i}].message")))

    payload = raw.get("payload")
    if type(payload) is not dict:
        raise _wrong(cid, "payload", "an object", payload)
    raw_messages = payload.get("messages")
    if raw_messages is None:
        raw_messages = []
    elif type(raw_messages) is not list:
        raise _wrong(cid, "payload.messages", "an array", raw_messages)
    messages = tuple(_message(m, cid, lambda i=i: f"payload.messages[{i}]") for i, m in enumerate(raw_messages))
    collections = payload.get("collections")
    if collections is None:
        collections = ()
    elif type(collections) is not list:
        raise _wrong(cid, "payload.collections", "an array", collections)
    else:
        for i, collection in enumerate(collections):
            if type(collection) is not str:
                raise _wrong(cid, f"payload.collections[{i}]", "a string", collection)
    temperature = payload.get("temperature")
    if temperature is not None:
        if type(temperature) is int and abs(temperature) > 2**53:
            temperature = math.inf  # not a temperature; refused below
        if type(temperature) not in (int, float) or not math.isfinite(temperature):
            raise InvalidResponseError(
                f"expected a finite number, got {_type_name(temperature)}",
                completion_id=cid,
                field="payload.temperature",
            )
        temperature = float(temperature)
    filter_ = payload.get("filter")
    if filter_ is not None and type(filter_) is not dict:
        raise _wrong(cid, "payload.filter", "an object", filter_)

    return ChatCompletion(
        id=cid,
        created_at=created_at,
        model=model,
        usage=usage_record,
        choices=tuple(choices),
        messages=messages,
        temperature=temperature,
        filter=filter_,
        collections=tuple(collections),
        raw=CompletionJSON(
            _encode(raw_messages),
            _encode(raw_choices),
            _encode(payload.get("collections") or []),
            None if filter_ is None else _encode(filter_),
        ),
    )


def _parse_guarded(item: Any, i: int) -> ChatCompletion:
    """:func:`parse_completion`, with any unforeseen failure (a recursion limit, an overflow)
    turned into an :class:`InvalidResponseError` naming the completion: nothing else leaves."""
    try:
        return parse_completion(item, position=f"data[{i}]")
    except InvalidResponseError:
        raise
    except Exception as exc:  # noqa: BLE001
        cid = item.get("id") if type(item) is dict and type(item.get("id")) is str else None
        raise InvalidResponseError(
            f"unreadable completion ({type(exc).__name__})", completion_id=cid, field=None if cid else f"data[{i}]"
        ) from None


def _envelope_int(body: Mapping[str, Any], key: str) -> int:
    value = body.get(key)
    if type(value) is not int:
        raise _wrong(None, key, "an integer", value)
    return _int64(value, None, key)


def parse_page(body: Any) -> ChatCompletionPage:
    """Parse a ``ChatCompletionList`` body: its bytes, or what ``json.loads`` made of them.

    Bytes go through :func:`decode_page` first; a body it does not take is decoded with
    ``json.loads`` and parsed field by field, so that what is wrong with it is explained.

    Raises:
        InvalidResponseError: the envelope or any completion in it has the
            wrong shape.
        ValueError, RecursionError: bytes that ``json.loads`` cannot read.
    """
    if isinstance(body, (bytes, bytearray, memoryview)):
        page = decode_page(body)
        if page is not None:
            return page
        body = json.loads(bytes(body))
    if type(body) is not dict:
        raise InvalidResponseError(f"expected a list object, got {_type_name(body)}")
    data = body.get("data")
    if type(data) is not list:
        raise _wrong(None, "data", "an array", data)
    total, limit, offset = _envelope_int(body, "total"), _envelope_int(body, "limit"), _envelope_int(body, "offset")
    if total < 0 or offset < 0:
        raise InvalidResponseError(f"negative total ({total}) or offset ({offset})")
    return ChatCompletionPage(
        data=tuple(_parse_guarded(item, i) for i, item in enumerate(data)),
        total=total,
        limit=limit,
        offset=offset,
    )


# -- the fast path ------------------------------------------------------------------------------
#
# msgspec decodes a page into the structs below in one pass, each JSON column left as
# msgspec.Raw (a view of the body's bytes, not decoded). The columns of all the page's
# completions are then decoded together, one call per column: the typed messages, choices
# and collections, the filters as plain JSON. Nothing is checked twice in Python: the types
# say what the careful path checks (required fields, strings, 64-bit integers, a non-empty
# id, a total and offset >= 0), and whatever msgspec refuses (a wrong type, NaN, a lone
# surrogate, an integer out of range, a 100,000-deep nesting) makes decode_page give up.
#
# One thing the careful path does that this one does not: fields that no record holds (the
# envelope's "object", unknown fields) are skipped unread, so an unknown field's invalid
# UTF-8 or 5,000-digit integer no longer gets a body refused.

_NULL = msgspec.Raw(b"null")


class _Payload(msgspec.Struct):
    messages: msgspec.Raw = _NULL
    temperature: int | float | None = None
    filter: msgspec.Raw = _NULL
    collections: msgspec.Raw = _NULL


class _Completion(msgspec.Struct):
    id: Annotated[str, msgspec.Meta(min_length=1)]
    created_at: int | float | str
    model: str
    usage: Usage
    choices: msgspec.Raw
    payload: _Payload


class _Page(msgspec.Struct):
    data: list[_Completion]
    total: _Count
    limit: _Int64
    offset: _Count


class _FloatSeen(Exception):
    """A filter holds a float: msgspec would not spell it as json.dumps does."""


def _refuse_float(text: str) -> Any:
    raise _FloatSeen(text)


_PAGE = msgspec.json.Decoder(_Page)
_MESSAGES = msgspec.json.Decoder(tuple[ChatMessage, ...] | None)
_CHOICES = msgspec.json.Decoder(tuple[Choice, ...])
_COLLECTIONS = msgspec.json.Decoder(tuple[str, ...] | None)
_FILTERS = msgspec.json.Decoder(dict[str, Any] | None, float_hook=_refuse_float)
_ENCODER = msgspec.json.Encoder()
_TEMPERATURE_MAX = 2**53
_UTF8 = itertools.repeat("utf-8")


def decode_page(body: bytes | bytearray | memoryview) -> ChatCompletionPage | None:
    """A page's JSON bytes straight to records, or None if the body is not one msgspec takes.

    None means: decode the body with ``json.loads`` and let :func:`parse_page` say what is
    wrong with it (or read what is merely unusual: an integral float token count, a UTF-8
    BOM, a ``NaN``). Never raises.
    """
    try:
        return _decode_page(body)
    except Exception:  # noqa: BLE001 - any refusal sends the body down the careful path
        return None


def _decode_page(body: bytes | bytearray | memoryview) -> ChatCompletionPage:
    page = _PAGE.decode(body)
    data = page.data
    if not data:
        return ChatCompletionPage((), page.total, page.limit, page.offset)
    payloads = [r.payload for r in data]
    messages, message_texts = _column([p.messages for p in payloads], _MESSAGES)
    choices, choice_texts = _column([r.choices for r in data], _CHOICES)
    collections, collection_texts = _column([p.collections for p in payloads], _COLLECTIONS)
    filter_cells = [p.filter for p in payloads]
    try:
        filters, filter_texts = _column(filter_cells, _FILTERS)
    except _FloatSeen:
        filters, filter_texts = _filters_with_floats(filter_cells)

    records = []
    for r, p, m, mt, c, ct, k, kt, f, ft in zip(
        data,
        payloads,
        messages,
        message_texts,
        choices,
        choice_texts,
        collections,
        collection_texts,
        filters,
        filter_texts,
    ):
        created = r.created_at
        if type(created) is int and created >= _MILLISECONDS_THRESHOLD:
            created_at = _EPOCH + timedelta(0, 0, 0, created)  # milliseconds, as parse_created_at reads them
        else:
            created_at = parse_created_at(created)  # ValueError, OverflowError: the careful path explains
        temperature = p.temperature
        if type(temperature) is int:
            if abs(temperature) > _TEMPERATURE_MAX:
                raise ValueError("not a temperature")
            temperature = float(temperature)
        elif temperature is not None and not math.isfinite(temperature):
            raise ValueError("not a finite temperature")
        records.append(
            ChatCompletion(
                r.id,
                created_at,
                r.model,
                r.usage,
                c,
                m or (),
                temperature,
                f,
                k or (),
                CompletionJSON("[]" if m is None else mt, ct, "[]" if k is None else kt, None if f is None else ft),
            )
        )
    return ChatCompletionPage(tuple(records), page.total, page.limit, page.offset)


def _column(cells: list[msgspec.Raw], decoder: msgspec.json.Decoder) -> tuple[list[Any], list[str]]:
    """One JSON column of a page: each cell's value, and its text as :data:`_encode` spells it.

    The cells are decoded in one call (one JSON value per line). When encoding the values
    gives back the cells' bytes exactly (compact, no escaped unicode, no unknown field, no
    float, keys in the order of the records' fields), the API's bytes are that text already
    and are passed through; otherwise the cells that differ are re-encoded as the careful
    path would.
    """
    blob = b"\n".join(cells)
    values = decoder.decode_lines(blob)
    if len(values) != len(cells):
        raise ValueError("a column cell is not one JSON value")
    again = _ENCODER.encode_lines(values)
    if len(again) == len(blob) + 1 and again.startswith(blob):
        return values, list(map(str, cells, _UTF8))
    texts = []
    for cell, value in zip(cells, values):
        data = bytes(cell)
        texts.append(data.decode("utf-8") if _ENCODER.encode(value) == data else _encode(json.loads(data)))
    return values, texts


def _filters_with_floats(cells: list[msgspec.Raw]) -> tuple[list[Any], list[str | None]]:
    """The filter column of a page where some filter holds a float: decoded and spelled by json."""
    values, texts = [], []
    for cell in cells:
        value = json.loads(bytes(cell))
        if value is not None and type(value) is not dict:
            raise ValueError("payload.filter is not an object")
        values.append(value)
        texts.append(None if value is None else _encode(value))
    return values, texts
