"""Reading a whole window by offset paging, and proving the pages account for ``total``.

Standard library only (plus the records of :mod:`.models`). A sweep is trusted only when its
pages are consistent with each other and with the dates asked; otherwise the window is read
again, one page at a time, and if it stays inconsistent the sweep stops with
:class:`~cloudglue_dagster.errors.InconsistentResponseError`. Records are yielded as their page
passes its checks: what a consumer does with those it already received is its own decision
(the assets write a day only from a prefix of the listing that passed every check).

**Per page** (one answer contradicting itself, :func:`page_problem`): more records than the
``limit`` asked, more records than ``total`` leaves after the offset, no records while
``total`` says some remain, the same id twice, or a record whose ``created_at`` lies outside
the dates asked under every reading of their boundaries (:func:`window_bounds`).

**Per read** of the window: a page made only of records already received in this read while
``total`` did not move (a server answering the same page for every offset), a ``total`` that
grew past :func:`total_growth_limit` of the read's first one, and, at the end, distinct records
that do not account for ``total``:

* if ``total`` never moved during the read, the distinct ids must be exactly ``total``;
* if it moved (completions arriving: the window includes today), the read is explained by
  arrivals only when ``total`` never decreased and the distinct ids reach the ``total`` the
  read started with (no completion that was there at the start was missed). Anything else
  (``total`` falling, records missing) is read again.

**Per sweep**: a ``total`` above ``max_window_records`` (default
:data:`DEFAULT_MAX_WINDOW_RECORDS`) on any page stops the sweep at once with
:class:`~cloudglue_dagster.errors.WindowTooLargeError`, before the window is paged.

The first read fetches the pages after the first concurrently; re-reads go page by page,
advancing by the records actually received, so records shifting between pages are not missed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from cloudglue_dagster.errors import InconsistentResponseError, WindowTooLargeError

__all__ = [
    "DEFAULT_MAX_WINDOW_RECORDS",
    "MAX_REREADS",
    "Page",
    "Record",
    "TOTAL_GROWTH_FRACTION",
    "TOTAL_GROWTH_RECORDS",
    "Sweep",
    "SweepStats",
    "page_problem",
    "total_growth_limit",
    "window_bounds",
]

MAX_REREADS = 2
"""Reads of a window after the first one found it inconsistent, before the sweep fails."""

TOTAL_GROWTH_FRACTION = 0.5
TOTAL_GROWTH_RECORDS = 1_000
"""How far ``total`` may rise during one read over the read's first ``total``: by half of it
plus 1,000 completions (:func:`total_growth_limit`). Completions arriving while a window is
paged explain a rise, but a modest one: to add half the window during one read, they would
have to arrive at a third of the pace the client pages them (a sequential re-read takes in
about 300 a second at 100 a page and an assumed 0.3 s a page: ~100 a second, 8.6 million a
day), and a window growing that fast cannot be read by offset paging at all (the read chases
its tail). The 1,000 keep a small window (a quiet day, a handful of completions) from failing on
an ordinary burst. A rise past the bound ends the read as drift (transient), so a server whose
``total`` grows on every page cannot keep a read going forever."""

DEFAULT_MAX_WINDOW_RECORDS = 10_000_000
"""The largest ``total`` a sweep pages, by default. The sweep remembers every id it received
to de-duplicate: a 36-character id (~85 bytes) and its slot in two sets, 165 bytes an id
measured at the peak of a read (1 million ids: 165 MB), so 10 million is about 1.6 GB, what
a 2-4 GB worker can still hold. Paging 10 million completions also takes 100,000 requests:
about an hour at 8 pages in flight and an assumed 0.3 s a page (about eight for a page-by-page
re-read). A window announcing more is an absurd answer, or a backfill to split into shorter
runs (``max_partitions_per_run``); raise the bound only where the memory and the hours are."""

_ONE_DAY = dt.timedelta(days=1)


class Record(Protocol):
    """What a sweep reads of a record, whatever the endpoint: its id and creation time."""

    @property
    def id(self) -> str: ...

    @property
    def created_at(self) -> dt.datetime: ...


R = TypeVar("R", bound=Record)
R_co = TypeVar("R_co", bound=Record, covariant=True)


class Page(Protocol[R_co]):
    """One page of a list endpoint (``ChatCompletionPage``, ``ResponsePage``)."""

    @property
    def data(self) -> tuple[R_co, ...]: ...

    @property
    def total(self) -> int: ...


Fetch = Callable[[int], Page[R]]
# A generator, not any iterator: the sweep closes it to cancel the pages still in flight.
FanOut = Callable[[Fetch[R], Iterable[int]], Generator[tuple[int, Page[R]], None, None]]


@dataclass
class SweepStats:
    """What one sweep saw; filled in as it goes.

    Attributes:
        pages: pages received (re-reads included).
        records: records received, duplicates included.
        duplicates: records dropped because their id was already seen.
        first_total: ``total`` on the first page.
        last_total: ``total`` on the last page read.
        rereads: times the window was read again (it changed, or contradicted itself).
        problems: what made each re-read necessary, in order.
    """

    pages: int = 0
    records: int = 0
    duplicates: int = 0
    first_total: int | None = None
    last_total: int | None = None
    rereads: int = 0
    problems: list[str] = field(default_factory=list)


def window_bounds(
    created_after: str | None, created_before: str | None
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The instants ``[low, high)`` (UTC) holding every completion the API may list for the
    dates asked, whatever its undocumented reading of their boundaries.

    ``created_after=D`` includes day D at most (never the day before), and
    ``created_before=D`` includes day D at most (never the day after), so every reading lies
    within ``[D_after 00:00 UTC, D_before + 1 day 00:00 UTC)``. A record outside it is not a
    boundary reading but a wrong answer.

    Args:
        created_after, created_before: the dates as sent (``YYYY-MM-DD``, UTC); None leaves
            that side unbounded (None in the result).
    """
    low = None if created_after is None else _midnight(dt.date.fromisoformat(created_after))
    high = None if created_before is None else _midnight(dt.date.fromisoformat(created_before) + _ONE_DAY)
    return low, high


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)


