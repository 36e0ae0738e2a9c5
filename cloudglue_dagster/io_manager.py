"""A pandas DuckDB I/O manager that is safe to re-run, back-fill and run in parallel.

:class:`CloudglueDuckDBIOManager` stores each asset as a DuckDB table, exactly like
``dagster_duckdb_pandas.DuckDBPandasIOManager`` does (same table/schema naming, same
``partition_expr`` asset metadata, same ``columns`` input metadata), so an asset can move to the
Snowflake or BigQuery pandas I/O managers without changes. It reuses Dagster's
``DbIOManager`` for all of that and replaces the DuckDB client and pandas type handler to fix
what bites a daily pipeline:

* **Atomic replace.** Deleting the partition's (or range's) time window and inserting the new
  rows commit in one transaction: a failed insert, or a process killed mid-write, leaves the
  previous rows in place. An unpartitioned asset's table is replaced in one transaction too.
* **Empty frames are written.** The slice delete is committed, and a missing table is created
  with the frame's columns, so downstream loads of an empty day return an empty frame.
* **UTC everywhere.** Every connection runs with ``TimeZone = 'UTC'`` and partition bounds are
  converted to UTC, so what a run deletes or reads never depends on the machine's ``TZ``.
* **Columns by name.** Rows are inserted ``BY NAME``: column order does not matter, a new
  column is added to the table, a missing one is stored as NULL, and a column that is entirely
  null in one partition never changes the table's column types.
* **Lock waits.** DuckDB lets one process write a file at a time. Connections are opened per
  read or write and closed at once; when another process holds the file, connecting is retried
  with exponential backoff and jitter for ``lock_timeout_seconds``, then the step fails.
* **Range runs.** A DataFrame for a range replaces the whole window in one transaction and
  does not stamp the range's row count on every partition. A
  :class:`~cloudglue_dagster.streams.DayStream` (what the Cloudglue assets hand over) is
  committed a day at a time, each day with a progress mark in the same transaction, so a failed
  run keeps its committed days and its retry or re-execution skips them
  (:mod:`cloudglue_dagster.day_store`); an input with ``cloudglue/day_by_day`` metadata is
  loaded a day at a time (:class:`~cloudglue_dagster.streams.DayFrames`).
* **Lean memory.** DuckDB's buffers are capped at :data:`DEFAULT_MEMORY_LIMIT` and writes run
  on one thread, so a run's peak memory is mostly its frame; a read or write that needs more
  is retried once without the cap.
* **Unusable paths fail at once.** An empty ``database``, a directory or a file that is not a
  DuckDB database is refused when the definitions load, naming the setting; a file that cannot
  be opened or created at run time fails the step with :class:`DuckDBPathError`.
* **Column types are kept.** An append whose cast would change values (a column whose type was
  altered outside the pipeline) is refused with :class:`DuckDBSchemaError`; nothing is written.
* **Terminated runs do not commit.** A run terminated before its write commits rolls it back.
* **Permanent, explained failures.** Every error is a :class:`DuckDBStorageError`: permanent
  (``is_transient`` is False, ``allow_retries=False``: the step fails at once under any
  ``RetryPolicy``), naming the database, the table and partitions, DuckDB's own message (never
  a cleanup step's) and, for a write, the row and column at fault when one row is.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

import dagster as dg
import duckdb
import pandas as pd
from dagster._core.definitions.partitions.utils import TimeWindow
from dagster._core.storage.db_io_manager import (
    DbClient,
    DbIOManager,
    DbTypeHandler,
    TablePartitionDimension,
    TableSlice,
    static_where_clause,
)
from pydantic import Field, field_validator

from cloudglue_dagster.duckdb_errors import (
    DuckDBLockTimeoutError,
    DuckDBMemoryLimitError,
    DuckDBPathError,
    DuckDBRunTerminatedError,
    DuckDBSchemaError,
    DuckDBStorageError,
    DuckDBWriteError,
    check_database_path,
    describe_cause,
    display_path,
    find_row_at_fault,
    is_file_database,
    open_error,
    parent_error,
)
from cloudglue_dagster.day_store import DayStore, day_frames, day_label, write_stream
from cloudglue_dagster.days import UTCDay
from cloudglue_dagster.run_control import terminated_status
from cloudglue_dagster.streams import DAY_BY_DAY_INPUT, DayFrames, DayStream

__all__ = [
    "DEFAULT_MEMORY_LIMIT",
    "CloudglueDuckDBIOManager",
    "DuckDBLockTimeoutError",
    "DuckDBMemoryLimitError",
    "DuckDBPandasReplaceTypeHandler",
    "DuckDBPathError",
    "DuckDBRunTerminatedError",
    "DuckDBSchemaError",
    "DuckDBStorageError",
    "DuckDBWriteError",
    "UTCDuckDbClient",
    "check_database_path",
]

# Plain literals (no offset) compare correctly with TIMESTAMPTZ, TIMESTAMP, TIMESTAMP_NS, DATE
# and ISO-string VARCHAR columns alike; they are read in the session time zone, which every
# connection sets to UTC, and the bounds are converted to UTC before formatting.
_DUCKDB_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"

# Name the frame is registered under while it is written; unlikely to clash with a table.
_FRAME_VIEW = "__cloudglue_dagster_frame"

# The frame type of an object column holding only None/NaN (DuckDB 2 describes it so).
_UNKNOWN_TYPE = '"NULL"'

DEFAULT_MEMORY_LIMIT = "32MB"
"""DuckDB's ``memory_limit`` for each read and write, unless ``connection_config`` sets one.

