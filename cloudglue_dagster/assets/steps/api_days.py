"""chat_completions' days from the API: one padded sweep over the days to fetch, cut into
days as it goes, each checked against what the warehouse holds before it is handed on.

* A day the listing has moved past is handed on *provisionally* (the warehouse keeps its
  previous rows until the sweep is :class:`~cloudglue_dagster.tables.streams.Settled`); the days
  still open when the sweep ends, verified, are handed on as final.
* A day that a late record reopens (:mod:`..days`) is handed back as a
  :class:`~cloudglue_dagster.api.days.ReopenedDay` (its previous rows are put back at once) and
  read again, on its own sweep, after the main one.
* The shrink guard (:mod:`..guards`): a day that would lose most of the rows the warehouse
  holds is not handed on. Only its count is kept (not its records) until every sweep has
  ended: a day that was only incomplete when it was closed is reopened by the record that
  shows it, read again and judged on its whole answer. The days still refused then are
  :attr:`ApiDays.refused`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import dagster as dg

from cloudglue_dagster.api.days import CompleteDay, DayAssembler, ReopenedDay, UTCDay
from cloudglue_dagster.api.window import WindowSweep
from cloudglue_dagster.assets.guards import ShrinkGuard
from cloudglue_dagster.assets.metadata_keys import WINDOW_RECEIVED
from cloudglue_dagster.assets.run_control import TerminationWatch
from cloudglue_dagster.resource import CloudglueResource
from cloudglue_dagster.tables.streams import Settled

from .tables import Source

__all__ = ["ApiDays", "Fetched"]


@dataclass(frozen=True)
class Fetched:
    """A complete day of completions, in the order the API listed them.

    ``provisional``: complete because the listing moved past it, before the sweep ended."""

    day: CompleteDay
    provisional: bool


class ApiDays:
    """The days to fetch, from the API (module docstring).

    Args:
        context: the step's context (its log).
        resource: the API's resource.
        stored: the guard's witness: the rows stored for a day (None: unknown), asked just
            before the day is handed on (so nothing is read before the sweep has a day).
        shrink_guard: None disables the guard.
        allow_shrink: write sharply shrinking days anyway (with a warning each).
        max_held_bytes: the most completion JSON a sweep may hold at once.
        termination: polled as records arrive.
        log: where the sweep reports (the step's masked log).
        source: the endpoint read (chat completions by default).
    """

    def __init__(
        self,
        context: dg.AssetExecutionContext,
        *,
        resource: CloudglueResource,
        stored: Callable[[UTCDay], int | None],
        shrink_guard: ShrinkGuard | None,
        allow_shrink: bool,
        max_held_bytes: int,
        termination: TerminationWatch,
        log: Any,
        source: Source,
    ) -> None:
        self.context, self.resource, self.witness, self.log = context, resource, stored, log
        self.source = source
        self.stored: dict[str, int] = {}  # what the witness said of each day it was asked of
        self.shrink_guard, self.allow_shrink, self.max_held_bytes = shrink_guard, allow_shrink, max_held_bytes
        self.termination = termination
        self.sweeps: list[WindowSweep] = []
        self.refusing: dict[str, int] = {}  # days refused so far (their new row counts), until every sweep has ended
        self.refused: list[tuple[str, int, int]] = []

    def days(self, todo: list[UTCDay]) -> Iterator[Fetched | ReopenedDay | Settled]:
        """Each day of ``todo`` once complete; then :attr:`refused` lists the days refused."""
        with self.resource.get_client(logger=self.log) as client:
            if self.context.retry_number > 0:
                # Only a transient error gets a step retry, and a host that never answered
                # fails permanently: the previous attempt reached it, so an outage that
                # refuses connections now is retried as one, not taken for a wrong base_url.
                client.mark_host_answered()
            repair = False
            while todo:
                # A repair sweep (days a late record reopened) holds its days to the end:
                # the listing has shown it is not sorted, so nothing is closed early twice.
                assembler = DayAssembler(
                    todo, early=not repair, max_held_bytes=self.max_held_bytes, size=self.source.size
                )
                sweep = WindowSweep(todo[0].start, todo[-1].end)
                self.sweeps.append(sweep)
                listing = self.source.listing(client)
                completions = self.termination.watch(sweep.records(client, listing, self.resource.page_size))
                provisional: list[str] = []
                for item, early in _assembled(assembler, _held_on_duplicates(completions, sweep, assembler)):
                    yield from self._hand_on(item, early, provisional)
                reopened = {d.key for d in assembler.reopened}
                settled = tuple(k for k in provisional if k not in reopened)
                if settled:
                    yield Settled(settled)
                self._log_sweep(sweep, assembler)
                todo, repair = sorted(assembler.reopened, key=lambda d: d.start), True
        self.refused = self._still_refused()

    def _hand_on(
        self, item: CompleteDay | ReopenedDay, early: bool, provisional: list[str]
    ) -> Iterator[Fetched | ReopenedDay]:
        if isinstance(item, ReopenedDay):
            if self.refusing.pop(item.day.key, None) is None:  # a refused day was never handed on
                self.log.warning(
                    f"{self.source.noun.capitalize()} {item.completion_id} of {item.day.key} arrived after that day was handed on:"
                    " the API's listing is not sorted by created_at here. The day's previous rows are put"
                    " back in every table, and the day is read again after this sweep."
                )
                yield item
            return
        self.termination.poll()
        if self._shrinks(item):
            self.refusing[item.day.key] = len(item.completions)
            return
        if early:
            provisional.append(item.day.key)
        yield Fetched(item, provisional=early)

    def _shrinks(self, item: CompleteDay) -> bool:
        """Whether the guard refuses ``item`` (or, allowed, only warns of it)."""
        if self.shrink_guard is None:
            return False
        key = item.day.key
        before = self.witness(item.day)
        if before is None:
            return False
        self.stored[key] = before
        shrinking = self.shrink_guard.shrinking({key: self.stored[key]}, {key: len(item.completions)})
        if shrinking and self.allow_shrink:
            self.log.warning(
                f"{key} shrinks sharply ({self.stored[key]} -> {len(item.completions)} rows); replacing it as"
                " allow_shrink allows"
            )
            return False
        return bool(shrinking)

    def _still_refused(self) -> list[tuple[str, int, int]]:
        return [(key, self.stored[key], self.refusing[key]) for key in sorted(self.refusing)]

    def _log_sweep(self, sweep: WindowSweep, assembler: DayAssembler) -> None:
        order = "sorted by created_at" if assembler.sorted else "NOT sorted by created_at (days held to the end)"
        self.log.info(
            f"Fetched {sweep.received} {self.source.noun}s for {sweep.created_after}..{sweep.created_before} in"
            f" {sweep.requests} requests and {sweep.seconds:.2f}s; kept {sweep.kept}, dropped {sweep.dropped}"
            f" outside the run's days; listing {order}; at most {assembler.peak_open} day(s) held at once"
        )

    def run_metadata(self) -> dict[str, Any]:
        """What the run's sweeps saw (so far; the whole run's once they have ended)."""
        if not self.sweeps:
            return {}
        first = self.sweeps[0]
        return {
            "api_requests": dg.MetadataValue.int(sum(s.requests for s in self.sweeps)),
            "fetch_seconds": dg.MetadataValue.float(round(sum(s.seconds for s in self.sweeps), 3)),
            "window_asked": dg.MetadataValue.text(
                f"created_after={first.created_after} created_before={first.created_before}"
            ),
            WINDOW_RECEIVED: dg.MetadataValue.int(first.received),
            "window_kept": dg.MetadataValue.int(first.kept),
            "window_dropped": dg.MetadataValue.int(first.dropped),
            "api_duplicates_dropped": dg.MetadataValue.int(sum(s.pages.duplicates for s in self.sweeps)),
            "window_rereads": dg.MetadataValue.int(sum(s.pages.rereads for s in self.sweeps)),
            "api_rate_limited": dg.MetadataValue.int(sum(s.rate_limited for s in self.sweeps)),
            "lowest_concurrency": dg.MetadataValue.int(min(s.lowest_concurrency for s in self.sweeps)),
        }


def _held_on_duplicates(completions: Iterable[Any], sweep: WindowSweep, assembler: DayAssembler) -> Iterator[Any]:
    """``completions``; from the first record received twice on, no day is handed on early.

    A duplicate means the listing shifted while it was paged, so some record may have been
    skipped: only the days handed on before it come from a clean prefix of the listing. The
    rest waits for the sweep's end (and its re-read, which brings what was skipped)."""
    for completion in completions:
        if sweep.pages.duplicates:
            assembler.hold()
        yield completion


def _assembled(assembler: DayAssembler, completions: Iterable[Any]) -> Iterator[tuple[Any, bool]]:
    """What the assembler hands on, each with whether it came before the sweep ended."""
    for completion in completions:
        for item in assembler.add(completion):
            yield item, True
    for day in assembler.finish():
        yield day, False