def total_growth_limit(first_total: int) -> int:
    """The highest ``total`` a read that started at ``first_total`` accepts: ``first_total``
    plus half of it (rounded down) plus 1,000 (see :data:`TOTAL_GROWTH_FRACTION`)."""
    return first_total + int(first_total * TOTAL_GROWTH_FRACTION) + TOTAL_GROWTH_RECORDS


def page_problem(
    page: Page[Record],
    offset: int,
    limit: int,
    window: tuple[str | None, str | None] = (None, None),
    noun: str = "completion",
) -> str | None:
    """What makes one answer contradict itself, or None.

    Args:
        page: the answer.
        offset, limit: the values asked for.
        window: ``(created_after, created_before)`` as sent (``YYYY-MM-DD``, UTC; None:
            unbounded); a record outside :func:`window_bounds` of them is a problem.
        noun: what a record is called in the message (``completion``, ``response``).
    """
    n, total = len(page.data), page.total
    remaining = max(0, total - offset)
    if n > limit:
        return f"offset {offset}: {n} records, more than the limit {limit} asked for"
    if n > remaining:
        return f"offset {offset}: {n} records, but total {total} leaves {remaining} after this offset"
    if n == 0 and remaining > 0:
        return f"offset {offset}: no records, but total {total} says {remaining} remain"
    ids = [c.id for c in page.data]
    if len(set(ids)) < n:
        twice = next(i for i in ids if ids.count(i) > 1)
        return f"offset {offset}: id {twice!r} twice in one page"
    low, high = window_bounds(*window)
    for completion in page.data:
        if (low is not None and completion.created_at < low) or (high is not None and completion.created_at >= high):
            return (
                f"offset {offset}: {noun} {completion.id!r} created_at {completion.created_at.isoformat()} lies"
                f" outside the dates asked (created_after={window[0] or '-'} created_before={window[1] or '-'},"
                f" which hold at most [{_instant(low)}, {_instant(high)}) under any reading)"
            )
    return None


def _instant(moment: dt.datetime | None) -> str:
    return "..." if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Verdict:
    problem: str
    drift: bool  # explained by the window changing (completions arriving or leaving)


