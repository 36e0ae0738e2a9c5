"""Time helpers: UTC day bounds, timestamp rendering, date-filter windows.

The canonical time of every emulated record is an integer count of epoch
milliseconds (UTC). This module turns it into what the server sends
(``timestamp_unit``) and turns the API's whole-date filters into a half-open
millisecond window ``[lo, hi)`` according to one of several boundary readings.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta, timezone

__all__ = [
    "BOUNDARY_READINGS",
    "DAY_MS",
    "ORDERS",
    "TIMESTAMP_UNITS",
    "day_of_ms",
    "day_start_ms",
    "iso_of_ms",
    "parse_query_date",
    "render_created_at",
    "window_ms",
]

#: Milliseconds in one UTC day.
DAY_MS = 86_400_000

#: How ``created_after`` / ``created_before`` may be read (the API does not say):
#:
#: * ``inclusive``: after=D keeps ``>= D 00:00``; before=D keeps ``< D+1 00:00``
#: * ``exclusive``: after=D keeps ``>= D+1 00:00``; before=D keeps ``< D 00:00``
#: * ``half-open``: after=D keeps ``>= D 00:00``; before=D keeps ``< D 00:00``
#: * ``strict``: after=D keeps ``> D 00:00:00.000``; before=D keeps ``< D 00:00``
BOUNDARY_READINGS: tuple[str, ...] = ("inclusive", "exclusive", "half-open", "strict")

#: How ``created_at`` is rendered: integer epoch ms, float epoch seconds, an
#: ISO-8601 string ending in ``Z`` (not allowed by the spec's ``number`` type;
#: it exists for robustness tests), or integer epoch seconds (``int-s``: the
#: milliseconds floored away; the default of ``GET /v1/responses``, whose SDK
#: types ``created_at`` as an integer "Unix timestamp").
TIMESTAMP_UNITS: tuple[str, ...] = ("ms", "s", "iso", "int-s")

#: Result orders: ``newest`` (created_at descending) or ``oldest`` (ascending).
ORDERS: tuple[str, ...] = ("newest", "oldest")

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_EPOCH_DATE = date(1970, 1, 1)
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


def day_start_ms(day: date) -> int:
    """Epoch milliseconds of ``day`` 00:00:00.000 UTC."""
    return (day - _EPOCH_DATE).days * DAY_MS


def day_of_ms(ms: int) -> date:
    """The UTC calendar day holding the epoch-millisecond instant ``ms``.

    Clamped to ``date.min`` / ``date.max`` outside the calendar's range.
    """
    try:
        return _EPOCH_DATE + timedelta(days=ms // DAY_MS)
    except OverflowError:
        return date.min if ms < 0 else date.max


def iso_of_ms(ms: int) -> str:
    """ISO-8601 UTC rendering with millisecond precision, e.g. ``2026-01-01T00:00:00.000Z``."""
    dt = _EPOCH + timedelta(milliseconds=ms)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def render_created_at(ms: int, unit: str) -> bytes:
    """JSON bytes of ``created_at`` for the epoch-ms instant ``ms`` in ``unit``.

    ``ms`` -> ``1767225600000``; ``s`` -> ``1767225599.999`` (always a float);
    ``iso`` -> ``"2026-01-01T00:00:00.000Z"``; ``int-s`` -> ``1767225599`` (floor of the
    seconds, so 23:59:59.999 stays on its day).
    """
    if unit == "ms":
        return str(ms).encode()
    if unit == "int-s":
        return str(ms // 1000).encode()
    if unit == "s":
        return repr(ms / 1000).encode()
    if unit == "iso":
        return json.dumps(iso_of_ms(ms)).encode()
    raise ValueError(f"unknown timestamp unit {unit!r}; expected one of {TIMESTAMP_UNITS}")


def parse_query_date(value: str) -> date:
    """Parse a strict ``YYYY-MM-DD`` query value; raise ``ValueError`` otherwise."""
    if not _DATE_RE.fullmatch(value):
        raise ValueError(value)
    return date.fromisoformat(value)


def window_ms(created_after: date | None, created_before: date | None, boundary: str) -> tuple[int | None, int | None]:
    """Half-open epoch-ms window ``[lo, hi)`` selected by the date filters.

    ``None`` means unbounded on that side. See :data:`BOUNDARY_READINGS`.
    """
    if boundary not in BOUNDARY_READINGS:
        raise ValueError(f"unknown boundary reading {boundary!r}; expected one of {BOUNDARY_READINGS}")
    lo: int | None = None
    hi: int | None = None
    if created_after is not None:
        lo = day_start_ms(created_after)
        if boundary == "exclusive":
            lo += DAY_MS
        elif boundary == "strict":
            lo += 1  # strictly after the instant D 00:00:00.000 (ms resolution)
    if created_before is not None:
        hi = day_start_ms(created_before)
        if boundary == "inclusive":
            hi += DAY_MS
    return lo, hi
