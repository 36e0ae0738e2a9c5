"""A provisional day's previous rows, kept until its sweep is settled: ``_cloudglue_previous_<table>``.

A range run commits a day as soon as the API's listing has moved past it, before the sweep
has ended. If a later record shows that the listing was not sorted (the day was incomplete),
the day must go back to what it held before, in every table, at once. So the transaction
that commits such a *provisional* day first copies the day's stored rows into a table beside
the live one, tagged with the run and the day; a reopened day's rows are put back from there,
and a settled sweep drops its copies. A day with nothing stored costs one empty ``INSERT``.

The copies are only needed within the run that made them: a run killed before its sweep was
settled leaves them behind, and the next provisional write of that day drops them (the live
rows, committed from a consistent listing, are then the previous rows).
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from cloudglue_dagster.internals import TableSlice

from .sql import (
    create_once,
    day_dimension,
    forget_table,
    partition_where_clause,
    qualified_table,
    quote_identifier,
    table_columns,
)

__all__ = ["PREVIOUS_PREFIX", "drop_previous", "keep_previous", "restore_previous"]

PREVIOUS_PREFIX = "_cloudglue_previous_"
"""The copies of ``<table>`` are in ``<schema>._cloudglue_previous_<table>``."""

_RUN, _DAY = "_cloudglue_run_id", "_cloudglue_partition"


def _names(conn: duckdb.DuckDBPyConnection, day_slice: TableSlice) -> tuple[str, str, str]:
    copy = PREVIOUS_PREFIX + day_slice.table
    return (
        qualified_table(conn, day_slice.schema, day_slice.table),
        qualified_table(conn, day_slice.schema, copy),
        copy,
    )


def keep_previous(conn: duckdb.DuckDBPyConnection, day_slice: TableSlice, run_id: str, day: str) -> None:
    """Copy the rows ``day_slice`` holds now, for :func:`restore_previous` (in the transaction
    that is about to replace them)."""
    live_columns = table_columns(conn, day_slice.schema, day_slice.table)
    if live_columns is None:
        return  # nothing stored yet: restoring is deleting what the run wrote
    live, copy, copy_name = _names(conn, day_slice)
    copy_columns = table_columns(conn, day_slice.schema, copy_name)
    if copy_columns is None:
        forget_table(conn, day_slice.schema, copy_name)
        create_once(
            conn,
            f"CREATE TABLE IF NOT EXISTS {copy} AS SELECT CAST(NULL AS VARCHAR) AS {_RUN},"
            f" CAST(NULL AS VARCHAR) AS {_DAY}, * FROM {live} LIMIT 0",
        )
    else:
        for lower, (name, column_type) in live_columns.items():
            if lower not in copy_columns:  # the live table grew a column since the copy table was made
                forget_table(conn, day_slice.schema, copy_name)
                conn.execute(f"ALTER TABLE {copy} ADD COLUMN {quote_identifier(name)} {column_type}")
        conn.execute(f"DELETE FROM {copy} WHERE {_DAY} = ?", [day])
    where = partition_where_clause([day_dimension(day_slice)])
    conn.execute(
        f"INSERT INTO {copy} BY NAME SELECT ? AS {_RUN}, ? AS {_DAY}, * FROM {live} WHERE {where}", [run_id, day]
    )


def restore_previous(conn: duckdb.DuckDBPyConnection, day_slice: TableSlice, run_id: str, day: str) -> None:
    """Put back the rows :func:`keep_previous` copied for ``day`` (none, if the table did not
    exist then): the day's rows now are deleted first."""
    if table_columns(conn, day_slice.schema, day_slice.table) is None:
        return
    live, copy, copy_name = _names(conn, day_slice)
    conn.execute(f"DELETE FROM {live} WHERE {partition_where_clause([day_dimension(day_slice)])}")
    if table_columns(conn, day_slice.schema, copy_name) is None:
        return
    conn.execute(
        f"INSERT INTO {live} BY NAME SELECT * EXCLUDE ({_RUN}, {_DAY}) FROM {copy} WHERE {_RUN} = ? AND {_DAY} = ?",
        [run_id, day],
    )
    conn.execute(f"DELETE FROM {copy} WHERE {_RUN} = ? AND {_DAY} = ?", [run_id, day])


def drop_previous(conn: duckdb.DuckDBPyConnection, schema: str, table: str, run_id: str, days: Sequence[str]) -> None:
    """Drop ``run_id``'s copies of ``days``: their sweep was settled."""
    copy_name = PREVIOUS_PREFIX + table
    if table_columns(conn, schema, copy_name) is None:
        return
    conn.execute(
        f"DELETE FROM {qualified_table(conn, schema, copy_name)} WHERE {_RUN} = ? AND list_contains(?, {_DAY})",
        [run_id, list(days)],
    )
