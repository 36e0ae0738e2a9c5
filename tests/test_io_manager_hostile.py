"""``CloudglueDuckDBIOManager`` under hostile input: unusable paths, held locks, values and column
types DuckDB refuses, runs terminated before their write commits.

Every test asset has ``RetryPolicy(max_retries=3, delay=30)`` (``tests/iom_assets.py``): each
run here must fail at once (no STEP_UP_FOR_RETRY), name its real cause, and leave the stored
rows exactly as they were before it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import duckdb
import pandas as pd
import pydantic
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import iom_assets as ia  # noqa: E402
from test_io_manager import (  # noqa: E402
    EXPECTED_SQL_TYPES,
    TABLE,
    expected,
    failed_at_once,
    materialize_events,
    query,
    sql_types,
    versions_by_id,
)

from cloudglue_dagster.api.days import UTCDay
from cloudglue_dagster.errors import CloudglueConfigError, CloudglueError, is_transient
from cloudglue_dagster.io_managers.duckdb import (
    CloudglueDuckDBIOManager,
    DuckDBPathError,
    DuckDBRunTerminatedError,
    DuckDBSchemaError,
    DuckDBStorageError,
    DuckDBWriteError,
    day_store,
    open_connection,
)
from cloudglue_dagster.io_managers.duckdb import errors as duckdb_errors
from cloudglue_dagster.tables.streams import DayRows, DayStream, TableTarget


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "iom.duckdb"


def stored(db: Path) -> list[tuple]:
    return query(db, f"SELECT * FROM {TABLE} ORDER BY id")


def refused_at_load(database: str) -> CloudglueConfigError:
    """The error pydantic reports for the ``database`` field, which must be ours."""
    with pytest.raises(pydantic.ValidationError) as info:
        CloudglueDuckDBIOManager(database=database, schema=ia.SCHEMA)
    (error,) = info.value.errors()
    assert error["loc"] == ("database",)
    cause = error["ctx"]["error"]
    assert isinstance(cause, CloudglueConfigError)
    return cause


@contextmanager
def unwritable(path: Path) -> Iterator[None]:
    """Makes ``path`` (a file or a directory) unwritable for this process, root included.

    These tests run as root, whom chmod does not stop (CAP_DAC_OVERRIDE); the immutable
    attribute (``chattr +i``) stops root too. Any other user gets ``chmod a-w``.
    """
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(mode & ~0o222)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)]).returncode != 0:
        pytest.skip("chattr +i is not available here (needs CAP_LINUX_IMMUTABLE and ext4/xfs)")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


# --------------------------------------------------------------------------------------------
# Unusable paths, refused when the definitions load


@pytest.mark.parametrize("database", ["", "   "])
def test_an_empty_database_path_is_refused_when_the_definitions_load(database: str) -> None:
    error = refused_at_load(database)
    assert "database is empty" in str(error) and "':memory:'" in str(error)


def test_a_directory_as_database_is_refused_when_the_definitions_load(tmp_path: Path) -> None:
    error = refused_at_load(str(tmp_path))
    assert f"({tmp_path.resolve()}) is a directory, not a DuckDB file" in str(error)
    assert f"e.g. {tmp_path.resolve() / 'cloudglue.duckdb'}" in str(error)


@pytest.mark.parametrize("content", [b"id,tokens\n1,2\n", b"DUC"], ids=["csv", "3 bytes"])
def test_a_file_that_is_not_a_duckdb_database_is_refused_when_the_definitions_load(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "iom.duckdb"
    path.write_bytes(content)
    error = refused_at_load(str(path))
    assert f"({path.resolve()}) is a file but not a DuckDB database" in str(error)
    assert "Point database at a DuckDB file" in str(error)
    assert path.read_bytes() == content


def test_duckdb_files_new_paths_and_non_file_databases_pass_the_load_checks(tmp_path: Path) -> None:
    real = tmp_path / "real.duckdb"
    duckdb.connect(str(real)).close()
    # The header check's premise, on a file DuckDB itself wrote: its magic bytes at 8..11.
    assert real.read_bytes()[8:12] == b"DUCK"
    for database in [str(real), str(tmp_path / "new" / "x.duckdb"), ":memory:", "md:cloudglue", "motherduck:x"]:
        assert CloudglueDuckDBIOManager(database=database).database == database


def test_a_database_path_from_an_environment_variable_is_checked_when_the_run_resolves_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUDGLUE_TEST_DUCKDB", str(tmp_path))  # a directory
    manager = CloudglueDuckDBIOManager(database=dg.EnvVar("CLOUDGLUE_TEST_DUCKDB"), schema=ia.SCHEMA)
    result = dg.materialize(
        [ia.iom_events], resources={"io_manager": manager}, partition_key="2026-01-02", raise_on_error=False
    )
    assert not result.success
    assert not [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    failures = [e for e in result.all_events if e.event_type == dg.DagsterEventType.RESOURCE_INIT_FAILURE]
    message = failures[0].event_specific_data.error.to_string()
    assert "database\n" in message and f"({tmp_path.resolve()}) is a directory" in message
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# Unusable paths, found when the run writes


def test_a_file_another_process_is_creating_is_opened_once_it_is_a_database(tmp_path: Path) -> None:
    """DuckDB creates a file empty, then locks it and writes its header: a process opening it
    in between found 0 bytes and failed (eight processes creating one file, in CI). Here the
    empty file becomes a database 0.3 s after the open began, and then, 40 times, within the
    first 20 ms: while DuckDB may be reading it, the race a CI run lost once the open looked
    only at the file after its failed attempt (8 in 200 such opens failed then)."""
    for attempt, delay in enumerate([0.3] + [i / 2000 for i in range(40)]):
        db = tmp_path / f"iom{attempt}.duckdb"
        db.touch()
        ready = tmp_path / "ready.duckdb"
        duckdb.connect(str(ready)).close()

        def create(ready: Path = ready, db: Path = db, delay: float = delay) -> None:
            time.sleep(delay)
            os.replace(ready, db)

        creator = threading.Thread(target=create)
        creator.start()
        try:
            conn = open_connection(str(db), read_only=False, config={}, lock_timeout_seconds=5)
        finally:
            creator.join()
        try:
            assert conn.execute("SELECT 42").fetchall() == [(42,)], delay
        finally:
            conn.close()


def test_an_empty_file_fails_the_first_write_at_once_and_is_left_alone(tmp_path: Path) -> None:
    """DuckDB refuses a 0-byte file ("not a valid DuckDB database file"), but creates new
    files empty itself, so the load check lets one through. The path holds the word "lock",
    which DuckDB's error quotes: that must not be taken for a lock held by another process
    (which would wait the default 120 s). The write waits CREATING_GRACE_SECONDS for a
    process that may be creating the file, then fails without a step retry."""
    db = tmp_path / "locks" / "iom.duckdb"
    db.parent.mkdir()
    db.touch()
    error = failed_at_once(materialize_events(db, partition="2026-01-02", raise_on_error=False))
    assert error.cls_name == DuckDBPathError.__name__
    assert f"Cannot open DuckDB database {db.resolve()} (the I/O manager's `database` setting)" in error.message
    assert "it is an empty file" in error.message and "delete it" in error.message
    assert "DuckDB said: IO Error" in error.message and "not a valid DuckDB database file" in error.message
    assert db.stat().st_size == 0


@pytest.mark.parametrize("where", ["parent is a file", "under /proc"])
def test_a_database_whose_directory_cannot_be_created_fails_the_run_at_once(tmp_path: Path, where: str) -> None:
    if where == "under /proc" and not Path("/proc/self").is_dir():
        pytest.skip("needs Linux /proc")
    parent_file = tmp_path / "notes.txt"
    parent_file.write_text("a file, not a directory")
    db = parent_file / "iom.duckdb" if where == "parent is a file" else Path("/proc/cloudglue-tests/iom.duckdb")
    error = failed_at_once(materialize_events(db, partition="2026-01-02", raise_on_error=False))
    assert error.cls_name == DuckDBPathError.__name__
    assert f"Cannot create the directory {db.parent} for DuckDB database {db}" in error.message
    assert "`database` setting" in error.message and "The OS said: [Errno" in error.message
    assert parent_file.read_text() == "a file, not a directory"


@pytest.mark.processes
@pytest.mark.parametrize("where", ["unwritable directory", "directly in /proc"])
def test_a_database_file_that_cannot_be_created_fails_the_run_at_once(tmp_path: Path, where: str) -> None:
    """Root can write any directory chmod protects: the unwritable one is made immutable
    (see :func:`unwritable`); /proc accepts no new files from anyone."""
    guard: AbstractContextManager[None]
    if where == "directly in /proc":
        if not Path("/proc/self").is_dir():
            pytest.skip("needs Linux /proc")
        db, guard = Path("/proc/iom.duckdb"), nullcontext()
    else:
        db, guard = tmp_path / "iom.duckdb", unwritable(tmp_path)
    with guard:
        error = failed_at_once(materialize_events(db, partition="2026-01-02", raise_on_error=False))
    assert error.cls_name == DuckDBPathError.__name__
    assert f"Cannot open DuckDB database {db} (the I/O manager's `database` setting)" in error.message
    assert f'DuckDB said: IO Error: Cannot open file "{db}"' in error.message
    assert not db.exists()


@pytest.mark.processes
def test_a_database_file_made_unwritable_after_a_write_fails_the_next_and_keeps_its_rows(db: Path) -> None:
    """The file is made immutable (root) or read-only (other users): see :func:`unwritable`."""
    materialize_events(db, partition="2026-01-02", version=1)
    before = stored(db)
    with unwritable(db):
        error = failed_at_once(materialize_events(db, partition="2026-01-02", version=2, raise_on_error=False))
        assert stored(db) == before  # read-only connections still work
    assert error.cls_name == DuckDBPathError.__name__
    assert f'DuckDB said: IO Error: Cannot open file "{db.resolve()}"' in error.message
    assert stored(db) == before


@pytest.mark.processes
def test_a_directory_made_unwritable_after_a_write_fails_the_commit_and_keeps_the_rows(db: Path) -> None:
    """The file can still be opened, but DuckDB writes a log beside it (``iom.duckdb.wal``) at
    commit, which the immutable (root) or read-only (other users) directory refuses."""
    materialize_events(db, start="2026-01-01", end="2026-01-03", version=1)
    before = stored(db)
    with unwritable(db.parent):
        error = failed_at_once(materialize_events(db, partition="2026-01-02", version=2, raise_on_error=False))
    assert error.cls_name == DuckDBWriteError.__name__
    assert f"Writing {TABLE} (partition 2026-01-02) to DuckDB database {db.resolve()} failed" in error.message
    assert f'Failed to commit: Cannot open file "{db.resolve()}.wal"' in error.message
    assert stored(db) == before
    assert versions_by_id(db) == expected({"2026-01-01": 1, "2026-01-02": 1, "2026-01-03": 1})


@pytest.mark.parametrize("clobber", ["garbage", "directory"])
def test_a_database_replaced_after_the_run_started_fails_the_write_at_once(db: Path, clobber: str) -> None:
    """The asset replaces the file after the run's resources passed the load checks."""
    materialize_events(db, partition="2026-01-02", version=1)
    result = materialize_events(
        db, partition="2026-01-02", version=2, clobber=clobber, clobber_path=str(db), raise_on_error=False
    )
    error = failed_at_once(result)
    assert error.cls_name == DuckDBPathError.__name__
    assert f"Cannot open DuckDB database {db.resolve()} (the I/O manager's `database` setting)" in error.message
    if clobber == "garbage":
        assert "not a valid DuckDB database file" in error.message
        assert db.read_bytes() == b"id,tokens\n1,2\n"
    else:
        assert "it is a directory; name a file inside it" in error.message
        assert list(db.iterdir()) == []


