"""A pandas DuckDB I/O manager that is safe to re-run, back-fill and run in parallel.

:class:`CloudglueDuckDBIOManager` stores each asset as a DuckDB table, exactly like
``dagster_duckdb_pandas.DuckDBPandasIOManager`` does (same table/schema naming, same
``partition_expr`` asset metadata, same ``columns`` input metadata), so an asset can move to the
Snowflake or BigQuery pandas I/O managers without changes. It reuses Dagster's
``DbIOManager`` for all of that and replaces the DuckDB client and pandas type handler to fix
what bites a daily pipeline:

* **Atomic replace.** Deleting the partition's (or range's) time window and inserting the new
  rows commit in one transaction: a failed insert, or a process killed mid-write, leaves the
  previous rows in place (a commit DuckDB made durable before a checkpoint failed is reported
  as committed). An unpartitioned asset's table is replaced in one transaction too.
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
  :class:`~cloudglue_dagster.tables.streams.DayStream` (what the Cloudglue assets hand over) is
  committed a day at a time, every table of a day and a progress mark per table in one
  transaction, so a day is never split across the tables, a failed run keeps its committed
  days and its retry or re-execution skips them (:mod:`cloudglue_dagster.io_managers.duckdb.day_store`).
* **Lean memory.** DuckDB's buffers are capped at :data:`DEFAULT_MEMORY_LIMIT` and writes run
  on one thread, so a run's peak memory is mostly its frame; a read or write that needs more
  is retried once without the cap.
* **Unusable paths fail at once.** An empty ``database``, a directory or a file that is not a
  DuckDB database is refused when the definitions load, naming the setting; a file that cannot
  be opened or created at run time fails the step with :class:`DuckDBPathError`.
* **Column types are kept.** An append whose cast would change values (a column whose type was
  altered outside the pipeline) is refused with :class:`DuckDBSchemaError`; nothing is written.
* **Terminated runs do not commit.** A run terminated before its write commits rolls it back;
  a day-by-day range reads the run's status before its first commit, then at least every
  :data:`~.day_store.STATUS_EVERY_SECONDS`.
* **Permanent, explained failures.** Every error is a :class:`DuckDBStorageError`: permanent
  (``is_transient`` is False, ``allow_retries=False``: the step fails at once under any
  ``RetryPolicy``), naming the database, the table and partitions, DuckDB's own message (never
  a cleanup step's) and, for a write, the row and column at fault when one row is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import dagster as dg
import pandas as pd
from pydantic import Field, field_validator

from cloudglue_dagster.internals import DbIOManager, DbTypeHandler, TablePartitionDimension, TableSlice
from cloudglue_dagster.tables.streams import DayStream, TableTarget, TableWritten

from .client import UTCDuckDbClient
from .day_store import DayStore
from .day_stream import write_stream
from .errors import DuckDBMemoryLimitError, check_database_path
from .pandas_handler import DuckDBPandasReplaceTypeHandler
from .sql import table_columns

__all__ = ["CloudglueDuckDBIOManager"]


# Unparametrized, as Dagster's own managers: subscripting this pydantic model at run time
# would make a new model class for one type checker's sake.
class CloudglueDuckDBIOManager(dg.ConfigurableIOManagerFactory):  # type: ignore[type-arg]
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
    before its write commits rolls it back with :class:`DuckDBRunTerminatedError` (a
    day-by-day range reads the status every :data:`~.day_store.STATUS_EVERY_SECONDS`). A full
    disk (the file, its ``.wal`` or its ``.tmp`` spill directory) raises
    :class:`DuckDBDiskFullError` naming the space and the path; a file shorter than the blocks
    it uses is refused when opened, and a block failing its checksum when read, with
    :class:`DuckDBCorruptFileError`. Every write is one transaction, rolled back on failure,
    except when DuckDB says the commit was durable before a checkpoint after it failed: the
    error then says the write was committed.

    Memory: unless ``connection_config`` says otherwise, DuckDB runs with ``memory_limit`` =
    :data:`DEFAULT_MEMORY_LIMIT` (32MB; it spills to ``<file>.tmp`` beyond that) and writes
    with ``threads`` = 1. A read or write that runs out of memory under that cap (rows of very
    long texts) is rolled back and retried once with DuckDB's own limit (80% of RAM), with a
    warning in the run's log. Under a ``memory_limit`` you set, it fails with
    :class:`DuckDBMemoryLimitError` instead. Writes also run with ``checkpoint_threshold`` =
    16MB (DuckDB's own: a day-by-day range checkpoints every dozen days or so, so the rows not
    yet checkpointed stay below the memory cap instead of spilling),
    ``force_compression`` = zstd (text checkpoints in half the time into half the file) and
    ``max_vacuum_tasks`` = 0 (a checkpoint writes its new rows only, instead of merging them
    into the row groups before: a quarter to a third of the checkpoint time of a range run or
    of a daily schedule).

    Metadata on each materialization: ``dagster/table_name`` (``<file stem>.<schema>.<table>``,
    the name DuckDB itself resolves), ``dagster/storage_kind``, ``dagster/column_schema`` (the
    table after the write), ``Query`` (the load query of this output's slice) and
    ``dagster/partition_row_count`` only when the output is one partition (``dagster/row_count``
    for an unpartitioned asset). A range run reports no counts, since Dagster would attach the
    range's total to every partition: the asset should add them with
    ``context.add_asset_metadata(..., partition_key=k)``. A :class:`~cloudglue_dagster.tables.streams.DayStream`
    output, and each :class:`~cloudglue_dagster.tables.streams.TableWritten` output written with it,
    gets only the first three: each day's ``Query`` goes to the stream with the day
    (``DayRows.metadata``), for the step to put on that day's partition.

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
            " own limit, 80% of RAM) and writes run with threads=1, checkpoint_threshold=16MB,"
            " force_compression=zstd ('auto' is DuckDB's own choice) and max_vacuum_tasks=0"
            " (DuckDB's own: 100)."
            " Setting any of them here replaces that default; a memory_limit set here is never"
            " exceeded."
        ),
    )
    schema_: str | None = Field(
        default=None,
        alias="schema",
        description=(
            "Schema for assets that set no 'schema' metadata. If unset, the asset key prefix is used, else 'public'."
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

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler[Any]]:
        """The type handlers writing and loading each Python type (the override point, as in
        ``dagster_duckdb.DuckDBIOManager``): :class:`DuckDBPandasReplaceTypeHandler` for pandas."""
        return [DuckDBPandasReplaceTypeHandler()]

    def create_io_manager(self, context: dg.InitResourceContext) -> DbIOManager:
        return _MemoryRetryingDbIOManager(
            db_client=UTCDuckDbClient(
                database=self.database,
                connection_config=self.connection_config,
                lock_timeout_seconds=self.lock_timeout_seconds,
            ),
            database=self.database,
            schema=self.schema_,
            type_handlers=list(self.type_handlers()),
            default_load_type=pd.DataFrame,
            io_manager_name="CloudglueDuckDBIOManager",
        )


class _MemoryRetryingDbIOManager(DbIOManager):
    """``DbIOManager`` that reruns a write or load once without the default memory cap.

    A whole rerun, not a resumed one: the failed write was rolled back with its transaction.
    The rerun goes through a second manager whose client has no cap, so nothing shared is
    switched back and forth.
    """

    def __init__(self, *, db_client: UTCDuckDbClient, **kwargs: Any):
        super().__init__(db_client=db_client, **kwargs)
        self._uncapped = (
            None if db_client.memory_limit is None else DbIOManager(db_client=db_client.uncapped(), **kwargs)
        )

    supports_day_streams = True
    """Stores :class:`~cloudglue_dagster.tables.streams.DayStream` outputs a committed day at a time,
    every table of a day in one transaction."""

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        if isinstance(obj, DayStream):
            # The stream's step knows the API key; a server may have put it in a row this
            # write names (a DuckDBWriteError's row id): the error leaves masked.
            with obj.errors_masked():
                self._write_days(context, obj)
            return
        if isinstance(obj, TableWritten):
            # Written day by day with another output's stream: describe the table only.
            self._describe_table(context, self._get_table_slice(context, context))
            return
        try:
            super().handle_output(context, obj)
        except DuckDBMemoryLimitError as exc:
            self._uncapped_or_raise(context, exc).handle_output(context, obj)

    def load_input(self, context: dg.InputContext) -> object:
        try:
            return super().load_input(context)
        except DuckDBMemoryLimitError as exc:
            return self._uncapped_or_raise(context, exc).load_input(context)

    def _write_days(self, context: dg.OutputContext, stream: DayStream) -> None:
        client = cast("UTCDuckDbClient", self._db_client)
        uncapped = None if self._uncapped is None else cast("UTCDuckDbClient", self._uncapped._db_client)
        window = context.asset_partitions_time_window
        slices = {name: self._slice(target, window) for name, target in stream.tables.items()}
        store = DayStore(client, uncapped, self._resolve_handler(pd.DataFrame), slices, stream.written)
        write_stream(store, context, stream)
        self._describe_table(context, slices[stream.written[0]])

    def _slice(self, target: TableTarget, window: dg.TimeWindow) -> TableSlice:
        """Where ``target`` is stored, for the run's range: the table and schema Dagster's
        ``DbIOManager`` would give its asset (the ``schema`` metadata, this manager's schema,
        the key's prefix, or ``public``)."""
        path = target.key_path
        schema = target.metadata.get("schema") or self._schema or (path[-2] if len(path) > 1 else "public")
        dimension = TablePartitionDimension(partition_expr=str(target.metadata["partition_expr"]), partitions=window)
        return TableSlice(table=path[-1], schema=str(schema), database=self._database, partition_dimensions=[dimension])

    def _describe_table(self, context: dg.OutputContext, table_slice: TableSlice) -> None:
        # Output metadata lands on every partition of a range, so only what is true of each:
        # each day's Query and row count travel with its DayRows, the run's figures elsewhere.
        client = cast("UTCDuckDbClient", self._db_client)
        with client.connect(context, table_slice) as conn:
            columns = table_columns(conn, table_slice.schema, table_slice.table) or {}
        context.add_output_metadata(
            {
                "dagster/storage_kind": "duckdb",
                "dagster/table_name": client.get_table_name(table_slice),
                "dagster/column_schema": dg.TableSchema(
                    columns=[dg.TableColumn(name=name, type=typ) for name, typ in columns.values()]
                ),
            }
        )

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
