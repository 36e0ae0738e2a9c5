"""Every table of a day in one DuckDB transaction: commit, put back, read back, count.

A :class:`DayStore` holds one run's tables (their slices for the run's range). Each day is
replaced in every written table, with a progress mark per table (:mod:`.progress`), in one
transaction, so a day is never split across the tables: a failure, a memory error in one
table or a killed process leaves the day as it was in all of them. A provisional day's
previous rows are kept beside each table until its sweep is settled (:mod:`.previous`).

One connection serves consecutive days (:data:`HOLD_SECONDS`), and the run's status is read
before a commit at most every :data:`STATUS_EVERY_SECONDS`.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import dagster as dg
import duckdb
import pandas as pd

from cloudglue_dagster.api.days import UTCDay
from cloudglue_dagster.internals import TablePartitionDimension, TableSlice
from cloudglue_dagster.tables.streams import DayRows

from .errors import DuckDBMemoryLimitError
from .previous import drop_previous, keep_previous, restore_previous
from .progress import committed_by, mark, unmark
from .sql import day_dimension, partition_where_clause, qualified_table, remember_catalog, table_columns

if TYPE_CHECKING:
    from .client import UTCDuckDbClient

__all__ = ["HOLD_SECONDS", "STATUS_EVERY_SECONDS", "DayStore", "day_label", "partitions_label", "table_label"]

HOLD_SECONDS = 5.0
"""How long one connection serves consecutive days before it is closed and opened again.

Opening and closing the file cost ~35 and ~90 ms (the close checkpoints): per day, that was
most of a range run's write time. Held for good, the file would stay locked for the whole
sweep; other processes (parallel runs, a DuckDB shell) wait for the lock with backoff, so a
few seconds keeps them waiting no longer than a single write used to."""

STATUS_EVERY_SECONDS = 1.0
"""How often a day store reads the run's status before a commit: before its first, then
before the first commit at least this many seconds after the last read.

