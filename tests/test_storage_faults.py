"""The storage under DuckDB failing: a full disk, a damaged file.

Real things only: a filesystem that really fills up (a tmpfs of a few MiB mounted for the test,
which needs root or CAP_SYS_ADMIN; skipped, saying so, where mounting is not permitted), the
errors DuckDB really raises, real Dagster runs (in process, and through the
``dagster asset materialize`` CLI). Each error must say what happened and where (the file, how
much space its filesystem has left), and only what is known of the rows: the stored rows are
read back afterwards to check each claim.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
from support.pipeline import TABLES, TEST_KEY, stored_tables
from support.reliability import cli_env, materialize_cmd, read_table

sys.path.insert(0, str(Path(__file__).resolve().parent))
import iom_assets as ia  # noqa: E402
from test_io_manager import TABLE, failed_at_once, materialize_events, query, versions_by_id  # noqa: E402

from cloudglue_dagster.emulator import Dataset, Emulator  # noqa: E402
from cloudglue_dagster.io_managers.duckdb import errors as duckdb_errors  # noqa: E402
from cloudglue_dagster.io_managers.duckdb import open_connection  # noqa: E402
from cloudglue_dagster.io_managers.duckdb.connections import is_out_of_memory  # noqa: E402
from cloudglue_dagster.io_managers.duckdb.progress import PROGRESS_TABLE  # noqa: E402

START = dt.date(2026, 5, 1)
BLOCK = 262_144  # DuckDB's block size (pragma_database_size)


# --------------------------------------------------------------------------------------------
# A small real disk


@contextmanager
def tmpfs(directory: Path, size: str) -> Iterator[Path]:
    """A real filesystem of ``size`` (a tmpfs) mounted at ``directory``, unmounted on exit."""
    directory.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command here: a small real disk cannot be made")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here (root or CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield directory
    finally:
        # A DuckDB instance a failed test left open keeps the mount busy: detach it then.
        if subprocess.run(["umount", str(directory)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(directory)], check=True)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB filesystem."""
    with tmpfs(tmp_path / "disk", "8m") as mounted:
        yield mounted


def fill(disk: Path, *, leave: int) -> Path:
    """Takes all but ``leave`` bytes of ``disk``'s free space with a file, which it returns."""
    filler = disk / "filler"
    filler.write_bytes(bytes(max(0, shutil.disk_usage(disk).free - leave)))
    return filler


def write_of(database: Path, **config: str) -> duckdb_errors.Operation:
    """The operation the I/O manager names when it writes a day of ``cloudglue.t``."""
    return duckdb_errors.Operation.of("write", str(database), config, table="cloudglue.t", partitions="2026-01-02")


def assert_names_the_space(message: str, error: duckdb_errors.DuckDBDiskFullError, disk: Path) -> None:
    """The message gives the bytes free on ``disk`` (as measured when the error was made) and
    where it is mounted."""
    assert error.free_bytes == shutil.disk_usage(disk).free and error.total_bytes == shutil.disk_usage(disk).total
    assert f"the filesystem holding it (mounted at {disk}) has {error.free_bytes:,} bytes" in message
    assert f"free of {error.total_bytes:,} bytes (8.0 MiB) now" in message


# --------------------------------------------------------------------------------------------
# DuckDB's words for a full disk, as DuckDB really says them


