"""The pandas type handler: frames written by column name with stable types, loaded with
pandas nullable dtypes (rules in :class:`~cloudglue_dagster.io_managers.duckdb.CloudglueDuckDBIOManager`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import dagster as dg
import duckdb
import pandas as pd

from cloudglue_dagster.assets.metadata_keys import PARTITION_ROW_COUNT
from cloudglue_dagster.internals import DbTypeHandler, TableSlice

from .connections import database_of, is_out_of_memory, quietly
from .day_store import partitions_label
from .errors import DuckDBSchemaError, DuckDBStorageError, DuckDBWriteError, display_path, find_row_at_fault
from .sql import (
    forget_table,
    plain_table,
    qualified_table,
    quote_identifier,
    schema_table,
    select_statement,
    table_columns,
)

if TYPE_CHECKING:
    from pandas._typing import AstypeArg  # pandas-stubs' name for what astype takes


__all__ = ["DuckDBPandasReplaceTypeHandler", "to_nullable_dtypes", "write_frame"]

# Name the frame is registered under while it is written; unlikely to clash with a table.
_FRAME_VIEW = "__cloudglue_dagster_frame"

# The frame type of an object column holding only None/NaN (DuckDB 2 describes it so).
_UNKNOWN_TYPE = '"NULL"'

# What a reader gets back for each DuckDB column type (see CloudglueDuckDBIOManager).
_PANDAS_DTYPE_BY_DUCKDB_TYPE: Mapping[str, AstypeArg] = {
    "TINYINT": "Int8",
    "SMALLINT": "Int16",
    "INTEGER": "Int32",
    "BIGINT": "Int64",
    "UTINYINT": "UInt8",
    "USMALLINT": "UInt16",
    "UINTEGER": "UInt32",
    "UBIGINT": "UInt64",
    "FLOAT": "Float32",
    "DOUBLE": "Float64",
    "BOOLEAN": "boolean",
    "VARCHAR": "string",
    "TIMESTAMP WITH TIME ZONE": "datetime64[ns, UTC]",
    "TIMESTAMP": "datetime64[ns]",
    "TIMESTAMP_NS": "datetime64[ns]",
    "TIMESTAMP_MS": "datetime64[ns]",
    "TIMESTAMP_S": "datetime64[ns]",
}

# Lossless widenings an append accepts although the types differ (see CloudglueDuckDBIOManager).
_INTEGER_RANK: Mapping[str, int] = {"TINYINT": 1, "SMALLINT": 2, "INTEGER": 3, "BIGINT": 4, "HUGEINT": 5}


class DuckDBPandasReplaceTypeHandler(DbTypeHandler[pd.DataFrame]):
    """Writes pandas DataFrames by column name into DuckDB and loads them with nullable dtypes.

    Relies on :class:`UTCDuckDbClient` having deleted the slice on the same transaction.
    """

    def handle_output(
        self,
        context: dg.OutputContext,
        table_slice: TableSlice,
        obj: pd.DataFrame,
        connection: duckdb.DuckDBPyConnection,
    ) -> Mapping[str, Any]:
        """Inserts ``obj`` into the table, creating or widening the table as needed."""
        try:
            write_frame(
                connection,
                obj,
                schema=table_slice.schema,
                table=table_slice.table,
                replace_table=not table_slice.partition_dimensions,
            )
        except duckdb.Error as exc:
            if is_out_of_memory(exc):
                raise  # the client makes it a DuckDBMemoryLimitError, retried once uncapped
            raise DuckDBWriteError(
                database=display_path(table_slice.database or ""),
                table=plain_table(table_slice),
                partitions=partitions_label(context),
                cause=exc,
                row=find_row_at_fault(obj, exc),
            ) from exc
        columns = table_columns(connection, table_slice.schema, table_slice.table) or {}
        metadata: dict[str, Any] = {
            "dagster/storage_kind": "duckdb",
            "dagster/column_schema": dg.TableSchema(
                columns=[dg.TableColumn(name=name, type=typ) for name, typ in columns.values()]
            ),
        }
        if not context.has_asset_partitions:
            metadata["dagster/row_count"] = len(obj)
        elif len(context.asset_partition_keys) == 1:
            metadata[PARTITION_ROW_COUNT] = len(obj)
        # else: a range. The range total on every partition would be wrong, so say nothing.
        return metadata

    def load_input(
        self, context: dg.InputContext, table_slice: TableSlice, connection: duckdb.DuckDBPyConnection
    ) -> pd.DataFrame:
        """Loads the table slice as a DataFrame with pandas nullable dtypes."""
        if table_slice.partition_dimensions and len(context.asset_partition_keys) == 0:
            return pd.DataFrame()
        if table_columns(connection, table_slice.schema, table_slice.table) is None:
            raise DuckDBStorageError(
                f"Table {schema_table(table_slice)} does not exist in DuckDB database"
                f" {display_path(table_slice.database or '')}: materialize the upstream asset"
                " first.",
                database=display_path(table_slice.database or ""),
                table=plain_table(table_slice),
            )
        table = qualified_table(connection, table_slice.schema, table_slice.table)
        relation = connection.sql(select_statement(table_slice, table))
        return to_nullable_dtypes(relation.df(), [str(t) for t in relation.types])

    @property
    def supported_types(self) -> Sequence[type[object]]:
        return [pd.DataFrame]


def write_frame(
    conn: duckdb.DuckDBPyConnection,
    frame: pd.DataFrame,
    *,
    schema: str,
    table: str,
    replace_table: bool,
) -> None:
    """Writes ``frame`` into ``schema.table`` by column name.

    With ``replace_table`` the table is re-created from the frame's types. Otherwise the rows
    are appended by name and cast to the table's types (so a column that is entirely null in
    this frame, whatever its dtype, leaves the table's type alone), the table is created if
    missing, and the frame's new columns are added to it. An object column holding only
    None/NaN keeps the table's type, or becomes VARCHAR if the table lacks it. An append whose
    cast would change a value raises :class:`DuckDBSchemaError` (rules in
    :class:`CloudglueDuckDBIOManager`), a frame with two columns of one name ``ValueError``;
    DuckDB's own errors are raised as they are.
    """
    if frame.columns.has_duplicates:
        repeated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
        raise ValueError(
            f"the frame has more than one column named {', '.join(repeated)}; columns are written by"
            " name, so each name must be unique"
        )
    existing = table_columns(conn, schema, table)
    target = qualified_table(conn, schema, table)
    if frame.shape[1] == 0:
        # pd.DataFrame() has no columns to create a table from; the slice delete still holds.
        if replace_table and existing is not None:
            conn.execute(f"DELETE FROM {target}")
        return
    conn.register(_FRAME_VIEW, _strings_as_objects(frame))
    try:
        # DESCRIBE lists the frame's columns in order, as DuckDB will read them.
        scanned = [
            (str(name), str(frame_type))
            for name, frame_type, *_ in conn.execute(f"DESCRIBE SELECT * FROM {_FRAME_VIEW}").fetchall()
        ]
        frame_types = _frame_types(frame, scanned)
        select = _frame_select(frame_types, scanned, existing)
        if replace_table or existing is None:
            forget_table(conn, schema, table)
        if replace_table:
            conn.execute(f"CREATE OR REPLACE TABLE {target} AS {select}")
        elif existing is None:
            conn.execute(f"CREATE TABLE {target} AS {select}")
        else:
            _refuse_changed_types(conn, frame, frame_types, existing, f"{schema}.{table}", target)
            for name, frame_type in frame_types:
                if name.lower() not in existing:
                    column_type = "VARCHAR" if frame_type == _UNKNOWN_TYPE else frame_type
                    column = quote_identifier(name)
                    forget_table(conn, schema, table)
                    conn.execute(f"ALTER TABLE {target} ADD COLUMN {column} {column_type}")
            conn.execute(f"INSERT INTO {target} BY NAME {select}")
    except BaseException:
        # After a failed statement DuckDB refuses everything but ROLLBACK, unregister too: its
        # "Current transaction is aborted" would replace the error worth reporting.
        quietly(lambda: conn.unregister(_FRAME_VIEW))
        raise
    conn.unregister(_FRAME_VIEW)


def _frame_types(frame: pd.DataFrame, scanned: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The SQL type of each of ``frame``'s columns: DuckDB's (``scanned``, in order), except
    where the pandas dtype says more than the values DuckDB looked at.

    DuckDB types an object column from its values, so one without any gets a type from
    nowhere, and not the same one in every version: "NULL" in DuckDB 2, INTEGER in 1.x
    (DuckDB 2 needs Python 3.11, so Python 3.10 gets 1.5). A ``string`` column, registered
    as objects by :func:`_strings_as_objects`, is therefore VARCHAR whatever its values, and
    any other object column holding only None/NaN is ``_UNKNOWN_TYPE``.
    """
    frame_types = []
    for position, (name, scanned_type) in enumerate(scanned):
        values = frame.iloc[:, position]
        if isinstance(values.dtype, pd.StringDtype):
            frame_types.append((name, "VARCHAR"))
        elif values.dtype == object and not values.notna().any():
            frame_types.append((name, _UNKNOWN_TYPE))
        else:
            frame_types.append((name, scanned_type))
    return frame_types