def test_loading_from_a_database_that_does_not_exist_fails_at_once(db: Path) -> None:
    result = dg.materialize(
        [ia.iom_events, ia.iom_day_reader],
        selection=[ia.iom_day_reader],
        resources={"io_manager": ia.io_manager(str(db))},
        partition_key="2026-01-02",
        raise_on_error=False,
    )
    error = failed_at_once(result)
    assert error.cls_name == DuckDBPathError.__name__
    assert f"DuckDB database {db.resolve()} does not exist yet: materialize cloudglue/iom_events" in error.message
    assert not db.exists()


# --------------------------------------------------------------------------------------------
# Values DuckDB refuses: the real cause, the partitions and the row


def test_a_lone_surrogate_fails_naming_duckdbs_cause_the_partitions_and_the_row(db: Path) -> None:
    materialize_events(db, start="2026-01-01", end="2026-01-04", version=1)
    before = stored(db)
    result = materialize_events(
        db, start="2026-01-02", end="2026-01-03", version=2, mode="surrogate", raise_on_error=False
    )
    error = failed_at_once(result)
    assert error.cls_name == DuckDBWriteError.__name__
    assert "Current transaction is aborted" not in error.to_string()
    assert (
        f"Writing {TABLE} (partitions 2026-01-02...2026-01-03) to DuckDB database {db.resolve()}"
        " failed; the previous rows are kept. DuckDB said: "
    ) in error.message
    # DuckDB's own words: 2.x's, or 1.x's (Python 3.10 gets 1.5), whose internal error's stack
    # trace is left out.
    assert (
        "DuckDB said: Invalid Input Error: Python Conversion Failure: cannot encode str as UTF-8, surrogate"
        in error.message
    ) or (
        "DuckDB said: INTERNAL Error: invalid code point detected in Utf8Proc::CodepointLength"
        " (0xd800 to 0xdfff), likely due to invalid UTF-8. Row at fault:" in error.message
    ), error.message
    assert (
        "Row at fault: id '2026-01-02-noon', column 'model' (a lone surrogate U+D800 at character 6, not valid UTF-8)."
    ) in error.message
    assert stored(db) == before


