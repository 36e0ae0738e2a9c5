"""Typed records parsed from the API's JSON.

Standard library only. Parsing is strict where the spec says a field is
required and lenient where it says optional: a missing optional field becomes
None, an unknown field is ignored (the API grows), and a field of the wrong
type raises :class:`~cloudglue_dagster.errors.InvalidResponseError` naming the
completion id and the field's path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from .errors import InvalidResponseError

__all__ = [
    "ChatCompletion",
    "ChatCompletionPage",
    "ChatMessage",
    "Choice",
    "Usage",
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


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message: ``role`` (system, user or assistant), ``content``, optional ``name``."""

    role: str
    content: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Choice:
    """One answer of a completion: its ``index`` and its ``message``."""

    index: int
    message: ChatMessage


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of a completion. The API may omit any of them: None means not reported."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None

    @property
    def reported(self) -> bool:
        """True when the API reported at least one of the three counts."""
        return not (
            self.prompt_tokens is None and self.completion_tokens is None and self.total_tokens is None
        )


@dataclass(frozen=True, slots=True)
class ChatCompletion:
    """A stored chat completion.

    Attributes:
        id: the completion's id.
        created_at: when it was created, timezone-aware, in UTC.
        model: the model that answered.
        usage: token counts (each may be None).
        choices: the answers, in the order the API gave them.
        messages: the prompt's messages (``payload.messages``).
        temperature: ``payload.temperature``, or None when absent.
        filter: ``payload.filter`` as raw JSON, or None when absent.
        collections: ``payload.collections`` (collection ids).
        raw: the completion's JSON as the API sent it, unknown fields included.
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
    raw: Mapping[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class ChatCompletionPage:
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


def _short(value: Any, width: int = 60) -> str:
    """``repr(value)`` cut to ``width`` characters (a hostile value can be megabytes long)."""
    text = repr(value) if not (type(value) is int and abs(value) > 10**width) else f"<integer of {len(str(abs(value)))} digits>"
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
    return InvalidResponseError(f"expected {expected}, got {_type_name(value)}", completion_id=completion_id, field=path)


# Integers are stored as 64-bit (pandas Int64, DuckDB BIGINT): a larger one is refused here,
# naming its completion, rather than overflowing later in a frame or the warehouse.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _int64(value: int, completion_id: str | None, path: str) -> int:
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise InvalidResponseError(
            f"integer {value if abs(value) < 10**30 else f'of {len(str(abs(value)))} digits'} is out of"
            " the 64-bit range", completion_id=completion_id, field=path,
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
    messages = tuple(
        _message(m, cid, lambda i=i: f"payload.messages[{i}]") for i, m in enumerate(raw_messages)
    )
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
                f"expected a finite number, got {_type_name(temperature)}", completion_id=cid, field="payload.temperature"
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
        raw=raw,
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
    """Parse a decoded ``ChatCompletionList`` body.

    Raises:
        InvalidResponseError: the envelope or any completion in it has the
            wrong shape.
    """
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