def _frame_select(
    frame_types: Sequence[tuple[str, str]],
    scanned: Sequence[tuple[str, str]],
    existing: Mapping[str, tuple[str, str]] | None,
) -> str:
    """``SELECT`` of the registered frame's columns, cast where ``frame_types`` differs from
    the type DuckDB scans them as (``scanned``)."""
    select_items = []
    for (name, frame_type), (_, scanned_type) in zip(frame_types, scanned, strict=True):
        column = quote_identifier(name)
        if frame_type == _UNKNOWN_TYPE:
            # No value to type the column by: use the table's type, or VARCHAR.
            known = (existing or {}).get(name.lower())
            select_items.append(f"CAST({column} AS {known[1] if known else 'VARCHAR'}) AS {column}")
        elif frame_type != scanned_type:
            select_items.append(f"CAST({column} AS {frame_type}) AS {column}")
        else:
            select_items.append(column)
    return f"SELECT {', '.join(select_items)} FROM {_FRAME_VIEW}"


def _refuse_changed_types(
    conn: duckdb.DuckDBPyConnection,
    frame: pd.DataFrame,
    frame_types: Sequence[tuple[str, str]],
    existing: Mapping[str, tuple[str, str]],
    table: str,
    target: str,
) -> None:
    """Raises :class:`DuckDBSchemaError` if appending ``frame`` to ``table`` (``schema.table``;
    ``target`` is its three-part SQL name) would cast a value into another."""
    changed: dict[str, tuple[str, str]] = {}
    for position, (name, frame_type) in enumerate(frame_types):
        stored = existing.get(name.lower())
        if stored is None or frame_type in (_UNKNOWN_TYPE, stored[1]):
            continue  # a new column, no value to cast, or no cast (checked first: it is free)
        values = frame.iloc[:, position]
        if not values.notna().any():
            continue
        if not _keeps_values(frame_type, stored[1], values):
            changed[stored[0]] = (stored[1], frame_type)
    if changed:
        raise DuckDBSchemaError(database=database_of(conn), table=table, target=target, columns=changed)


