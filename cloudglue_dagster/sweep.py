"""Reading a whole window by offset paging, and proving the pages account for ``total``.

Standard library only (plus the records of :mod:`.models`). A sweep is trusted only when its
pages are consistent with each other; otherwise the window is read again, one page at a time,
and if it stays inconsistent the sweep fails with
:class:`~cloudglue_dagster.errors.InconsistentResponseError` *before* anything is stored.

**Per page** (one answer contradicting itself): more records than the ``limit`` asked, more
records than ``total`` leaves after the offset, no records while ``total`` says some remain,
or the same id twice.

**Per read** of the window: a page made only of records already received in this read while
``total`` did not move (a server answering the same page for every offset), and, at the end,
distinct records that do not account for ``total``:

* if ``total`` never moved during the read, the distinct ids must be exactly ``total``;
* if it moved (completions arriving: the window includes today), the read is explained by
  arrivals only when ``total`` never decreased and the distinct ids reach the ``total`` the
  read started with (no completion that was there at the start was missed). Anything else
  (``total`` falling, records missing) is read again.

The first read fetches the pages after the first concurrently; re-reads go page by page,
advancing by the records actually received, so records shifting between pages are not missed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

from .errors import InconsistentResponseError
from .models import ChatCompletion, ChatCompletionPage

__all__ = ["MAX_REREADS", "Sweep", "SweepStats", "page_problem"]

MAX_REREADS = 2
"""Reads of a window after the first one found it inconsistent, before the sweep fails."""

Fetch = Callable[[int], ChatCompletionPage]
FanOut = Callable[[Fetch, Iterable[int]], Iterator[tuple[int, ChatCompletionPage]]]


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


def page_problem(page: ChatCompletionPage, offset: int, limit: int) -> str | None:
    """What makes one answer contradict itself, or None. ``offset`` and ``limit`` are the
    values asked for."""
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
    return None


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

    def only_seen(self, page: ChatCompletionPage) -> bool:
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


class Sweep:
    """Iterates over every completion of a window exactly once, verified (module docstring).

    Args:
        fetch: reads the page at an offset (retries included).
        fan_out: fetches many offsets concurrently, yielding ``(offset, page)`` in offset
            order; None reads page by page only.
        limit: the page size asked for.
        window: ``(created_after, created_before)`` as sent, for messages.
        stats: filled in as pages arrive.
        warn: reports a re-read.
    """

    def __init__(
        self,
        fetch: Fetch,
        fan_out: FanOut | None,
        *,
        limit: int,
        window: tuple[str | None, str | None],
        stats: SweepStats,
        warn: Callable[[str], Any],
    ) -> None:
        self.fetch, self.fan_out, self.limit = fetch, fan_out, limit
        self.window, self.stats, self.warn = window, stats, warn
        self.seen: set[str] = set()

    def __iter__(self) -> Iterator[ChatCompletion]:
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
                f" {window} again page by page so no completion is missed"
            )
        return (
            f"Cloudglue API: inconsistent answer for {window} ({verdict.problem}); reading it again"
            " page by page before anything is stored"
        )

    def _accept(self, page: ChatCompletionPage, tally: _Read) -> Iterator[ChatCompletion]:
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

    def _check(self, page: ChatCompletionPage, offset: int, tally: _Read) -> _Verdict | None:
        tally.totals.append(page.total)
        problem = page_problem(page, offset, self.limit)
        if problem is not None:
            return _Verdict(problem, drift=False)
        if offset > 0 and tally.only_seen(page):
            return _Verdict(f"offset {offset}: only records already received, total unchanged", drift=False)
        return None

    def _sequential_read(self) -> Iterator[ChatCompletion]:
        tally, offset = _Read(), 0
        while True:
            page = self.fetch(offset)
            if (verdict := self._check(page, offset, tally)) is not None:
                return verdict
            yield from self._accept(page, tally)
            offset += len(page.data)
            if offset >= page.total:
                return tally.verdict()

    def _concurrent_read(self) -> Iterator[ChatCompletion]:
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
