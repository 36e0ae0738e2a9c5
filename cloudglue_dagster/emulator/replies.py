"""What the emulator's list endpoints share: the reply, the paging and date parameters, the envelope.

``GET /v1/chat/completions`` and ``GET /v1/responses`` read ``limit``, ``offset``,
``created_after`` and ``created_before`` the same way and answer the same
``{"object":"list","data":[...],"total":..,"limit":..,"offset":..}`` (compact JSON).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date
from typing import NamedTuple

from .timeutil import parse_query_date

__all__ = ["BadRequest", "PageParams", "Reply", "date_param", "int_param", "list_body", "page_params"]

_INT_RE = re.compile(r"-?\d{1,18}")


class Reply(NamedTuple):
    """An HTTP answer: status, body, content type and extra headers."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


class BadRequest(Exception):
    """A query parameter is invalid; the message is the 400 answer's ``error``."""


class PageParams(NamedTuple):
    """A list request's paging and date filters (dates are UTC days, None when not sent)."""

    limit: int
    offset: int
    after: date | None
    before: date | None


def int_param(query: dict[str, str], name: str, default: int, lo: int, hi: int | None, message: str) -> int:
    """The integer ``query[name]`` within ``lo..hi`` (``default`` when absent); else :class:`BadRequest`."""
    raw = query.get(name)
    if raw is None:
        return default
    if not _INT_RE.fullmatch(raw):
        raise BadRequest(message)
    value = int(raw)
    if value < lo or (hi is not None and value > hi):
        raise BadRequest(message)
    return value


def date_param(query: dict[str, str], name: str) -> date | None:
    """The ``YYYY-MM-DD`` date ``query[name]`` (None when absent); else :class:`BadRequest`."""
    raw = query.get(name)
    if raw is None:
        return None
    try:
        return parse_query_date(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a date in YYYY-MM-DD format") from None


def page_params(query: dict[str, str], max_page_size: int) -> PageParams:
    """``limit`` (1..100, default 50, then capped silently to ``max_page_size``), ``offset``
    (>= 0, default 0) and the two date filters; :class:`BadRequest` for a bad one."""
    limit = int_param(query, "limit", 50, 1, 100, "limit must be an integer between 1 and 100")
    offset = int_param(query, "offset", 0, 0, None, "offset must be an integer >= 0")
    after = date_param(query, "created_after")
    before = date_param(query, "created_before")
    return PageParams(min(limit, max_page_size), offset, after, before)


def list_body(total: int, limit: int, offset: int, page: Sequence[bytes]) -> bytes:
    """The list envelope around serialized records."""
    tail = b'],"total":%d,"limit":%d,"offset":%d}' % (total, limit, offset)
    return b"".join((b'{"object":"list","data":[', b",".join(page), tail))
