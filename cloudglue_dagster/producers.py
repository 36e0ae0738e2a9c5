"""What each asset's step does for each UTC day of its run, whatever the warehouse.

Every step here produces its table one day at a time (:class:`~cloudglue_dagster.streams.StoredDay`)
and records each day's metadata and check outcomes as the day is written. The asset then
hands the days on in one of two ways (:func:`output_days`):

* to an I/O manager that stores days (``supports_days``, our DuckDB one): as a
  :class:`~cloudglue_dagster.streams.DayStream`, so each day is committed as soon as it is
  complete and a range run holds only the days in flight;
* to any other pandas I/O manager: as one DataFrame for the range, written at the end (the
  whole range in memory, as in earlier releases).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any

import dagster as dg
import pandas as pd

from .checks import chat_check_outcomes, messages_check_outcomes, recorded_row_counts, report_checks
from .days import DayAssembler, ReopenedDay, UTCDay
from .frames import (
    CHAT_COMPLETIONS_COLUMNS,
    CHAT_MESSAGES_COLUMNS,
    MESSAGE_SOURCE_COLUMNS,
    TOKEN_USAGE_COLUMNS,
    ModelPrice,
    chat_completions_frame,
    chat_messages_frame,
    conform,
    empty_frame,
    token_usage_frame,
    window_rows,
)
from .guards import ALLOW_SHRINK_TAG, ShrinkGuard, ShrinkRefusedError
from .metadata import cost_metadata, frame_metadata, messages_metadata
from .metadata_keys import RUN_PARTITIONS, WINDOW_RECEIVED
from .resource import CloudglueResource
from .run_control import TerminationWatch, step_errors
from .streams import DayFrames, DayStream, StoredDay, supports_days
from .window import WindowSweep

__all__ = [
    "ChatCompletionsStep",
    "ChatMessagesStep",
    "frame_days",
    "output_days",
    "resume_runs",
    "run_days",
    "usage_by_day",
]

_CHAT_PREVIEW = ("created_at", "model", "total_tokens", "prompt", "response")
_USAGE_PREVIEW = ("date", "model", "completions", "prompt_tokens", "completion_tokens", "total_tokens", "total_cost")
_MESSAGES_PREVIEW = ("completion_id", "source", "position", "role", "content")
_CHAT_RESUME_COLUMNS = [c.name for c in CHAT_COMPLETIONS_COLUMNS if c.name not in ("payload_messages", "choices")]

_FAILED = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def run_days(context: dg.AssetExecutionContext, partitions_def: dg.TimeWindowPartitionsDefinition) -> list[UTCDay]:
    """The run's days, oldest first, each with its UTC window."""
    days = []
    for key in context.partition_keys:
        window = partitions_def.time_window_for_partition_key(key)
        days.append(UTCDay(key, window.start, window.end))
    return days


def resume_runs(context: dg.AssetExecutionContext) -> list[str]:
    """Runs whose committed days this step keeps: itself (a step retry), then the run it
    re-executes if that one failed or was canceled. A fresh run, or a re-execution of a
    run that succeeded, resumes nothing of another run and replaces every day."""
    # Only an earlier attempt of this step can have left marks under this run's id; asking
    # for none on a first attempt keeps the warehouse out of the way until a day is complete.
    runs = [context.run.run_id] if context.retry_number > 0 else []
    parent_id = context.run.parent_run_id
    if parent_id:
        parent = context.instance.get_run_by_id(parent_id)
        if parent is not None and parent.status in _FAILED:
            runs.append(parent_id)
    return runs


def output_days(
    context: dg.AssetExecutionContext,
    io_manager_key: str,
    stream: DayStream,
    empty: pd.DataFrame,
) -> dg.Output:
    """The step's output: ``stream`` itself for an I/O manager that stores days, else the
    range's rows in one frame (each day still goes through ``on_written`` before the write)."""
    if supports_days(getattr(context.resources, io_manager_key, None)):
        return dg.Output(stream)
    frames = []
    for item in stream.produce(()):
        if isinstance(item, StoredDay):
            stream.on_written(item)
            frames.append(item.frame)
    return dg.Output(pd.concat(frames, ignore_index=True) if frames else empty)


