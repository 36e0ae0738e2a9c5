"""Opening DuckDB connections: UTC sessions, the default memory cap, and waits for another
process's file lock; the tests of DuckDB's errors about locks and memory (those about the
storage, a full disk or a damaged file, are in :mod:`.errors`, which builds those errors)."""

from __future__ import annotations

import random
import re
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import duckdb

from .errors import (
    DuckDBLockTimeoutError,
    display_path,
    is_corrupt_file,
    is_disk_full,
    is_file_database,
    open_error,
    parent_error,
    truncated_error,
)

__all__ = [
    "DEFAULT_MEMORY_LIMIT",
    "create_parent",
    "database_of",
    "is_lock_error",
    "is_out_of_memory",
    "open_connection",
    "quietly",
]

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

WRITE_CHECKPOINT_THRESHOLD = "16MB"
"""DuckDB's ``checkpoint_threshold`` (WAL size that triggers a checkpoint) on writable
connections, unless ``connection_config`` sets one. It is DuckDB's own default, set here so
that a DuckDB release that changes it does not change this package's writes.

It keeps the rows not yet checkpointed below the :data:`DEFAULT_MEMORY_LIMIT` cap. The
commit that takes the WAL past it checkpoints instead of writing its rows to the WAL, so a
day-by-day range checkpoints every dozen days or so (at 1,000 completions a day) and the
connection's close has little left to do. At 1GB (this package's earlier value), a day
store held open for its few seconds gathered some 60 days of rows in memory; past the cap
DuckDB spilled them to ``<file>.tmp`` and read them back at the close:
``python bench/duckdb_writes.py --days 180`` wrote 180 days (152,066 completions, a
transaction a day, the connection closed every :data:`~.day_store.HOLD_SECONDS`) in 8.0 s at
1GB and 4.1 s at 16MB, into 73 and 82 MiB files (15 row groups instead of 3: a checkpoint
writes its own row groups, since vacuum is off, see :data:`WRITE_VACUUM_TASKS`).
"""

WRITE_COMPRESSION = "zstd"
"""DuckDB's ``force_compression`` on writable connections, unless ``connection_config`` sets
one (``'auto'`` is DuckDB's own choice).

Text is most of these tables, and DuckDB's own choice for it (DICT_FSST) is both slower to
analyse and larger: the same 150 days took 12.0 s to write into 111 MiB, and 10.3 s into
58 MiB with zstd. Only text columns use zstd; numbers, times and booleans keep their own
encodings. Only on files whose storage version has zstd (v1.2.0 and later: every file
DuckDB 2 creates, which only DuckDB 2 reads anyway); an older file keeps DuckDB's own choice.
"""

WRITE_VACUUM_TASKS = 0
"""DuckDB's ``max_vacuum_tasks`` on writable connections, unless ``connection_config`` sets
one (DuckDB's own is 100).

A checkpoint's vacuum merges adjacent small row groups by rewriting (and re-compressing)
them. Written a few days per checkpoint, as a range run's day store writes, the table's
newest row groups were merged again and again, in a binary-counter pattern: most of a range
run's checkpoint time. Without vacuum each checkpoint writes only its new rows, and a
wholly deleted row group (its days written again) is still dropped; a day written again out
of a row group it shares with other days leaves its old rows stored until the rest go too
(as it did with DuckDB's vacuum).

Figures in docs/performance.md (``python bench/duckdb_writes.py``): 150 days a transaction
each, a checkpoint every 10 days, 7.8 s instead of 13.0 s; 120 daily runs 16.9 s instead of
26.3 s, into a smaller file. The price is more row groups (one per checkpoint), which a
scan did not notice.
"""

_WRITE_DEFAULTS: Mapping[str, int | str] = {
    "threads": _WRITE_THREADS,
    "checkpoint_threshold": WRITE_CHECKPOINT_THRESHOLD,
    "max_vacuum_tasks": WRITE_VACUUM_TASKS,
}
"""What writable connections set unless ``connection_config`` does (``force_compression``
too, where the file has zstd: :func:`_stores_zstd`)."""

CREATING_GRACE_SECONDS = 2.0
"""How long an open waits on an empty file before taking it for a leftover.

DuckDB creates a new database file empty, then locks it and writes its header. Another
process opening the file in between finds a 0-byte file it cannot read ("not a valid DuckDB
database file"): eight processes writing one partition each to a new file hit this in CI. An
open that DuckDB refuses so, on a file that was empty before the attempt or changed during
it, therefore tries again for this long (the lock backoff); a file still empty after it is
a leftover of a process that died while creating it, and fails with
:class:`DuckDBPathError`."""

# What DuckDB says of a file caught while another process creates it (see _being_created).
_CREATING_MARKERS = ("not a valid duckdb database file", "could not read enough bytes from file")

