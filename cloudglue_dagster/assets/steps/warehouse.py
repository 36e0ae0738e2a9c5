"""The warehouse as seen through any pandas I/O manager (one that does not store days).

The DuckDB I/O manager answers the step's questions itself (:mod:`cloudglue_dagster.io_managers.duckdb.day_store`). Any
other I/O manager is asked through its ``load_input``, as a downstream asset would load the
table: the stored rows of a range (only the columns asked for, where it honours the
``columns`` input metadata, as Dagster's database I/O managers do), cut into days here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
import pandas as pd

from cloudglue_dagster.api.days import UTCDay
from cloudglue_dagster.tables.frames import window_rows
from cloudglue_dagster.tables.streams import TableTarget

__all__ = ["IOManagerWarehouse"]

_FRAME = dg.PythonObjectDagsterType(pd.DataFrame)


class IOManagerWarehouse:
    """:class:`~cloudglue_dagster.tables.streams.Warehouse` over ``io_manager.load_input``.

    Args:
        context: the step's context (instance, resources, log).
        io_manager: the I/O manager the tables are stored with.
        targets: the tables, by name.
        keys: the tables' asset keys, by name.
        partitions_def: their daily partitions.
        days: the run's days (a read loads the whole range once per table and column set).
        io_manager_key: the I/O manager's resource key.
    """

    def __init__(
        self,
        context: dg.AssetExecutionContext,
        io_manager: Any,
        targets: Mapping[str, TableTarget],
        keys: Mapping[str, dg.AssetKey],
        partitions_def: dg.TimeWindowPartitionsDefinition,
        days: Sequence[UTCDay],
        io_manager_key: str,
    ) -> None:
        self.context, self.io_manager, self.targets, self.keys = context, io_manager, targets, keys
        self.io_manager_key = io_manager_key
        self.partitions_def, self.days = partitions_def, list(days)
        self._loaded: dict[tuple[str, tuple[str, ...] | None], pd.DataFrame] = {}

    def stored_rows(self, table: str, days: Sequence[UTCDay]) -> dict[str, int] | None:
        """Rows per day, from the stored ``partition_expr`` column; None when the I/O manager
        cannot load it (the table does not exist yet, or it stores no DataFrame)."""
        column = str(self.targets[table].metadata["partition_expr"])
        try:
            frame = self._load(table, [column])
        except Exception as exc:  # noqa: BLE001 - any failure only means "cannot tell"
            self.context.log.info(f"The stored rows of {table} could not be counted ({type(exc).__name__}: {exc}).")
            return None
        return {day.key: len(window_rows(frame, column, day.start, day.end)) for day in days}

    def read(self, table: str, day: UTCDay, columns: Sequence[str] | None) -> pd.DataFrame:
        column = str(self.targets[table].metadata["partition_expr"])
        wanted = None if columns is None else list(dict.fromkeys([*columns, column]))
        frame = self._load(table, wanted)
        if column not in frame.columns:  # pd.DataFrame() for a range with nothing stored
            return frame
        return window_rows(frame, column, day.start, day.end)

    def _load(self, table: str, columns: Sequence[str] | None) -> pd.DataFrame:
        cache_key = (table, None if columns is None else tuple(columns))
        if cache_key not in self._loaded:
            frame = self.io_manager.load_input(self._input_context(table, columns))
            column = str(self.targets[table].metadata["partition_expr"])
            if isinstance(frame, pd.DataFrame) and column in frame.columns:
                frame = frame.sort_values(column, kind="stable", ignore_index=True)
            self._loaded[cache_key] = frame
        return self._loaded[cache_key]

    def _input_context(self, table: str, columns: Sequence[str] | None) -> dg.InputContext:
        key, target = self.keys[table], self.targets[table]
        keys = dg.PartitionKeyRange(self.days[0].key, self.days[-1].key)
        return dg.build_input_context(
            asset_key=key,
            asset_partitions_def=self.partitions_def,
            asset_partition_key_range=keys,
            upstream_output=dg.build_output_context(asset_key=key, definition_metadata=dict(target.metadata)),
            definition_metadata={} if columns is None else {"columns": list(columns)},
            dagster_type=_FRAME,
            resource_config=self._resource_config(),
            instance=self.context.instance,
        )

    def _resource_config(self) -> Any:
        """The I/O manager's resolved config, which Dagster hands its own input contexts (the
        Delta Lake manager reads its root from it). Not public: None if it moved."""
        step = getattr(self.context.op_execution_context, "_step_execution_context", None)
        resources = getattr(getattr(step, "resolved_run_config", None), "resources", {})
        key = self.io_manager_key
        return resources[key].config if key in resources else None
