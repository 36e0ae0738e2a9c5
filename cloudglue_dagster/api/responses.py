"""Typed records of ``GET /v1/responses`` (the Responses API's list), and their two parsers.

Standard library plus msgspec, no Dagster. The list's items are small (no output text):
``id``, ``status``, ``created_at``, ``model``, ``instructions`` and ``usage``. The official
SDK (0.7.28) makes every one of them optional; here two are required, because a row cannot
be placed without them: a non-empty ``id`` and a ``created_at`` (integer seconds in the SDK's
type, read like a completion's: epoch milliseconds from 1e11 up, seconds below, or ISO-8601).
The rest may be missing (None), and unknown fields are ignored, as for completions.

A response changes after it is created: ``status`` goes from ``in_progress`` to
``completed``, ``failed`` or ``cancelled``, and ``usage`` is filled in on completion. An
unknown status is kept as the API spelled it (the API grows).

As for completions (:mod:`.decoding`, :mod:`.parsing`), a well-formed page is decoded by
msgspec in one pass, and any other is read field by field so that its fault is explained by
:class:`~cloudglue_dagster.errors.InvalidResponseError` naming the response and the field.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Annotated, Any

import msgspec

from cloudglue_dagster.errors import InvalidResponseError

from .models import EPOCH, INT64_MAX, INT64_MIN, MILLISECONDS_THRESHOLD, Count, Int64, parse_created_at

__all__ = [
    "IN_PROGRESS",
    "RESPONSE_STATUSES",
    "Response",
    "ResponsePage",
    "ResponseUsage",
    "decode_responses_page",
    "parse_responses_page",
    "response_size",
]

IN_PROGRESS = "in_progress"
"""The one status that is not final: its response may still change (status and usage)."""

RESPONSE_STATUSES = ("in_progress", "completed", "failed", "cancelled")
"""The statuses the API documents (the ``status`` filter of the list takes one of them)."""

_RECORD_OVERHEAD = 150
"""Bytes a response is counted for beyond its instructions (id, status, model, times, counts)."""


class ResponseUsage(msgspec.Struct, frozen=True, gc=False):
    """Token counts of a response: None means not reported (yet: usage is filled in when the
    response completes)."""

    input_tokens: Int64 | None = None
    output_tokens: Int64 | None = None
    total_tokens: Int64 | None = None


class Response(msgspec.Struct, frozen=True, gc=False):
    """One item of the Responses list.

    Attributes:
        id: the response's id.
        created_at: when it was created, timezone-aware, in UTC.
        status: ``in_progress``, ``completed``, ``failed``, ``cancelled`` (or a status this
            version does not know, as sent); None when absent.
        model: the model; None when absent.
        instructions: the system instructions; None when absent.
        usage: token counts (each may be None).
    """

    id: str
    created_at: datetime
    status: str | None
    model: str | None
    instructions: str | None
    usage: ResponseUsage


class ResponsePage(msgspec.Struct, frozen=True):
    """One page of ``GET /responses``: as :class:`~cloudglue_dagster.api.models.ChatCompletionPage`."""

    data: tuple[Response, ...]
    total: int
    limit: int
    offset: int


def response_size(response: Response) -> int:
    """The approximate JSON size of a response, in bytes (what a sweep counts as held)."""
    return len(response.instructions or "") + _RECORD_OVERHEAD


# -- the fast path -------------------------------------------------------------------------


class _Item(msgspec.Struct):
    id: Annotated[str, msgspec.Meta(min_length=1)]
    created_at: int | float | str
    status: str | None = None
    model: str | None = None
    instructions: str | None = None
    usage: ResponseUsage | None = None


class _Page(msgspec.Struct):
    data: list[_Item]
    total: Count
    limit: Int64
    offset: Count


_PAGE = msgspec.json.Decoder(_Page)
_NO_USAGE = ResponseUsage()


def decode_responses_page(body: bytes | bytearray | memoryview) -> ResponsePage | None:
    """A page's JSON bytes straight to records, or None when msgspec does not take the body
    (then :func:`parse_responses_page` reads it and says what is wrong). Never raises."""
    try:
        page = _PAGE.decode(body)
        records = tuple(
            Response(
                r.id,
                _created_at(r.created_at),
                r.status,
                r.model,
                r.instructions,
                _NO_USAGE if r.usage is None else r.usage,
            )
            for r in page.data
        )
        return ResponsePage(records, page.total, page.limit, page.offset)
    except Exception:  # noqa: BLE001 - any refusal sends the body down the careful path
        return None


def _created_at(value: int | float | str) -> datetime:
    if type(value) is int and value >= MILLISECONDS_THRESHOLD:
        return EPOCH + timedelta(milliseconds=value)
    return parse_created_at(value)


# -- the careful path ----------------------------------------------------------------------


def _wrong(rid: str | None, field: str, expected: str, value: Any) -> InvalidResponseError:
    got = "nothing" if value is None else type(value).__name__
    reason = f"required field is missing (expected {expected})" if value is None else f"expected {expected}, got {got}"
    return InvalidResponseError(reason, completion_id=rid, field=field, record="response")


def _optional_text(raw: dict[str, Any], key: str, rid: str) -> str | None:
    value = raw.get(key)
    if value is not None and type(value) is not str:
        raise _wrong(rid, key, "a string", value)
    return value


def _count(value: Any, rid: str, key: str) -> int | None:
    if value is None:
        return None
    if type(value) is float and value.is_integer():
        value = int(value)
    if type(value) is not int:
        raise _wrong(rid, f"usage.{key}", "an integer", value)
    if not INT64_MIN <= value <= INT64_MAX:
        raise InvalidResponseError(
            "integer is out of the 64-bit range", completion_id=rid, field=f"usage.{key}", record="response"
        )
    return value


def parse_response(raw: Any, *, position: str = "data[]") -> Response:
    """One item of a Responses list page, checked field by field.

    Raises:
        InvalidResponseError: no id, no readable ``created_at``, or a field of the wrong type
            (naming the response and the field).
    """
    if type(raw) is not dict:
        raise InvalidResponseError("expected a response object", field=position, record="response")
    rid = raw.get("id")
    if type(rid) is not str or not rid:
        raise InvalidResponseError("response has no id", field=f"{position}.id", record="response")
    created = raw.get("created_at")
    if created is None:
        raise _wrong(rid, "created_at", "a timestamp", None)
    try:
        created_at = parse_created_at(created)
    except (ValueError, OverflowError) as exc:
        raise InvalidResponseError(
            f"unreadable timestamp: {exc}"[:200], completion_id=rid, field="created_at", record="response"
        ) from None
    usage = raw.get("usage")
    if usage is not None and type(usage) is not dict:
        raise _wrong(rid, "usage", "an object", usage)
    counts = usage or {}
    return Response(
        rid,
        created_at,
        _optional_text(raw, "status", rid),
        _optional_text(raw, "model", rid),
        _optional_text(raw, "instructions", rid),
        ResponseUsage(*(_count(counts.get(k), rid, k) for k in ("input_tokens", "output_tokens", "total_tokens"))),
    )


def _envelope_int(body: dict[str, Any], key: str) -> int:
    value = body.get(key)
    if type(value) is not int or not INT64_MIN <= value <= INT64_MAX:
        raise _wrong(None, key, "an integer", value)
    return value


def parse_responses_page(body: Any) -> ResponsePage:
    """A ``ResponseList`` body (its bytes, or what ``json.loads`` made of them) as records.

    Raises:
        InvalidResponseError: the envelope or an item has the wrong shape.
        ValueError, RecursionError: bytes that ``json.loads`` cannot read.
    """
    if isinstance(body, (bytes, bytearray, memoryview)):
        page = decode_responses_page(body)
        if page is not None:
            return page
        body = json.loads(bytes(body))
    if type(body) is not dict:
        raise InvalidResponseError("expected a list object", record="response")
    data = body.get("data")
    if type(data) is not list:
        raise _wrong(None, "data", "an array", data)
    total, limit, offset = (_envelope_int(body, k) for k in ("total", "limit", "offset"))
    if total < 0 or offset < 0:
        raise InvalidResponseError(f"negative total ({total}) or offset ({offset})", record="response")
    records = []
    for i, item in enumerate(data):
        try:
            records.append(parse_response(item, position=f"data[{i}]"))
        except InvalidResponseError:
            raise
        except Exception as exc:  # noqa: BLE001 - nothing but InvalidResponseError leaves
            raise InvalidResponseError(
                f"unreadable response ({type(exc).__name__})", field=f"data[{i}]", record="response"
            ) from None
    return ResponsePage(tuple(records), total, limit, offset)