Each read is a query of Dagster's run storage (about 7 ms a day inside a range run on SQLite,
1.2 s of a 180-day run when every commit read it). A run terminated between two reads
commits at most this long of complete days after the Terminate; the next read rolls back
the day being written and stops the run."""

day_label: ContextVar[str | None] = ContextVar("cloudglue_day_label", default=None)
"""The partition being written, for error messages (a day of a range run)."""

table_label: ContextVar[TableSlice | None] = ContextVar("cloudglue_table_label", default=None)
"""The table being written, for error messages (one of a day's tables)."""


def partitions_label(context: dg.OutputContext) -> str | None:
    """The partition key being written, for error messages: the day of a day-by-day write,
    else ``first...last`` for a range; None if unpartitioned."""
    day = day_label.get()
    if day is not None:
        return day
    if not context.has_asset_partitions:
        return None
    keys = context.asset_partition_keys
    return keys[0] if len(keys) == 1 else f"{keys[0]}...{keys[-1]}"


def day_slice(table_slice: TableSlice, day: UTCDay, columns: Sequence[str] | None = None) -> TableSlice:
    """``table_slice`` narrowed to ``day`` (and to ``columns``, when given)."""
    dimension = day_dimension(table_slice)
    return table_slice._replace(
        partition_dimensions=[
            TablePartitionDimension(
                partition_expr=dimension.partition_expr, partitions=dg.TimeWindow(day.start, day.end)
            )
        ],
        columns=columns if columns is not None else table_slice.columns,
    )


class DayStore:
    """One run's tables in one DuckDB database: a day at a time, all tables at once.

    Args:
        client: the I/O manager's client (connections, transactions, error mapping).
        uncapped: the same client without the default memory cap, for a day that needs more
            (None when the cap is the user's own).
        handler: the pandas type handler that inserts a frame.
        slices: table name -> its slice for the whole range (table and partition expression);
            the tables read as well as those written.
        written: the tables each day is written to, in order.
    """

    def __init__(
        self,
        client: UTCDuckDbClient,
        uncapped: UTCDuckDbClient | None,
        handler: Any,
        slices: Mapping[str, TableSlice],
        written: Sequence[str],
    ) -> None:
        self.client, self.uncapped, self.handler = client, uncapped, handler
        self.slices, self.written = dict(slices), list(written)
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._conn_client: UTCDuckDbClient | None = None
        self._opened = 0.0
        self._status_read: float | None = None  # when a commit last read the run's status
        self._provisional: set[str] = set()  # days written with their previous rows kept

    # -- connections and transactions ------------------------------------------------------------

    def _connection(self, context: dg.OutputContext, client: UTCDuckDbClient) -> duckdb.DuckDBPyConnection:
        """The held connection (opened, or re-opened for another client)."""
        if self._conn is None or self._conn_client is not client:
            self.close()
            self._conn, self._conn_client, self._opened = client.open_writer(context), client, time.monotonic()
            remember_catalog(self._conn)
        return self._conn

    @contextmanager
    def _transaction(self, context: dg.OutputContext, client: UTCDuckDbClient) -> Iterator[duckdb.DuckDBPyConnection]:
        """A transaction on the held connection; a failure closes it. The run's status is read
        before the commit every :data:`STATUS_EVERY_SECONDS`; the connection is closed once
        it has served :data:`HOLD_SECONDS`."""
        conn = self._connection(context, client)
        read = self._status_read is None or time.monotonic() - self._status_read >= STATUS_EVERY_SECONDS
        try:
            with client.transaction(context, self.slices[self.written[0]], conn, check_terminated=read) as txn:
                yield txn
        except BaseException:
            self.close()
            raise
        if read:
            self._status_read = time.monotonic()
        if time.monotonic() - self._opened > HOLD_SECONDS:
            self.close()

    def close(self) -> None:
        """Close the held connection, if any (its close checkpoints the file)."""
        conn, self._conn, self._conn_client = self._conn, None, None
        if conn is not None:
            try:
                conn.close()
            except duckdb.Error:
                pass

    def asset(self, table: str) -> str:
        """The name the progress table gives ``table``: ``schema.table``."""
        table_slice = self.slices[table]
        return f"{table_slice.schema}.{table_slice.table}"

    # -- writing ---------------------------------------------------------------------------------

    def write(self, context: dg.OutputContext, rows: DayRows) -> None:
        """Replace the day in every written table and mark it committed by this run, in one
        transaction; once more without the memory cap if DuckDB needs more than the default cap."""
        token = day_label.set(rows.day.key)
        try:
            try:
                self._write(context, self.client, rows)
            except DuckDBMemoryLimitError as exc:
                if self.uncapped is None:
                    raise
                context.log.warning(
                    f"DuckDB ran out of memory under memory_limit={exc.memory_limit} writing"
                    f" {rows.day.key}; retrying that day once with DuckDB's own limit (80% of RAM)."
                )
                self._write(context, self.uncapped, rows)
        finally:
            day_label.reset(token)
        if rows.provisional:
            self._provisional.add(rows.day.key)

    def _write(self, context: dg.OutputContext, client: UTCDuckDbClient, rows: DayRows) -> None:
        with self._transaction(context, client) as conn:
            for table in self.written:
                one_day = day_slice(self.slices[table], rows.day)
                token = table_label.set(one_day)
                try:
                    client.ensure_schema_exists(context, one_day, conn)
                    if rows.provisional:
                        keep_previous(conn, one_day, context.run_id, rows.day.key)
                    client.delete_table_slice(context, one_day, conn)
                    self.handler.handle_output(context, one_day, rows.frames[table], conn)
                    mark(
                        conn,
                        one_day.schema,
                        context.run_id,
                        self.asset(table),
                        [(rows.day.key, len(rows.frames[table]))],
                    )
                finally:
                    table_label.reset(token)

    def restore(self, context: dg.OutputContext, day: UTCDay) -> None:
        """Put back, in every written table at once, what ``day`` held before this run wrote it
        provisionally (nothing to do for a day it did not write so), and unmark it."""
        with self._transaction(context, self.client) as conn:
            for table in self.written:
                one_day = day_slice(self.slices[table], day)
                if day.key in self._provisional:
                    restore_previous(conn, one_day, context.run_id, day.key)
                unmark(conn, one_day.schema, context.run_id, self.asset(table), day.key)
        self._provisional.discard(day.key)

    def settle(self, context: dg.OutputContext, keys: Sequence[str]) -> None:
        """The sweep that wrote ``keys`` provisionally ended verified: drop their previous rows."""
        keys = [k for k in keys if k in self._provisional]
        if not keys:
            return
        with self._transaction(context, self.client) as conn:
            for table in self.written:
                table_slice = self.slices[table]
                drop_previous(conn, table_slice.schema, table_slice.table, context.run_id, keys)
        self._provisional.difference_update(keys)

    # -- resuming --------------------------------------------------------------------------------

    def committed(self, context: dg.OutputContext, run_ids: Sequence[str], keys: Collection[str]) -> dict[str, str]:
        """Which of ``keys`` the runs ``run_ids`` committed in every written table: key -> run
        id (the first of ``run_ids`` that did)."""
        if not run_ids or not keys:
            return {}
        conn = self._connection(context, self.client)
        by_table = [committed_by(conn, self.slices[t].schema, run_ids, self.asset(t), keys) for t in self.written]
        found: dict[str, str] = {}
        for run_id in run_ids:
            days = set.intersection(*(marks.get(run_id, set()) for marks in by_table))
            for key in sorted(days):
                found.setdefault(key, run_id)
        return found

    def adopt(self, context: dg.OutputContext, rows: Mapping[str, Mapping[str, int]]) -> None:
        """Mark days committed by an earlier run as committed by this run too (day -> table ->
        row count), so a re-execution of it finds them."""
        if not rows:
            return
        with self._transaction(context, self.client) as conn:
            for table in self.written:
                marks = [(key, counts.get(table, 0)) for key, counts in rows.items()]
                mark(conn, self.slices[table].schema, context.run_id, self.asset(table), marks)

    # -- reading ---------------------------------------------------------------------------------

    def read(self, context: dg.OutputContext, table: str, day: UTCDay, columns: Sequence[str] | None) -> pd.DataFrame:
        """One day of ``table``, as the pandas handler loads it."""
        one_day = day_slice(self.slices[table], day, columns)
        with self._reading(context, one_day) as conn:
            frame: pd.DataFrame = self.handler.load_input(_ReadContext(), one_day, conn)
            return frame

    @contextmanager
    def _reading(self, context: dg.OutputContext, table_slice: TableSlice) -> Iterator[duckdb.DuckDBPyConnection]:
        """The held connection for a read, DuckDB's errors mapped as the client maps a read's."""
        conn = self._connection(context, self.client)
        try:
            yield conn
        except duckdb.Error as exc:
            self.close()
            raise self.client.read_failure(conn, table_slice, exc) from exc

    def stored_rows(self, context: dg.OutputContext, table: str, days: Sequence[UTCDay]) -> dict[str, int]:
        """The rows ``table`` holds for each of ``days`` (0 for a day without rows or a table
        that does not exist yet), in one grouped scan of their range."""
        if not days:
            return {}
        table_slice = self.slices[table]
        with self._reading(context, table_slice) as conn:
            if table_columns(conn, table_slice.schema, table_slice.table) is None:
                return {day.key: 0 for day in days}
            target = qualified_table(conn, table_slice.schema, table_slice.table)
            span = UTCDay("", min(d.start for d in days), max(d.end for d in days))
            dimension = day_dimension(table_slice)
            # The session's time zone is UTC: a timestamp's DATE is its UTC day, the partition.
            rows = conn.execute(
                f"SELECT CAST({dimension.partition_expr} AS DATE), count(*) FROM {target}"
                f" WHERE {partition_where_clause([day_dimension(day_slice(table_slice, span))])} GROUP BY 1"
            ).fetchall()
        by_date = {str(date): int(n) for date, n in rows}
        return {day.key: by_date.get(day.start.date().isoformat(), 0) for day in days}

    # -- metadata --------------------------------------------------------------------------------

    def table_metadata(self) -> dict[str, dict[str, Any]]:
        """What is true of every day of each table: where it is stored (its schema, which needs
        the database, is the I/O manager's to add)."""
        return {
            table: {"dagster/storage_kind": "duckdb", "dagster/table_name": self.client.get_table_name(table_slice)}
            for table, table_slice in self.slices.items()
        }

    def describe(self, day: UTCDay) -> dict[str, dict[str, Any]]:
        """Each written table's metadata of the day: the query that loads it (the partition's own)."""
        return {
            table: {
                "Query": dg.MetadataValue.text(self.client.get_select_statement(day_slice(self.slices[table], day)))
            }
            for table in self.written
        }


class _ReadContext:
    """What the pandas handler's ``load_input`` asks of a context when the day store reads a day:
    one partition (its slice's window), so never "no partitions"."""

    asset_partition_keys = ("day",)