class _Step:
    """Per-day bookkeeping shared by the steps: metadata by partition, check outcomes."""

    def __init__(self, context: dg.AssetExecutionContext, key: dg.AssetKey) -> None:
        self.context, self.key = context, key
        self.outcomes: dict[str, dict[str, Any]] = {}

    def _record(self, day: UTCDay, metadata: Mapping[str, Any], outcomes: Mapping[str, Mapping[str, Any]]) -> None:
        self.context.add_asset_metadata(dict(metadata), partition_key=day.key)
        for check, by_day in outcomes.items():
            self.outcomes.setdefault(check, {}).update(by_day)

    def checks(self) -> Iterator[dg.AssetCheckEvaluation | dg.Output]:
        yield from report_checks(self.context, self.key, self.outcomes)


def _resumed(stored: StoredDay) -> dict[str, Any]:
    return {"resumed_from_run": dg.MetadataValue.text(stored.resumed_from or "")}


class ChatCompletionsStep(_Step):
    """chat_completions: one padded sweep over the days to fetch, cut into days as it goes.

    Each day's frame is checked against the shrink guard and the run's status just before it
    is handed on. A day that a late record reopens is read again, on its own sweep, after
    the main one (see :mod:`.days`).
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
        super().__init__(context, key)
        self.resource, self.retry_policy, self.shrink_guard = resource, retry_policy, shrink_guard
        self.days = run_days(context, partitions_def)
        self.termination = TerminationWatch(context)
        self.sweeps: list[WindowSweep] = []
        self._recorded: Mapping[str, int] = {}
        self._written: list[str] = []
        self._allow_shrink = context.run.tags.get(ALLOW_SHRINK_TAG, "").strip().lower() == "true"

    def stream(self) -> DayStream:
        return DayStream(
            days=self.days,
            resume_from=resume_runs(self.context),
            produce=self.produce,
            on_written=self.on_written,
            on_resumed=self.on_resumed,
            resume_columns=_CHAT_RESUME_COLUMNS,
        )

    def produce(self, skip: Collection[str]) -> Iterator[StoredDay | ReopenedDay]:
        todo = [d for d in self.days if d.key not in skip]
        if not todo:
            return
        with step_errors(self.context, self.retry_policy):
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
        # Figures of the whole run, now that its sweeps have ended.
        sweep_metadata = self._sweep_metadata()
        for key in self._written:
            self.context.add_asset_metadata(sweep_metadata, partition_key=key)

    def _hand_on(self, item: Any) -> StoredDay | ReopenedDay:
        if isinstance(item, ReopenedDay):
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
        day, frame = stored.day, stored.frame
        metadata = frame_metadata(
            frame, columns=CHAT_COMPLETIONS_COLUMNS, preview_columns=_CHAT_PREVIEW, time_column="created_at"
        )
        self._written.append(day.key)
        self._record(day, metadata, self._outcomes(stored))

    def on_resumed(self, stored: StoredDay) -> None:
        frame = conform(stored.frame, [c for c in CHAT_COMPLETIONS_COLUMNS if c.name in _CHAT_RESUME_COLUMNS])
        metadata = frame_metadata(
            frame, columns=CHAT_COMPLETIONS_COLUMNS, preview_columns=_CHAT_PREVIEW, time_column="created_at"
        )
        self._record(stored.day, {**metadata, **_resumed(stored)}, self._outcomes(StoredDay(stored.day, frame)))

    def _outcomes(self, stored: StoredDay) -> dict[str, dict[str, Any]]:
        day = stored.day
        return chat_check_outcomes(
            stored.frame, pd.Timestamp(day.start), pd.Timestamp(day.end), [(day.key, stored.frame)]
        )

    def _sweep_metadata(self) -> dict[str, Any]:
        """What the run's sweep saw, so far (the figures of the whole run once it has ended)."""
        sweep = self.sweeps[-1] if self.sweeps else None
        if sweep is None:
            return {}
        return {
            "api_requests": dg.MetadataValue.int(sum(s.requests for s in self.sweeps)),
            "fetch_seconds": dg.MetadataValue.float(round(sum(s.seconds for s in self.sweeps), 3)),
            RUN_PARTITIONS: dg.MetadataValue.int(len(self.days)),
            "window_asked": dg.MetadataValue.text(
                f"created_after={self.sweeps[0].created_after} created_before={self.sweeps[0].created_before}"
            ),
            WINDOW_RECEIVED: dg.MetadataValue.int(self.sweeps[0].received),
            "window_kept": dg.MetadataValue.int(self.sweeps[0].kept),
            "window_dropped": dg.MetadataValue.int(self.sweeps[0].dropped),
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


class ChatMessagesStep(_Step):
    """chat_messages: each day's messages built from that day of chat_completions."""

    def __init__(
        self,
        context: dg.AssetExecutionContext,
        *,
        key: dg.AssetKey,
        chat: DayFrames,
        retry_policy: dg.RetryPolicy | None,
    ) -> None:
        super().__init__(context, key)
        self.chat, self.retry_policy = chat, retry_policy
        self.termination = TerminationWatch(context)
        self._chat_of: tuple[str, pd.DataFrame] | None = None  # the day being handed on

    def stream(self) -> DayStream:
        return DayStream(
            days=self.chat.days,
            resume_from=resume_runs(self.context),
            produce=self.produce,
            on_written=self.on_written,
            on_resumed=self.on_resumed,
        )

    def produce(self, skip: Collection[str]) -> Iterator[StoredDay]:
        for day in self.chat.days:
            if day.key in skip:
                continue
            with step_errors(self.context, self.retry_policy):
                self.termination.poll()
            chat = self._chat(day)
            self._chat_of = (day.key, chat)
            yield StoredDay(day, chat_messages_frame(chat))
            self._chat_of = None

    def _chat(self, day: UTCDay) -> pd.DataFrame:
        # Storage returns rows in no particular order; sorted, the messages come out in order.
        return conform(self.chat.load(day), MESSAGE_SOURCE_COLUMNS).sort_values(
            ["created_at", "id"], kind="stable", ignore_index=True
        )

    def on_written(self, stored: StoredDay) -> None:
        messages = stored.frame
        held = self._chat_of
        chat = held[1] if held is not None and held[0] == stored.day.key else self._chat(stored.day)
        metadata = frame_metadata(messages, columns=CHAT_MESSAGES_COLUMNS, preview_columns=_MESSAGES_PREVIEW)
        extra = _resumed(stored) if stored.resumed_from else {}
        self._record(
            stored.day,
            {**metadata, **messages_metadata(messages), **extra},
            messages_check_outcomes([(stored.day.key, messages, chat)]),
        )

    def on_resumed(self, stored: StoredDay) -> None:
        self.on_written(StoredDay(stored.day, conform(stored.frame, CHAT_MESSAGES_COLUMNS), stored.resumed_from))


def usage_by_day(
    context: dg.AssetExecutionContext,
    chat: DayFrames,
    accounting: Sequence[Any],
    prices: Mapping[str, ModelPrice],
) -> pd.DataFrame:
    """token_usage for the run's days, each summed from that day of chat_completions, with
    each partition's metadata."""
    frames = []
    for stored in chat:
        usage = token_usage_frame(conform(stored.frame, accounting), prices)
        metadata = frame_metadata(usage, columns=TOKEN_USAGE_COLUMNS, preview_columns=_USAGE_PREVIEW)
        context.add_asset_metadata(
            {**metadata, **(cost_metadata(usage) if prices else {})}, partition_key=stored.day.key
        )
        frames.append(usage)
    return pd.concat(frames, ignore_index=True) if frames else empty_frame(TOKEN_USAGE_COLUMNS)


def frame_days(frame: pd.DataFrame, column: str, days: Sequence[UTCDay]) -> DayFrames:
    """A whole-range frame (from an I/O manager that does not load by day) seen as days."""
    if column not in frame.columns:  # pd.DataFrame() for a range with nothing stored
        return DayFrames(days=list(days), load=lambda day: frame)
    frame = frame.sort_values(column, kind="stable", ignore_index=True)

    def load(day: UTCDay) -> pd.DataFrame:
        return window_rows(frame, column, day.start, day.end)

    return DayFrames(days=list(days), load=load)
