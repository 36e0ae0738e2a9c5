"""Writing a :class:`~cloudglue_dagster.streams.DayStream` into DuckDB one committed day at a time.

Each day is its own transaction: its time window is deleted, its rows inserted and a
progress mark recorded (table ``_cloudglue_progress`` in the asset's schema), then committed
together. So a run that fails or is killed keeps every day it committed, and knows which
they were: a step retry of the same run, or a re-execution of a failed run, skips the days
marked by that run (or by the failed runs it descends from) and loads them back instead.

The marks are bookkeeping, not data: one row per (run, asset, day), dropped by nothing but
harmless (a few hundred bytes a day). Deleting the table only makes the next retry fetch
everything again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import dagster as dg
import duckdb
import pandas as pd
from dagster._core.definitions.partitions.utils import TimeWindow
from dagster._core.storage.db_io_manager import TablePartitionDimension, TableSlice

from ..days import ReopenedDay, UTCDay
from ..streams import DayFrames, DayStream, StoredDay
from .errors import DuckDBMemoryLimitError
from .sql import catalog_name, create_once, qualified_table, remember_catalog

if TYPE_CHECKING:
    from .client import UTCDuckDbClient

__all__ = [
    "PROGRESS_EVERY_SECONDS",
    "PROGRESS_TABLE",
    "STATUS_EVERY_SECONDS",
    "DayStore",
    "day_frames",
    "day_label",
    "partitions_label",
    "write_stream",
]

PROGRESS_TABLE = "_cloudglue_progress"
"""The table, in each asset's schema, that records which run committed which day."""

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

PROGRESS_EVERY_SECONDS = 30.0
"""How often, at most, a range run's step logs how many of its days it has committed so far:
at the first commit this long after the last line (or after the step began writing).
Dagster records a step's materializations only when the step ends, so on a long backfill
these lines are what shows its progress."""

day_label: ContextVar[str | None] = ContextVar("cloudglue_day_label", default=None)
"""The partition being written, for error messages (a day of a range run)."""


def partitions_label(context: dg.OutputContext) -> str | None:
    """The partition key being written, for error messages: the day of a day-by-day write,
    else ``first...last`` for a range; None if unpartitioned."""
    if not context.has_asset_partitions:
        return None
    day = day_label.get()
    if day is not None:
        return day
    keys = context.asset_partition_keys
    return keys[0] if len(keys) == 1 else f"{keys[0]}...{keys[-1]}"


def _day_slice(table_slice: TableSlice, day: UTCDay, columns: Sequence[str] | None = None) -> TableSlice:
    (dimension,) = table_slice.partition_dimensions
    return table_slice._replace(
        partition_dimensions=[
            TablePartitionDimension(partition_expr=dimension.partition_expr, partitions=TimeWindow(day.start, day.end))
        ],
        columns=columns if columns is not None else table_slice.columns,
    )


def _progress(conn: duckdb.DuckDBPyConnection, schema: str, create: bool) -> str | None:
    """The progress table's qualified name; None when it does not exist (and ``create`` is False)."""
    catalog = catalog_name(conn)
    name = qualified_table(conn, schema, PROGRESS_TABLE)
    if create:
        create_once(
            conn,
            f"CREATE TABLE IF NOT EXISTS {name} (run_id VARCHAR NOT NULL, asset_key VARCHAR NOT NULL,"
            " partition_key VARCHAR NOT NULL, row_count BIGINT NOT NULL, committed_at TIMESTAMPTZ NOT NULL)",
        )
        return name
    exists = conn.execute(
        "SELECT 1 FROM information_schema.tables WHERE table_catalog = ? AND table_schema = ? AND table_name = ?",
        [catalog, schema, PROGRESS_TABLE],
    ).fetchall()
    return name if exists else None


def _mark(
    conn: duckdb.DuckDBPyConnection, schema: str, run_id: str, asset: str, keys: Sequence[tuple[str, int]]
) -> None:
    """Record that ``run_id`` committed ``keys`` (each with its row count).

    An insert, with no delete first: a run marks a day only when it has no mark of that run
    (a written day is skipped by the run's retries, and a reopened day is unmarked before it is
    written again), and a second mark would be harmless (:meth:`DayStore.committed` reads
    keys; :meth:`DayStore.unmark` drops every mark of the day). A statement less per day."""
    table = _progress(conn, schema, create=True)
    for key, rows in keys:
        conn.execute(f"INSERT INTO {table} VALUES (?, ?, ?, ?, now())", [run_id, asset, key, rows])


