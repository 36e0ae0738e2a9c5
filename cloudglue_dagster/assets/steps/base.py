"""What the step keeps of each table it writes: the run's days, resuming, per-day records.

Metadata follows one rule: a partition's materialization describes that partition. What the
run did as a whole (its days, its sweep) is reported once per table, as an observation of
the asset without a partition; a one-day run also puts it on its one materialization, where
the run is the day (the late-data sensor reads it there).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import dagster as dg

from cloudglue_dagster.api.days import UTCDay
from cloudglue_dagster.assets.checks import Outcome, check_evaluations
from cloudglue_dagster.assets.masking import Masker
from cloudglue_dagster.assets.metadata_keys import RUN_PARTITIONS
from cloudglue_dagster.assets.partitions import unknown_partition_message
from cloudglue_dagster.errors import CloudglueConfigError

__all__ = ["Recorder", "resume_runs", "resumed_metadata", "run_days"]

_FAILED = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def run_days(context: dg.AssetExecutionContext, partitions_def: dg.TimeWindowPartitionsDefinition) -> list[UTCDay]:
    """The run's days, oldest first, each with its UTC window.

    A run's partitions are checked when it is launched, but not by every launcher (a run
    launched with partition tags, or from a process holding only a snapshot of the partitions):
    one that reaches the step with a day outside the partitions fails here, saying why, before
    any request, instead of Dagster's bare invariant or a read of a day that is not a partition.
    """
    keys = context.partition_key_range
    for key in dict.fromkeys((keys.start, keys.end)):
        if not partitions_def.has_partition_key(key):
            raise CloudglueConfigError(unknown_partition_message(partitions_def, key))
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


def resumed_metadata(resumed_from: str) -> dict[str, Any]:
    """A day committed earlier and read back: which run committed it."""
    return {"resumed_from_run": dg.MetadataValue.text(resumed_from)}


class Recorder:
    """One table's records of the run: each day's materialization metadata and check outcomes.

    Args:
        context: the step's context.
        key: the table's asset key.
        checked: whether the table's check is selected in this run.
        masker: masks the API key out of what is recorded (a server may send it back in its data).
    """

    def __init__(self, context: dg.AssetExecutionContext, key: dg.AssetKey, *, checked: bool, masker: Masker) -> None:
        self.context, self.key, self.checked, self.masker = context, key, checked, masker
        self.metadata: dict[str, dict[str, Any]] = {}
        self.outcomes: dict[str, dict[str, Outcome]] = {}
        self.written: list[str] = []
        self.resumed: list[str] = []

    def record(
        self,
        day: str,
        metadata: Mapping[str, Any],
        outcomes: Mapping[str, Mapping[str, Outcome]],
        resumed_from: str | None = None,
    ) -> None:
        """The day's materialization metadata and check outcomes (of a day written, or resumed)."""
        (self.resumed if resumed_from else self.written).append(day)
        extra = resumed_metadata(resumed_from) if resumed_from else {}
        self.metadata[day] = self.masker.metadata({**metadata, **extra})
        self.context.add_asset_metadata(self.metadata[day], asset_key=self.key, partition_key=day)
        if self.checked:
            for check, by_day in self.masker.outcomes(outcomes).items():
                self.outcomes.setdefault(check, {}).update(by_day)

    def forget(self, day: str) -> None:
        """Drop what was recorded of a day that is to be written again (a late record reopened it)."""
        if day in self.written:
            self.written.remove(day)
        self.metadata.pop(day, None)
        for by_day in self.outcomes.values():
            by_day.pop(day, None)

    def run_metadata(self, days: Sequence[UTCDay]) -> dict[str, Any]:
        """What this run did, as a whole, for this table."""
        return {
            RUN_PARTITIONS: dg.MetadataValue.int(len(days)),
            "run_days": dg.MetadataValue.text(f"{days[0].key}...{days[-1].key}" if days else ""),
            "days_written": dg.MetadataValue.int(len(self.written)),
            "days_resumed": dg.MetadataValue.int(len(self.resumed)),
        }

    def evaluations(self) -> Iterator[dg.AssetCheckEvaluation]:
        """One evaluation per (check, day), tied to the day's latest materialization."""
        yield from check_evaluations(self.context.instance, self.key, self.outcomes)

    def log_committed(self, table_metadata: Mapping[str, Any]) -> None:
        """Record the days written so far now, as materializations and check evaluations: the
        step is failing, and Dagster would record none of them (see :meth:`TablesStep.on_failed`)."""
        for day, metadata in self.metadata.items():
            self.context.log_event(
                dg.AssetMaterialization(asset_key=self.key, partition=day, metadata={**table_metadata, **metadata})
            )
        for evaluation in self.evaluations():
            self.context.log_event(evaluation)
