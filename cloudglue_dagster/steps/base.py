"""What every asset's step shares: the run's days, resuming, handing days on, per-day records.

Every step produces its table one day at a time (:class:`~cloudglue_dagster.streams.StoredDay`)
and records each day's metadata and check outcomes as the day is written. The asset then
hands the days on in one of two ways (:func:`output_days`):

* to an I/O manager that stores days (``supports_days``, our DuckDB one): as a
  :class:`~cloudglue_dagster.streams.DayStream`, so each day is committed as soon as it is
  complete and a range run holds only the days in flight;
* to any other pandas I/O manager: as one DataFrame for the range, written at the end (the
  whole range in memory, as in earlier releases).

Metadata follows one rule: a partition's materialization describes that partition. What the
run did as a whole (its days, its sweep) is reported once, as an observation of the asset
without a partition (:meth:`Step.report`); a one-day run also puts it on its one
materialization, where the run is the day (the late-data sensor reads it there).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

import dagster as dg
import pandas as pd

from ..checks import check_evaluations, report_checks
from ..days import ReopenedDay, UTCDay
from ..frames import window_rows
from ..masking import Masker
from ..metadata_keys import RUN_PARTITIONS
from ..streams import DayFrames, DayStream, StoredDay, supports_days

__all__ = ["Step", "frame_days", "output_days", "resume_runs", "resumed_metadata", "run_days"]

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


def resumed_metadata(stored: StoredDay) -> dict[str, Any]:
    """A day committed earlier and read back: which run committed it."""
    return {"resumed_from_run": dg.MetadataValue.text(stored.resumed_from or "")}


def frame_days(frame: pd.DataFrame, column: str, days: Sequence[UTCDay]) -> DayFrames:
    """A whole-range frame (from an I/O manager that does not load by day) seen as days."""
    if column not in frame.columns:  # pd.DataFrame() for a range with nothing stored
        return DayFrames(days=list(days), load=lambda day: frame)
    frame = frame.sort_values(column, kind="stable", ignore_index=True)

    def load(day: UTCDay) -> pd.DataFrame:
        return window_rows(frame, column, day.start, day.end)

    return DayFrames(days=list(days), load=load)


class Step:
    """Per-day bookkeeping shared by the steps: metadata by partition, check outcomes, and
    the run's own figures (see the module docstring).

    ``masker`` (the run's, from the resource's key) masks what the step shows: its log lines
    (``self.log``), the metadata and check outcomes it records, and the errors its output
    raises in the I/O manager (``DayStream.mask_error``)."""

    def __init__(
        self, context: dg.AssetExecutionContext, key: dg.AssetKey, days: Sequence[UTCDay], masker: Masker
    ) -> None:
        self.context, self.key, self.days, self.masker = context, key, list(days), masker
        self.log = masker.log(context.log)
        self.outcomes: dict[str, dict[str, Any]] = {}
        self.written: list[str] = []
        self.resumed: list[str] = []
        self.recorded: dict[str, dict[str, Any]] = {}  # each day's materialization metadata

    def _record(
        self, stored: StoredDay, metadata: Mapping[str, Any], outcomes: Mapping[str, Mapping[str, Any]] = {}
    ) -> None:
        """The day's materialization metadata (with the warehouse's, and the run's in a
        one-day run) and its check outcomes."""
        (self.resumed if stored.resumed_from else self.written).append(stored.day.key)
        extra = resumed_metadata(stored) if stored.resumed_from else {}
        self.recorded[stored.day.key] = self.masker.metadata({**metadata, **stored.metadata, **extra})
        self.context.add_asset_metadata(self.recorded[stored.day.key], partition_key=stored.day.key)
        for check, by_day in self.masker.outcomes(outcomes).items():
            self.outcomes.setdefault(check, {}).update(by_day)

    def forget(self, key: str) -> None:
        """Drop what was recorded of a day that is to be written again (a late record reopened it)."""
        if key in self.written:
            self.written.remove(key)
        self.recorded.pop(key, None)
        for by_day in self.outcomes.values():
            by_day.pop(key, None)

    resume_columns: Sequence[str] | None = None
    """The columns :meth:`on_resumed` needs of a day read back (None: all)."""

    def stream(self) -> DayStream:
        """The step's output for an I/O manager that stores days."""
        return DayStream(
            days=self.days,
            resume_from=resume_runs(self.context),
            produce=self.produce,
            on_written=self.on_written,
            on_resumed=self.on_resumed,
            resume_columns=self.resume_columns,
            on_failed=self.on_failed,
            mask_error=self.masker.error,
        )

    def on_failed(self, error: BaseException, table: Mapping[str, Any]) -> None:
        """The step is failing after committing some days: report them now, unless Dagster
        retries the step (the retry resumes and reports every day).

        Dagster records an output's materializations once the output is handled, so without
        this a failed run's committed days would show as failed. Each gets a materialization
        with the metadata recorded for it and the warehouse's ``table`` metadata (not the
        table's schema, which only a finished output reads), and its check evaluations,
        logged at once."""
        if isinstance(error, dg.RetryRequested) and self.context.retry_number < error.max_retries:
            return
        for key, metadata in self.recorded.items():
            self.context.log_event(
                dg.AssetMaterialization(asset_key=self.key, partition=key, metadata={**table, **metadata})
            )
        for evaluation in check_evaluations(self.context.instance, self.key, self.outcomes):
            self.context.log_event(evaluation)

    def on_written(self, stored: StoredDay) -> None:
        """Record a day just committed (its metadata and check outcomes)."""
        raise NotImplementedError

    def on_resumed(self, stored: StoredDay) -> None:
        """Record a day an earlier attempt committed, read back."""
        raise NotImplementedError

    def produce(self, skip: Collection[str]) -> Iterator[StoredDay | ReopenedDay]:
        """:meth:`days_to_write`, then, in a one-day run, the run's figures on that day (only
        now are they final; the materialization is recorded after the write)."""
        yield from self.days_to_write(skip)
        if len(self.days) == 1:
            self.context.add_asset_metadata(self.masker.metadata(self.run_metadata()), partition_key=self.days[0].key)

    def days_to_write(self, skip: Collection[str]) -> Iterator[StoredDay | ReopenedDay]:
        """Each day not in ``skip``, once complete (and a ReopenedDay to undo one)."""
        raise NotImplementedError

    def run_metadata(self) -> dict[str, Any]:
        """What this run did, as a whole; subclasses add their own figures."""
        return {
            RUN_PARTITIONS: dg.MetadataValue.int(len(self.days)),
            "run_days": dg.MetadataValue.text(f"{self.days[0].key}...{self.days[-1].key}" if self.days else ""),
            "days_written": dg.MetadataValue.int(len(self.written)),
            "days_resumed": dg.MetadataValue.int(len(self.resumed)),
        }

    def report(self) -> Iterator[dg.AssetCheckEvaluation | dg.Output | dg.AssetObservation]:
        """After the output: each day's check evaluations, then the run's figures, once."""
        yield from report_checks(self.context, self.key, self.outcomes)
        yield dg.AssetObservation(asset_key=self.key, metadata=self.masker.metadata(self.run_metadata()))
