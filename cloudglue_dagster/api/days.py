"""Cutting one sweep's completions into UTC days, each handed on as soon as it is complete.

Standard library only. A range run reads its whole window in one paged sweep; holding every
completion until the sweep ends makes a backfill's memory grow with its range. The API does
not document its order, but lists completions sorted by ``created_at`` in practice (newest
first). :class:`DayAssembler` relies on that order only where the listing itself shows it:

* the direction (newest or oldest first) is read from the first two completions whose
  ``created_at`` differ, and every later completion must follow it (ties are fine);
* while the listing is sorted, a day is complete once a completion of a later day in the
  listing's direction has arrived: no completion of it can follow;
* the first completion out of order ends the trust: no day is closed from then on, the
  rest is held until the sweep ends (the behaviour of an unsorted listing: whole-range), and
  *every* day handed on so far is reopened: they were closed on an order the listing has
  just shown it does not keep (a single record listed out of place, early, would otherwise
  have closed every day it jumped over);
* a completion of a day that was already handed on (a re-read of the window found a record
  the first read missed) *reopens* that day too.

A reopened day's commit must be undone at once (its previous rows put back) and the day read
again after the sweep (:attr:`DayAssembler.reopened`). Days with no completions are handed on
too (as empty), so every day of the range is written.

Memory: the completions of the days still open are held. :class:`DayAssembler` counts their
JSON size (:func:`json_size`) and refuses to hold more than ``max_held_bytes``
(:class:`~cloudglue_dagster.errors.HeldTooMuchError`): a day too large for the machine, or a
listing that is not sorted over a range too long, fails clearly instead of growing until the
kernel kills the run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from cloudglue_dagster.errors import HeldTooMuchError

from .models import ChatCompletion

__all__ = ["DEFAULT_MAX_HELD_BYTES", "CompleteDay", "DayAssembler", "ReopenedDay", "UTCDay", "assemble", "json_size"]

_ONE_DAY = dt.timedelta(days=1)

DEFAULT_MAX_HELD_BYTES = 512 << 20
"""512 MiB: the JSON size of the completions a sweep may hold while their days are open.