class DayStore:
    """One output's days in one DuckDB table: commit, mark, unmark, read back.

    Args:
        client: the I/O manager's client (connections, transactions, error mapping).
        uncapped: the same client without the default memory cap, for a day that needs more
            (None when the cap is the user's own).
        handler: the pandas type handler that inserts a frame.
        table_slice: the output's slice for the whole range (its table and partition expression).
    """

    def __init__(
        self,
        client: UTCDuckDbClient,
        uncapped: UTCDuckDbClient | None,
        handler: Any,
        table_slice: TableSlice,
    ) -> None:
        self.client, self.uncapped, self.handler, self.table_slice = client, uncapped, handler, table_slice
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._conn_client: UTCDuckDbClient | None = None
        self._opened = 0.0
        self._status_read: float | None = None  # when a commit last read the run's status

    @contextmanager
    def _transaction(
        self, context: dg.OutputContext, client: UTCDuckDbClient, day_slice: TableSlice
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A transaction on the held connection (opened, or re-opened after
        :data:`HOLD_SECONDS` or for another client); a failure closes it. The run's status
        is read before the commit every :data:`STATUS_EVERY_SECONDS`."""
        if self._conn is None or self._conn_client is not client:
            self.close()
            self._conn, self._conn_client, self._opened = client.open_writer(context), client, time.monotonic()
            remember_catalog(self._conn)
        read = self._status_read is None or time.monotonic() - self._status_read >= STATUS_EVERY_SECONDS
        try:
            with client.transaction(context, day_slice, self._conn, check_terminated=read) as conn:
                yield conn
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

    @property
    def asset(self) -> str:
        return f"{self.table_slice.schema}.{self.table_slice.table}"

    def committed(self, context: dg.OutputContext, run_ids: Sequence[str], keys: Collection[str]) -> dict[str, str]:
        """Which of ``keys`` the runs ``run_ids`` committed: key -> run id (the first of
        ``run_ids`` that did)."""
        if not run_ids or not keys:
            return {}
        with self.client.connect(context, self.table_slice) as conn:
            table = _progress(conn, self.table_slice.schema, create=False)
            if table is None:
                return {}
            rows = conn.execute(
                f"SELECT run_id, partition_key FROM {table} WHERE asset_key = ? AND list_contains(?, run_id)",
                [self.asset, list(run_ids)],
            ).fetchall()
        rank = {run_id: i for i, run_id in enumerate(run_ids)}
        found: dict[str, str] = {}
        for run_id, key in sorted(rows, key=lambda r: rank[r[0]]):
            if key in keys:
                found.setdefault(key, run_id)
        return found

    def adopt(self, context: dg.OutputContext, keys: Collection[str], rows: Mapping[str, int]) -> None:
        """Mark ``keys`` as committed by this run too, so a re-execution of it finds them."""
        if keys:
            with self.client.connect(context, self.table_slice) as conn:
                _mark(conn, self.table_slice.schema, context.run_id, self.asset, [(k, rows.get(k, 0)) for k in keys])

    def write(self, context: dg.OutputContext, stored: StoredDay) -> None:
        """Replace ``stored.day``'s rows and mark it committed by this run, in one transaction;
        once more without the memory cap if DuckDB needs more than the default cap."""
        token = day_label.set(stored.day.key)
        try:
            try:
                self._write(context, self.client, stored)
            except DuckDBMemoryLimitError as exc:
                if self.uncapped is None:
                    raise
                context.log.warning(
                    f"DuckDB ran out of memory under memory_limit={exc.memory_limit} writing"
                    f" {stored.day.key}; retrying that day once with DuckDB's own limit (80% of RAM)."
                )
                self._write(context, self.uncapped, stored)
        finally:
            day_label.reset(token)

    def _write(self, context: dg.OutputContext, client: UTCDuckDbClient, stored: StoredDay) -> None:
        day_slice = _day_slice(self.table_slice, stored.day)
        with self._transaction(context, client, day_slice) as conn:
            client.ensure_schema_exists(context, day_slice, conn)
            client.delete_table_slice(context, day_slice, conn)
            self.handler.handle_output(context, day_slice, stored.frame, conn)
            _mark(conn, day_slice.schema, context.run_id, self.asset, [(stored.day.key, len(stored.frame))])

    def unmark(self, context: dg.OutputContext, key: str) -> None:
        """Forget that this run committed ``key`` (its rows stay until it is written again)."""
        with self._transaction(context, self.client, self.table_slice) as conn:
            table = _progress(conn, self.table_slice.schema, create=False)
            if table is not None:
                conn.execute(
                    f"DELETE FROM {table} WHERE run_id = ? AND asset_key = ? AND partition_key = ?",
                    [context.run_id, self.asset, key],
                )

    def table_metadata(self) -> dict[str, Any]:
        """What is true of every day of the table: where it is stored (its schema, which needs
        the database, is the I/O manager's to add)."""
        return {"dagster/storage_kind": "duckdb", "dagster/table_name": self.client.get_table_name(self.table_slice)}

    def describe(self, day: UTCDay) -> dict[str, Any]:
        """The day's metadata: the query that loads it (the partition's own, not the range's)."""
        return {"Query": dg.MetadataValue.text(self.client.get_select_statement(_day_slice(self.table_slice, day)))}

    def read(
        self, context: dg.InputContext | dg.OutputContext, day: UTCDay, columns: Sequence[str] | None
    ) -> pd.DataFrame:
        """One day's rows, as the pandas handler loads them."""
        day_slice = _day_slice(self.table_slice, day, columns)
        with self.client.connect(context, day_slice) as conn:
            return self.handler.load_input(context, day_slice, conn)


class _CommitLog:
    """The log lines of a range's commits: how many so far, every
    :data:`PROGRESS_EVERY_SECONDS`, and, if the write fails, which days are kept."""

    def __init__(self, context: dg.OutputContext, to_write: int) -> None:
        self.context, self.to_write = context, to_write
        self.days: dict[str, None] = {}  # committed by this attempt, in commit order
        self._next = time.monotonic() + PROGRESS_EVERY_SECONDS

    def committed(self, key: str) -> None:
        self.days[key] = None
        if self.to_write > 1 and time.monotonic() >= self._next:
            self._next = time.monotonic() + PROGRESS_EVERY_SECONDS
            self.context.log.info(
                f"Committed {len(self.days)} of {self.to_write} day(s) so far (the last committed: {key}). Each is"
                " in the table from its commit; Dagster records the materializations when this step ends."
            )

    def reopened(self, key: str) -> None:
        self.days.pop(key, None)

    def failed(self) -> None:
        if not self.days:
            return
        first, last = min(self.days), max(self.days)
        span = first if first == last else f"{first}..{last}"
        self.context.log.warning(
            f"This attempt committed {len(self.days)} of {self.to_write} day(s) ({span}) before it failed;"
            " they are kept. A retry of this step, or a re-execution of this run from failure, fetches"
            " and writes only the other days; a new run of the range replaces them all."
        )


def write_stream(store: DayStore, context: dg.OutputContext, stream: DayStream) -> None:
    """Commit ``stream`` day by day (module docstring), telling it of each day with its query."""
    done = store.committed(context, stream.resume_from, set(stream.keys))
    if done:
        runs = sorted(set(done.values()))
        context.log.info(
            f"Resuming: {len(done)} of {len(stream.days)} day(s) were committed by run(s) {', '.join(runs)}"
            " and are kept; only the other days are fetched and written"
        )
    resumed_rows: dict[str, int] = {}
    for day in stream.days:
        if day.key in done:
            frame = store.read(context, day, stream.resume_columns)
            resumed_rows[day.key] = len(frame)
            stream.on_resumed(StoredDay(day, frame, resumed_from=done[day.key], metadata=store.describe(day)))
            del frame
    store.adopt(context, [k for k, run in done.items() if run != context.run_id], resumed_rows)
    log = _CommitLog(context, len(stream.days) - len(done))
    try:
        for item in stream.produce(set(done)):
            if isinstance(item, ReopenedDay):
                store.unmark(context, item.day.key)
                log.reopened(item.day.key)
                continue
            store.write(context, item)
            log.committed(item.day.key)
            stream.on_written(dataclasses.replace(item, metadata=store.describe(item.day)))
    except BaseException as exc:
        # Neither a log line nor the report of the days kept may take the place of the error
        # that ends the step.
        with contextlib.suppress(Exception):
            log.failed()
        if stream.on_failed is not None:
            with contextlib.suppress(Exception):
                stream.on_failed(exc, store.table_metadata())
        raise
    finally:
        store.close()


def day_frames(store: DayStore, context: dg.InputContext, days: Sequence[UTCDay]) -> DayFrames:
    """The input's days, each loaded when iterated."""
    columns = store.table_slice.columns
    return DayFrames(days=list(days), load=lambda day: store.read(context, day, columns))