@pytest.mark.processes
def test_a_commit_the_full_disk_refuses_names_the_write_ahead_log_and_the_space_and_keeps_the_rows(
    disk: Path,
) -> None:
    database = disk / "w.duckdb"
    with duckdb.connect(str(database)) as conn:
        conn.execute("CREATE TABLE t AS SELECT i, md5(i::varchar) AS s FROM range(1000) r(i)")
    filler = fill(disk, leave=600_000)
    conn = duckdb.connect(str(database))
    with pytest.raises(duckdb.Error) as raised:
        conn.begin()
        conn.execute("INSERT INTO t SELECT i, md5(i::varchar) || repeat('z', 50) FROM range(100000) r(i)")
        conn.commit()
    conn.close()
    error = duckdb_errors.storage_fault(raised.value, write_of(database))
    assert isinstance(error, duckdb_errors.DuckDBDiskFullError) and not error.committed
    message = str(error)
    assert message.startswith(
        f"Writing cloudglue.t (partition 2026-01-02) to DuckDB database {database} failed: the disk is full."
        f" DuckDB could not write {database}.wal, the database's write-ahead log;"
    )
    assert_names_the_space(message, error, disk)
    assert (
        "The write was one transaction and was rolled back: the previous rows of partition 2026-01-02 are kept."
        in message
    )
    assert message.endswith(
        f'DuckDB said: TransactionContext Error: Failed to commit: Could not write file "{database}.wal": No space left on device.'
    )
    filler.unlink()
    with duckdb.connect(str(database), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchall() == [(1000,)]  # what the message claims


@pytest.mark.processes
@pytest.mark.parametrize("limit", [None, "1GB"], ids=["temp directory limit", "temp file write"])
def test_a_spill_the_full_disk_cannot_take_names_the_spill_directory_and_is_no_memory_limit(
    disk: Path, limit: str | None
) -> None:
    """DuckDB spills beyond memory_limit to ``<file>.tmp``. By default it caps that directory at
    90% of the space free there and says "Out of Memory Error: failed to offload data block",
    which the I/O manager used to take for a memory limit (and retry with more memory); with a
    larger cap it writes the spill file and the disk refuses it. A sort spills, as a load can."""
    database = disk / "w.duckdb"
    duckdb.connect(str(database)).close()
    fill(disk, leave=4_000_000)
    conn = duckdb.connect(str(database))
    conn.execute("SET memory_limit = '32MB'; SET threads = 1")
    if limit is not None:
        conn.execute(f"SET max_temp_directory_size = '{limit}'")
    with pytest.raises(duckdb.Error) as raised:
        conn.execute(
            "SELECT count(DISTINCT s) FROM (SELECT md5(i::varchar) || repeat('x', 200) AS s FROM range(1000000) r(i) ORDER BY s)"
        )
    conn.close()
    assert not is_out_of_memory(raised.value)
    config = {} if limit is None else {"max_temp_directory_size": limit}
    read = duckdb_errors.Operation.of("read", str(database), config, table="cloudglue.t")
    error = duckdb_errors.storage_fault(raised.value, read)
    assert isinstance(error, duckdb_errors.DuckDBDiskFullError) and error.path.startswith(f"{database}.tmp")
    message = str(error)
    assert message.startswith(f"Reading cloudglue.t from DuckDB database {database} failed: the disk is full.")
    if limit is None:
        assert isinstance(raised.value, duckdb.OutOfMemoryException)
        assert (
            f"DuckDB could not spill to its temp directory {database}.tmp: it reached max_temp_directory_size,"
            " which DuckDB sets to 90% of the space free on that filesystem;"
        ) in message
        assert "DuckDB said: Out of Memory Error: failed to offload data block of size" in message
    else:
        spill = re.escape(f"{database}.tmp")
        assert re.search(rf"DuckDB could not write {spill}/\S+\.tmp, in its temp spill directory {spill};", message)
        assert "No space left on device." in message
    assert_names_the_space(message, error, disk)
    assert "Nothing was loaded, and a read changes no stored row." in message


@pytest.mark.processes
def test_a_checkpoint_that_fails_after_a_durable_commit_says_the_write_was_committed_as_it_was(
    tmp_path: Path,
) -> None:
    """A commit that takes the write-ahead log past checkpoint_threshold checkpoints; when that
    checkpoint finds the disk full, DuckDB says "Transaction COMMIT succeeded and is durable, but
    the autocheckpoint failed". The write is stored: "the previous rows are kept" was false."""
    with tmpfs(tmp_path / "disk", "32m") as disk:
        database = disk / "w.duckdb"
        conn = duckdb.connect(str(database), config={"checkpoint_threshold": "1GB", "memory_limit": "32MB"})
        conn.execute("CREATE TABLE t AS SELECT i, md5(i::varchar) AS s FROM range(1000) r(i)")
        for k in range(10):  # some 21 MB of write-ahead log, not checkpointed
            conn.execute(
                f"INSERT INTO t SELECT i + {k} * 100000 + 1000000, md5(i::varchar) || md5((i + {k})::varchar)"
                f" || md5((i * {k})::varchar) FROM range(20000) r(i)"
            )
        filler = fill(disk, leave=1_000_000)
        conn.execute("SET checkpoint_threshold = '1KB'")
        with pytest.raises(duckdb.Error) as raised:
            conn.begin()
            conn.execute("DELETE FROM t WHERE i < 10")
            conn.execute("INSERT INTO t SELECT -i - 1, 'new' FROM range(50) r(i)")
            conn.commit()
        conn.close()
        error = duckdb_errors.storage_fault(raised.value, write_of(database))
        assert isinstance(error, duckdb_errors.DuckDBDiskFullError) and error.committed
        message = str(error)
        assert (
            "The write itself was committed (DuckDB says the commit succeeded and is durable): the new rows of"
            f" partition 2026-01-02 are stored; only the automatic checkpoint after it failed, and they wait in"
            f" the write-ahead log {database}.wal until a checkpoint succeeds."
        ) in message
        assert "rolled back" not in message and "are kept" not in message
        assert "DuckDB said: FATAL Error: Transaction COMMIT succeeded and is durable" in message
        filler.unlink()
        with duckdb.connect(str(database), read_only=True) as conn:
            stored = conn.execute("SELECT count(*) FILTER (s = 'new'), count(*) FILTER (i BETWEEN 0 AND 9) FROM t")
            assert stored.fetchall() == [(50, 0)]  # committed, as the message says


# --------------------------------------------------------------------------------------------
# A damaged file


def make_database(database: Path) -> None:
    """A DuckDB file of some 7 MB (27 blocks) in two tables."""
    with duckdb.connect(str(database)) as conn:
        conn.execute("CREATE TABLE t AS SELECT i, md5(i::varchar) || repeat('y', 100) AS s FROM range(200000) r(i)")
        conn.execute("CREATE TABLE u AS SELECT i FROM range(1000) r(i)")


@pytest.mark.parametrize("cut", [1, 4096, BLOCK, None], ids=["last byte", "last 4 KiB", "last block", "half"])
def test_a_database_file_cut_short_is_refused_when_opened_and_left_as_it_was(tmp_path: Path, cut: int | None) -> None:
    """DuckDB reads a block only when a query needs it: a file cut short opened, and took writes."""
    database = tmp_path / "w.duckdb"
    make_database(database)
    size = database.stat().st_size
    os.truncate(database, size // 2 if cut is None else size - cut)
    damaged = database.read_bytes()
    with pytest.raises(duckdb_errors.DuckDBStorageError) as raised:
        open_connection(str(database), read_only=False, config={}, lock_timeout_seconds=1)
    assert type(raised.value).__name__ == "DuckDBCorruptFileError"
    message = raised.value.description or ""
    assert message.startswith(f"Opening DuckDB database {database} failed: the file is damaged (truncated: ")
    assert (
        "It could not be opened, so nothing was written to it. The rows the file holds cannot be vouched for" in message
    )
    assert f"Restore {database} from a backup, or move it aside (with {database}.wal, if there is one) and" in message
    assert "re-run the backfill of every partition to rebuild it." in message
    assert database.read_bytes() == damaged and not Path(f"{database}.wal").exists()


def test_a_whole_database_file_opens_and_one_cut_short_later_in_the_process_is_refused(tmp_path: Path) -> None:
    """The check runs once per file and process, and again when the file has shrunk."""
    database = tmp_path / "w.duckdb"
    make_database(database)
    open_connection(str(database), read_only=True, config={}, lock_timeout_seconds=1).close()
    os.truncate(database, database.stat().st_size - 1)
    with pytest.raises(duckdb_errors.DuckDBStorageError, match=r"the file is damaged \(truncated: it is "):
        open_connection(str(database), read_only=True, config={}, lock_timeout_seconds=1)


def test_a_block_whose_checksum_does_not_match_fails_the_load_saying_the_file_is_corrupt(tmp_path: Path) -> None:
    database = tmp_path / "iom.duckdb"
    materialize_events(database, start="2026-01-01", end="2026-01-04", version=1)
    blocks = query(database, f"SELECT DISTINCT block_id FROM pragma_storage_info('{TABLE}') WHERE block_id >= 0")
    with database.open("r+b") as file:
        for (block,) in blocks:  # each block starts with its checksum
            file.seek(3 * 4096 + block * BLOCK)
            file.write(b"\xff" * 8)
    result = dg.materialize(
        [ia.iom_events, ia.iom_day_reader],
        selection=[ia.iom_day_reader],
        resources={"io_manager": ia.io_manager(str(database))},
        partition_key="2026-01-02",
        raise_on_error=False,
    )
    error = failed_at_once(result)
    assert error.cls_name == "DuckDBCorruptFileError"
    assert (
        f"DuckDBCorruptFileError: Reading {TABLE} from DuckDB database {database} failed: the file is damaged"
        " (corrupt: a block DuckDB read does not match its checksum). Nothing was loaded. The rows the file"
        " holds cannot be vouched for"
    ) in error.message
    assert f"Restore {database} from a backup" in error.message
    assert "DuckDB said: " in error.message and "Corrupt database file: computed checksum" in error.message


# --------------------------------------------------------------------------------------------
# Through the I/O manager


@pytest.mark.processes
def test_a_write_that_fills_the_disk_fails_at_once_naming_the_space_and_keeps_the_previous_rows(disk: Path) -> None:
    database = disk / "iom.duckdb"
    materialize_events(database, start="2026-01-01", end="2026-01-03", version=1)
    before = versions_by_id(database)
    fill(disk, leave=1_000_000)
    result = materialize_events(
        database, partition="2026-01-02", version=2, mode="big", rows=300_000, raise_on_error=False
    )
    error = failed_at_once(result)
    assert error.cls_name == "DuckDBDiskFullError"
    assert (
        f"Writing {TABLE} (partition 2026-01-02) to DuckDB database {database} failed: the disk is full."
        in error.message
    )
    assert re.search(
        rf"the filesystem holding it \(mounted at {re.escape(str(disk))}\) has [\d,]+ bytes", error.message
    )
    assert (
        "The write was one transaction and was rolled back: the previous rows of partition 2026-01-02 are kept."
        in error.message
    )
    assert "DuckDB said: " in error.message
    assert versions_by_id(database) == before


# --------------------------------------------------------------------------------------------
# Through the real CLI


def cli_run(env: dict[str, str], first: dt.date, last: dt.date) -> subprocess.CompletedProcess[str]:
    command = materialize_cmd("--partition-range", f"{first}...{last}")
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def last_run(home: Path) -> tuple[str, list[str]]:
    """The id of the newest run recorded in ``home`` and its event types."""
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        run_id = instance.get_runs(limit=1)[0].run_id
        kinds = [r.dagster_event.event_type_value for r in instance.all_logs(run_id) if r.dagster_event]
    finally:
        instance.dispose()
    return run_id, kinds


def day_of(name: str, table: pd.DataFrame) -> pd.Series:
    """The UTC day (``YYYY-MM-DD``) each row belongs to: its partition."""
    column = table["created_at"].dt.tz_convert("UTC") if name == "chat_completions" else table["date"]
    return column.dt.strftime("%Y-%m-%d")


def rows_of(name: str, table: pd.DataFrame, day: str) -> pd.DataFrame:
    return table[day_of(name, table) == day].reset_index(drop=True)


def error_lines(output: str, error: str) -> list[str]:
    """The distinct messages of ``error`` the CLI printed."""
    return sorted({m for m in re.findall(rf"{error}: (.+)", output)})


@pytest.mark.processes
def test_a_backfill_that_fills_the_disk_fails_naming_the_space_and_the_path_and_leaves_each_day_old_or_wholly_new(
    tmp_path: Path,
) -> None:
    """A warehouse on an 8 MiB disk takes an honest load of 3 days, then a 12-day range of
    different content that fills the disk. The run fails at once, naming the file, the space
    left and what each failed write left. Afterwards each day of each table holds either its
    old rows or, if the failing run's progress marks say it committed that day, exactly the rows
    a run on an ample disk stores: nothing half-written, and each claim of the message true."""
    days = [START + dt.timedelta(days=i) for i in range(12)]
    old = Dataset(START, days[-1], seed=5, counts=dict.fromkeys(days, 300))
    new = Dataset(START, days[-1], seed=6, counts=dict.fromkeys(days, 300))
    home, reference = tmp_path / "home", tmp_path / "reference.duckdb"
    with tmpfs(tmp_path / "disk", "8m") as disk:
        database = disk / "w.duckdb"
        with Emulator(old, api_key=TEST_KEY) as emu:
            env = cli_env(key=TEST_KEY, base_url=emu.base_url, start=str(START), database=database, home=home)
            seeded = cli_run(env, days[0], days[2])
            assert seeded.returncode == 0, seeded.stderr[-3000:]
        before = stored_tables(database)
        with Emulator(new, api_key=TEST_KEY) as emu:
            env = cli_env(key=TEST_KEY, base_url=emu.base_url, start=str(START), database=database, home=home)
            ample = {**env, "CLOUDGLUE_DUCKDB_PATH": str(reference), "DAGSTER_HOME": str(tmp_path / "reference-home")}
            (tmp_path / "reference-home").mkdir()
            assert cli_run(ample, days[0], days[-1]).returncode == 0
            failed = cli_run(env, days[0], days[-1])
        output = failed.stdout + failed.stderr
        assert failed.returncode != 0, output[-3000:]
        run_id, kinds = last_run(home)
        assert "STEP_UP_FOR_RETRY" not in kinds  # permanent: no step retry
        messages = error_lines(output, "DuckDBDiskFullError")
        assert messages, output[-5000:]
        marks = read_table(database, PROGRESS_TABLE, f"WHERE run_id = '{run_id}'")
        committed = {
            name: set(marks.loc[marks["asset_key"] == f"cloudglue.{name}", "partition_key"]) for name in TABLES
        }
        after = stored_tables(database)
    for message in messages:
        assert f"DuckDB database {database} failed: the disk is full. DuckDB could not " in message
        assert re.search(
            rf"\(mounted at {re.escape(str(disk))}\) has [\d,]+ bytes( \([\d.]+ \w+\))? free of 8,388,608 bytes",
            message,
        )
        assert f"its spill directory {database}.tmp" in message
        if f"{database}.tmp/" in message.split("DuckDB said: ")[1]:
            assert f"in its temp spill directory {database}.tmp;" in message
        assert "DuckDB said: " in message
        # What the message says the failed write left must be what the file holds.
        wrote = re.match(r"Writing cloudglue\.(\w+) \(partition (\S+)\)", message)
        if wrote:
            name, day = wrote.groups()
            kept = f"rolled back: the previous rows of partition {day} are kept" in message
            assert kept != ("The write itself was committed" in message), message
            assert (day in committed[name]) != kept, (message, sorted(committed[name]))
    # Both kinds of day are there to check: days the failing run committed, and days it did not.
    assert 0 < len(committed["chat_completions"]) < len(days), committed
    ample_rows = stored_tables(reference)
    for name in TABLES:
        for day in sorted({str(d) for d in days}):
            want = rows_of(name, ample_rows[name] if day in committed[name] else before[name], day)
            pd.testing.assert_frame_equal(rows_of(name, after[name], day), want, obj=f"{name} {day}")


@pytest.mark.processes
def test_a_truncated_warehouse_fails_the_backfill_saying_it_is_damaged_that_nothing_was_written_and_what_to_do(
    tmp_path: Path,
) -> None:
    """A warehouse file cut short (a copy that stopped, a disk that lost its end) used to take a
    backfill that ended RUN_SUCCESS, or failed steps later with "the previous rows are kept"."""
    days = [START + dt.timedelta(days=i) for i in range(6)]
    dataset = Dataset(START, days[-1], seed=5, counts=dict.fromkeys(days, 300))
    home, database = tmp_path / "home", tmp_path / "w.duckdb"
    with Emulator(dataset, api_key=TEST_KEY) as emu:
        env = cli_env(key=TEST_KEY, base_url=emu.base_url, start=str(START), database=database, home=home)
        seeded = cli_run(env, days[0], days[3])
        assert seeded.returncode == 0, seeded.stderr[-3000:]
        os.truncate(database, database.stat().st_size - 100_000)
        damaged = hashlib.sha256(database.read_bytes()).hexdigest()
        failed = cli_run(env, days[2], days[-1])
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0, output[-3000:]
    assert "STEP_UP_FOR_RETRY" not in last_run(home)[1]
    (message,) = error_lines(output, "DuckDBCorruptFileError")
    assert message.startswith(f"Opening DuckDB database {database} failed: the file is damaged (truncated: it is ")
    assert "It could not be opened, so nothing was written to it." in message
    assert "The rows the file holds cannot be vouched for" in message
    assert f"Restore {database} from a backup, or move it aside (with {database}.wal, if there is one)" in message
    assert "re-run the backfill of every partition to rebuild it." in message
    assert "previous rows are kept" not in output
    assert hashlib.sha256(database.read_bytes()).hexdigest() == damaged and not Path(f"{database}.wal").exists()
