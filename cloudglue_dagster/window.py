"""Fetching exactly the completions created in a UTC time window.

The API filters by whole dates only, and does not document whether
``created_after=D`` and ``created_before=D`` include day D. So we ask for a
window one day wider on each side, which contains the wanted days under
every reading (inclusive, exclusive, half-open, strictly-after-midnight), and
keep exactly the records with ``start <= created_at < end``. The cost is at
most two extra days of records; the gain is partitions that are exact
whatever the server does at its boundaries.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .client import MAX_PAGE_SIZE, CloudglueClient, SweepStats
from .errors import CloudglueConfigError
from .models import ChatCompletion

__all__ = ["WindowFetch", "fetch_window", "padded_dates"]

_ONE_DAY = dt.timedelta(days=1)
_TICK = dt.timedelta(microseconds=1)


def _require_utc(name: str, value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        # A naive datetime would be read in the machine's local zone somewhere
        # down the line; refuse it rather than depend on TZ.
        raise CloudglueConfigError(f"{name} must be timezone-aware, got naive {value!r}")
    return value.astimezone(dt.timezone.utc)


def padded_dates(start: dt.datetime, end: dt.datetime) -> tuple[dt.date, dt.date]:
    """The ``(created_after, created_before)`` dates that cover ``[start, end)``
    under every reading of the API's date boundaries: the day before the first
    day and the day after the last day, in UTC."""
    start = _require_utc("start", start)
    end = _require_utc("end", end)
    if end <= start:
        raise CloudglueConfigError(f"empty window: end {end.isoformat()} is not after start {start.isoformat()}")
    return start.date() - _ONE_DAY, (end - _TICK).date() + _ONE_DAY


@dataclass(frozen=True)
class WindowFetch:
    """What one sweep over a window fetched.

    Attributes:
        start, end: the window, UTC, ``start <= created_at < end``.
        created_after, created_before: the dates sent to the API.
        completions: the completions inside the window, each once.
        received: distinct completions the API returned for the padded dates.
        dropped: of those, how many fell outside the window (expected: the
            padding days, or whatever the server's boundary reading adds).
        requests: HTTP requests sent, retries included.
        sweep: pages, duplicates and re-reads of the sweep.
        rate_limited: 429 answers received during the sweep.
        lowest_concurrency: the lowest concurrency the client fell to.
    """

    start: dt.datetime
    end: dt.datetime
    created_after: dt.date
    created_before: dt.date
    completions: list[ChatCompletion]
    received: int
    dropped: int
    requests: int
    sweep: SweepStats
    rate_limited: int
    lowest_concurrency: int


def fetch_window(
    client: CloudglueClient, start: dt.datetime, end: dt.datetime, page_size: int = MAX_PAGE_SIZE
) -> WindowFetch:
    """Fetch every completion with ``start <= created_at < end`` in one paged sweep.

    ``start`` and ``end`` must be timezone-aware; they are compared in UTC, so
    the result never depends on the machine's time zone.
    """
    start = _require_utc("start", start)
    end = _require_utc("end", end)
    created_after, created_before = padded_dates(start, end)
    requests_before = client.requests_sent
    rate_limited_before = client.throttle.rate_limited
    sweep = SweepStats()
    kept: list[ChatCompletion] = []
    received = 0
    for completion in client.iter_chat_completions(
        created_after=created_after, created_before=created_before, page_size=page_size, stats=sweep
    ):
        received += 1
        if start <= completion.created_at < end:
            kept.append(completion)
    return WindowFetch(
        start=start,
        end=end,
        created_after=created_after,
        created_before=created_before,
        completions=kept,
        received=received,
        dropped=received - len(kept),
        requests=client.requests_sent - requests_before,
        sweep=sweep,
        rate_limited=client.throttle.rate_limited - rate_limited_before,
        lowest_concurrency=client.throttle.lowest_limit,
    )
