"""chat_completions' step: one padded sweep over the run's days, cut into days as it goes."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Any

import dagster as dg
import pandas as pd

from ..checks import chat_check_outcomes, recorded_row_counts
from ..days import DayAssembler, ReopenedDay, UTCDay
from ..frames import CHAT_COMPLETIONS_COLUMNS, chat_completions_frame, conform
from ..guards import ALLOW_SHRINK_TAG, ShrinkGuard, ShrinkRefusedError
from ..metadata import frame_metadata
from ..metadata_keys import WINDOW_RECEIVED
from ..resource import CloudglueResource
from ..run_control import TerminationWatch, step_errors, wait_for_step_retry
from ..streams import StoredDay
from ..window import WindowSweep
from .base import Step, run_days

__all__ = ["ChatCompletionsStep"]

_CHAT_PREVIEW = ("created_at", "model", "total_tokens", "prompt", "response")
_CHAT_RESUME_COLUMNS = [c.name for c in CHAT_COMPLETIONS_COLUMNS if c.name not in ("payload_messages", "choices")]


class ChatCompletionsStep(Step):
    """chat_completions: one padded sweep over the days to fetch, cut into days as it goes.

    Each day's frame is checked against the shrink guard and the run's status just before it
    is handed on. A day that a late record reopens is read again, on its own sweep, after
    the main one (see :mod:`..days`).
    """

    def __init__(
        self,
        context: dg.AssetExecutionContext,
        *,
        key: dg.AssetKey,
        partitions_def: dg.TimeWindowPartitionsDefinition,
        resource: CloudglueResource,
        retry_policy: dg.RetryPolicy | None,
        shrink_guard: ShrinkGuard | None,
    ) -> None:
        super().__init__(context, key, run_days(context, partitions_def))
        self.resource, self.retry_policy, self.shrink_guard = resource, retry_policy, shrink_guard
        self.termination = TerminationWatch(context)
        self.sweeps: list[WindowSweep] = []
        self._recorded: Mapping[str, int] = {}
        self._allow_shrink = context.run.tags.get(ALLOW_SHRINK_TAG, "").strip().lower() == "true"

    resume_columns = _CHAT_RESUME_COLUMNS  # the JSON columns are not needed to report a kept day

    def days_to_write(self, skip: Collection[str]) -> Iterator[StoredDay | ReopenedDay]:
        todo = [d for d in self.days if d.key not in skip]
        if not todo:
            return
        with step_errors(self.context, self.retry_policy):
            wait_for_step_retry(self.context, self.retry_policy, self.termination)
            if self.shrink_guard is not None:
                self._recorded = recorded_row_counts(self.context.instance, self.key, [d.key for d in todo])
            with self.resource.get_client(logger=self.context.log) as client:
                repair = False
                while todo:
                    # A repair sweep (days a late record reopened) holds its days to the end:
                    # the listing has shown it is not sorted, so nothing is closed early twice.
                    assembler = DayAssembler(todo, early=not repair)
                    sweep = WindowSweep(todo[0].start, todo[-1].end)
                    self.sweeps.append(sweep)
                    completions = self.termination.watch(sweep.completions(client, self.resource.page_size))
                    for item in _assembled(assembler, _held_on_duplicates(completions, sweep, assembler)):
                        yield self._hand_on(item)
                    self._log_sweep(sweep, assembler)
                    todo, repair = sorted(assembler.reopened, key=lambda d: d.start), True

    def _hand_on(self, item: Any) -> StoredDay | ReopenedDay:
        if isinstance(item, ReopenedDay):
            self.forget(item.day.key)
            self.context.log.warning(
                f"Completion {item.completion_id} of {item.day.key} arrived after that day was written:"
                " the API's listing is not sorted by created_at here. The day is marked unwritten and"
                " read again after this sweep."
            )
            return item
        frame = chat_completions_frame(item.completions)
        self._guard(item.day, len(frame))
        self.termination.poll()
        return StoredDay(item.day, frame)

    def _guard(self, day: UTCDay, rows: int) -> None:
        if self.shrink_guard is None:
            return
        stored = {day.key: self._recorded[day.key]} if day.key in self._recorded else {}
        shrinking = self.shrink_guard.shrinking(stored, {day.key: rows})
        if shrinking and self._allow_shrink:
            self.context.log.warning(
                f"{day.key} shrinks sharply ({shrinking[0][1]} -> {shrinking[0][2]} rows); replacing it as"
                f" the run tag {ALLOW_SHRINK_TAG}=true allows"
            )
        elif shrinking:
            raise ShrinkRefusedError(shrinking, self.shrink_guard)

    def _log_sweep(self, sweep: WindowSweep, assembler: DayAssembler) -> None:
        order = "sorted by created_at" if assembler.sorted else "NOT sorted by created_at (days held to the end)"
        self.context.log.info(
            f"Fetched {sweep.received} completions for {sweep.created_after}..{sweep.created_before} in"
            f" {sweep.requests} requests and {sweep.seconds:.2f}s; kept {sweep.kept}, dropped {sweep.dropped}"
            f" outside the window; listing {order}; at most {assembler.peak_open} day(s) held at once"
        )

    def on_written(self, stored: StoredDay) -> None:
        metadata = frame_metadata(
            stored.frame, columns=CHAT_COMPLETIONS_COLUMNS, preview_columns=_CHAT_PREVIEW, time_column="created_at"
        )
        self._record(stored, metadata, self._outcomes(stored))

    def on_resumed(self, stored: StoredDay) -> None:
        frame = conform(stored.frame, [c for c in CHAT_COMPLETIONS_COLUMNS if c.name in _CHAT_RESUME_COLUMNS])
        self.on_written(StoredDay(stored.day, frame, stored.resumed_from, stored.metadata))

    def _outcomes(self, stored: StoredDay) -> dict[str, dict[str, Any]]:
        day = stored.day
        return chat_check_outcomes(
            stored.frame, pd.Timestamp(day.start), pd.Timestamp(day.end), [(day.key, stored.frame)]
        )

    def run_metadata(self) -> dict[str, Any]:
        """The run's days, then what its sweeps saw (so far; the whole run's once it has ended)."""
        figures = super().run_metadata()
        if not self.sweeps:
            return figures
        first = self.sweeps[0]
        return {
            **figures,
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


def _assembled(assembler: DayAssembler, completions: Iterable[Any]) -> Iterator[Any]:
    for completion in completions:
        yield from assembler.add(completion)
    yield from assembler.finish()
