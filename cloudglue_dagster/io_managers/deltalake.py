"""Delta Lake as the warehouse: ``pip install 'cloudglue-dagster[deltalake]'``.

The stock ``dagster_deltalake_pandas.DeltaLakePandasIOManager`` (0.29) cannot store these
assets. It takes ``partition_expr`` to be a Delta partition column whose value *is* the
partition: it writes with ``partition_by=[partition_expr]``, replaces where ``column = '<window
start>'`` and loads where ``column == <window start, zone dropped>``. On
``chat_completions.created_at``, a time within the day, that gives one Delta partition per
completion, a second write Delta refuses ("Invalid data found") and a read that fails (a UTC
timestamp compared with a zone-less one); ``tests/test_deltalake.py`` pins this.

:class:`CloudglueDeltaLakeIOManager` is that manager with one change, its type handler: a run's
UTC window ``[start, end)`` (a day or a range) is replaced, in one Delta commit, by an overwrite
whose predicate is ``start <= partition_expr < end``, and loaded with the same filter, as the
DuckDB, Snowflake and BigQuery managers do. Tables are not Delta-partitioned.

Usage::

    from dagster_deltalake import LocalConfig  # or S3Config, AzureConfig, GcsConfig
    from cloudglue_dagster.io_managers.deltalake import CloudglueDeltaLakeIOManager

    io_manager = CloudglueDeltaLakeIOManager(root_uri="lake", storage_options=LocalConfig(), schema="cloudglue")
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pds
from dagster_deltalake.io_manager import TableConnection
from dagster_deltalake_pandas import DeltaLakePandasIOManager
from dagster_deltalake_pandas.deltalake_pandas_type_handler import DeltaLakePandasTypeHandler
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError

from cloudglue_dagster.api.secrecy import display_url
from cloudglue_dagster.internals import DbTypeHandler, TableSlice

__all__ = ["CloudglueDeltaLakeIOManager", "DayRangeDeltaLakePandasTypeHandler"]

_UTC = dt.timezone.utc


def _window(table_slice: TableSlice) -> tuple[str, dt.datetime, dt.datetime] | None:
    """The slice's column and its UTC window ``[start, end)``; None unless the slice is one
    time window (static or multi-dimensional partitions: the stock handler's)."""
    dimensions = table_slice.partition_dimensions or ()
    if len(dimensions) != 1:
        return None
    (dimension,) = dimensions
    window = dimension.partitions
    if not isinstance(window, dg.TimeWindow):
        return None
    return dimension.partition_expr, window.start.astimezone(_UTC), window.end.astimezone(_UTC)


class DayRangeDeltaLakePandasTypeHandler(DeltaLakePandasTypeHandler):
    """Replaces (one Delta commit) and loads the rows with ``start <= partition_expr < end``;
    a slice of other partitions (static, several dimensions) is the stock handler's.

    A zone-less column (``date``: UTC midnight) is compared with the window's zone-less UTC
    bounds; a zoned one (``created_at``) with the zoned bounds."""

    def handle_output(
        self, context: dg.OutputContext, table_slice: TableSlice, obj: pd.DataFrame, connection: TableConnection
    ) -> None:
        # Where the table is, true of every partition of a range (credentials in a URI not shown).
        context.add_output_metadata(
            {
                "dagster/uri": display_url(connection.table_uri),
                "dagster/table_name": f"{table_slice.schema}.{table_slice.table}",
            }
        )
        window = _window(table_slice)
        if window is None:
            super().handle_output(context, table_slice, obj, connection)
            return
        column, start, end = window
        data = pa.Table.from_pandas(obj, preserve_index=False)
        naive = data.schema.field(column).type.tz is None
        low, high = (t.replace(tzinfo=None).isoformat() if naive else t.isoformat() for t in (start, end))
        try:
            DeltaTable(connection.table_uri, storage_options=connection.storage_options)
            predicate: str | None = f"{column} >= '{low}' AND {column} < '{high}'"
        except TableNotFoundError:
            predicate = None  # the first write creates the table
        write_deltalake(
            connection.table_uri,
            data,
            mode="overwrite",
            predicate=predicate,
            storage_options=connection.storage_options,
        )

    def load_input(
        self, context: dg.InputContext, table_slice: TableSlice, connection: TableConnection
    ) -> pd.DataFrame:
        dataset = DeltaTable(connection.table_uri, storage_options=connection.storage_options).to_pyarrow_dataset()
        if not table_slice.partition_dimensions:
            whole: pd.DataFrame = dataset.to_table(columns=table_slice.columns).to_pandas()  # pyarrow: untyped
            return whole
        window = _window(table_slice)
        if window is None:
            return super().load_input(context, table_slice, connection)
        column, start, end = window
        kind = dataset.schema.field(column).type
        low, high = (pa.scalar(t if kind.tz else t.replace(tzinfo=None), type=kind) for t in (start, end))
        rows = (pds.field(column) >= low) & (pds.field(column) < high)
        days: pd.DataFrame = dataset.to_table(columns=table_slice.columns, filter=rows).to_pandas()
        return days


class CloudglueDeltaLakeIOManager(DeltaLakePandasIOManager):
    """``DeltaLakePandasIOManager`` (same fields: ``root_uri``, ``storage_options``, ``schema``,
    ...) whose partitioned replace and load cover the run's whole UTC window (module docstring).

    Override :meth:`type_handlers` to add handlers of your own."""

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler[Any]]:
        return [DayRangeDeltaLakePandasTypeHandler()]