def test_a_not_null_constraint_added_outside_names_the_row_that_breaks_it(db: Path) -> None:
    materialize_events(db, partition="2026-01-02", version=1)
    with duckdb.connect(str(db)) as conn:
        conn.execute(f"ALTER TABLE iom.{TABLE} ALTER COLUMN version SET NOT NULL")
    before = stored(db)
    result = materialize_events(db, partition="2026-01-02", version=2, drop_columns=["version"], raise_on_error=False)
    error = failed_at_once(result)
    assert error.cls_name == DuckDBWriteError.__name__
    # DuckDB 2.x quotes the keyword column ("version"), 1.x (Python 3.10 gets 1.5) does not.
    assert re.search(
        r'DuckDB said: Constraint Error: NOT NULL constraint failed: iom_events\.("version"|version)\.',
        error.message,
    ), error.message
    assert (
        "Row at fault: id '2026-01-02-start', column 'version' (missing from the frame, so NULL, but"
        " the column is NOT NULL)."
    ) in error.message
    assert stored(db) == before


# --------------------------------------------------------------------------------------------
# Column types: refused, not cast


def test_a_column_type_changed_outside_the_pipeline_is_refused_not_cast(db: Path) -> None:
    materialize_events(db, start="2026-01-01", end="2026-01-02", version=1)
    with duckdb.connect(str(db)) as conn:
        conn.execute(f"ALTER TABLE iom.{TABLE} ALTER COLUMN tokens TYPE INTEGER")
        conn.execute(f"ALTER TABLE iom.{TABLE} ALTER COLUMN cost TYPE VARCHAR")
    before = stored(db)

    error = failed_at_once(materialize_events(db, partition="2026-01-02", version=2, raise_on_error=False))
    assert error.cls_name == DuckDBSchemaError.__name__
    assert f"Table {TABLE} in DuckDB database {db.resolve()} has column types" in error.message
    assert "tokens is INTEGER in the table, BIGINT in the frame" in error.message
    assert "cost is VARCHAR in the table, DOUBLE in the frame" in error.message
    assert "Nothing was written; the previous rows are kept" in error.message
    assert stored(db) == before
    assert sql_types(db) == {**EXPECTED_SQL_TYPES, "tokens": "INTEGER", "cost": "VARCHAR"}

    # The fix the message gives works as written.
    with duckdb.connect(str(db)) as conn:
        for statement in re.findall(r"ALTER TABLE [^;]+;", error.message):
            conn.execute(statement)
    materialize_events(db, partition="2026-01-02", version=2)
    assert sql_types(db) == EXPECTED_SQL_TYPES
    assert versions_by_id(db) == expected({"2026-01-01": 1, "2026-01-02": 2})