DuckDB's own default (80% of RAM) lets its buffers grow beside the frame being written, and
at commit it holds the rows twice. Capped, it spills to a temp folder beside the file instead
(figures in docs/performance.md). Rows of very long texts (over about 10 KB
each) can need more than the cap for one batch of rows: such a read or write is retried once
without it.
"""

_WRITE_THREADS = 1
# A write scans the frame's Python objects, which holds the GIL: a second DuckDB thread adds
# its own buffers, not speed. Inserting a year of the benchmark's completions (305,394) took
# 1.01 s on one thread and 1.13 s on two, and peaked 188 MiB lower.

# Exponential backoff for lock waits: first wait, growth factor and longest single wait.
_LOCK_BACKOFF_START_SECONDS = 0.05
_LOCK_BACKOFF_FACTOR = 2.0
_LOCK_BACKOFF_MAX_SECONDS = 1.0

# What a reader gets back for each DuckDB column type (see CloudglueDuckDBIOManager).
_PANDAS_DTYPE_BY_DUCKDB_TYPE: Mapping[str, str] = {
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



class CloudglueDuckDBIOManager(dg.ConfigurableIOManagerFactory):
    """Stores pandas DataFrames in a DuckDB file; loads them back as DataFrames.

    Each asset is a table named after the last component of its asset key, in the schema given
    by (first match) the asset's ``schema`` metadata, this manager's ``schema``, the asset key's
    prefix, or ``public``. Partitioned assets must say which column holds the partition time
    with ``metadata={"partition_expr": "created_at"}`` (any SQL expression works).

    Writing an output replaces the rows of the partition's time window (the whole window of a
    range run) in a single transaction, or the whole table for an unpartitioned asset. Nothing
    is half-written: a failure or a killed process leaves the previous rows. Partition bounds
    are compared in UTC; a naive ``TIMESTAMP`` partition column is taken to hold UTC times.

    The table's columns are fixed by the first frame written and grow when a frame brings a new
    column (``ALTER TABLE ... ADD COLUMN``); values are inserted by column name, a column the
    frame lacks gets NULL, and a column entirely null in the frame keeps the table's type. An
    unpartitioned table is re-created from each frame, with the frame's types. An object column
    holding only None/NaN, which has no type of its own, keeps the table's type or becomes
    VARCHAR.

    Appending never casts a value into something else: each column the frame shares with the
    table, unless it is entirely null, must have the table's DuckDB type or one that converts
    without changing any value: a narrower integer into a wider one or into ``DOUBLE``,
    ``FLOAT`` into ``DOUBLE``, and a float column holding only whole numbers into an integer
    column (pandas turns an integer column with a missing value into ``float64``). Anything
    else (``BIGINT`` into a column altered to ``INTEGER`` or ``VARCHAR``, ``10.5`` into
    ``BIGINT``, text into a number) fails the step with :class:`DuckDBSchemaError`, naming each
    column, both types and the ``ALTER TABLE`` that restores them; nothing is written.

    Loading returns pandas nullable dtypes, chosen by the column's DuckDB type whatever the
    values: ``BIGINT`` -> ``Int64`` (other integer widths likewise), ``DOUBLE`` -> ``Float64``,
    ``BOOLEAN`` -> ``boolean``, ``VARCHAR`` -> ``string``, ``TIMESTAMPTZ`` ->
    ``datetime64[ns, UTC]``, ``TIMESTAMP`` -> naive ``datetime64[ns]``; other types are left as
    DuckDB returns them. NULL comes back as ``pd.NA``/``NaT``. A tz-aware column is stored as
    ``TIMESTAMPTZ``, to the microsecond; NaN and NULL are both stored as NULL.

    Each write or load opens its own connection and closes it at once (loads open the file
    read-only, so runs can read it together). While another process holds the file, opening
    is retried for ``lock_timeout_seconds``, then the step fails with
    :class:`DuckDBLockTimeoutError`.

    Failures: every error is a :class:`DuckDBStorageError`, permanent: the step fails at once,
    whatever its ``RetryPolicy``, and a cleanup step failing after the error never replaces it.
    ``database`` is checked when the definitions load: an empty path, a directory or a file
    that is not a DuckDB database raises :class:`~cloudglue_dagster.errors.CloudglueConfigError`
    (``:memory:`` and MotherDuck are not checked; an empty file is let through, see
    :func:`check_database_path`). At run time a file that cannot be opened or created raises
    :class:`DuckDBPathError`; a statement DuckDB refuses raises :class:`DuckDBWriteError` with
    DuckDB's message and, when one row is at fault (a string that is not valid UTF-8, a value
    out of range, a NULL or duplicate key refused by a constraint), that row's ``id`` (else
    ``completion_id``, else its position) and column. A run terminated (CANCELING or CANCELED)
    before its write commits rolls it back with :class:`DuckDBRunTerminatedError`.

    Memory: unless ``connection_config`` says otherwise, DuckDB runs with ``memory_limit`` =
    :data:`DEFAULT_MEMORY_LIMIT` (32MB; it spills to ``<file>.tmp`` beyond that) and writes
    with ``threads`` = 1. A read or write that runs out of memory under that cap (rows of very
    long texts) is rolled back and retried once with DuckDB's own limit (80% of RAM), with a
    warning in the run's log. Under a ``memory_limit`` you set, it fails with
    :class:`DuckDBMemoryLimitError` instead.

    Metadata on each materialization: ``dagster/table_name`` (``<file stem>.<schema>.<table>``,
    the name DuckDB itself resolves), ``dagster/storage_kind``, ``dagster/column_schema`` (the
    table after the write), ``Query`` (the load query of this output's slice) and
    ``dagster/partition_row_count`` only when the output is one partition (``dagster/row_count``
    for an unpartitioned asset). A range run reports no counts, since Dagster would attach the
    range's total to every partition: the asset should add them with
    ``context.add_asset_metadata(..., partition_key=k)``.

    Example:
        .. code-block:: python

            @dg.asset(
                partitions_def=dg.DailyPartitionsDefinition("2026-01-01", timezone="UTC"),
                metadata={"partition_expr": "created_at"},
            )
            def completions(context) -> pd.DataFrame: ...

            dg.Definitions(
                assets=[completions],
                resources={
                    "io_manager": CloudglueDuckDBIOManager(
                        database="data/cloudglue.duckdb", schema="cloudglue"
                    )
                },
            )
    """

    database: str = Field(
        description=(
            "Path of the DuckDB database file. Missing parent directories are created on the"
            " first write. Refused at load if empty, a directory or a file that is not a DuckDB"
            " database."
        )
    )
    connection_config: dict[str, Any] = Field(
        default={},
        description=(
            "DuckDB configuration options for every connection, e.g. {'threads': 4}. See"
            " https://duckdb.org/docs/sql/configuration.html. The session time zone is always"
            " UTC. memory_limit defaults to 32MB (DuckDB spills beyond it to a temp folder"
            " beside the file; a read or write that needs more is retried once with DuckDB's"
            " own limit, 80% of RAM) and writes run with threads=1. Setting either here"
            " replaces that default; a memory_limit set here is never exceeded."
        ),
    )
    schema_: str | None = Field(
        default=None,
        alias="schema",
        description=(
            "Schema for assets that set no 'schema' metadata. If unset, the asset key prefix is"
            " used, else 'public'."
        ),
    )  # schema is a reserved word for pydantic
    lock_timeout_seconds: float = Field(
        default=120.0,
        ge=0,
        description=(
            "How long to keep retrying, with exponential backoff and jitter, when another"
            " process (another run, `dagster dev`, a DuckDB shell) holds the database file's"
            " lock. After that the step fails, without step retries, with an error naming the file."
        ),
    )

    @field_validator("database", mode="before")
    @classmethod
    def _usable_database(cls, value: object) -> object:
        # "before": an EnvVar arrives as itself and is checked once the run resolves it.
        if isinstance(value, dg.EnvVar) or not isinstance(value, str):
            return value
        return check_database_path(value)

    def create_io_manager(self, context: dg.InitResourceContext) -> DbIOManager:
        return _MemoryRetryingDbIOManager(
            db_client=UTCDuckDbClient(
                database=self.database,
                connection_config=self.connection_config,
                lock_timeout_seconds=self.lock_timeout_seconds,
            ),
            database=self.database,
            schema=self.schema_,
            type_handlers=[DuckDBPandasReplaceTypeHandler()],
            default_load_type=pd.DataFrame,
            io_manager_name="CloudglueDuckDBIOManager",
        )


class _MemoryRetryingDbIOManager(DbIOManager):
    """``DbIOManager`` that reruns a write or load once without the default memory cap.

    A whole rerun, not a resumed one: the failed write was rolled back with its transaction.
    The rerun goes through a second manager whose client has no cap, so nothing shared is
    switched back and forth.
    """

    def __init__(self, *, db_client: "UTCDuckDbClient", **kwargs: Any):
        super().__init__(db_client=db_client, **kwargs)
        self._uncapped = (
            None if db_client.memory_limit is None else DbIOManager(db_client=db_client.uncapped(), **kwargs)
        )

    supports_day_streams = True
    """Stores :class:`~cloudglue_dagster.streams.DayStream` outputs a committed day at a time
    and loads ``cloudglue/day_by_day`` inputs as :class:`~cloudglue_dagster.streams.DayFrames`."""

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        if isinstance(obj, DayStream):
            self._write_days(context, obj)
            return
        try:
            super().handle_output(context, obj)
        except DuckDBMemoryLimitError as exc:
            self._uncapped_or_raise(context, exc).handle_output(context, obj)

    def load_input(self, context: dg.InputContext) -> object:
        if (context.definition_metadata or {}).get(DAY_BY_DAY_INPUT) and context.has_asset_partitions:
            return self._day_frames(context)
        try:
            return super().load_input(context)
        except DuckDBMemoryLimitError as exc:
            return self._uncapped_or_raise(context, exc).load_input(context)

    def _store(self, context: dg.OutputContext | dg.InputContext, output: dg.OutputContext) -> DayStore:
        client = cast("UTCDuckDbClient", self._db_client)
        uncapped = None if self._uncapped is None else cast("UTCDuckDbClient", self._uncapped._db_client)
        return DayStore(client, uncapped, self._resolve_handler(pd.DataFrame), self._get_table_slice(context, output))

    def _write_days(self, context: dg.OutputContext, stream: DayStream) -> None:
        store = self._store(context, context)
        metadata = write_stream(store, context, stream)
        with store.client.connect(context, store.table_slice) as conn:
            columns = table_columns(conn, store.table_slice.schema, store.table_slice.table) or {}
        context.add_output_metadata(
            {
                "dagster/storage_kind": "duckdb",
                "dagster/column_schema": dg.TableSchema(
                    columns=[dg.TableColumn(name=name, type=typ) for name, typ in columns.values()]
                ),
                "Query": self._db_client.get_select_statement(store.table_slice),
                "dagster/table_name": self._db_client.get_table_name(store.table_slice),
                **metadata,
            }
        )

    def _day_frames(self, context: dg.InputContext) -> DayFrames:
        upstream = cast("dg.OutputContext", context.upstream_output)
        partitions_def = cast("dg.TimeWindowPartitionsDefinition", context.asset_partitions_def)
        days = []
        for key in context.asset_partition_keys:
            window = partitions_def.time_window_for_partition_key(key)
            days.append(UTCDay(key, window.start, window.end))
        return day_frames(self._store(context, upstream), context, days)

    def _uncapped_or_raise(
        self, context: dg.OutputContext | dg.InputContext, exc: DuckDBMemoryLimitError
    ) -> DbIOManager:
        if self._uncapped is None:
            raise exc
        context.log.warning(
            f"DuckDB ran out of memory under memory_limit={exc.memory_limit} (this I/O manager's"
            " default); retrying once with DuckDB's own limit (80% of RAM). Set"
            " connection_config={'memory_limit': ...} to choose a limit."
        )
        return self._uncapped


class UTCDuckDbClient(DbClient):
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

    def uncapped(self) -> "UTCDuckDbClient":
        """A copy of this client whose connections run under DuckDB's own memory limit."""
        clone = copy.copy(self)
        clone.memory_limit = None
        return clone

    @contextmanager
    def connect(  # pyright: ignore[reportIncompatibleMethodOverride]
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
        _create_parent(self.database)
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
        self, context: dg.OutputContext, table_slice: TableSlice, conn: duckdb.DuckDBPyConnection
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """One transaction on ``conn``: committed if the body succeeds and the run was not
        terminated, else rolled back, the error mapped to a permanent one."""
        try:
            conn.begin()
            yield conn
            self._refuse_if_terminated(context, table_slice)
            conn.commit()
        except BaseException as exc:
            # Covers KeyboardInterrupt too. A hard kill never gets here and need not:
            # DuckDB makes a transaction durable only at COMMIT.
            _quietly(conn.rollback)
            failure = self._write_failure(conn, context, table_slice, exc)
            if failure is exc:
                raise
            raise failure from exc

    @contextmanager
    def _write_transaction(
        self, context: dg.OutputContext, table_slice: TableSlice
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        conn = self.open_writer(context)
        try:
            with self.transaction(context, table_slice, conn):
                yield conn
        finally:
            _quietly(conn.close)

    def _write_failure(
        self,
        conn: duckdb.DuckDBPyConnection,
        context: dg.OutputContext,
        table_slice: TableSlice,
        exc: BaseException,
    ) -> BaseException:
        """``exc`` as a permanent error: itself if it is one already, or an interrupt."""
        if isinstance(exc, (dg.Failure, dg.DagsterError)) or not isinstance(exc, Exception):
            return exc
        if _is_out_of_memory(exc):
            return self._memory_error(conn, "Writing to", exc, "the previous rows are kept")
        # A statement DuckDB refused (a catalog error, a full disk, a commit that could not
        # write its log) fails the same way on a retry: fail now, not after the step's retry
        # policy has waited minutes. Lock waits are handled when connecting.
        return DuckDBWriteError(
            database=display_path(self.database),
            table=_plain_table(table_slice),
            partitions=_partitions_label(context),
            cause=exc,
        )

    def _refuse_if_terminated(self, context: dg.OutputContext, table_slice: TableSlice) -> None:
        # A terminated run's step is interrupted by a signal that may come later than this, or
        # never (an in-process run): committing would store rows for a run the user stopped.
        status = _terminated(context)
        if status is not None:
            raise DuckDBRunTerminatedError(
                database=display_path(self.database),
                table=_plain_table(table_slice),
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
                f"DuckDB database {display_path(self.database)} does not exist yet: materialize"
                f" {upstream} first.",
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
            if _is_out_of_memory(exc):
                raise self._memory_error(conn, "Reading from", exc, "nothing was loaded") from exc
            raise DuckDBStorageError(
                f"Reading {_plain_table(table_slice)} from DuckDB database"
                f" {display_path(self.database)} failed; nothing was loaded. {describe_cause(exc)}",
                database=display_path(self.database),
                table=_plain_table(table_slice),
            ) from exc
        finally:
            _quietly(conn.close)

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
        ((catalog,),) = connection.execute("SELECT current_database()").fetchall()
        connection.execute(
            f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(catalog)}.{quote_identifier(table_slice.schema)}"
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
        return select_statement(table_slice, f"{quote_identifier(catalog)}.{_schema_table(table_slice)}")

    @staticmethod
    def get_table_name(table_slice: TableSlice) -> str:
        # DuckDB names a file's catalog after the file stem: this is the name a query uses.
        catalog = Path(table_slice.database).stem if table_slice.database else None
        parts = [p for p in (catalog, table_slice.schema, table_slice.table) if p]
        return ".".join(parts)


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
            if _is_out_of_memory(exc):
                raise  # the client makes it a DuckDBMemoryLimitError, retried once uncapped
            raise DuckDBWriteError(
                database=display_path(table_slice.database or ""),
                table=_plain_table(table_slice),
                partitions=_partitions_label(context),
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
            metadata["dagster/partition_row_count"] = len(obj)
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
                f"Table {_schema_table(table_slice)} does not exist in DuckDB database"
                f" {display_path(table_slice.database or '')}: materialize the upstream asset"
                " first.",
                database=display_path(table_slice.database or ""),
                table=_plain_table(table_slice),
            )
        table = qualified_table(connection, table_slice.schema, table_slice.table)
        relation = connection.sql(select_statement(table_slice, table))
        return to_nullable_dtypes(relation.df(), [str(t) for t in relation.types])

    @property
    def supported_types(self) -> Sequence[type[object]]:
        return [pd.DataFrame]


# ---------------------------------------------------------------------------------------------
# Plain functions doing the work. Each takes an open connection and leaves transactions to the
# caller.


def open_connection(
    database: str,
    *,
    read_only: bool,
    config: Mapping[str, Any],
    lock_timeout_seconds: float,
    log: Any = None,
    memory_limit: str | None = DEFAULT_MEMORY_LIMIT,
) -> duckdb.DuckDBPyConnection:
    """Opens a UTC DuckDB connection, waiting for another process's file lock if needed.

    Unless ``config`` sets them, ``memory_limit`` is applied (None: DuckDB's own default) and a
    writable connection runs on one thread.

    Retries with exponential backoff and jitter (jitter keeps several waiting runs from
    retrying in lockstep) until ``lock_timeout_seconds`` have passed, then raises
    :class:`DuckDBLockTimeoutError`. Any other failure to open raises at once:
    :class:`DuckDBPathError` for a file DuckDB cannot open or create, else
    :class:`DuckDBStorageError` (e.g. an option of ``config`` DuckDB does not know).
    """
    # No custom_user_agent (the stock manager sets one): DuckDB refuses a second connection
    # in one process whose configuration differs from the first, so the default
    # configuration lets runs share the file with a plain duckdb.connect(path) held open in
    # the same process (a notebook, a test).
    full_config = dict(config)
    deadline = time.monotonic() + lock_timeout_seconds
    backoff = _LOCK_BACKOFF_START_SECONDS
    waited = False
    while True:
        try:
            conn = _connect_once(database, read_only=read_only, config=full_config)
            break
        except duckdb.Error as exc:
            if not _is_lock_error(exc):
                raise open_error(database, exc, config) from exc
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DuckDBLockTimeoutError(
                    f"Could not open DuckDB database {display_path(database)}: another process"
                    " holds its lock (another Dagster run writing to it, or `dagster dev`, a"
                    " notebook or a DuckDB shell with the file open) and did not release it"
                    f" within lock_timeout_seconds={lock_timeout_seconds:g}. Close that process"
                    f" or raise lock_timeout_seconds. DuckDB said: {exc}",
                    database=display_path(database),
                ) from exc
            if not waited and log is not None:
                log.info(
                    f"DuckDB database {display_path(database)} is locked by another process;"
                    f" retrying for up to {lock_timeout_seconds:g}s. DuckDB said: {exc}"
                )
            waited = True
            time.sleep(min(remaining, random.uniform(backoff / 2, backoff)))
            backoff = min(backoff * _LOCK_BACKOFF_FACTOR, _LOCK_BACKOFF_MAX_SECONDS)
    try:
        # The stock manager leaves the session in the machine's local zone, which is how its
        # zone-less WHERE literals come to delete the wrong rows of a TIMESTAMPTZ column.
        # The Python wheel links ICU statically, so this works without any download.
        conn.execute("SET TimeZone = 'UTC'")
        # Both are instance-wide settings, so set (or reset) on every open: another
        # connection of this process may have left them otherwise.
        if "memory_limit" not in config:
            limit = "RESET memory_limit" if memory_limit is None else f"SET memory_limit = '{memory_limit}'"
            conn.execute(limit)
        if not read_only and "threads" not in config:
            conn.execute(f"SET threads = {_WRITE_THREADS}")
    except BaseException:
        _quietly(conn.close)
        raise
    return conn


def _connect_once(
    database: str, *, read_only: bool, config: Mapping[str, Any]
) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(database, read_only=read_only, config=dict(config))
    except duckdb.ConnectionException as exc:
        # Within one process DuckDB shares one database instance per file and refuses a
        # second connection with another configuration: here a read-only open while this
        # process already holds a read-write connection. Reading through that is fine.
        if read_only and "different configuration" in str(exc):
            return duckdb.connect(database, read_only=False, config=dict(config))
        raise


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
    :class:`CloudglueDuckDBIOManager`); DuckDB's own errors are raised as they are.
    """
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
                    conn.execute(f"ALTER TABLE {target} ADD COLUMN {column} {column_type}")
            conn.execute(f"INSERT INTO {target} BY NAME {select}")
    except BaseException:
        # After a failed statement DuckDB refuses everything but ROLLBACK, unregister too: its
        # "Current transaction is aborted" would replace the error worth reporting.
        _quietly(lambda: conn.unregister(_FRAME_VIEW))
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
        values = frame.iloc[:, position]
        if stored is None or frame_type == _UNKNOWN_TYPE or not values.notna().any():
            continue  # a new column, or no value to cast
        if not _keeps_values(frame_type, stored[1], values):
            changed[stored[0]] = (stored[1], frame_type)
    if changed:
        raise DuckDBSchemaError(database=_database_of(conn), table=table, target=target, columns=changed)


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
    text = [c for c in frame.columns if isinstance(frame[c].dtype, pd.StringDtype)]
    if not text:
        return frame
    out = frame.copy(deep=False)
    for column in text:
        out[column] = frame[column].astype(object).where(frame[column].notna(), None)
    return out


def table_columns(
    conn: duckdb.DuckDBPyConnection, schema: str, table: str
) -> dict[str, tuple[str, str]] | None:
    """Returns ``{lower-case name: (name, DuckDB type)}`` of a table's columns, or None if the
    table does not exist. Names compare case-insensitively, as DuckDB resolves them.
    """
    rows = conn.execute(
        """
        SELECT column_name, data_type FROM duckdb_columns()
        WHERE database_name = current_database()
          AND lower(schema_name) = lower(?) AND lower(table_name) = lower(?)
        ORDER BY column_index
        """,
        [schema, table],
    ).fetchall()
    if not rows:
        return None
    return {name.lower(): (name, data_type) for name, data_type in rows}


def to_nullable_dtypes(frame: pd.DataFrame, duckdb_types: Sequence[str]) -> pd.DataFrame:
    """Converts each column to the pandas nullable dtype for its DuckDB type (see
    :class:`CloudglueDuckDBIOManager`), so a column's dtype does not depend on whether this
    particular slice happens to contain NULLs.
    """
    converted = {}
    for position, duckdb_type in enumerate(duckdb_types):
        dtype = _PANDAS_DTYPE_BY_DUCKDB_TYPE.get(duckdb_type)
        if dtype is None:
            continue
        column = frame.iloc[:, position]
        try:
            converted[position] = column.astype(dtype)
        except (TypeError, ValueError, OverflowError):
            # e.g. a timestamp beyond 2262 does not fit datetime64[ns]: keep DuckDB's dtype.
            continue
    if not converted:
        return frame
    frame = frame.copy(deep=False)
    for position, column in converted.items():
        frame.isetitem(position, column)
    return frame


def partition_where_clause(partition_dimensions: Sequence[TablePartitionDimension]) -> str:
    """SQL condition selecting the rows of the given partitions (time windows in UTC)."""
    return " AND ".join(
        (
            time_window_where_clause(dimension)
            if isinstance(dimension.partitions, TimeWindow)
            else static_where_clause(dimension)
        )
        for dimension in partition_dimensions
    )


def time_window_where_clause(dimension: TablePartitionDimension) -> str:
    """``expr >= start AND expr < end`` with the window's bounds written in UTC."""
    start, end = cast("TimeWindow", dimension.partitions)
    return (
        f"{dimension.partition_expr} >= '{_utc_literal(start)}'"
        f" AND {dimension.partition_expr} < '{_utc_literal(end)}'"
    )


def quote_identifier(name: str) -> str:
    """Double-quotes a SQL identifier (DuckDB still matches it case-insensitively)."""
    return '"' + name.replace('"', '""') + '"'


def qualified_table(conn: duckdb.DuckDBPyConnection, schema: str, table: str) -> str:
    """``"catalog"."schema"."table"`` for the connection's database.

    DuckDB names a file's catalog after the file stem, so with ``cloudglue.duckdb`` and
    schema ``cloudglue`` a two-part name is ambiguous; three parts never are.
    """
    ((catalog,),) = conn.execute("SELECT current_database()").fetchall()
    return f"{quote_identifier(catalog)}.{quote_identifier(schema)}.{quote_identifier(table)}"


def _schema_table(table_slice: TableSlice) -> str:
    return f"{quote_identifier(table_slice.schema)}.{quote_identifier(table_slice.table)}"


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


def _is_out_of_memory(exc: BaseException) -> bool:
    # An OutOfMemoryException, or a commit that could not pin a block:
    # "TransactionContext Error: Failed to commit: failed to pin block of size 256.0 KiB (30.2 MiB/30.5 MiB used)"
    return isinstance(exc, duckdb.OutOfMemoryException) or "failed to pin block" in str(exc).lower()


def _is_lock_error(exc: BaseException) -> bool:
    # "IO Error: Could not set lock on file ...: Conflicting lock is held in ... (PID n)".
    # Not just "lock": the path is in every IO error, and may well contain that word.
    return isinstance(exc, duckdb.IOException) and "could not set lock on file" in str(exc).lower()


def _create_parent(database: str) -> None:
    """Creates the missing directories of a file database's path."""
    if not is_file_database(database):
        return
    try:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise parent_error(database, exc) from exc


def _quietly(cleanup: Callable[[], object]) -> None:
    """Runs a cleanup step (rollback, close, unregister) whose failure must not replace the
    error being raised: e.g. the transaction is already gone after a failed statement."""
    try:
        cleanup()
    except duckdb.Error:
        pass


def _plain_table(table_slice: TableSlice) -> str:
    return f"{table_slice.schema}.{table_slice.table}"


def _partitions_label(context: dg.OutputContext) -> str | None:
    """The partition key written, ``first...last`` for a range, None if unpartitioned."""
    if not context.has_asset_partitions:
        return None
    day = day_label.get()
    if day is not None:
        return day
    keys = context.asset_partition_keys
    return keys[0] if len(keys) == 1 else f"{keys[0]}...{keys[-1]}"


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


def _database_of(conn: duckdb.DuckDBPyConnection) -> str:
    """The connection's database as :func:`~cloudglue_dagster.duckdb_errors.display_path` shows it."""
    ((path,),) = conn.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchall()
    return display_path(path) if path else ":memory:"
