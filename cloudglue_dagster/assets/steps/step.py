"""The one step behind every Cloudglue table: each day's tables from one sweep, together.

The step builds every selected table of a day from that day's chat_completions rows: the
rows just fetched from the API when chat_completions is in the run (:mod:`.api_days`), else
the rows the warehouse holds (a run of the derived tables alone). It hands them on:

* to an I/O manager that stores days (``supports_days``, our DuckDB one) as one
  :class:`~cloudglue_dagster.tables.streams.DayStream` on the first selected table's output, which
  commits each day in every table at once (the other outputs are
  :class:`~cloudglue_dagster.tables.streams.TableWritten`);
* to any other pandas I/O manager as one DataFrame per table for the range, written at the
  end, one table after another.

Each day's metadata and check outcomes are recorded as the day is written (:mod:`.base`);
the check evaluations and the run's figures are reported after the outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pandas as pd

from cloudglue_dagster.api.days import ReopenedDay, UTCDay
from cloudglue_dagster.assets.checks import recorded_row_counts
from cloudglue_dagster.assets.guards import ShrinkGuard, ShrinkRefusedError
from cloudglue_dagster.assets.masking import Masker
from cloudglue_dagster.assets.metadata import column_lineage, column_schema
from cloudglue_dagster.assets.run_control import TerminationWatch, step_errors, wait_for_step_retry
from cloudglue_dagster.assets.text_storage import TextSettings
from cloudglue_dagster.tables.frames import empty_frame
from cloudglue_dagster.tables.streams import (
    DayRows,
    DayStream,
    Item,
    TableTarget,
    TableWritten,
    Warehouse,
    committed_summary,
    supports_days,
)
from cloudglue_dagster.tables.texts import stored_texts

from .api_days import ApiDays, Fetched
from .base import Recorder, resume_runs, run_days
from .tables import CHAT, Source, Table
from .warehouse import IOManagerWarehouse

__all__ = ["StepSettings", "TablesStep"]


@dataclass(frozen=True)
class StepSettings:
    """What the factory gives the step (see :func:`~cloudglue_dagster.build_cloudglue_assets`).

    Attributes:
        keys: table -> asset key, every table of the asset, in build order.
        source: the endpoint the step reads and its table (the other tables are built from it).
        targets: table -> how the warehouse places it.
        tables: table -> its rules (:mod:`.tables`).
        partitions_def: the daily UTC partitions.
        resource_key, io_manager_key: the resources' keys.
        retry_policy, shrink_guard, max_held_bytes: the factory's options.
        op_name: the step's name (what run config addresses).
        texts: what the tables keep of the API's texts (``text_storage``, its key and hook).
    """

    keys: Mapping[str, dg.AssetKey]
    source: Source
    targets: Mapping[str, TableTarget]
    tables: Mapping[str, Table]
    partitions_def: dg.TimeWindowPartitionsDefinition
    resource_key: str
    io_manager_key: str
    retry_policy: dg.RetryPolicy | None
    shrink_guard: ShrinkGuard | None
    max_held_bytes: int
    op_name: str
    texts: TextSettings = TextSettings()


class TablesStep:
    """One run of the step (module docstring).

    Args:
        context: the step's context.
        settings: the factory's settings.
        allow_shrink: write days the shrink guard would refuse (run config or run tag).
        masker: the run's masking of the API key (from the resource's key), over everything the
            step shows: log lines, metadata, errors (a server may send the key back in its data).
    """

    def __init__(
        self, context: dg.AssetExecutionContext, settings: StepSettings, *, allow_shrink: bool, masker: Masker
    ) -> None:
        self.context, self.settings, self.allow_shrink, self.masker = context, settings, allow_shrink, masker
        self.log = masker.log(context.log)
        self.days = run_days(context, settings.partitions_def)
        selected = context.selected_asset_keys
        self.written = [t for t, key in settings.keys.items() if key in selected]
        checks = {c.asset_key for c in context.selected_asset_check_keys}
        self.recorders = {
            t: Recorder(context, settings.keys[t], checked=settings.keys[t] in checks, masker=masker)
            for t in self.written
        }
        self.termination = TerminationWatch(context)
        self.api: ApiDays | None = None
        self.source = settings.source.table
        self.lineage = {t: column_lineage(t, settings.keys) for t in self.written}
        # Each table's contract as stored (its text columns described for the run's text_storage).
        self.schemas = {t: column_schema(settings.tables[t].columns) for t in self.written}
        self.streaming = supports_days(self._io_manager)

    @property
    def _io_manager(self) -> object:
        return getattr(self.context.resources, self.settings.io_manager_key, None)

    # -- outputs -----------------------------------------------------------------------------

    def outputs(self) -> Iterator[dg.Output[Any] | dg.AssetCheckEvaluation | dg.AssetObservation]:
        """Every selected table's output, then the check evaluations and the run's figures."""
        names = {t: self.settings.keys[t].to_python_identifier() for t in self.written}
        if self.streaming:
            first, *others = self.written
            yield dg.Output(self.stream(), output_name=names[first])
            for table in others:
                yield dg.Output(TableWritten(table), output_name=names[table])
        else:
            frames = self._collect()
            for table in self.written:
                yield dg.Output(frames[table], output_name=names[table])
        yield from self.report()

    def stream(self) -> DayStream:
        """The run's days for an I/O manager that stores days."""
        return DayStream(
            days=self.days,
            tables=self.settings.targets,
            written=self.written,
            resume_from=resume_runs(self.context),
            produce=self.produce,
            on_written=self.on_written,
            on_resumed=self.on_resumed,
            resume_columns=self._resume_columns(),
            on_failed=self.on_failed,
            mask_error=self.masker.error,
        )

    def _collect(self) -> dict[str, pd.DataFrame]:
        """The range's rows of each table, for an I/O manager that does not store days."""
        settings = self.settings
        warehouse = IOManagerWarehouse(
            self.context,
            self._io_manager,
            settings.targets,
            settings.keys,
            settings.partitions_def,
            self.days,
            settings.io_manager_key,
        )
        by_day: dict[str, DayRows] = {}
        for item in self.produce((), warehouse):
            if isinstance(item, DayRows):
                by_day[item.day.key] = item
                self.on_written(item)
            elif isinstance(item, ReopenedDay):
                by_day.pop(item.day.key, None)
        frames = {}
        for table in self.written:
            parts = [by_day[d.key].frames[table] for d in self.days if d.key in by_day]
            frames[table] = (
                pd.concat(parts, ignore_index=True) if parts else empty_frame(self.settings.tables[table].columns)
            )
        return frames

    # -- producing the days ------------------------------------------------------------------

    def produce(self, skip: Collection[str], warehouse: Warehouse) -> Iterator[Item]:
        """Each day not in ``skip``, every selected table of it; then, in a one-day run, the
        run's figures on that day (only now are they final; it is recorded after the write)."""
        todo = [d for d in self.days if d.key not in skip]
        if todo:
            with step_errors(self.context, self.settings.retry_policy, self._stored_note, self.log):
                if self.source in self.written:
                    # A step retry waits here, where a Terminate or a signal ends it at once.
                    wait_for_step_retry(self.context, self.settings.retry_policy, self.termination)
                    yield from self._from_api(todo, warehouse)
                else:
                    yield from self._from_warehouse(todo, warehouse)
        if len(self.days) == 1:
            for table, recorder in self.recorders.items():
                self.context.add_asset_metadata(
                    self.masker.metadata(self.run_metadata(table)),
                    asset_key=recorder.key,
                    partition_key=self.days[0].key,
                )

    def _from_api(self, todo: list[UTCDay], warehouse: Warehouse) -> Iterator[Item]:
        # Before any request: a missing hash key fails the run now, not after the sweep.
        texts = self.settings.texts.policy()
        source_columns = self.settings.tables[self.source].columns
        witness = self._witness(todo, warehouse)
        self.api = ApiDays(
            self.context,
            resource=getattr(self.context.resources, self.settings.resource_key),
            stored=witness,
            shrink_guard=self.settings.shrink_guard,
            allow_shrink=self.allow_shrink,
            max_held_bytes=self.settings.max_held_bytes,
            termination=self.termination,
            log=self.log,
            source=self.settings.source,
        )
        for item in self.api.days(todo):
            if isinstance(item, Fetched):
                # The texts rewritten once, here: every table, preview and check is built from these rows.
                rows = stored_texts(self.settings.source.frame(item.day.completions), source_columns, texts)
                yield DayRows(item.day.day, self._frames(rows), provisional=item.provisional)
            else:
                if isinstance(item, ReopenedDay):
                    for recorder in self.recorders.values():
                        recorder.forget(item.day.key)
                yield item
        if self.api.refused:
            assert self.settings.shrink_guard is not None
            raise ShrinkRefusedError(
                self.api.refused,
                self.settings.shrink_guard,
                op_name=self.settings.op_name,
                witness=witness.name,
                records=f"{self.settings.source.noun}s",
            )

    def _witness(self, todo: list[UTCDay], warehouse: Warehouse) -> _Witness:
        return _Witness(warehouse, self.source, todo, lambda: self._recorded(todo), self.log)

    def _recorded(self, todo: list[UTCDay]) -> dict[str, int]:
        return recorded_row_counts(self.context.instance, self.settings.keys[self.source], [d.key for d in todo])

    def _from_warehouse(self, todo: list[UTCDay], warehouse: Warehouse) -> Iterator[DayRows]:
        """The derived tables alone: each day built from the source table's rows stored."""
        columns = sorted({c for t in self.written for c in self.settings.tables[t].source_columns})
        for day in todo:
            self.termination.poll()
            yield DayRows(day, self._frames(warehouse.read(self.source, day, columns)))

    def _frames(self, rows: pd.DataFrame) -> dict[str, pd.DataFrame]:
        """Every written table of a day from its source table's rows (which come along as
        the source of the derived tables' checks, whether written or not)."""
        tables, source = self.settings.tables, self.source
        return {source: rows, **{t: tables[t].build(rows) for t in self.written if t != source}}

    def _resume_columns(self) -> dict[str, Sequence[str] | None]:
        columns: dict[str, Sequence[str] | None] = {t: self.settings.tables[t].resume_columns for t in self.written}
        if CHAT not in columns and "chat_messages" in columns:
            columns[CHAT] = ["id", "created_at", "message_count", "choice_count"]  # the messages check's
        return columns

    def _stored_note(self) -> str:
        """What this attempt has stored, for its failure (the writer's log line says the same)."""
        if not self.streaming:
            return f"Nothing of this run was written: every day keeps its previous rows in every table ({', '.join(self.written)})."
        recorder = self.recorders[self.written[0]]
        to_write = len(self.days) - len(recorder.resumed)
        return committed_summary(recorder.written, to_write, self.written) + " Every other day keeps its previous rows."

    # -- recording ---------------------------------------------------------------------------

    def on_written(self, rows: DayRows) -> None:
        """Record a day just committed: each table's metadata and check outcomes."""
        self._record(rows, None)

    def on_resumed(self, rows: DayRows) -> None:
        """Record a day an earlier attempt committed, read back."""
        self._record(rows, rows.resumed_from)

    def _record(self, rows: DayRows, resumed_from: str | None) -> None:
        source = rows.frames.get(self.source, pd.DataFrame())
        for table, recorder in self.recorders.items():
            describe = self.settings.tables[table].describe
            metadata, outcomes = describe(rows.frames[table], source, rows.day.key, rows.day, self.masker.text)
            metadata["dagster/column_schema"] = self.schemas[table]
            stored = rows.metadata.get(table, {})
            recorder.record(rows.day.key, {**metadata, **self.lineage[table], **stored}, outcomes, resumed_from)

    def on_failed(self, error: BaseException, table_metadata: Mapping[str, Mapping[str, object]]) -> None:
        """The step is failing after committing some days: report them now, unless Dagster
        retries the step (the retry resumes and reports every day).

        Dagster records an output's materializations once the output is handled, so without
        this a failed run's committed days would show as failed. Each gets a materialization
        with the metadata recorded for it and the warehouse's ``table_metadata`` (not the
        table's schema, which only a finished output reads), and its check evaluations."""
        if isinstance(error, dg.RetryRequested) and self.context.retry_number < error.max_retries:
            return
        for table, recorder in self.recorders.items():
            recorder.log_committed(table_metadata.get(table, {}))

    # -- the report --------------------------------------------------------------------------

    def run_metadata(self, table: str) -> dict[str, object]:
        """What this run did for ``table`` (the sweep's figures on the source table)."""
        figures = self.recorders[table].run_metadata(self.days)
        if table == self.source and self.api is not None:
            figures.update(self.api.run_metadata())
        return figures

    def report(self) -> Iterator[dg.Output[Any] | dg.AssetCheckEvaluation | dg.AssetObservation]:
        """After the outputs: each day's check evaluations, the (empty) outputs of the selected
        checks, then each table's figures, once."""
        for recorder in self.recorders.values():
            yield from recorder.evaluations()
        selected = self.context.selected_asset_check_keys
        for output_name, spec in self.context.assets_def.check_specs_by_output_name.items():
            if spec.key in selected:
                yield dg.Output(None, output_name=output_name)
        for table, recorder in self.recorders.items():
            yield dg.AssetObservation(asset_key=recorder.key, metadata=self.masker.metadata(self.run_metadata(table)))


class _Witness:
    """The shrink guard's witness: the rows the warehouse holds for each day to fetch, read in
    one query when the first day is about to be handed on (not before the sweep: another run
    may hold the file until then); where the warehouse cannot tell, the row counts of Dagster's
    latest materializations (``recorded``), with a warning."""

    def __init__(
        self,
        warehouse: Warehouse,
        table: str,
        days: Sequence[UTCDay],
        recorded: Callable[[], Mapping[str, int]],
        log: Any,
    ) -> None:
        self.warehouse, self.table, self.days, self.recorded, self.log = warehouse, table, list(days), recorded, log
        self._counts: Mapping[str, int] | None = None
        self.name = "the warehouse"
        """What the counts come from, for the refusal's message."""

    def __call__(self, day: UTCDay) -> int | None:
        if self._counts is None:
            self._counts = self.warehouse.stored_rows(self.table, self.days)
            if self._counts is None:
                self.log.warning(
                    "The shrink guard compares each day with the row count of its latest materialization in"
                    " Dagster's instance: this I/O manager cannot count the rows it stores. A new or wiped"
                    " instance remembers none, and then no day is guarded."
                )
                self._counts, self.name = self.recorded(), "Dagster's record"
        return self._counts.get(day.key)