@pytest.mark.parametrize(
    ("mode", "difference"),
    [
        ("bad_type", "tokens is BIGINT in the table, VARCHAR in the frame"),
        ("fractional", "tokens is BIGINT in the table, DOUBLE in the frame"),
    ],
    ids=["text into BIGINT", "10.5 into BIGINT"],
)
def test_a_frame_column_that_changed_type_is_refused_not_cast(db: Path, mode: str, difference: str) -> None:
    materialize_events(db, start="2026-01-01", end="2026-01-03", version=1)
    before = stored(db)
    result = materialize_events(db, partition="2026-01-02", version=2, mode=mode, raise_on_error=False)
    error = failed_at_once(result)
    assert error.cls_name == DuckDBSchemaError.__name__
    assert difference in error.message
    assert stored(db) == before
    assert sql_types(db) == EXPECTED_SQL_TYPES  # no brand_new column either


def test_integers_that_pandas_made_floats_or_narrower_are_still_appended(db: Path) -> None:
    materialize_events(db, partition="2026-01-01", version=1)
    # tokens as float64 [20.0, 21.0, NaN], version as Int32: no value changes in BIGINT.
    materialize_events(db, partition="2026-01-02", version=2, mode="float_tokens")
    assert sql_types(db) == EXPECTED_SQL_TYPES
    day = query(db, f"SELECT id, version, tokens FROM {TABLE} WHERE id LIKE '2026-01-02-%' ORDER BY created_at")
    assert day == [("2026-01-02-start", 2, 20), ("2026-01-02-noon", 2, 21), ("2026-01-02-end", 2, None)]


