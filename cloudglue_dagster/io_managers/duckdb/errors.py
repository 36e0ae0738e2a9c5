"""The errors :class:`~cloudglue_dagster.io_managers.duckdb.CloudglueDuckDBIOManager` raises, and the
diagnosis behind their messages: which row a failed write choked on, what is wrong with a
database path (checked when the definitions load, explained when a connection fails), and
whether the storage under DuckDB failed (a full disk, a damaged file).

Every one is a :class:`DuckDBStorageError`: a :class:`~cloudglue_dagster.errors.CloudglueError`
that is permanent (``transient`` is False, see :func:`~cloudglue_dagster.errors.is_transient`)
and a ``dg.Failure`` with ``allow_retries=False``, so the step fails at once even under a
``RetryPolicy``: a path, a type or a value DuckDB refused is refused again on every retry.
Each message names the database (and the table, when there is one), says what became of the
stored rows (only what is known: a damaged file's rows cannot be vouched for, and a commit
DuckDB made durable before its checkpoint failed is said to be committed) and quotes DuckDB's or
the OS's own words.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import dagster as dg
import duckdb
import pandas as pd

from cloudglue_dagster.errors import CloudglueConfigError, CloudglueError

__all__ = [
    "DuckDBCorruptFileError",
    "DuckDBDiskFullError",
    "DuckDBLockTimeoutError",
    "DuckDBMemoryLimitError",
    "DuckDBPathError",
    "DuckDBRunTerminatedError",
    "DuckDBSchemaError",
    "DuckDBStorageError",
    "DuckDBWriteError",
    "RowAtFault",
    "Operation",
    "check_database_path",
    "commit_was_durable",
    "describe_cause",
    "find_row_at_fault",
    "is_corrupt_file",
    "is_disk_full",
    "storage_fault",
]


def describe_cause(exc: BaseException) -> str:
    """``DuckDB said: <its message>.`` for a DuckDB error, ``<Type>: <message>.`` otherwise.

    DuckDB's "LINE 1: ..." excerpt of the statement is left out: it quotes this package's SQL,
    which tells the reader nothing the message does not. So is the C++ "Stack Trace:" DuckDB
    1.x appends to an internal error.
    """
    if isinstance(exc, duckdb.Error):
        said = "DuckDB said: " + str(exc).split("\n\nLINE ", 1)[0].split("\n\nStack Trace:", 1)[0]
    else:
        said = f"{type(exc).__name__}: {exc}"
    return said.rstrip(". \n") + "."


class DuckDBStorageError(CloudglueError, dg.Failure):
    """Base of the I/O manager's errors; raised as such when a load fails (a missing table, a
    query DuckDB refused). Permanent: a step retry policy does not rerun it.

    Attributes:
        database: absolute path of the DuckDB file (``:memory:``/``md:...`` as given).
    """

    transient = False

    def __init__(self, description: str, *, database: str, **metadata: str | None):
        super().__init__(
            description=description,
            metadata={"database": database, **{k: v for k, v in metadata.items() if v is not None}},
            allow_retries=False,
        )
        self.database = database


class DuckDBPathError(DuckDBStorageError):
    """The ``database`` setting names a file that cannot be opened or created: permission
    denied, a read-only directory, a parent that is a file, a directory, a file that is not a
    DuckDB database, or (when loading) a file that does not exist yet."""


class DuckDBLockTimeoutError(DuckDBStorageError):
    """Another process kept the DuckDB file locked for longer than ``lock_timeout_seconds``.

    Permanent like the others: the I/O manager has already waited ``lock_timeout_seconds``;
    a step retry would hold the run for its whole delay and usually meet the same holder
    (a `dagster dev`, a notebook). Raise ``lock_timeout_seconds`` to wait longer.
    """


class DuckDBMemoryLimitError(DuckDBStorageError):
    """DuckDB ran out of memory under its ``memory_limit`` while reading or writing a table.

    Attributes:
        memory_limit: the limit in force (DuckDB's own wording, e.g. ``30.5 MiB``).
    """

    def __init__(self, description: str, *, database: str, memory_limit: str):
        super().__init__(description, database=database, memory_limit=memory_limit)
        self.memory_limit = memory_limit


@dataclass(frozen=True)
class RowAtFault:
    """The row of a frame a failed write choked on.

    Attributes:
        key_column: the frame's ``id`` or ``completion_id`` column naming the row, or None
            if it has neither (then ``key`` is the row's 0-based position).
        key: that column's value in the row, or its position.
        column: the column holding the bad value.
        problem: what is wrong with it, in words.
    """

    key_column: str | None
    key: str
    column: str
    problem: str

    def describe(self) -> str:
        """``id 'cmpl-1', column 'prompt' (what is wrong)``, as the error message says it."""
        if self.key_column is None:
            return f"row {self.key} of the frame (0-based), column {self.column!r} ({self.problem})"
        return f"{self.key_column} {self.key!r}, column {self.column!r} ({self.problem})"


class DuckDBWriteError(DuckDBStorageError):
    """DuckDB (or the frame) refused a write; the transaction was rolled back.

    Rolled back, except in one case: ``committed`` is True when DuckDB said the commit
    succeeded and is durable and only the automatic checkpoint after it failed; the write's rows
    are then stored.

    Attributes:
        table: ``schema.table``.
        partitions: the partition key written, ``first...last`` for a range, None if the
            asset is unpartitioned.
        row_key: the ``id`` (else ``completion_id``, else 0-based position) of the row at
            fault, when one row is.
        column: the column at fault, when known.
        committed: whether the write was committed all the same (see above).
    """

    def __init__(
        self,
        *,
        database: str,
        table: str,
        partitions: str | None,
        cause: BaseException,
        row: RowAtFault | None = None,
        committed: bool = False,
    ):
        if committed:
            kept = (
                "the write itself was committed (DuckDB says the commit succeeded and is durable);"
                " only the checkpoint after it failed"
            )
        else:
            kept = "the previous table is kept" if partitions is None else "the previous rows are kept"
        message = f"Writing {table}{_scope(partitions)} to DuckDB database {database} failed; {kept}."
        message += f" {describe_cause(cause)}"
        if row is not None:
            message += f" Row at fault: {row.describe()}."
        column = row.column if row else None
        row_key = row.key if row else None
        super().__init__(message, database=database, table=table, partitions=partitions, row_key=row_key, column=column)
        self.table = table
        self.partitions = partitions
        self.row_key = row_key
        self.column = column
        self.committed = committed


def _scope(partitions: str | None) -> str:
    """`` (partition 2026-01-02)``, `` (partitions 2026-01-01...2026-01-31)``, or nothing."""
    if partitions is None:
        return ""
    return f" ({'partitions' if '...' in partitions else 'partition'} {partitions})"


class DuckDBSchemaError(DuckDBStorageError):
    """The table's column types differ from the frame's in a way a cast could silently change
    values (typically an ``ALTER TABLE`` made outside the pipeline); nothing was written.

    ``target`` is the table's SQL name, as the suggested ``ALTER TABLE`` statements need it.

    Attributes:
        table: ``schema.table``.
        columns: ``{column: (stored type, the frame's type)}`` for each column refused.
    """

    def __init__(self, *, database: str, table: str, target: str, columns: Mapping[str, tuple[str, str]]):
        listed = "; ".join(
            f"{name} is {stored} in the table, {ours} in the frame" for name, (stored, ours) in columns.items()
        )
        fixes = " ".join(
            f"ALTER TABLE {target} ALTER COLUMN {_quote(name)} TYPE {ours};" for name, (_, ours) in columns.items()
        )
        super().__init__(
            f"Table {table} in DuckDB database {database} has column types the frame's values would"
            f" have to be cast to, which can change them: {listed}. Nothing was written; the"
            " previous rows are kept. If the table was altered outside the pipeline, or the asset's"
            f" output changed type on purpose, give the table the frame's types ({fixes}) or drop"
            " the table and re-materialize its partitions; otherwise fix the asset's output.",
            database=database,
            table=table,
        )
        self.table = table
        self.columns = dict(columns)


class DuckDBRunTerminatedError(DuckDBStorageError):
    """The run was terminated (CANCELING or CANCELED) before its write committed: the write
    was rolled back.

    Attributes:
        table: ``schema.table``.
        run_id: the run's id.
    """

    def __init__(self, *, database: str, table: str, run_id: str, status: str):
        super().__init__(
            f"Run {run_id} was terminated ({status}) before its write to {table} in DuckDB database"
            f" {database} committed: the write was rolled back and the previous rows are kept.",
            database=database,
            table=table,
        )
        self.table = table
        self.run_id = run_id


class DuckDBDiskFullError(DuckDBStorageError):
    """DuckDB could not get the disk space it needed: the filesystem holding the database file,
    its write-ahead log (``<file>.wal``) or its temp spill directory (``<file>.tmp``, or
    ``temp_directory``) is full or over quota, or the spill directory reached
    ``max_temp_directory_size`` (DuckDB's default: 90% of the space free there).

    Permanent: the same write needs the same space until someone frees it. A failed write was
    rolled back (its partitions keep their previous rows) unless ``committed`` is True: DuckDB
    said the commit succeeded and is durable, and only the automatic checkpoint after it failed;
    the write's rows are then stored, in the write-ahead log until a checkpoint succeeds.

    Attributes:
        path: the file or directory DuckDB could not write (its temp directory when DuckDB
            names no file).
        free_bytes: bytes free on the filesystem holding ``path`` when the error was raised,
            None if it could not be read. DuckDB deletes its spill files after a failure, so
            this can be more than was left when it failed.
        total_bytes: that filesystem's size, None if it could not be read.
        table: ``schema.table``, None when opening the file failed.
        partitions: the partitions written (as in :class:`DuckDBWriteError`), or None.
        committed: whether the write was committed all the same (see above).
    """

    def __init__(
        self,
        description: str,
        *,
        operation: Operation,
        path: str,
        space: tuple[int, int] | None,
        committed: bool,
    ):
        free, total = space if space is not None else (None, None)
        super().__init__(
            description,
            database=display_path(operation.database),
            table=operation.table,
            partitions=operation.partitions,
            path=path,
            free_bytes=None if free is None else str(free),
            total_bytes=None if total is None else str(total),
        )
        self.path, self.free_bytes, self.total_bytes = path, free, total
        self.table, self.partitions, self.committed = operation.table, operation.partitions, committed


class DuckDBCorruptFileError(DuckDBStorageError):
    """The DuckDB file is damaged: shorter than the blocks it refers to (truncated, e.g. a copy
    cut short) or holding a block whose checksum does not match (corrupt).

    Permanent: only restoring or rebuilding the file helps. The operation that met the damage
    wrote nothing (a failed write was rolled back), but no row in the file can be vouched for:
    DuckDB reads a block only when a query needs it, so rows written before, by this run or
    earlier ones, may sit in blocks nobody has read since the damage.

    Attributes:
        table: ``schema.table``, None when opening the file failed.
        partitions: the partitions written (as in :class:`DuckDBWriteError`), or None.
    """

    def __init__(self, description: str, *, operation: Operation):
        super().__init__(
            description,
            database=display_path(operation.database),
            table=operation.table,
            partitions=operation.partitions,
        )
        self.table, self.partitions = operation.table, operation.partitions


# ---------------------------------------------------------------------------------------------
# The storage under DuckDB: a full disk, a damaged file, a commit made durable before its
# checkpoint failed. Told apart by DuckDB's words, not its exception types: a full disk comes
# as an IO Error (a statement), a TransactionContext Error (a commit writing the WAL), a FATAL
# Error (a checkpoint) or an Out of Memory Error ("failed to offload data block": a spill the
# temp directory could not take). The same words in DuckDB 1.5 and 2.0.

# ENOSPC and EDQUOT as the OS words them (Linux, macOS; Windows for the last).
_DISK_FULL = ("no space left on device", "disk quota exceeded", "not enough space on the disk")
_OFFLOAD_FAILED = "failed to offload data block"
# A read past the end of the file: "Could not read enough bytes from file "...": attempted to
# read 262144 bytes from location 6828032". Block checksums: "Corrupt database file: computed
# checksum ... does not match stored checksum ..." (and DuckDB's other "corrupt database file"
# checks of what it reads).
_TRUNCATED = "could not read enough bytes from file"
_CORRUPT = "corrupt database file"
# "FATAL Error: Transaction COMMIT succeeded and is durable, but the autocheckpoint failed."
_DURABLE_COMMIT = "commit succeeded and is durable"
_FILE_IN_MESSAGE = re.compile(r'file "(?P<path>[^"]+)"')


def is_disk_full(exc: BaseException) -> bool:
    """Whether DuckDB's error ``exc`` says it could not get disk space (module comment)."""
    text = str(exc).lower()
    return isinstance(exc, duckdb.Error) and (_OFFLOAD_FAILED in text or any(m in text for m in _DISK_FULL))


def is_corrupt_file(exc: BaseException) -> bool:
    """Whether DuckDB's error ``exc`` says the database file is truncated or corrupt."""
    text = str(exc).lower()
    return isinstance(exc, duckdb.Error) and (_TRUNCATED in text or _CORRUPT in text)


def commit_was_durable(exc: BaseException) -> bool:
    """Whether DuckDB said, in ``exc``, that the commit succeeded and is durable although the
    checkpoint after it failed: the write is stored, not rolled back."""
    return isinstance(exc, duckdb.Error) and _DURABLE_COMMIT in str(exc).lower()


@dataclass(frozen=True)
class Operation:
    """What a connection was doing when the storage failed, as the error's message says it.

    Attributes:
        kind: opening the file, writing a table's partitions, or reading a table.
        database: the ``database`` setting, as given.
        table: ``schema.table`` (None when opening).
        partitions: the partitions written, as :class:`DuckDBWriteError` names them (None
            when opening or reading, or for an unpartitioned table).
        temp_directory: ``connection_config``'s ``temp_directory``, None for DuckDB's
            default (``<file>.tmp``).
        max_temp_directory_size: ``connection_config``'s, None for DuckDB's default.
    """

    kind: Literal["open", "write", "read"]
    database: str
    table: str | None = None
    partitions: str | None = None
    temp_directory: str | None = None
    max_temp_directory_size: str | None = None

    @classmethod
    def of(
        cls, kind: Literal["open", "write", "read"], database: str, config: Mapping[str, Any], **what: Any
    ) -> Operation:
        """The operation ``kind`` on ``database`` with ``connection_config`` ``config``."""
        temp, limit = config.get("temp_directory"), config.get("max_temp_directory_size")
        return cls(kind, database, temp_directory=temp and str(temp), max_temp_directory_size=limit, **what)

    @property
    def path(self) -> str:
        return display_path(self.database)

    @property
    def spill_directory(self) -> str:
        """Where DuckDB spills: ``temp_directory``, by default the file's path plus ``.tmp``."""
        return str(Path(self.temp_directory).resolve()) if self.temp_directory else self.path + ".tmp"

    def failed(self) -> str:
        """The message's opening words: ``Writing t (partition d) to DuckDB database f failed``."""
        if self.kind == "open":
            return f"Opening DuckDB database {self.path} failed"
        if self.kind == "read":
            return f"Reading {self.table} from DuckDB database {self.path} failed"
        return f"Writing {self.table}{_scope(self.partitions)} to DuckDB database {self.path} failed"

    def outcome(self, *, committed: bool, damaged: bool) -> str:
        """What became of the rows this operation touched: only what is known."""
        if self.kind == "open":
            return "It could not be opened, so nothing was written to it."
        if self.kind == "read":
            return "Nothing was loaded." if damaged else "Nothing was loaded, and a read changes no stored row."
        if committed:
            return (
                "The write itself was committed (DuckDB says the commit succeeded and is durable): the"
                f" new rows of {self._scope_words()} are stored; only the automatic checkpoint after it"
                f" failed, and they wait in the write-ahead log {self.path}.wal until a checkpoint succeeds."
            )
        if damaged:
            return "This write was rolled back, so it wrote nothing to the file."
        return (
            f"The write was one transaction and was rolled back: the previous rows of {self._scope_words()} are kept."
        )

    def _scope_words(self) -> str:
        if self.partitions is None:
            return f"table {self.table}"
        return f"{'partitions' if '...' in self.partitions else 'partition'} {self.partitions}"


def storage_fault(exc: BaseException, operation: Operation) -> DuckDBStorageError | None:
    """``exc`` as a :class:`DuckDBDiskFullError` or a :class:`DuckDBCorruptFileError` if
    DuckDB's words say the storage failed during ``operation``; None otherwise."""
    if is_disk_full(exc):
        return _disk_full(exc, operation)
    if is_corrupt_file(exc):
        return _corrupt(exc, operation)
    return None


def _disk_full(exc: BaseException, operation: Operation) -> DuckDBDiskFullError:
    named = _FILE_IN_MESSAGE.search(str(exc))
    path = str(Path(named["path"]).resolve()) if named else operation.spill_directory
    space = _space(path)
    committed = operation.kind == "write" and commit_was_durable(exc)
    message = (
        f"{operation.failed()}: the disk is full. {_what_could_not_be_written(exc, operation, path)};"
        f" {_describe_space(path, space)}. {operation.outcome(committed=committed, damaged=False)}"
        f" Free space there, or point `database` at a larger filesystem (DuckDB also needs room"
        f" beside the file for its write-ahead log {operation.path}.wal and its spill directory"
        f" {operation.spill_directory}, which connection_config={{'temp_directory': ...}} can move),"
        f" then run again. {describe_cause(exc)}"
    )
    return DuckDBDiskFullError(message, operation=operation, path=path, space=space, committed=committed)


def _what_could_not_be_written(exc: BaseException, operation: Operation, path: str) -> str:
    spill = operation.spill_directory
    if _OFFLOAD_FAILED in str(exc).lower() and not _FILE_IN_MESSAGE.search(str(exc)):
        limit = (
            f"max_temp_directory_size={operation.max_temp_directory_size} (connection_config)"
            if operation.max_temp_directory_size is not None
            else "max_temp_directory_size, which DuckDB sets to 90% of the space free on that filesystem"
        )
        return f"DuckDB could not spill to its temp directory {spill}: it reached {limit}"
    if path == operation.path:
        return f"DuckDB could not write the database file {path}"
    if path == operation.path + ".wal":
        return f"DuckDB could not write {path}, the database's write-ahead log"
    if path == spill or path.startswith(spill + os.sep):
        return f"DuckDB could not write {path}, in its temp spill directory {spill}"
    return f"DuckDB could not write {path}"


def _space(path: str) -> tuple[int, int] | None:
    """(free, total) bytes of the filesystem holding ``path`` (its nearest existing ancestor:
    DuckDB deletes its spill files after a failure); None if unreadable."""
    where = Path(path)
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        usage = shutil.disk_usage(where)
    except OSError:
        return None
    return usage.free, usage.total


def _describe_space(path: str, space: tuple[int, int] | None) -> str:
    if space is None:
        return "the space free on its filesystem could not be read"
    free, total = space
    return f"the filesystem holding it (mounted at {_mount_point(path)}) has {_bytes(free)} free of {_bytes(total)} now"


def _bytes(size: int) -> str:
    """``5,996,544 bytes (5.7 MiB)``: exact, then in the units DuckDB's own messages use."""
    return f"{size:,} bytes" if size < 1024 else f"{size:,} bytes ({_binary(size)})"


def _mount_point(path: str) -> Path:
    where = Path(path)
    while not (where.exists() and os.path.ismount(where)) and where != where.parent:
        where = where.parent
    return where


def _binary(size: int) -> str:
    """``5.7 MiB`` for 1 KiB or more."""
    value, unit = size / 1024, "KiB"
    for bigger in ("MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f} {unit}"


def _corrupt(exc: BaseException, operation: Operation) -> DuckDBCorruptFileError:
    text = str(exc).lower()
    if _TRUNCATED in text:
        finding = "truncated: it is shorter than the blocks it refers to"
    elif "checksum" in text:
        finding = "corrupt: a block DuckDB read does not match its checksum"
    else:
        finding = "corrupt: DuckDB read data in it that cannot be right"
    return _damaged(operation, finding, said=f" {describe_cause(exc)}")


def truncated_error(database: str, *, size: int, blocks_end: int) -> DuckDBCorruptFileError:
    """The file ``database`` is ``size`` bytes long, but the blocks DuckDB has in use reach
    byte ``blocks_end``: found when it was opened, before anything was written to it."""
    finding = (
        f"truncated: it is {size:,} bytes long, but the blocks DuckDB has in use reach byte"
        f" {blocks_end:,}; a copy cut short, or a disk that lost its end"
    )
    return _damaged(Operation("open", database), finding, said="")


def _damaged(operation: Operation, finding: str, *, said: str) -> DuckDBCorruptFileError:
    path = operation.path
    message = (
        f"{operation.failed()}: the file is damaged ({finding})."
        f" {operation.outcome(committed=False, damaged=True)} The rows the file holds cannot be"
        " vouched for: DuckDB reads a block only when a query needs it, so any of them, including"
        " rows committed before this (by this run or earlier ones), may be unreadable or wrong."
        f" Restore {path} from a backup, or move it aside (with {path}.wal, if there is one) and"
        f" re-run the backfill of every partition to rebuild it.{said}"
    )
    return DuckDBCorruptFileError(message, operation=operation)


# ---------------------------------------------------------------------------------------------
# Which row? Runs only after a failure, on the frame that failed: one pass over the columns
# DuckDB's message points at (all text columns for an encoding error).

# A str that is not valid UTF-8, as DuckDB 2 says it, and as DuckDB 1.x (the newest on Python
# 3.10) does: an INTERNAL Error "invalid code point detected in Utf8Proc::CodepointLength".
_CANNOT_ENCODE = ("cannot encode str as utf-8", "likely due to invalid utf-8")
_QUOTED_STRING = re.compile(r"Could not convert string '(?P<value>.*)' to \w+")
_QUOTED_NUMBER = re.compile(r"with value (?P<value>\S+) can't be cast")
_SOURCE_COLUMN = re.compile(r"from source column (?P<column>[^\n]+)")
_NOT_NULL = re.compile(r"NOT NULL constraint failed: [^.\n]+\.(?P<column>[^\n]+)")
_DUPLICATE_KEY = re.compile(r'Duplicate key "(?P<column>[^:"]+): (?P<value>[^"]*)" violates')


def find_row_at_fault(frame: pd.DataFrame, exc: BaseException) -> RowAtFault | None:
    """The row of ``frame`` that DuckDB's error ``exc`` is about, or None if no single row can
    be named: a string that is not valid UTF-8, a value quoted in a conversion error, a NULL
    refused by a NOT NULL constraint, a duplicate primary key."""
    message = str(exc)
    if any(marker in message.lower() for marker in _CANNOT_ENCODE):
        return _first_unencodable(frame)
    if match := _NOT_NULL.search(message):
        column = _unquote(match["column"])
        if column.lower() not in {str(c).lower() for c in frame.columns} and len(frame):
            return _row(frame, 0, column, "missing from the frame, so NULL, but the column is NOT NULL")
        return _first_row(frame, [column], lambda s: s.isna(), "NULL, but the column is NOT NULL")
    if match := _DUPLICATE_KEY.search(message):
        value = match["value"]
        return _first_row(frame, [match["column"]], lambda s: _equals(s, value), f"duplicate key {value!r}")
    if match := _QUOTED_STRING.search(message):
        problem = f"{match['value']!r} does not convert to the column's type"
    elif match := _QUOTED_NUMBER.search(message):
        problem = f"{match['value']} is out of range for the column's type"
    else:
        return None
    value = match["value"]
    source = _SOURCE_COLUMN.search(message)
    columns = [_unquote(source["column"])] if source else list(frame.columns)
    return _first_row(frame, columns, lambda s: _equals(s, value), problem)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _unquote(name: str) -> str:
    # DuckDB quotes a column name that is a keyword ("version") or needs it.
    name = name.strip()
    return name[1:-1].replace('""', '"') if len(name) > 1 and name[0] == name[-1] == '"' else name


def _first_unencodable(frame: pd.DataFrame) -> RowAtFault | None:
    for name in frame.columns:
        if frame[name].dtype != object and not isinstance(frame[name].dtype, pd.StringDtype):
            continue
        for position, value in enumerate(frame[name].array):
            # isascii() is O(1) on CPython's compact strings: only non-ASCII ones get encoded.
            if not isinstance(value, str) or value.isascii():
                continue
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as err:
                # The only code points UTF-8 cannot encode are surrogates.
                code = ord(value[err.start])
                problem = f"a lone surrogate U+{code:04X} at character {err.start}, not valid UTF-8"
                return _row(frame, position, str(name), problem)
    return None


def _first_row(
    frame: pd.DataFrame, columns: list[Any], hits: Callable[[pd.Series], pd.Series], problem: str
) -> RowAtFault | None:
    by_lower = {str(c).lower(): c for c in frame.columns}
    for name in columns:
        column = by_lower.get(str(name).lower())
        if column is None:
            continue
        mask = hits(frame[column]).astype("boolean").fillna(False).to_numpy(dtype=bool)
        if mask.any():
            return _row(frame, int(mask.argmax()), str(column), problem)
    return None


def _equals(series: pd.Series, text: str) -> pd.Series:
    """Which values DuckDB would have quoted as ``text``."""
    if series.dtype == object or isinstance(series.dtype, pd.StringDtype):
        return series.astype(object).map(lambda v: isinstance(v, (str, int, float)) and str(v) == text)
    try:
        return series == float(text)
    except (TypeError, ValueError):
        return series.astype(str) == text


def _row(frame: pd.DataFrame, position: int, column: str, problem: str) -> RowAtFault:
    for key_column in ("id", "completion_id"):
        if key_column in frame.columns:
            return RowAtFault(key_column, str(frame[key_column].iloc[position]), column, problem)
    return RowAtFault(None, str(position), column, problem)


# ---------------------------------------------------------------------------------------------
# What is wrong with a database path? Checked when the definitions load, and explained when a
# connection fails.

# A DuckDB file starts with an 8-byte checksum, then the magic bytes (checked on files DuckDB
# 2.0 writes).
_DUCKDB_MAGIC = b"DUCK"
_DUCKDB_MAGIC_OFFSET = 8


def is_file_database(database: str) -> bool:
    """False for ``:memory:`` and MotherDuck (``md:db``), which are not files."""
    return not database.startswith((":", "md:", "motherduck:"))


def display_path(database: str) -> str:
    """``database`` as messages show it: the absolute path of a file database."""
    return str(Path(database).resolve()) if is_file_database(database) else database


def check_database_path(database: str) -> str:
    """Returns ``database`` if a write could use it; else raises
    :class:`~cloudglue_dagster.errors.CloudglueConfigError` naming the setting, the resolved
    path, what is wrong and what to do.

    Refused: an empty or blank path, an existing directory, and an existing file that is not a
    DuckDB database (bytes 8..11 of every DuckDB file are ``DUCK``) or cannot be read. Not
    checked: ``:memory:`` and MotherDuck (``md:``/``motherduck:``) databases; a path that does
    not exist yet is fine (the first write creates it). An empty (0-byte) file passes although
    DuckDB refuses it: DuckDB creates a new database file empty and writes its header just
    after, so this could be another process's first write, caught mid-way. If it stays empty,
    the first write fails with :class:`DuckDBPathError`, which says to delete it.
    """
    if not database.strip():
        raise CloudglueConfigError(
            "database is empty: set it to the path of a DuckDB file (created on the first write),"
            " ':memory:', or 'md:<name>' for MotherDuck."
        )
    if not is_file_database(database):
        return database
    problem = _unusable_file(Path(database))
    if problem is not None:
        raise CloudglueConfigError(f"database={database!r} ({Path(database).resolve()}) {problem}")
    return database


def _unusable_file(path: Path) -> str | None:
    """What makes an existing ``path`` unusable as a DuckDB file, or None."""
    try:
        if path.is_dir():
            example = path.resolve() / "cloudglue.duckdb"
            return f"is a directory, not a DuckDB file: name a file inside it, e.g. {example}."
        if not path.is_file():
            return None
        with path.open("rb") as file:
            header = file.read(_DUCKDB_MAGIC_OFFSET + len(_DUCKDB_MAGIC))
    except OSError as exc:
        reason = exc.strerror or exc
        return f"cannot be read ({reason}): let this process read and write it, or choose another path."
    if header and header[_DUCKDB_MAGIC_OFFSET:] != _DUCKDB_MAGIC:
        return (
            f"is a file but not a DuckDB database (its bytes 8..11 are not {_DUCKDB_MAGIC!r}; it"
            f" starts {header!r}). Point database at a DuckDB file, or at a path that does not exist"
            " yet; nothing was written to this file."
        )
    return None


def parent_error(database: str, exc: OSError) -> DuckDBPathError:
    """Creating the directories of ``database``'s path failed with ``exc``."""
    return DuckDBPathError(
        f"Cannot create the directory {Path(database).parent.resolve()} for DuckDB database"
        f" {display_path(database)} (the I/O manager's `database` setting): a part of that path"
        " may be a file, or not writable by this process. Point `database` at a writable"
        f" location. The OS said: {exc}",
        database=display_path(database),
    )


def open_error(database: str, exc: duckdb.Error, config: Mapping[str, Any]) -> DuckDBStorageError:
    """Why connecting failed, other than a lock: a full disk, a damaged file, a path problem,
    or a refused option."""
    fault = storage_fault(exc, Operation.of("open", database, config))
    if fault is not None:
        return fault
    path = display_path(database)
    if not isinstance(exc, duckdb.IOException):
        # Option names only: a value may be a secret (motherduck_token).
        return DuckDBStorageError(
            f"Cannot open DuckDB database {path} with connection_config options {sorted(config)}. DuckDB said: {exc}",
            database=path,
        )
    return DuckDBPathError(
        f"Cannot open DuckDB database {path} (the I/O manager's `database` setting)"
        f"{_path_hint(database)} DuckDB said: {exc}",
        database=path,
    )


def _path_hint(database: str) -> str:
    """What to do about a file DuckDB could not open, as far as the file shows it."""
    path = Path(database)
    try:
        if path.is_dir():
            return ": it is a directory; name a file inside it."
        if path.is_file() and path.stat().st_size == 0:
            return (
                ": it is an empty file, which DuckDB does not take for a database (one is left when"
                " a process dies while creating the database); delete it and the next write"
                " creates the database."
            )
    except OSError:
        pass
    return ": check that it names a DuckDB file, or a path where one can be created, that this process may write."