_FILE_HEADERS_BYTES = 3 * 4096
"""A DuckDB file's headers (one main, two database headers): block ``n`` starts at this offset
plus ``n`` times the block size, in DuckDB 1.x and 2.x alike."""

_WHOLE_FILES: dict[tuple[int, int], int] = {}
"""(device, inode) of each file this process found whole, and its size then
(:func:`_refuse_if_truncated`)."""

# Exponential backoff for lock waits: first wait, growth factor and longest single wait.
_LOCK_BACKOFF_START_SECONDS = 0.05
_LOCK_BACKOFF_FACTOR = 2.0
_LOCK_BACKOFF_MAX_SECONDS = 1.0


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
    :class:`DuckDBLockTimeoutError`. A file refused as not a database that was empty, or
    changed while DuckDB read it (one another process may be creating), is tried again the
    same way for :data:`CREATING_GRACE_SECONDS`. Any other failure to open raises at once:
    :class:`DuckDBPathError` for a file DuckDB cannot open or create, else
    :class:`DuckDBStorageError` (e.g. an option of ``config`` DuckDB does not know).
    """
    # No custom_user_agent (the stock manager sets one): DuckDB refuses a second connection
    # in one process whose configuration differs from the first, so the default
    # configuration lets runs share the file with a plain duckdb.connect(path) held open in
    # the same process (a notebook, a test).
    full_config = dict(config)
    started = time.monotonic()
    deadline = started + lock_timeout_seconds
    backoff = _LOCK_BACKOFF_START_SECONDS
    waited = False
    while True:
        before = _file_state(database)
        try:
            conn = _connect_once(database, read_only=read_only, config=full_config)
            break
        except duckdb.Error as exc:
            if _being_created(database, exc, before) and time.monotonic() - started < CREATING_GRACE_SECONDS:
                backoff = _pause(backoff, CREATING_GRACE_SECONDS)
                continue
            if not is_lock_error(exc):
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
            backoff = _pause(backoff, remaining)
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
        if not read_only:
            for name, value in _WRITE_DEFAULTS.items():
                if name not in config:
                    conn.execute(f"SET {name} = {value!r}")
        if not read_only and "force_compression" not in config and _stores_zstd(conn):
            conn.execute(f"SET force_compression = '{WRITE_COMPRESSION}'")
        _refuse_if_truncated(conn, database, config)
    except BaseException:
        quietly(conn.close)
        raise
    return conn


def _pause(backoff: float, at_most: float) -> float:
    """Sleep ``backoff`` seconds with jitter (half to all of it, at most ``at_most``); returns
    the next backoff."""
    time.sleep(min(at_most, random.uniform(backoff / 2, backoff)))
    return min(backoff * _LOCK_BACKOFF_FACTOR, _LOCK_BACKOFF_MAX_SECONDS)


def _connect_once(database: str, *, read_only: bool, config: Mapping[str, Any]) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(database, read_only=read_only, config=dict(config))
    except duckdb.ConnectionException as exc:
        # Within one process DuckDB shares one database instance per file and refuses a
        # second connection with another configuration: here a read-only open while this
        # process already holds a read-write connection. Reading through that is fine.
        if read_only and "different configuration" in str(exc):
            return duckdb.connect(database, read_only=False, config=dict(config))
        raise


def _stores_zstd(conn: duckdb.DuckDBPyConnection) -> bool:
    """Whether the file's storage version has zstd segments (v1.2.0 and later).

    DuckDB 2 creates files at v2.0.0, but a file created by an older DuckDB keeps its
    version, and there a forced zstd is stored *uncompressed* (DuckDB 1.5 on a v1.0.0 file:
    every text segment Uncompressed). An in-memory database has no version: left alone."""
    rows = conn.execute("SELECT tags FROM duckdb_databases() WHERE database_name = current_database()").fetchall()
    version = str((rows[0][0] or {}).get("storage_version", "")) if rows else ""
    match = re.match(r"v(\d+)\.(\d+)\.(\d+)", version)
    return match is not None and tuple(int(part) for part in match.groups()) >= (1, 2, 0)


def _refuse_if_truncated(conn: duckdb.DuckDBPyConnection, database: str, config: Mapping[str, Any]) -> None:
    """Raises :class:`~.errors.DuckDBCorruptFileError` if the file is shorter than the blocks
    DuckDB has in use, once per file and process.

    DuckDB reads a block only when a query needs it, so a file cut short (a copy that stopped,
    a disk that lost its end) opens, and runs wrote into one and succeeded: through the CLI, a
    file with its last block or its last byte cut off took a backfill that ended RUN_SUCCESS.
    The end of the last block in use is where the file must reach. It is read from DuckDB's
    own catalog of segments and metadata blocks (milliseconds: 8 ms on a 3 MB file, 77 ms on
    a 98 MB one with 200 row groups), once per process for each file (device and inode), since
    a run opens the file again and again; again if the file has shrunk since (a checkpoint
    that freed its last blocks does that too). Blocks the catalog does not list (none in this
    package's tables) only make the check miss a truncation, never refuse a whole file.
    """
    if not is_file_database(database):
        return
    try:
        stat = Path(database).stat()
    except OSError:
        return
    if stat.st_size >= _WHOLE_FILES.get((stat.st_dev, stat.st_ino), sys.maxsize):
        return
    try:
        end = _blocks_end(conn)
    except duckdb.Error as exc:
        # Reading the catalog reads the blocks it is kept in: one past the end fails here.
        if is_corrupt_file(exc) or is_disk_full(exc):
            raise open_error(database, exc, config) from exc
        return  # a DuckDB without these table functions: no check rather than a false alarm
    if end is not None and stat.st_size < end:
        raise truncated_error(database, size=stat.st_size, blocks_end=end)
    _WHOLE_FILES[stat.st_dev, stat.st_ino] = stat.st_size


def _blocks_end(conn: duckdb.DuckDBPyConnection) -> int | None:
    """The byte offset where the last block in use ends; None if no block is in use."""
    ((block_size,),) = conn.execute("SELECT block_size FROM pragma_database_size()").fetchall()
    tables = conn.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database() AND NOT temporary"
    ).fetchall()
    last = [_last_block(conn, f"{_quote(schema)}.{_quote(table)}") for schema, table in tables]
    ((metadata,),) = conn.execute("SELECT max(block_id) FROM pragma_metadata_info()").fetchall()
    in_use = [block for block in (*last, metadata) if block is not None and block >= 0]
    return _FILE_HEADERS_BYTES + (max(in_use) + 1) * block_size if in_use else None


def _last_block(conn: duckdb.DuckDBPyConnection, table: str) -> int | None:
    """The highest block id a table's stored segments use (not those only in memory yet)."""
    block: int | None  # NULL: no stored segment
    ((block,),) = conn.execute(
        "SELECT max(greatest(block_id, coalesce(list_max(additional_block_ids), -1)))"
        " FROM pragma_storage_info(?) WHERE persistent",
        [table],
    ).fetchall()
    return block


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def is_out_of_memory(exc: BaseException) -> bool:
    # An OutOfMemoryException, or a commit that could not pin a block:
    # "TransactionContext Error: Failed to commit: failed to pin block of size 256.0 KiB (30.2 MiB/30.5 MiB used)"
    # Not a spill the temp directory refused ("Out of Memory Error: failed to offload data
    # block ... set by the 'max_temp_directory_size' setting"): that is a full disk, which
    # more memory (the uncapped retry) would not cure and a memory message would misname.
    if is_disk_full(exc):
        return False
    return isinstance(exc, duckdb.OutOfMemoryException) or "failed to pin block" in str(exc).lower()


def _file_state(database: str) -> tuple[int, int, int] | None:
    """The file's inode, size in bytes and mtime in ns; None if it cannot be read."""
    try:
        stat = Path(database).stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _being_created(database: str, exc: duckdb.Error, before: tuple[int, int, int] | None) -> bool:
    """Whether ``exc`` may come from a file another process is creating
    (:data:`CREATING_GRACE_SECONDS`): DuckDB refused it as not a database, or found it
    shorter than its header says (a header caught half-written), and it was empty before the
    attempt or changed during it. A file that stays so is a leftover, or truncated: damaged.

    The state after the attempt alone is not enough: DuckDB may read the empty file, the
    creator then write its header (or move a finished file into place), and a stat after the
    error see a non-empty file the failed read never saw (a CI run lost that race)."""
    text = str(exc).lower()
    if not isinstance(exc, duckdb.IOException) or not any(m in text for m in _CREATING_MARKERS):
        return False
    after = _file_state(database)
    was_empty = before is not None and before[1] == 0
    return after is not None and (was_empty or after != before)


def is_lock_error(exc: BaseException) -> bool:
    # "IO Error: Could not set lock on file ...: Conflicting lock is held in ... (PID n)".
    # Not just "lock": the path is in every IO error, and may well contain that word.
    return isinstance(exc, duckdb.IOException) and "could not set lock on file" in str(exc).lower()


def create_parent(database: str) -> None:
    """Creates the missing directories of a file database's path."""
    if not is_file_database(database):
        return
    try:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise parent_error(database, exc) from exc


def quietly(cleanup: Callable[[], object]) -> None:
    """Runs a cleanup step (rollback, close, unregister) whose failure must not replace the
    error being raised: e.g. the transaction is already gone after a failed statement."""
    try:
        cleanup()
    except duckdb.Error:
        pass


def database_of(conn: duckdb.DuckDBPyConnection) -> str:
    """The connection's database as :func:`~cloudglue_dagster.io_managers.duckdb.errors.display_path` shows it."""
    ((path,),) = conn.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchall()
    return display_path(path) if path else ":memory:"
