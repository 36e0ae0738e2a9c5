"""The careful path: a page that :func:`~cloudglue_dagster.api.decoding.decode_page` does not take,
read field by field after ``json.loads``, so that what is wrong with it is explained.

Whatever the fast path accepts, this one accepts too and builds the same records from it.
The checks are on the hot path of a body the fast path refused (hundreds of thousands of
records in a backfill): each is an inline ``type(x) is ...`` test, and a field's path is
spelled out only when it is wrong.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import partial
from typing import Any

from cloudglue_dagster.errors import InvalidResponseError

from .decoding import decode_page
from .models import (
    INT64_MAX,
    INT64_MIN,
    ChatCompletion,
    ChatCompletionPage,
    ChatMessage,
    Choice,
    CompletionJSON,
    Usage,
    encode_json,
    parse_created_at,
)
from .secrecy import CUT

__all__ = ["parse_completion", "parse_page"]


def _short(value: Any, width: int = 60) -> str:
    """``repr(value)`` cut to ``width`` characters (a hostile value can be megabytes long)."""
    text = (
        repr(value)
        if not (type(value) is int and abs(value) > 10**width)
        else f"<integer of {len(str(abs(value)))} digits>"
    )
    return text if len(text) <= width else text[: width - 1] + CUT  # the redactor masks a key cut here


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


def _wrong(completion_id: str | None, path: str, expected: str, value: Any) -> InvalidResponseError:
    if value is None:
        return InvalidResponseError(
            f"required field is missing (expected {expected})", completion_id=completion_id, field=path
        )
    return InvalidResponseError(
        f"expected {expected}, got {_type_name(value)}", completion_id=completion_id, field=path
    )


def _int64(value: int, completion_id: str | None, path: str) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
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
    created_at = _created_at(raw.get("created_at"), cid)
    model = raw.get("model")
    if type(model) is not str:
        raise _wrong(cid, "model", "a string", model)
    usage = _usage(raw.get("usage"), cid)
    raw_choices = raw.get("choices")
    choices = _choices(raw_choices, cid)
    payload = raw.get("payload")
    if type(payload) is not dict:
        raise _wrong(cid, "payload", "an object", payload)
    raw_messages = payload.get("messages")
    messages = _messages(raw_messages, cid)
    collections = _collections(payload.get("collections"), cid)
    temperature = _temperature(payload.get("temperature"), cid)
    filter_ = payload.get("filter")
    if filter_ is not None and type(filter_) is not dict:
        raise _wrong(cid, "payload.filter", "an object", filter_)
    return ChatCompletion(
        id=cid,
        created_at=created_at,
        model=model,
        usage=usage,
        choices=choices,
        messages=messages,
        temperature=temperature,
        filter=filter_,
        collections=collections,
        raw=CompletionJSON(
            encode_json(raw_messages or []),
            encode_json(raw_choices),
            encode_json(payload.get("collections") or []),
            None if filter_ is None else encode_json(filter_),
        ),
    )


def _created_at(value: Any, cid: str) -> datetime:
    if value is None:
        raise _wrong(cid, "created_at", "timestamp", None)
    try:
        return parse_created_at(value)
    except (ValueError, OverflowError) as exc:
        raise InvalidResponseError(
            f"unreadable timestamp {_short(value)}: {exc}", completion_id=cid, field="created_at"
        ) from None


def _usage(usage: Any, cid: str) -> Usage:
    if type(usage) is not dict:
        raise _wrong(cid, "usage", "an object", usage)
    return Usage(
        _token(usage.get("prompt_tokens"), cid, "prompt_tokens"),
        _token(usage.get("completion_tokens"), cid, "completion_tokens"),
        _token(usage.get("total_tokens"), cid, "total_tokens"),
    )


def _choices(raw_choices: Any, cid: str) -> tuple[Choice, ...]:
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
        choices.append(Choice(index, _message(choice.get("message"), cid, partial("choices[{}].message".format, i))))
    return tuple(choices)


def _messages(raw_messages: Any, cid: str) -> tuple[ChatMessage, ...]:
    if raw_messages is None:
        return ()
    if type(raw_messages) is not list:
        raise _wrong(cid, "payload.messages", "an array", raw_messages)
    return tuple(_message(m, cid, partial("payload.messages[{}]".format, i)) for i, m in enumerate(raw_messages))


def _collections(collections: Any, cid: str) -> tuple[str, ...]:
    if collections is None:
        return ()
    if type(collections) is not list:
        raise _wrong(cid, "payload.collections", "an array", collections)
    for i, collection in enumerate(collections):
        if type(collection) is not str:
            raise _wrong(cid, f"payload.collections[{i}]", "a string", collection)
    return tuple(collections)


def _temperature(temperature: Any, cid: str) -> float | None:
    if temperature is None:
        return None
    if type(temperature) is int and abs(temperature) > 2**53:
        temperature = math.inf  # not a temperature; refused below
    if type(temperature) not in (int, float) or not math.isfinite(temperature):
        raise InvalidResponseError(
            f"expected a finite number, got {_type_name(temperature)}", completion_id=cid, field="payload.temperature"
        )
    return float(temperature)


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
