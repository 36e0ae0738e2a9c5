"""Typed records parsed from the API's JSON.

Standard library only. Parsing is strict where the spec says a field is
required and lenient where it says optional: a missing optional field becomes
None, an unknown field is ignored (the API grows), and a field of the wrong
type raises :class:`~cloudglue_dagster.errors.InvalidResponseError` naming the
completion id and the field's path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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


class _Reader:
    """Type-checked field access that names the completion and the path on error."""

    __slots__ = ("completion_id",)

    def __init__(self, completion_id: str | None) -> None:
        self.completion_id = completion_id

    def fail(self, path: str, reason: str) -> InvalidResponseError:
        return InvalidResponseError(reason, completion_id=self.completion_id, field=path)

    def obj(self, parent: Mapping[str, Any], key: str, path: str, *, required: bool) -> Mapping[str, Any] | None:
        value = parent.get(key)
        if value is None:
            if required:
                raise self.fail(path, "required object is missing")
            return None
        if not isinstance(value, Mapping):
            raise self.fail(path, f"expected an object, got {_type_name(value)}")
        return value

    def array(self, parent: Mapping[str, Any], key: str, path: str, *, required: bool) -> Sequence[Any]:
        value = parent.get(key)
        if value is None:
            if required:
                raise self.fail(path, "required array is missing")
            return ()
        if not isinstance(value, list):
            raise self.fail(path, f"expected an array, got {_type_name(value)}")
        return value

    def string(self, parent: Mapping[str, Any], key: str, path: str, *, required: bool) -> str | None:
        value = parent.get(key)
        if value is None:
            if required:
                raise self.fail(path, "required string is missing")
            return None
        if not isinstance(value, str):
            raise self.fail(path, f"expected a string, got {_type_name(value)}")
        return value

    def integer(self, parent: Mapping[str, Any], key: str, path: str, *, required: bool) -> int | None:
        value = parent.get(key)
        if value is None:
            if required:
                raise self.fail(path, "required integer is missing")
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(path, f"expected an integer, got {_type_name(value)}")
        if isinstance(value, float):
            if not value.is_integer():
                raise self.fail(path, f"expected an integer, got {value!r}")
            return int(value)
        return value

    def number(self, parent: Mapping[str, Any], key: str, path: str) -> float | None:
        value = parent.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(path, f"expected a finite number, got {_type_name(value)}")
        return float(value)

    def message(self, raw: Any, path: str) -> ChatMessage:
        if not isinstance(raw, Mapping):
            raise self.fail(path, f"expected an object, got {_type_name(raw)}")
        role = self.string(raw, "role", f"{path}.role", required=True)
        content = self.string(raw, "content", f"{path}.content", required=True)
        name = self.string(raw, "name", f"{path}.name", required=False)
        assert role is not None and content is not None
        return ChatMessage(role=role, content=content, name=name)


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


def parse_completion(raw: Any, *, position: str = "data[]") -> ChatCompletion:
    """Parse one completion object of a list page.

    Args:
        raw: the decoded JSON object.
        position: where it sits in the body, used in errors when it has no id.

    Raises:
        InvalidResponseError: a required field is missing or a field has the
            wrong type; the error names the completion id and the field path.
    """
    if not isinstance(raw, Mapping):
        raise InvalidResponseError(f"expected a completion object, got {_type_name(raw)}", field=position)
    raw_id = raw.get("id")
    if not isinstance(raw_id, str) or not raw_id:
        raise InvalidResponseError(
            "completion has no id" if raw_id is None else f"expected a non-empty string id, got {_type_name(raw_id)}",
            field=f"{position}.id",
        )
    read = _Reader(raw_id)

    if "created_at" not in raw or raw["created_at"] is None:
        raise read.fail("created_at", "required timestamp is missing")
    try:
        created_at = parse_created_at(raw["created_at"])
    except (ValueError, OverflowError) as exc:
        raise read.fail("created_at", f"unreadable timestamp {raw['created_at']!r}: {exc}") from None

    model = read.string(raw, "model", "model", required=True)
    usage_raw = read.obj(raw, "usage", "usage", required=True)
    assert usage_raw is not None and model is not None
    usage = Usage(
        prompt_tokens=read.integer(usage_raw, "prompt_tokens", "usage.prompt_tokens", required=False),
        completion_tokens=read.integer(usage_raw, "completion_tokens", "usage.completion_tokens", required=False),
        total_tokens=read.integer(usage_raw, "total_tokens", "usage.total_tokens", required=False),
    )

    choices = []
    for i, choice in enumerate(read.array(raw, "choices", "choices", required=True)):
        path = f"choices[{i}]"
        if not isinstance(choice, Mapping):
            raise read.fail(path, f"expected an object, got {_type_name(choice)}")
        index = read.integer(choice, "index", f"{path}.index", required=True)
        assert index is not None
        choices.append(Choice(index=index, message=read.message(choice.get("message"), f"{path}.message")))

    payload = read.obj(raw, "payload", "payload", required=True)
    assert payload is not None
    messages = tuple(
        read.message(m, f"payload.messages[{i}]")
        for i, m in enumerate(read.array(payload, "messages", "payload.messages", required=False))
    )
    collections = read.array(payload, "collections", "payload.collections", required=False)
    for i, collection in enumerate(collections):
        if not isinstance(collection, str):
            raise read.fail(f"payload.collections[{i}]", f"expected a string, got {_type_name(collection)}")

    return ChatCompletion(
        id=raw_id,
        created_at=created_at,
        model=model,
        usage=usage,
        choices=tuple(choices),
        messages=messages,
        temperature=read.number(payload, "temperature", "payload.temperature"),
        filter=read.obj(payload, "filter", "payload.filter", required=False),
        collections=tuple(collections),
    )


def parse_page(body: Any) -> ChatCompletionPage:
    """Parse a decoded ``ChatCompletionList`` body.

    Raises:
        InvalidResponseError: the envelope or any completion in it has the
            wrong shape.
    """
    if not isinstance(body, Mapping):
        raise InvalidResponseError(f"expected a list object, got {_type_name(body)}")
    read = _Reader(None)
    data = read.array(body, "data", "data", required=True)
    total = read.integer(body, "total", "total", required=True)
    limit = read.integer(body, "limit", "limit", required=True)
    offset = read.integer(body, "offset", "offset", required=True)
    assert total is not None and limit is not None and offset is not None
    if total < 0 or offset < 0:
        raise InvalidResponseError(f"negative total ({total}) or offset ({offset})")
    return ChatCompletionPage(
        data=tuple(parse_completion(item, position=f"data[{i}]") for i, item in enumerate(data)),
        total=total,
        limit=limit,
        offset=offset,
    )
