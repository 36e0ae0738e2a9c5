"""The SQL the I/O manager sends: quoted names, the catalog, partition windows in UTC."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import cast
from weakref import WeakKeyDictionary

import dagster as dg
import duckdb

from cloudglue_dagster.internals import TablePartitionDimension, TableSlice, static_where_clause

__all__ = [
    "catalog_name",
    "create_once",
    "day_dimension",
    "forget_catalog",
    "forget_table",
    "partition_where_clause",
    "plain_table",
    "qualified_table",
    "quote_identifier",
    "remember_catalog",
    "schema_table",
    "select_statement",
    "table_columns",
    "time_window_where_clause",
]

# Plain literals (no offset) compare correctly with TIMESTAMPTZ, TIMESTAMP, TIMESTAMP_NS, DATE
# and ISO-string VARCHAR columns alike; they are read in the session time zone, which every
# connection sets to UTC, and the bounds are converted to UTC before formatting.
_DUCKDB_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"


class _Catalog:
    """What a remembered connection's catalog holds, as far as this package changed it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.columns: dict[tuple[str, str], dict[str, tuple[str, str]] | None] = {}
        self.created: set[str] = set()


_REMEMBERED: WeakKeyDictionary[duckdb.DuckDBPyConnection, _Catalog] = WeakKeyDictionary()


def remember_catalog(conn: duckdb.DuckDBPyConnection) -> None:
    """Remember ``conn``'s catalog name, table columns and created tables until it closes.

    A day's write asked DuckDB's catalog the same questions again and again (18 calls a day
    where 9 do), and inside a run each call also waits for the GIL the fetch threads hold
    (CHANGELOG.md, 0.1.0). Only for a connection through which nothing else changes the
    catalog: the day store's held writer, whose own DDL (:func:`write_frame
    <cloudglue_dagster.io_managers.duckdb.write_frame>`) forgets what it changes, and whose rollback
    forgets everything. Other connections are asked every time.
    """
    _REMEMBERED[conn] = _Catalog(_current_database(conn))


def forget_table(conn: duckdb.DuckDBPyConnection, schema: str, table: str) -> None:
    """After DDL on ``schema.table``: ask the catalog again for its columns."""
    known = _REMEMBERED.get(conn)
    if known is not None:
        known.columns.pop((schema.lower(), table.lower()), None)


def forget_catalog(conn: duckdb.DuckDBPyConnection) -> None:
    """After a rollback: whatever was remembered may have been undone."""
    _REMEMBERED.pop(conn, None)


def catalog_name(conn: duckdb.DuckDBPyConnection) -> str:
    """The connection's catalog (DuckDB names a file's after its stem)."""
    known = _REMEMBERED.get(conn)
    return known.name if known is not None else _current_database(conn)


def create_once(conn: duckdb.DuckDBPyConnection, statement: str) -> None:
    """Run a ``CREATE ... IF NOT EXISTS`` ``statement``; once per remembered connection."""
    known = _REMEMBERED.get(conn)
    if known is not None and statement in known.created:
        return
    conn.execute(statement)
    if known is not None:
        known.created.add(statement)


def table_columns(conn: duckdb.DuckDBPyConnection, schema: str, table: str) -> dict[str, tuple[str, str]] | None:
    """Returns ``{lower-case name: (name, DuckDB type)}`` of a table's columns, or None if the
    table does not exist. Names compare case-insensitively, as DuckDB resolves them.
    """
    known = _REMEMBERED.get(conn)
    key = (schema.lower(), table.lower())
    if known is not None and key in known.columns:
        found = known.columns[key]
        return dict(found) if found is not None else None
    rows = conn.execute(
        """
        SELECT column_name, data_type FROM duckdb_columns()
        WHERE database_name = current_database()
          AND lower(schema_name) = lower(?) AND lower(table_name) = lower(?)
        ORDER BY column_index
        """,
        [schema, table],
    ).fetchall()
    columns = {name.lower(): (name, data_type) for name, data_type in rows} if rows else None
    if known is not None:
        known.columns[key] = dict(columns) if columns is not None else None
    return columns


def _current_database(conn: duckdb.DuckDBPyConnection) -> str:
    ((catalog,),) = conn.execute("SELECT current_database()").fetchall()
    return str(catalog)


def day_dimension(table_slice: TableSlice) -> TablePartitionDimension:
    """The one partition dimension of a slice the day store reads or writes (its tables are
    partitioned by UTC day only); ValueError for a slice with none or several."""
    (dimension,) = table_slice.partition_dimensions or ()
    return dimension


def partition_where_clause(partition_dimensions: Sequence[TablePartitionDimension]) -> str:
    """SQL condition selecting the rows of the given partitions (time windows in UTC)."""
    return " AND ".join(
        (
            time_window_where_clause(dimension)
            if isinstance(dimension.partitions, dg.TimeWindow)
            else static_where_clause(dimension)
        )
        for dimension in partition_dimensions
    )


def time_window_where_clause(dimension: TablePartitionDimension) -> str:
    """``expr >= start AND expr < end`` with the window's bounds written in UTC."""
    start, end = cast("dg.TimeWindow", dimension.partitions)
    return (
        f"{dimension.partition_expr} >= '{_utc_literal(start)}' AND {dimension.partition_expr} < '{_utc_literal(end)}'"
    )


def quote_identifier(name: str) -> str:
    """Double-quotes a SQL identifier (DuckDB still matches it case-insensitively)."""
    return '"' + name.replace('"', '""') + '"'


def qualified_table(conn: duckdb.DuckDBPyConnection, schema: str, table: str) -> str:
    """``"catalog"."schema"."table"`` for the connection's database.

    DuckDB names a file's catalog after the file stem, so with ``cloudglue.duckdb`` and
    schema ``cloudglue`` a two-part name is ambiguous; three parts never are.
    """
    return f"{quote_identifier(catalog_name(conn))}.{quote_identifier(schema)}.{quote_identifier(table)}"


def schema_table(table_slice: TableSlice) -> str:
    return f"{quote_identifier(table_slice.schema)}.{quote_identifier(table_slice.table)}"


def plain_table(table_slice: TableSlice) -> str:
    return f"{table_slice.schema}.{table_slice.table}"


def select_statement(table_slice: TableSlice, table: str) -> str:
    """``SELECT`` of the slice's columns (all if none are named) and partition window from ``table``."""
    columns = ", ".join(quote_identifier(c) for c in table_slice.columns) if table_slice.columns else "*"
    query = f"SELECT {columns} FROM {table}"
    if table_slice.partition_dimensions:
        query += " WHERE " + partition_where_clause(table_slice.partition_dimensions)
    return query


def _utc_literal(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime(_DUCKDB_DATETIME_FORMAT)
