"""``UTCDuckDbClient``: the ``DbClient`` under the I/O manager: one transaction per write,
read-only reads, errors mapped to permanent ones, and no commit for a terminated run."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb

from cloudglue_dagster.assets.run_control import terminated_status
from cloudglue_dagster.internals import DbClient, TableSlice

from .connections import DEFAULT_MEMORY_LIMIT, create_parent, is_out_of_memory, open_connection, quietly
from .day_store import partitions_label, table_label
from .errors import (
    DuckDBMemoryLimitError,
    DuckDBPathError,
    DuckDBRunTerminatedError,
    DuckDBStorageError,
    DuckDBWriteError,
    Operation,
    commit_was_durable,
    describe_cause,
    display_path,
    is_file_database,
    storage_fault,
)
from .sql import (
    catalog_name,
    create_once,
    forget_catalog,
    partition_where_clause,
    plain_table,
    qualified_table,
    quote_identifier,
    schema_table,
    select_statement,
    table_columns,
)

__all__ = ["UTCDuckDbClient"]


class UTCDuckDbClient(DbClient[duckdb.DuckDBPyConnection]):
    """DuckDB client for ``DbIOManager`` with transactional writes, UTC sessions and lock waits.

    ``DbIOManager.handle_output`` runs ``ensure_schema_exists``, ``delete_table_slice`` and the
    type handler on the connection yielded by :meth:`connect`; for an output that connection is
    inside one transaction, committed only when all three succeed.

    ``memory_limit`` is the cap set on each connection when ``connection_config`` has none:
    :data:`DEFAULT_MEMORY_LIMIT`, or None for DuckDB's own default.
    """

    def __init__(
        self,
        *,
        database: str,
        connection_config: Mapping[str, Any],
        lock_timeout_seconds: float,
    ):
        self.database = database
        self.connection_config = dict(connection_config)
        self.lock_timeout_seconds = lock_timeout_seconds
        self.memory_limit: str | None = None if "memory_limit" in connection_config else DEFAULT_MEMORY_LIMIT

    def uncapped(self) -> UTCDuckDbClient:
        """A copy of this client whose connections run under DuckDB's own memory limit."""
        clone = copy.copy(self)
        clone.memory_limit = None
        return clone

    # A method where DbClient declares a staticmethod: DbIOManager calls it on this client,
    # whose database, settings and memory cap each connection needs.
    @contextmanager
    def connect(  # type: ignore[override]  # pyright: ignore[reportIncompatibleMethodOverride]
        self, context: dg.OutputContext | dg.InputContext, table_slice: TableSlice
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        if isinstance(context, dg.OutputContext):
            with self._write_transaction(context, table_slice) as conn:
                yield conn
        else:
            with self._read_connection(context, table_slice) as conn:
                yield conn

    def open_writer(self, context: dg.OutputContext) -> duckdb.DuckDBPyConnection:
        """A read-write connection (creating the file's directory if needed), lock waits included."""
        create_parent(self.database)
        return open_connection(
            self.database,
            read_only=False,
            config=self.connection_config,
            lock_timeout_seconds=self.lock_timeout_seconds,
            log=context.log,
            memory_limit=self.memory_limit,
        )

    @contextmanager
    def transaction(
        self,
        context: dg.OutputContext,
        table_slice: TableSlice,
        conn: duckdb.DuckDBPyConnection,
        *,
        check_terminated: bool = True,
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """One transaction on ``conn``: committed if the body succeeds and the run was not
        terminated, else rolled back, the error mapped to a permanent one.

        ``check_terminated=False`` commits without reading the run's status: for a caller
        that read it moments ago (the day store, between two days of a range)."""
        try:
            conn.begin()
            yield conn
            if check_terminated:
                self._refuse_if_terminated(context, table_slice)
            conn.commit()
        except BaseException as exc:
            # Covers KeyboardInterrupt too. A hard kill never gets here and need not:
            # DuckDB makes a transaction durable only at COMMIT.
            quietly(conn.rollback)
            forget_catalog(conn)
            failure = self._write_failure(conn, context, table_slice, exc)
            if failure is exc:
                raise
            # Chained to DuckDB's own error: a DuckDBWriteError the handler raised in between
            # would show its "the previous rows are kept" under a damaged file's error.
            raise failure from _duckdb_cause(exc)

    @contextmanager
    def _write_transaction(
        self, context: dg.OutputContext, table_slice: TableSlice
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        conn = self.open_writer(context)
        try:
            with self.transaction(context, table_slice, conn):
                yield conn
        finally:
            quietly(conn.close)

    def _write_failure(
        self,
        conn: duckdb.DuckDBPyConnection,
        context: dg.OutputContext,
        table_slice: TableSlice,
        exc: BaseException,
    ) -> BaseException:
        """``exc`` as a permanent error: itself if it is one already, or an interrupt; a full
        disk or a damaged file as such, even under the DuckDBWriteError the pandas handler
        wraps a failed insert in (which would say the previous rows are kept)."""
        if isinstance(exc, dg.DagsterError) or not isinstance(exc, Exception):
            return exc
        cause = _duckdb_cause(exc)
        if isinstance(cause, dg.Failure):
            return exc  # ours already: a schema refused, a run terminated, a row at fault
        operation = Operation.of(
            "write",
            self.database,
            self.connection_config,
            table=plain_table(table_label.get() or table_slice),
            partitions=partitions_label(context),
        )
        fault = storage_fault(cause, operation)
        if fault is not None:
            return fault
        if cause is not exc:
            return exc
        committed = commit_was_durable(exc)
        if is_out_of_memory(exc):
            return self._memory_error(conn, "Writing to", exc, _write_outcome(committed))
        # A statement DuckDB refused (a catalog error, a commit that could not write its log)
        # fails the same way on a retry: fail now, not after the step's retry policy has waited
        # minutes. Lock waits are handled when connecting.
        return DuckDBWriteError(
            database=display_path(self.database),
            table=operation.table or "",
            partitions=operation.partitions,
            cause=exc,
            committed=committed,
        )

    def _refuse_if_terminated(self, context: dg.OutputContext, table_slice: TableSlice) -> None:
        # A terminated run's step is interrupted by a signal that may come later than this, or
        # never (an in-process run): committing would store rows for a run the user stopped.
        status = _terminated(context)
        if status is not None:
            raise DuckDBRunTerminatedError(
                database=display_path(self.database),
                table=plain_table(table_slice),
                run_id=context.run_id,
                status=status.value,
            )

    @contextmanager
    def _read_connection(
        self, context: dg.InputContext, table_slice: TableSlice
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        if is_file_database(self.database) and not Path(self.database).exists():
            upstream = context.asset_key.to_user_string() if context.has_asset_key else "upstream"
            raise DuckDBPathError(
                f"DuckDB database {display_path(self.database)} does not exist yet: materialize {upstream} first.",
                database=display_path(self.database),
            )
        conn = open_connection(
            self.database,
            # Read-only connections share the file with other readers (other runs loading
            # inputs at the same time); only a writer excludes them.
            read_only=True,
            config=self.connection_config,
            lock_timeout_seconds=self.lock_timeout_seconds,
            log=context.log,
            memory_limit=self.memory_limit,
        )
        try:
            yield conn
        except Exception as exc:
            if isinstance(exc, (dg.Failure, dg.DagsterError)):
                raise
            raise self.read_failure(conn, table_slice, exc) from exc
        finally:
            quietly(conn.close)

    def read_failure(
        self, conn: duckdb.DuckDBPyConnection, table_slice: TableSlice, exc: BaseException
    ) -> DuckDBStorageError:
        """A failed read of ``table_slice`` as a permanent error."""
        operation = Operation.of("read", self.database, self.connection_config, table=plain_table(table_slice))
        fault = storage_fault(exc, operation)
        if fault is not None:
            return fault
        if is_out_of_memory(exc):
            return self._memory_error(conn, "Reading from", exc, "nothing was loaded")
        return DuckDBStorageError(
            f"Reading {plain_table(table_slice)} from DuckDB database"
            f" {display_path(self.database)} failed; nothing was loaded. {describe_cause(exc)}",
            database=display_path(self.database),
            table=plain_table(table_slice),
        )

    def _memory_error(
        self, conn: duckdb.DuckDBPyConnection, doing: str, exc: BaseException, outcome: str
    ) -> DuckDBMemoryLimitError:
        try:
            ((limit,),) = conn.execute("SELECT current_setting('memory_limit')").fetchall()
        except duckdb.Error:
            limit = "unknown"
        return DuckDBMemoryLimitError(
            f"{doing} DuckDB database {display_path(self.database)} ran out of memory under"
            f" memory_limit={limit}; {outcome}. Raise connection_config['memory_limit'],"
            f" or load fewer days per run (max_partitions_per_run). DuckDB said: {exc}",
            database=display_path(self.database),
            memory_limit=str(limit),
        )

    @staticmethod
    def ensure_schema_exists(
        context: dg.OutputContext, table_slice: TableSlice, connection: duckdb.DuckDBPyConnection
    ) -> None:
        catalog = catalog_name(connection)
        create_once(
            connection,
            f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(catalog)}.{quote_identifier(table_slice.schema)}",
        )

    @staticmethod
    def delete_table_slice(
        context: dg.OutputContext, table_slice: TableSlice, connection: duckdb.DuckDBPyConnection
    ) -> None:
        # An unpartitioned table is re-created by the type handler, so there is nothing to
        # delete. The existence check replaces the stock "catch CatalogException": inside a
        # transaction any error aborts the transaction.
        if not table_slice.partition_dimensions:
            return
        if table_columns(connection, table_slice.schema, table_slice.table) is None:
            return
        connection.execute(
            f"DELETE FROM {qualified_table(connection, table_slice.schema, table_slice.table)} WHERE "
            + partition_where_clause(table_slice.partition_dimensions)
        )

    @staticmethod
    def get_select_statement(table_slice: TableSlice) -> str:
        """The load query, as shown in the ``Query`` metadata (the catalog is the file stem)."""
        catalog = Path(table_slice.database).stem if table_slice.database else "memory"
        return select_statement(table_slice, f"{quote_identifier(catalog)}.{schema_table(table_slice)}")

    @staticmethod
    def get_table_name(table_slice: TableSlice) -> str:
        # DuckDB names a file's catalog after the file stem: this is the name a query uses.
        catalog = Path(table_slice.database).stem if table_slice.database else None
        parts = [p for p in (catalog, table_slice.schema, table_slice.table) if p]
        return ".".join(parts)


def _write_outcome(committed: bool) -> str:
    """What a write that ran out of memory left behind, as its error says it."""
    if committed:
        return "the write itself was committed (DuckDB says it is durable); only the checkpoint after it failed"
    return "the previous rows are kept"


def _duckdb_cause(exc: BaseException) -> BaseException:
    """DuckDB's own error under a :class:`DuckDBWriteError` the pandas handler raised, else ``exc``."""
    if isinstance(exc, DuckDBWriteError) and isinstance(exc.__cause__, duckdb.Error):
        return exc.__cause__
    return exc


def _terminated(context: dg.OutputContext) -> dg.DagsterRunStatus | None:
    """The run's status if it was terminated; None otherwise, and for a context built
    without a run (``dg.build_output_context``)."""
    try:
        instance = context.step_context.instance
    except dg.DagsterInvariantViolationError:
        return None
    try:
        return terminated_status(instance, context.run_id)
    except Exception:
        # Not knowing is no reason to drop a good write: commit, as before this check existed.
        return None