def _keeps_values(frame_type: str, stored_type: str, values: pd.Series) -> bool:
    """Whether DuckDB's cast from ``frame_type`` to ``stored_type`` leaves ``values`` as they are."""
    if frame_type == stored_type:
        return True
    if frame_type in _INTEGER_RANK:
        # Into DOUBLE: exact up to 2**53, far beyond any count stored here.
        return stored_type == "DOUBLE" or _INTEGER_RANK[frame_type] <= _INTEGER_RANK.get(stored_type, 0)
    if frame_type in ("FLOAT", "DOUBLE") and stored_type in _INTEGER_RANK:
        # pandas turns an integer column holding a missing value into float64. A whole number
        # out of the column's range passes here and fails in DuckDB's cast, naming the value.
        present = values.dropna().astype(float)
        return bool((present == present.round()).all())
    return frame_type == "FLOAT" and stored_type == "DOUBLE"


def _strings_as_objects(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its pandas ``string`` columns as plain object columns of str/None.

    DuckDB reads both as VARCHAR, but scans ``string`` columns through an extra copy:
    on a 26k-row chat_completions frame the insert peaked at 398 MiB RSS, and at 367 MiB
    with object columns. The conversion copies pointers, not text.
    """
    # One pass per column (na_value replaces <NA> as it copies): a third of astype + where's time.
    # The ignore: pandas takes any na_value, None included; pandas-stubs' overloads leave None out.
    objects = {
        position: column.to_numpy(dtype=object, na_value=None)  # type: ignore[call-overload]
        for position, (_, column) in enumerate(frame.items())
        if isinstance(column.dtype, pd.StringDtype)
    }
    return _with_columns(frame, objects)


def _with_columns(frame: pd.DataFrame, replaced: Mapping[int, Any]) -> pd.DataFrame:
    """``frame`` with the columns at the positions of ``replaced`` replaced (``frame`` itself
    if none are). One new frame rather than one assignment per column: half the time or less
    for a day's rows; column by column only where two columns share a name."""
    if not replaced:
        return frame
    if frame.columns.has_duplicates:  # a dict cannot hold them
        frame = frame.copy(deep=False)
        for position, column in replaced.items():
            frame.isetitem(position, column)
        return frame
    columns = {name: replaced.get(position, column) for position, (name, column) in enumerate(frame.items())}
    return pd.DataFrame(columns, index=frame.index, copy=False)


def to_nullable_dtypes(frame: pd.DataFrame, duckdb_types: Sequence[str]) -> pd.DataFrame:
    """Converts each column to the pandas nullable dtype for its DuckDB type (see
    :class:`CloudglueDuckDBIOManager`), so a column's dtype does not depend on whether this
    particular slice happens to contain NULLs.
    """
    converted: dict[int, pd.Series] = {}
    for position, ((_, column), duckdb_type) in enumerate(zip(frame.items(), duckdb_types, strict=True)):
        dtype = _PANDAS_DTYPE_BY_DUCKDB_TYPE.get(duckdb_type)
        if dtype is None:
            continue
        try:
            converted[position] = column.astype(dtype)
        except (TypeError, ValueError, OverflowError):
            # e.g. a timestamp beyond 2262 does not fit datetime64[ns]: keep DuckDB's dtype.
            continue
    return _with_columns(frame, converted)