# --------------------------------------------------------------------------------------------
# Terminated runs


def test_a_run_terminated_before_its_write_commits_keeps_the_previous_rows(db: Path) -> None:
    materialize_events(db, start="2026-01-01", end="2026-01-03", version=1)
    before = stored(db)
    # The asset marks its own run CANCELING, as the UI's Terminate does, then returns its frame.
    result = materialize_events(db, partition="2026-01-02", version=2, terminate_run=True, raise_on_error=False)
    error = failed_at_once(result)
    assert error.cls_name == DuckDBRunTerminatedError.__name__
    assert (
        f"Run {result.run_id} was terminated (CANCELING) before its write to {TABLE} in DuckDB database"
        f" {db.resolve()} committed: the write was rolled back and the previous rows are kept."
    ) in error.message
    assert stored(db) == before


def test_a_range_terminated_between_two_status_reads_stops_at_the_next_and_keeps_the_days_before(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A day-by-day write reads the run's status before its first commit, then at most every
    STATUS_EVERY_SECONDS (a read per day cost a 180-day run 1.2 s): a Terminate between two
    reads lets complete days commit until the next read, which rolls back its day."""
    monkeypatch.setattr(day_store, "STATUS_EVERY_SECONDS", 2.0)
    # The store's clock, which the produce step below moves on instead of sleeping.
    skipped = [0.0]
    monkeypatch.setattr(day_store, "time", SimpleNamespace(monotonic=lambda: time.monotonic() + skipped[0]))

    @dg.asset(
        partitions_def=ia.PARTITIONS,
        key_prefix=[ia.SCHEMA],
        metadata={"partition_expr": "created_at"},
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def iom_days(context):  # unannotated: Dagster cannot resolve string annotations of a local function
        days = []
        for key in context.partition_keys:
            window = ia.PARTITIONS.time_window_for_partition_key(key)
            days.append(UTCDay(key, window.start, window.end))

        def produce(skip: object, warehouse: object) -> Iterator[DayRows]:
            for i, day in enumerate(days):
                if i == 2:  # two days committed, the first after a status read
                    context.instance.report_run_canceling(context.run)
                if i == 3:  # the third was committed without a read; 2.5 s on, one is due
                    skipped[0] += 2.5
                yield DayRows(day, {"iom_days": ia.day_rows(pd.Timestamp(day.start), 1)})

        ignore = lambda stored: None  # noqa: E731
        target = TableTarget("iom_days", (ia.SCHEMA, "iom_days"), {"partition_expr": "created_at"})
        stream = DayStream(
            days=days,
            tables={"iom_days": target},
            written=["iom_days"],
            resume_from=[],
            produce=produce,
            on_written=ignore,
            on_resumed=ignore,
            resume_columns={},
        )
        return dg.Output(stream)

    result = dg.materialize(
        [iom_days],
        resources={"io_manager": ia.io_manager(str(db))},
        tags={"dagster/asset_partition_range_start": "2026-01-01", "dagster/asset_partition_range_end": "2026-01-05"},
        raise_on_error=False,
    )
    error = failed_at_once(result)
    assert error.cls_name == DuckDBRunTerminatedError.__name__
    assert "was terminated (CANCELING) before its write to cloudglue.iom_days" in error.message
    days = query(db, f"SELECT DISTINCT CAST(created_at AS DATE) FROM {ia.SCHEMA}.iom_days ORDER BY 1")
    assert [str(d) for (d,) in days] == ["2026-01-01", "2026-01-02", "2026-01-03"]


def test_a_write_without_a_run_still_commits(db: Path) -> None:
    """``dg.build_output_context`` (unit tests of assets) has no run to ask about."""
    manager = ia.io_manager(str(db)).create_io_manager(dg.build_init_resource_context())
    frame = pd.DataFrame({"name": pd.array(["a"], dtype="string"), "n": pd.array([1], dtype="Int64")})
    manager.handle_output(dg.build_output_context(asset_key=dg.AssetKey([ia.SCHEMA, "loose"])), frame)
    assert query(db, f"SELECT name, n FROM {ia.SCHEMA}.loose") == [("a", 1)]


# --------------------------------------------------------------------------------------------
# One classification


def test_every_error_the_io_manager_raises_is_permanent() -> None:
    samples: list[DuckDBStorageError] = [
        DuckDBStorageError("x", database="/d"),
        duckdb_errors.DuckDBPathError("x", database="/d"),
        duckdb_errors.DuckDBLockTimeoutError("x", database="/d"),
        duckdb_errors.DuckDBMemoryLimitError("x", database="/d", memory_limit="1 MiB"),
        DuckDBWriteError(database="/d", table="s.t", partitions=None, cause=ValueError("x")),
        DuckDBSchemaError(database="/d", table="s.t", target="s.t", columns={"a": ("INTEGER", "BIGINT")}),
        DuckDBRunTerminatedError(database="/d", table="s.t", run_id="r", status="CANCELING"),
        duckdb_errors.DuckDBDiskFullError(
            "x", operation=duckdb_errors.Operation("open", "/d"), path="/d", space=None, committed=False
        ),
        duckdb_errors.DuckDBCorruptFileError("x", operation=duckdb_errors.Operation("open", "/d")),
    ]
    exported = {getattr(duckdb_errors, n) for n in duckdb_errors.__all__}
    # One sample of each error class the module exports.
    assert {type(e) for e in samples} == {c for c in exported if isinstance(c, type) and issubclass(c, Exception)}
    for error in samples:
        assert isinstance(error, CloudglueError) and isinstance(error, dg.Failure)
        assert not is_transient(error) and error.allow_retries is False, type(error).__name__
        assert error.metadata["database"].value == "/d"
