"""The fast path: a page's JSON bytes straight into the records, with msgspec.

msgspec decodes a page into the structs below in one pass, each JSON column left as
msgspec.Raw (a view of the body's bytes, not decoded). The columns of all the page's
completions are then decoded together, one call per column: the typed messages, choices
and collections, the filters as plain JSON. Nothing is checked twice in Python: the types
say what the careful path checks (required fields, strings, 64-bit integers, a non-empty
id, a total and offset >= 0), and whatever msgspec refuses (a wrong type, NaN, a lone
surrogate, an integer out of range, a 100,000-deep nesting) makes decode_page give up.

One thing the careful path does that this one does not: fields that no record holds (the
envelope's "object", unknown fields) are skipped unread, so an unknown field's invalid
UTF-8 or 5,000-digit integer no longer gets a body refused.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from datetime import timedelta
from typing import Annotated, Any

import msgspec

from .models import (
    EPOCH,
    MILLISECONDS_THRESHOLD,
    ChatCompletion,
    ChatCompletionPage,
    ChatMessage,
    Choice,
    CompletionJSON,
    Count,
    Int64,
    Usage,
    encode_json,
    parse_created_at,
)

__all__ = ["decode_page"]

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
    total: Count
    limit: Int64
    offset: Count


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

    None means: decode the body with ``json.loads`` and let :func:`~cloudglue_dagster.api.parsing.parse_page` say what is
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
    filter_texts: Sequence[str | None]  # _filters_with_floats spells a null filter None
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
        if type(created) is int and created >= MILLISECONDS_THRESHOLD:
            created_at = EPOCH + timedelta(0, 0, 0, created)  # milliseconds, as parse_created_at reads them
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


def _column(cells: list[msgspec.Raw], decoder: msgspec.json.Decoder[Any]) -> tuple[list[Any], list[str]]:
    """One JSON column of a page: each cell's value, and its text as :data:`~cloudglue_dagster.api.models.encode_json` spells it.

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
        texts.append(data.decode("utf-8") if _ENCODER.encode(value) == data else encode_json(json.loads(data)))
    return values, texts


def _filters_with_floats(cells: list[msgspec.Raw]) -> tuple[list[Any], list[str | None]]:
    """The filter column of a page where some filter holds a float: decoded and spelled by json."""
    values, texts = [], []
    for cell in cells:
        value = json.loads(bytes(cell))
        if value is not None and type(value) is not dict:
            raise ValueError("payload.filter is not an object")
        values.append(value)
        texts.append(None if value is None else encode_json(value))
    return values, texts