class _Read:
    """The tally of one read of the window."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.totals: list[int] = []

    @property
    def moved(self) -> bool:
        return len(set(self.totals)) > 1

    def only_seen(self, page: Page[Record]) -> bool:
        """A non-empty page whose records were all received earlier in this read, while
        ``total`` stayed where the previous page had it."""
        still = len(self.totals) > 1 and self.totals[-1] == self.totals[-2]
        return bool(page.data) and still and all(c.id in self.ids for c in page.data)

    def verdict(self) -> _Verdict | None:
        """Whether the distinct records account for ``total`` (see the module docstring)."""
        first, distinct = self.totals[0], len(self.ids)
        if not self.moved:
            if distinct == first:
                return None
            return _Verdict(f"{distinct} distinct records for a total of {first}", drift=False)
        rising = all(a <= b for a, b in zip(self.totals, self.totals[1:]))
        if rising and distinct >= first:
            return None
        return _Verdict(
            f"total moved {first} -> {self.totals[-1]} while it was paged and {distinct} distinct"
            f" records were received",
            drift=True,
        )


class Sweep(Generic[R]):
    """Iterates over every record of a window exactly once, verified (module docstring).

    Args:
        fetch: reads the page at an offset (retries included).
        fan_out: fetches many offsets concurrently, yielding ``(offset, page)`` in offset
            order; None reads page by page only.
        limit: the page size asked for.
        window: ``(created_after, created_before)`` as sent (``YYYY-MM-DD``, UTC; None:
            unbounded): every record must lie within :func:`window_bounds` of them; also
            named in messages.
        stats: filled in as pages arrive.
        warn: reports a re-read.
        max_window_records: the largest ``total`` paged; a page announcing more stops the
            sweep with :class:`~cloudglue_dagster.errors.WindowTooLargeError`. Default
            :data:`DEFAULT_MAX_WINDOW_RECORDS`.
        noun: what a record is called in messages (``completion``, ``response``).
    """

    def __init__(
        self,
        fetch: Fetch[R],
        fan_out: FanOut[R] | None,
        *,
        limit: int,
        window: tuple[str | None, str | None],
        stats: SweepStats,
        warn: Callable[[str], Any],
        max_window_records: int = DEFAULT_MAX_WINDOW_RECORDS,
        noun: str = "completion",
    ) -> None:
        self.noun = noun
        self.fetch, self.fan_out, self.limit = fetch, fan_out, limit
        self.window, self.stats, self.warn = window, stats, warn
        self.max_window_records = max_window_records
        self.seen: set[str] = set()

    def __iter__(self) -> Iterator[R]:
        verdicts: list[_Verdict] = []
        for read in range(1 + MAX_REREADS):
            concurrent = read == 0 and self.fan_out is not None
            verdict = yield from (self._concurrent_read() if concurrent else self._sequential_read())
            if verdict is None:
                return
            verdicts.append(verdict)
            self.stats.problems.append(verdict.problem)
            if read < MAX_REREADS:
                self.stats.rereads += 1
                self.warn(self._reread_message(verdict))
        raise InconsistentResponseError(
            created_after=self.window[0],
            created_before=self.window[1],
            problems=[v.problem for v in verdicts],
            transient=all(v.drift for v in verdicts),
        )

    def _reread_message(self, verdict: _Verdict) -> str:
        window = f"created_after={self.window[0] or '-'} created_before={self.window[1] or '-'}"
        if verdict.drift:
            return (
                f"Cloudglue API: the window changed while it was paged ({verdict.problem}); reading"
                f" {window} again page by page so no {self.noun} is missed"
            )
        return f"Cloudglue API: inconsistent answer for {window} ({verdict.problem}); reading it again page by page"

    def _accept(self, page: Page[R], tally: _Read) -> Iterator[R]:
        """Count a checked page and yield its records not seen in any read before."""
        stats = self.stats
        stats.pages += 1
        stats.records += len(page.data)
        stats.last_total = page.total
        if stats.first_total is None:
            stats.first_total = page.total
        tally.ids.update(c.id for c in page.data)
        for completion in page.data:
            if completion.id in self.seen:
                stats.duplicates += 1
            else:
                self.seen.add(completion.id)
                yield completion

    def _check(self, page: Page[R], offset: int, tally: _Read) -> _Verdict | None:
        if page.total > self.max_window_records:
            # Checked on every page, before anything of it is used: paging such a window would
            # hold every id in memory for hours, and reading it again would not make it smaller.
            raise WindowTooLargeError(
                created_after=self.window[0],
                created_before=self.window[1],
                total=page.total,
                offset=offset,
                max_window_records=self.max_window_records,
            )
        tally.totals.append(page.total)
        problem = page_problem(page, offset, self.limit, self.window, self.noun)
        if problem is not None:
            return _Verdict(problem, drift=False)
        if page.total > (bound := total_growth_limit(tally.totals[0])):
            return _Verdict(
                f"offset {offset}: total grew {tally.totals[0]} -> {page.total} during one read, past the"
                f" {bound} that completions arriving can explain (half the first total + {TOTAL_GROWTH_RECORDS})",
                drift=True,
            )
        if offset > 0 and tally.only_seen(page):
            return _Verdict(f"offset {offset}: only records already received, total unchanged", drift=False)
        return None

    def _sequential_read(self) -> Generator[R, None, _Verdict | None]:
        """One read page by page: yields the new records, returns why it failed (None: consistent)."""
        tally, offset = _Read(), 0
        while True:
            page = self.fetch(offset)
            if (verdict := self._check(page, offset, tally)) is not None:
                return verdict
            yield from self._accept(page, tally)
            offset += len(page.data)
            if offset >= page.total:
                return tally.verdict()

    def _concurrent_read(self) -> Generator[R, None, _Verdict | None]:
        """The first read, the pages after the first fetched concurrently; as :meth:`_sequential_read`."""
        assert self.fan_out is not None
        tally = _Read()
        first = self.fetch(0)
        if (verdict := self._check(first, 0, tally)) is not None:
            return verdict
        yield from self._accept(first, tally)
        step, total = len(first.data), first.total
        if step >= total:
            return tally.verdict()
        # closing(): stopping early must cancel the pages still in flight at once.
        with closing(self.fan_out(self.fetch, range(step, total, step))) as pages:
            for offset, page in pages:
                if (verdict := self._check(page, offset, tally)) is not None:
                    return verdict
                if page.total != total:
                    return _Verdict(f"total moved {total} -> {page.total} while it was paged", drift=True)
                if len(page.data) < min(step, total - offset):
                    due = min(step, total - offset)
                    return _Verdict(f"offset {offset}: {len(page.data)} records where {due} were due", drift=False)
                yield from self._accept(page, tally)
        return tally.verdict()
