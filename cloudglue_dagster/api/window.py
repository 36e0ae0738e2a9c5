"""Fetching exactly the completions created in a UTC time window.

The API filters by whole dates only, and does not document whether
``created_after=D`` and ``created_before=D`` include day D. So we ask for a
window one day wider on each side, which contains the wanted days under
every reading (inclusive, exclusive, half-open, strictly-after-midnight), and
keep exactly the records with ``start <= created_at < end``. The cost is at
most two extra days of records; the gain is partitions that are exact
whatever the server does at its boundaries.

Only records of the padding days are dropped here. A record outside the padded
dates under every reading (before ``created_after`` 00:00 UTC, or from
``created_before`` + 1 day 00:00 UTC on) is no boundary reading but a wrong
answer: the client's sweep refuses it (:func:`.sweep.window_bounds`), reads the
window again and fails with ``InconsistentResponseError`` rather than let a day
lose it silently.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator

from cloudglue_dagster.errors import CloudglueConfigError

from .client import MAX_PAGE_SIZE, CloudglueClient, SweepStats
from .models import ChatCompletion
from .sweep import R

Listing = Callable[..., Iterator[R]]
"""A client's paged listing of one endpoint: ``CloudglueClient.iter_chat_completions`` or
``iter_responses`` (``created_after``, ``created_before``, ``page_size``, ``stats``)."""

__all__ = ["WindowSweep", "padded_dates"]

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


class WindowSweep:
    """One paged sweep over the completions created in ``[start, end)``, with what it saw.

    ``start`` and ``end`` must be timezone-aware; they are compared in UTC, so
    the result never depends on the machine's time zone::

        sweep = WindowSweep(start, end)
        for completion in sweep.completions(client):
            ...
        print(sweep.kept, sweep.dropped, sweep.requests)

    Attributes (complete once :meth:`completions` is exhausted):
        start, end: the window, UTC.
        created_after, created_before: the dates sent to the API.
        received: distinct completions the API returned for the padded dates.
        kept: of those, the completions inside the window.
        requests: HTTP requests sent, retries included.
        pages: the client's :class:`SweepStats` (pages, duplicates, re-reads).
        rate_limited: 429 answers received during the sweep.
        lowest_concurrency: the lowest concurrency the client fell to.
        seconds: wall time of the sweep.
    """

    def __init__(self, start: dt.datetime, end: dt.datetime) -> None:
        self.start = _require_utc("start", start)
        self.end = _require_utc("end", end)
        self.created_after, self.created_before = padded_dates(self.start, self.end)
        self.received = 0
        self.kept = 0
        self.requests = 0
        self.pages = SweepStats()
        self.rate_limited = 0
        self.lowest_concurrency = 0
        self.seconds = 0.0

    @property
    def dropped(self) -> int:
        """Completions received but outside the window: those of the padding days
        that the server's boundary reading includes (records outside the padded
        dates never get here; the client's sweep fails on them)."""
        return self.received - self.kept

    def completions(self, client: CloudglueClient, page_size: int = MAX_PAGE_SIZE) -> Iterator[ChatCompletion]:
        """Yield every completion with ``start <= created_at < end``, each once."""
        return self.records(client, client.iter_chat_completions, page_size)

    def records(self, client: CloudglueClient, listing: Listing[R], page_size: int = MAX_PAGE_SIZE) -> Iterator[R]:
        """Yield every record of ``listing`` (one of ``client``'s endpoints) with
        ``start <= created_at < end``, each once."""
        requests_before = client.requests_sent
        rate_limited_before = client.throttle.rate_limited
        started = time.monotonic()
        try:
            for completion in listing(
                created_after=self.created_after,
                created_before=self.created_before,
                page_size=page_size,
                stats=self.pages,
            ):
                self.received += 1
                if self.start <= completion.created_at < self.end:
                    self.kept += 1
                    yield completion
        finally:
            self.requests += client.requests_sent - requests_before
            self.rate_limited += client.throttle.rate_limited - rate_limited_before
            self.lowest_concurrency = client.throttle.lowest_limit
            self.seconds += time.monotonic() - started