Held as records they take about 4.5 times that in memory (their texts are kept both decoded
and as the JSON columns' text, with each record's structures: 4.55x for 9,447 realistic
emulator records, ``python bench/held_memory.py``), so about 2.3 GiB at the bound. A sorted
listing holds one or two days at a time; only a day of over ~380,000 realistic completions
(1.4 KB each), or an unsorted listing over a long range, comes near it."""

_RECORD_OVERHEAD = 200
"""Bytes counted per record beyond its JSON texts (id, model, times, counts)."""


def json_size(completion: ChatCompletion) -> int:
    """The approximate JSON size of a completion, in bytes (its JSON columns' text, counted
    in characters, plus a fixed overhead)."""
    raw = completion.raw
    return (
        len(raw.payload_messages) + len(raw.choices) + len(raw.collections) + len(raw.filter or "") + _RECORD_OVERHEAD
    )


@dataclass(frozen=True)
class UTCDay:
    """One daily partition: its ``key`` and its UTC window ``[start, end)``."""

    key: str
    start: dt.datetime
    end: dt.datetime


@dataclass
class CompleteDay:
    """All completions of one day, in the order the API listed them."""

    day: UTCDay
    completions: list[Any] = field(default_factory=list)
    """The day's records (:class:`~cloudglue_dagster.api.models.ChatCompletion`, or
    :class:`~cloudglue_dagster.api.responses.Response` for the Responses API)."""


@dataclass(frozen=True)
class ReopenedDay:
    """A day handed on earlier turned out incomplete: undo its commit; it comes again later."""

    day: UTCDay
    completion_id: str


class DayAssembler:
    """Groups completions by UTC day and hands each day on when the listing has passed it.

    Args:
        days: the days of the run, each ``[start, end)`` in UTC, contiguous or not; a
            completion outside all of them is ignored (it belongs to a day skipped on purpose).
        early: hand days on as soon as the listing has passed them (default); False holds
            every day until :meth:`finish` (then nothing can be reopened).
        size: a record's approximate JSON size in bytes (:func:`json_size` for completions,
            :func:`~cloudglue_dagster.api.responses.response_size` for responses).
        max_held_bytes: the most JSON (:func:`json_size`) the open days may hold; more raises
            :class:`~cloudglue_dagster.errors.HeldTooMuchError`. Default :data:`DEFAULT_MAX_HELD_BYTES`.

    Feed completions in listing order with :meth:`add` (each returns what became complete),
    then call :meth:`finish` for the days still open. ``reopened`` lists the days that must
    be read again.
    """

    def __init__(
        self,
        days: Sequence[UTCDay],
        *,
        early: bool = True,
        max_held_bytes: int = DEFAULT_MAX_HELD_BYTES,
        size: Callable[[Any], int] = json_size,
    ) -> None:
        self._early = early
        self._size = size
        self._max_held_bytes = max_held_bytes
        self._held_bytes: dict[str, int] = {}  # per open day
        self._days = sorted(days, key=lambda d: d.start)
        self._by_date = {d.start.date(): d for d in self._days}
        self._open: dict[str, CompleteDay] = {}
        self._closed: set[str] = set()
        self._pending = {d.key for d in self._days}  # neither closed nor open yet, or open
        self._direction = 0  # +1 oldest first, -1 newest first, 0 not known yet
        self._last: dt.datetime | None = None
        self._current: str | None = None  # the day of the previous completion
        self.sorted = True
        self.reopened: list[UTCDay] = []
        self._reopened: set[str] = set()
        self.peak_open = 0

    def _day_of(self, moment: dt.datetime) -> UTCDay | None:
        day = self._by_date.get(moment.astimezone(dt.timezone.utc).date())
        return day if day is not None and day.start <= moment < day.end else None

    def add(self, completion: Any) -> list[CompleteDay | ReopenedDay]:
        """Take the next completion of the listing; return the days it completes (or reopens)."""
        moment = completion.created_at
        out: list[CompleteDay | ReopenedDay] = []
        if not self._follow_order(moment):
            # The listing is not sorted after all: no day it closed can be trusted.
            out.extend(self._reopen(d, completion.id) for d in self._days if d.key in self._closed)
        day = self._day_of(moment)
        if day is None:
            return out
        if day.key in self._closed:
            out.append(self._reopen(day, completion.id))
            return out
        if day.key in self._reopened:
            # Its other completions were handed on: only the sweep after this one can give
            # the whole day; keep nothing of it here.
            return out
        self._open.setdefault(day.key, CompleteDay(day)).completions.append(completion)
        self._hold(day, completion)
        self.peak_open = max(self.peak_open, len(self._open))
        if self._early and self.sorted and self._direction and day.key != self._current:
            # Only a change of day can pass one; checking once per change keeps this O(days).
            self._current = day.key
            out.extend(self._close_passed(day))
        return out

    def hold(self) -> None:
        """From now on, hand no day on before :meth:`finish`."""
        self._early = False

    @property
    def held_bytes(self) -> int:
        """The JSON size of the completions held now (:func:`json_size`)."""
        return sum(self._held_bytes.values())

    def _hold(self, day: UTCDay, completion: Any) -> None:
        self._held_bytes[day.key] = self._held_bytes.get(day.key, 0) + self._size(completion)
        held = self.held_bytes
        if held > self._max_held_bytes:
            raise HeldTooMuchError(
                held_bytes=held,
                max_held_bytes=self._max_held_bytes,
                days=sorted(self._open),
                listing_sorted=self.sorted and self._early,
            )

    def _reopen(self, day: UTCDay, completion_id: str) -> ReopenedDay:
        self._closed.discard(day.key)
        self.reopened.append(day)
        self._reopened.add(day.key)
        return ReopenedDay(day, completion_id)

    def _follow_order(self, moment: dt.datetime) -> bool:
        """Track the listing's direction; False when ``moment`` is the first out of order."""
        last, self._last = self._last, moment
        if last is None or moment == last or not self.sorted:
            return True
        step = 1 if moment > last else -1
        if self._direction == 0:
            self._direction = step
        elif step != self._direction:
            self.sorted = False
            return False
        return True

    def _close_passed(self, current: UTCDay) -> Iterator[CompleteDay]:
        """Every day the listing has moved past: before ``current`` in its direction."""
        if self._direction < 0:
            passed = [d for d in self._days if d.start > current.start and d.key in self._pending]
        else:
            passed = [d for d in self._days if d.start < current.start and d.key in self._pending]
        for day in passed:
            yield self._close(day)

    def _close(self, day: UTCDay) -> CompleteDay:
        self._pending.discard(day.key)
        self._closed.add(day.key)
        self._held_bytes.pop(day.key, None)
        return self._open.pop(day.key, None) or CompleteDay(day)

    def finish(self) -> Iterator[CompleteDay]:
        """The days still open (or never seen, so empty), oldest first; reopened days excluded."""
        for day in self._days:
            if day.key in self._pending and day.key not in self._reopened:
                yield self._close(day)


def assemble(completions: Iterable[ChatCompletion], days: Sequence[UTCDay]) -> Iterator[CompleteDay | ReopenedDay]:
    """Every day of ``days`` once complete, from completions in listing order (then
    :meth:`DayAssembler.finish`). Days reopened along the way are reported, not re-read."""
    assembler = DayAssembler(days)
    for completion in completions:
        yield from assembler.add(completion)
    yield from assembler.finish()
