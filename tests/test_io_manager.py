"""Tests of ``cloudglue_dagster.io_manager`` against real DuckDB files and real Dagster runs.

Subprocesses are used wherever only a real process shows the behaviour: another time zone
(``TZ`` is process-wide), a SIGKILL mid-write, another process holding the file lock, and
parallel writers. The assets and the subprocess entry point live in ``tests/iom_assets.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pydantic
import pytest

# iom_assets is also run as a script by the subprocesses: import it the same way here.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import iom_assets as ia  # noqa: E402
from dagster._core.storage.db_io_manager import TableSlice
from dagster._utils.error import SerializableErrorInfo

from cloudglue_dagster.io_managers.duckdb import (
    DEFAULT_MEMORY_LIMIT,
    CloudglueDuckDBIOManager,
    DuckDBLockTimeoutError,
    DuckDBMemoryLimitError,
    DuckDBSchemaError,
    DuckDBWriteError,
    UTCDuckDbClient,
    open_connection,
    write_frame,
)
from cloudglue_dagster.io_managers.duckdb.pandas_handler import to_nullable_dtypes
from cloudglue_dagster.io_managers.duckdb.sql import remember_catalog, table_columns

TESTS_DIR = Path(__file__).resolve().parent
HELPER = TESTS_DIR / "iom_assets.py"
TABLE = f"{ia.SCHEMA}.{ia.TABLE}"

EXPECTED_DTYPES = {
    "id": "string",
    "created_at": "datetime64[ns, UTC]",
    "version": "Int64",
    "tokens": "Int64",
    "cost": "Float64",
    "model": "string",
    "cached": "boolean",
    "finished_at": "datetime64[ns, UTC]",
}
EXPECTED_SQL_TYPES = {
    "id": "VARCHAR",
    "created_at": "TIMESTAMP WITH TIME ZONE",
    "version": "BIGINT",
    "tokens": "BIGINT",
    "cost": "DOUBLE",
    "model": "VARCHAR",
    "cached": "BOOLEAN",
    "finished_at": "TIMESTAMP WITH TIME ZONE",
}


# --------------------------------------------------------------------------------------------
# Helpers


def materialize_events(
    db: Path,
    *,
    partition: str | None = None,
    start: str | None = None,
    end: str | None = None,
    lock_timeout_seconds: float = 120.0,
    raise_on_error: bool = True,
    connection_config: dict | None = None,
    instance: dg.DagsterInstance | None = None,
    **config,
) -> dg.ExecuteInProcessResult:
    """Materializes ``iom_events`` for one partition, or for the range ``start``..``end`` in a
    single run (what ``--partition-range`` and single-run backfills launch)."""
    kwargs: dict = {}
    if partition is not None:
        kwargs["partition_key"] = partition
    else:
        kwargs["tags"] = {
            "dagster/asset_partition_range_start": start,
            "dagster/asset_partition_range_end": end,
        }
    return dg.materialize(
        [ia.iom_events],
        resources={"io_manager": ia.io_manager(str(db), lock_timeout_seconds, connection_config)},
        run_config={"ops": {"cloudglue__iom_events": {"config": config}}},
        raise_on_error=raise_on_error,
        instance=instance,
        **kwargs,
    )


def load_through(db: Path, reader: dg.AssetsDefinition, **kwargs) -> pd.DataFrame:
    """Runs a downstream asset and returns the frame the I/O manager loaded for it."""
    ia.LOADED.clear()
    dg.materialize(
        [ia.iom_events, ia.iom_snapshot, reader],
        selection=[reader],
        resources={"io_manager": ia.io_manager(str(db))},
        **kwargs,
    )
    assert len(ia.LOADED) == 1
    return ia.LOADED[0]


def query(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        return conn.execute(sql).fetchall()


def versions_by_id(db: Path) -> dict[str, int]:
    """``{id: version}`` of every row; fails on duplicate ids."""
    rows = query(db, f"SELECT id, version FROM {TABLE}")
    ids = [r[0] for r in rows]
    assert len(ids) == len(set(ids)), f"duplicate rows: {sorted(ids)}"
    return {i: v for i, v in rows}


def expected(days: dict[str, int]) -> dict[str, int]:
    """``{id: version}`` for three rows on each day, as ``iom_events`` writes them."""
    return {f"{day}-{slot}": version for day, version in days.items() for slot in ia.SLOTS}


def sql_types(db: Path, table: str = ia.TABLE) -> dict[str, str]:
    return dict(
        query(
            db,
            "SELECT column_name, data_type FROM duckdb_columns()"
            f" WHERE schema_name = '{ia.SCHEMA}' AND table_name = '{table}' ORDER BY column_index",
        )
    )


def failed_at_once(result: dg.ExecuteInProcessResult) -> SerializableErrorInfo:
    """The error of a run whose one step failed without a retry (every test asset has a
    ``RetryPolicy``: a retried error shows as STEP_UP_FOR_RETRY, after a 30 s delay)."""
    assert not result.success
    retried = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert retried == [], f"the step was retried: {retried[0].message}"
    failures = result.get_step_failure_events()
    assert len(failures) == 1
    return failures[0].event_specific_data.error


def materialization_metadata(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    return {
        e.materialization.partition: dict(e.materialization.metadata) for e in result.get_asset_materialization_events()
    }


def run_helper(db: Path, *args: str, tz: str = "UTC", **popen) -> subprocess.Popen:
    """Starts ``tests/iom_assets.py`` (one materialization) in a fresh process."""
    env = {**os.environ, "TZ": tz, "PYTHONPATH": str(TESTS_DIR)}
    return subprocess.Popen(
        [sys.executable, str(HELPER), "--db", str(db), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )


def finish(proc: subprocess.Popen, timeout: float = 60) -> str:
    output, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"subprocess failed ({proc.returncode}):\n{output[-4000:]}"
    return output


def hold_lock(db: Path, seconds: float, read_only: bool = False) -> subprocess.Popen:
    """Another process opening the file, as a run or a DuckDB shell would."""
    code = (
        "import duckdb, sys, time\n"
        f"conn = duckdb.connect({str(db)!r}, read_only={read_only})\n"
        "print('locked', flush=True)\n"
        f"time.sleep({seconds})\n"
        "conn.close()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.fixture
def db(tmp_path: Path) -> Path:
    # In a directory that does not exist yet: the I/O manager creates it.
    return tmp_path / "data" / "iom.duckdb"


# --------------------------------------------------------------------------------------------
# Partition replacement


def test_rematerializing_a_day_replaces_exactly_that_day(db: Path) -> None:
    materialize_events(db, start="2026-01-01", end="2026-01-03", version=1)
    assert versions_by_id(db) == expected({"2026-01-01": 1, "2026-01-02": 1, "2026-01-03": 1})

    result = materialize_events(db, partition="2026-01-02", version=2)
    result = materialize_events(db, partition="2026-01-02", version=3)

    # Rows at 00:00:00.000 and 23:59:59.999 of the day were replaced; those of the
    # neighbours, a millisecond and a second away, were not; nothing is duplicated.
    assert versions_by_id(db) == expected({"2026-01-01": 1, "2026-01-02": 3, "2026-01-03": 1})
    assert query(db, f"SELECT min(created_at), max(created_at) FROM {TABLE} WHERE version = 3") == [
        (pd.Timestamp("2026-01-02", tz="UTC"), pd.Timestamp("2026-01-02 23:59:59.999", tz="UTC"))
    ]
    assert sql_types(db) == EXPECTED_SQL_TYPES

    metadata = materialization_metadata(result)["2026-01-02"]
    assert metadata["dagster/partition_row_count"].value == 3
    assert metadata["dagster/table_name"].value == f"iom.{TABLE}"
    assert "dagster/row_count" not in metadata
    assert [c.name for c in metadata["dagster/column_schema"].value.columns] == ia.COLUMNS


def test_range_run_replaces_and_loads_the_whole_window(db: Path) -> None:
    materialize_events(db, start="2026-01-01", end="2026-01-05", version=1)

    # The range's first day now has no rows at all: the delete must still cover it.
    result = materialize_events(db, start="2026-01-02", end="2026-01-04", version=2, empty_days=["2026-01-02"])
    assert versions_by_id(db) == expected({"2026-01-01": 1, "2026-01-03": 2, "2026-01-04": 2, "2026-01-05": 1})

    # No partition of a range run claims the range's row count as its own.
    metadata = materialization_metadata(result)
    assert sorted(metadata) == ["2026-01-02", "2026-01-03", "2026-01-04"]
    for partition_metadata in metadata.values():
        assert "dagster/row_count" not in partition_metadata
        assert "dagster/partition_row_count" not in partition_metadata
        assert "rows_written" not in partition_metadata  # a range total plotted on every day misleads
        assert partition_metadata["dagster/table_name"].value == f"iom.{TABLE}"

    # A partition mapping loading 2026-01-03..05 reads the whole window, in the stored dtypes.
    frame = load_through(db, ia.iom_window_reader, partition_key="2026-01-05")
    assert sorted(frame["id"]) == sorted(expected({"2026-01-03": 2, "2026-01-04": 2, "2026-01-05": 1}))
    assert {c: str(t) for c, t in frame.dtypes.items()} == EXPECTED_DTYPES

    # A range run of the reader loads the same range of its upstream.
    frame = load_through(
        db,
        ia.iom_day_reader,
        tags={
            "dagster/asset_partition_range_start": "2026-01-01",
            "dagster/asset_partition_range_end": "2026-01-03",
        },
    )
    assert sorted(frame["id"]) == sorted(expected({"2026-01-01": 1, "2026-01-03": 2}))


@pytest.mark.processes
def test_partition_range_from_the_dagster_cli(db: Path, tmp_path: Path) -> None:
    materialize_events(db, start="2026-01-01", end="2026-01-04", version=1)
    env = {
        **os.environ,
        "DAGSTER_IOM_DB": str(db),
        "DAGSTER_HOME": str(tmp_path),
        "PYTHONPATH": str(TESTS_DIR),
    }
    (tmp_path / "dagster.yaml").write_text("")
    completed = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "asset",
            "materialize",
            "-f",
            str(HELPER),
            "--select",
            'key:"cloudglue/iom_events"',
            "--partition-range",
            "2026-01-02...2026-01-03",
            "--config-json",
            json.dumps({"ops": {"cloudglue__iom_events": {"config": {"version": 2}}}}),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert versions_by_id(db) == expected({"2026-01-01": 1, "2026-01-02": 2, "2026-01-03": 2, "2026-01-04": 1})


# --------------------------------------------------------------------------------------------
# Empty frames


def test_empty_day_creates_the_table_with_its_columns(db: Path) -> None:
    materialize_events(db, partition="2026-01-02", empty_days=["2026-01-02"])

    assert sql_types(db) == EXPECTED_SQL_TYPES
    assert query(db, f"SELECT count(*) FROM {TABLE}") == [(0,)]
    frame = load_through(db, ia.iom_day_reader, partition_key="2026-01-02")
    assert frame.empty
    assert {c: str(t) for c, t in frame.dtypes.items()} == EXPECTED_DTYPES


def test_empty_day_removes_stale_rows(db: Path) -> None:
    materialize_events(db, start="2026-01-01", end="2026-01-04", version=1)

    result = materialize_events(db, partition="2026-01-02", empty_days=["2026-01-02"])
    assert materialization_metadata(result)["2026-01-02"]["dagster/partition_row_count"].value == 0
    # A frame without even columns (pd.DataFrame()) still clears its day.
    materialize_events(db, partition="2026-01-03", mode="no_columns")

    assert versions_by_id(db) == expected({"2026-01-01": 1, "2026-01-04": 1})
    frame = load_through(db, ia.iom_day_reader, partition_key="2026-01-02")
    assert frame.empty and list(frame.columns) == ia.COLUMNS


# --------------------------------------------------------------------------------------------
# Atomicity


def test_failed_insert_leaves_the_previous_rows(db: Path) -> None:
    materialize_events(db, start="2026-01-01", end="2026-01-03", version=1)
    before = query(db, f"SELECT * FROM {TABLE} ORDER BY id")

    # tokens holds 1e20, out of the table's BIGINT range: the INSERT fails after the day's
    # DELETE and after the new column's ALTER TABLE ran in the same transaction.
    result = materialize_events(db, partition="2026-01-02", version=2, mode="overflow", raise_on_error=False)
    error = failed_at_once(result)
    assert error.cls_name == DuckDBWriteError.__name__
    assert (
        f"Writing {TABLE} (partition 2026-01-02) to DuckDB database {db.resolve()} failed; the"
        " previous rows are kept. DuckDB said: Conversion Error: Type DOUBLE with value 1e+20 can't"
        " be cast because the value is out of range for the destination type INT64 when casting"
        " from source column tokens. Row at fault: id '2026-01-02-noon', column 'tokens' (1e+20 is"
        " out of range for the column's type)."
    ) in error.message, error.message

    assert query(db, f"SELECT * FROM {TABLE} ORDER BY id") == before
    assert sql_types(db) == EXPECTED_SQL_TYPES  # no brand_new column either


def test_failed_replace_of_an_unpartitioned_table_leaves_it(db: Path) -> None:
    def snapshot(mode: str, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [ia.iom_snapshot],
            resources={"io_manager": ia.io_manager(str(db))},
            run_config={"ops": {"cloudglue__iom_snapshot": {"config": {"mode": mode}}}},
            raise_on_error=raise_on_error,
        )

    result = snapshot("v1")
    assert materialization_metadata(result)[None]["dagster/row_count"].value == 3
    assert not snapshot("bad_type", raise_on_error=False).success
    assert query(db, f"SELECT name, n FROM {ia.SCHEMA}.iom_snapshot ORDER BY name") == [("a", 1), ("b", 2), ("c", 3)]

    # A column without a type of its own keeps the table's.
    snapshot("unknown_n")
    assert sql_types(db, "iom_snapshot") == {"name": "VARCHAR", "n": "BIGINT"}

    # A successful run replaces the whole table, columns and types included.
    snapshot("v2")
    frame = load_through(db, ia.iom_snapshot_reader)
    pd.testing.assert_frame_equal(
        frame,
        pd.DataFrame(
            {
                "n": pd.array(["one", "two"], dtype="string"),
                "name": pd.array(["x", "y"], dtype="string"),
                "extra": pd.array([1.5, None], dtype="Float64"),
            }
        ),
    )

    snapshot("empty")
    frame = load_through(db, ia.iom_snapshot_reader)
    assert frame.empty and {c: str(t) for c, t in frame.dtypes.items()} == {"name": "string", "n": "Int64"}


def _locked_by(db: Path, pid: int) -> bool:
    """Whether ``pid`` holds a POSIX lock on ``db`` (read from /proc/locks; no lock taken)."""
    inode = f":{os.stat(db).st_ino} "
    return any(
        line.split()[4] == str(pid) and inode in line
        for line in Path("/proc/locks").read_text().splitlines()
        if len(line.split()) > 5
    )


@pytest.mark.processes
@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs Linux /proc/locks")
def test_killed_mid_write_keeps_previous_rows(db: Path, tmp_path: Path) -> None:
    rows = 4_000_000  # inserting takes ~1 s: long enough to be killed in the middle
    materialize_events(db, start="2026-01-04", end="2026-01-06", version=1)
    before = versions_by_id(db)
    marker = tmp_path / "returning"

    proc = run_helper(
        db,
        "--partition", "2026-01-05",
        "--config", json.dumps({"mode": "big", "rows": rows, "version": 2, "marker": str(marker)}),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, f"run ended before its asset returned:\n{proc.communicate()[0]}"
            assert time.monotonic() < deadline, "asset never returned"
            time.sleep(0.02)
        # The run takes the file lock only inside the I/O manager's write: once it holds it,
        # the transaction is open. Let the DELETE and part of the INSERT run, then kill.
        while not _locked_by(db, proc.pid):
            assert proc.poll() is None, "run ended before the I/O manager was seen writing"
            assert time.monotonic() < deadline, "the I/O manager never opened the database"
            time.sleep(0.005)
        time.sleep(0.15)
        assert proc.poll() is None, "run finished before the kill: make the frame bigger"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()

    # DuckDB replays its WAL on open: only committed transactions come back.
    after = versions_by_id(db)
    new_rows = len(after) - len(before)
    assert new_rows <= 0, "the write committed before the kill: make the frame bigger"
    assert after == before

    # The file takes the day again; its size is no longer the point (4M rows cost 8 s here).
    materialize_events(db, partition="2026-01-05", mode="big", rows=10_000, version=2)
    assert query(db, f"SELECT count(*), min(version), max(version) FROM {TABLE} WHERE id LIKE '2026-01-05-%'") == [
        (10_000, 2, 2)
    ]
    assert versions_by_id(db).keys() >= expected({"2026-01-04": 1, "2026-01-06": 1}).keys()


# --------------------------------------------------------------------------------------------
# Time zones


@pytest.mark.processes
def test_results_do_not_depend_on_the_local_time_zone(tmp_path: Path) -> None:
    zones = ["America/Los_Angeles", "Asia/Tokyo"]
    runs = {}
    for zone in zones:
        db = tmp_path / zone.replace("/", "_") / "iom.duckdb"
        runs[zone] = (db, tmp_path / f"{zone.replace('/', '_')}.json")
    # First write three days in each zone (in parallel: the zones use separate files).
    procs = [
        run_helper(db, "--partition", "2026-01-01", "--range-end", "2026-01-03", tz=zone)
        for zone, (db, _) in runs.items()
    ]
    for proc in procs:
        finish(proc)
    # Then re-write the middle day and load it back, still in that zone.
    procs = [
        run_helper(
            db,
            "--partition",
            "2026-01-02",
            "--config",
            json.dumps({"version": 2}),
            "--read-dump",
            str(dump),
            tz=zone,
        )  # fmt: skip
        for zone, (db, dump) in runs.items()
    ]
    for proc in procs:
        finish(proc)

    for zone, (db, dump) in runs.items():
        assert versions_by_id(db) == expected({"2026-01-01": 1, "2026-01-02": 2, "2026-01-03": 1}), zone
        loaded = json.loads(dump.read_text())
        assert loaded["versions"] == expected({"2026-01-02": 2}), zone
        assert loaded["created_at"] == [
            "2026-01-02 00:00:00+00:00",
            "2026-01-02 12:00:00+00:00",
            "2026-01-02 23:59:59.999000+00:00",
        ], zone
        assert loaded["dtypes"]["created_at"] == "datetime64[ns, UTC]", zone


# --------------------------------------------------------------------------------------------
# Columns and dtypes


def test_columns_are_matched_by_name_and_types_stay_stable(db: Path) -> None:
    materialize_events(db, partition="2026-01-01", version=1)
    # Columns in reverse order: a positional insert would put ids into finished_at.
    materialize_events(db, partition="2026-01-02", version=2, mode="swapped")
    # A new column is added to the table; earlier rows read NULL there.
    materialize_events(db, partition="2026-01-03", version=3, mode="new_column")
    # Optional columns entirely null, in nullable dtypes and in the object/NaN dtypes pandas
    # often produces for "no values": the table keeps its types.
    materialize_events(db, partition="2026-01-04", version=4, mode="all_null")
    materialize_events(db, partition="2026-01-05", version=5, mode="all_null_object")
    # Columns missing from the frame are stored as NULL.
    materialize_events(db, partition="2026-01-06", version=6, mode="missing_column")

    assert sql_types(db) == {**EXPECTED_SQL_TYPES, "latency_ms": "DOUBLE", "note": "VARCHAR"}
    frame = load_through(
        db,
        ia.iom_day_reader,
        tags={
            "dagster/asset_partition_range_start": "2026-01-01",
            "dagster/asset_partition_range_end": "2026-01-06",
        },
    )
    assert {c: str(t) for c, t in frame.dtypes.items()} == {
        **EXPECTED_DTYPES,
        "latency_ms": "Float64",
        "note": "string",
    }
    by_day = {day: group.sort_values("created_at") for day, group in frame.groupby(frame["id"].str[:10])}
    assert sorted(by_day) == [f"2026-01-0{d}" for d in range(1, 7)]

    for day, version in [("2026-01-01", 1), ("2026-01-02", 2)]:
        written = ia.day_rows(pd.Timestamp(day, tz="UTC"), version)
        got = by_day[day][ia.COLUMNS].reset_index(drop=True)
        pd.testing.assert_frame_equal(got, written, check_dtype=True)
        assert by_day[day]["latency_ms"].isna().all()
    assert by_day["2026-01-03"]["latency_ms"].tolist() == [12.5] * 3
    for day in ["2026-01-04", "2026-01-05"]:
        nulls = by_day[day][["tokens", "cost", "model", "cached", "finished_at"]]
        assert nulls.isna().all().all(), day
    assert by_day["2026-01-05"]["model"].isna().all()  # not the string 'nan'
    assert by_day["2026-01-06"][["model", "cost"]].isna().all().all()
    assert by_day["2026-01-06"]["tokens"].tolist() == [60, 61, pd.NA]


def test_columns_without_values_are_typed_by_their_dtype_in_every_duckdb_version(db: Path) -> None:
    # DuckDB types an object column from its values: with none, DuckDB 2 says "NULL" and 1.x
    # (all Python 3.10 gets) INTEGER. A "string" column is registered as objects, so an empty
    # first day created id as INTEGER there and the next day's ids failed to cast.
    def write(frame: pd.DataFrame, table: str, replace_table: bool = False) -> None:
        with duckdb.connect(str(db)) as conn:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {ia.SCHEMA}")
            write_frame(conn, frame, schema=ia.SCHEMA, table=table, replace_table=replace_table)

    db.parent.mkdir(parents=True)
    empty = pd.DataFrame(
        {
            "id": pd.Series([], dtype="string"),
            "tokens": pd.Series([], dtype="Int64"),
            "note": pd.Series([], dtype=object),
        }
    )
    write(empty, "from_empty")
    write(empty, "replaced", replace_table=True)
    all_null = pd.DataFrame(
        {
            "id": pd.Series([pd.NA, pd.NA], dtype="string"),
            "tokens": pd.Series([None, float("nan")], dtype=object),
            "note": pd.Series([None, None], dtype=object),
        }
    )
    write(all_null, "from_nulls")
    expected_types = {"id": "VARCHAR", "tokens": "BIGINT", "note": "VARCHAR"}
    assert sql_types(db, "from_empty") == expected_types
    assert sql_types(db, "replaced") == expected_types
    # No value to type tokens by: VARCHAR, as for note.
    assert sql_types(db, "from_nulls") == {**expected_types, "tokens": "VARCHAR"}

    # The next days have values; all-null columns then keep the table's types.
    write(pd.DataFrame({"id": pd.Series(["a"], dtype="string"), "tokens": [7], "note": ["x"]}), "from_empty")
    write(all_null.assign(tokens=pd.Series([None, None], dtype=object)), "from_empty")
    write(pd.DataFrame({"id": pd.Series(["b"], dtype="string"), "note": ["y"]}), "from_nulls")
    assert sql_types(db, "from_empty") == expected_types
    assert query(db, f"SELECT id, tokens, note FROM {ia.SCHEMA}.from_empty ORDER BY id") == [
        ("a", 7, "x"),
        (None, None, None),
        (None, None, None),
    ]
    assert query(db, f"SELECT id, note FROM {ia.SCHEMA}.from_nulls ORDER BY id") == [
        ("b", "y"),
        (None, None),
        (None, None),
    ]


# --------------------------------------------------------------------------------------------
# Locks and concurrency


@pytest.mark.processes
def test_waits_while_another_process_holds_the_lock(db: Path) -> None:
    materialize_events(db, partition="2026-01-01")
    holder = hold_lock(db, seconds=2)
    try:
        started = time.monotonic()
        materialize_events(db, partition="2026-01-02")
        waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.communicate()
    assert waited > 1.0, "the run did not wait for the lock (did the holder really hold it?)"
    assert versions_by_id(db) == expected({"2026-01-01": 1, "2026-01-02": 1})


@pytest.mark.processes
def test_reads_wait_for_writers_and_share_with_readers(db: Path) -> None:
    materialize_events(db, partition="2026-01-01")

    holder = hold_lock(db, seconds=1.5)
    try:
        started = time.monotonic()
        frame = load_through(db, ia.iom_day_reader, partition_key="2026-01-01")
        waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.communicate()
    assert waited > 0.7 and len(frame) == 3

    # Loads open the file read-only: another reader does not hold them up...
    holder = hold_lock(db, seconds=30, read_only=True)
    try:
        started = time.monotonic()
        assert len(load_through(db, ia.iom_day_reader, partition_key="2026-01-01")) == 3
        assert time.monotonic() - started < 5
    finally:
        holder.kill()
        holder.communicate()

    # ...and a plain connection already open in this process (a notebook's) is shared.
    with duckdb.connect(str(db)):
        assert len(load_through(db, ia.iom_day_reader, partition_key="2026-01-01")) == 3
        materialize_events(db, partition="2026-01-02")
    assert versions_by_id(db) == expected({"2026-01-01": 1, "2026-01-02": 1})


@pytest.mark.processes
def test_lock_timeout_fails_with_an_error_naming_the_file(db: Path) -> None:
    """A held lock fails the run after lock_timeout_seconds, without step retries."""
    materialize_events(db, partition="2026-01-01")
    before = query(db, f"SELECT * FROM {TABLE} ORDER BY id")
    holder = hold_lock(db, seconds=60)
    try:
        started = time.monotonic()
        result = materialize_events(db, partition="2026-01-01", version=2, lock_timeout_seconds=1, raise_on_error=False)
        elapsed = time.monotonic() - started
    finally:
        holder.kill()
        holder.communicate()
    # The asset's RetryPolicy (3 retries, 30 s apart) is not applied: it would hold the run
    # for minutes, against the same holder.
    error = failed_at_once(result)
    assert 1 <= elapsed < 10
    assert error.cls_name == DuckDBLockTimeoutError.__name__
    assert str(db.resolve()) in error.message
    assert "another process" in error.message and "lock_timeout_seconds=1" in error.message
    assert query(db, f"SELECT * FROM {TABLE} ORDER BY id") == before


@pytest.mark.processes
def test_parallel_processes_write_one_partition_each(db: Path) -> None:
    # Four (it was eight, at twice the CPU), started together on a file none of them has created yet.
    days = [f"2026-01-0{d}" for d in range(1, 5)]
    procs = [run_helper(db, "--partition", day) for day in days]
    for proc in procs:
        finish(proc, timeout=120)
    assert versions_by_id(db) == expected({day: 1 for day in days})


# --------------------------------------------------------------------------------------------
# Configuration


def test_config_fields_and_defaults() -> None:
    manager = CloudglueDuckDBIOManager(database="x.duckdb", schema="s")
    assert manager.schema_ == "s"
    assert manager.lock_timeout_seconds == 120.0
    assert manager.connection_config == {}
    assert CloudglueDuckDBIOManager(database="x.duckdb").schema_ is None
    with pytest.raises(pydantic.ValidationError):
        CloudglueDuckDBIOManager(database="x.duckdb", lock_timeout_seconds=-1)


# --------------------------------------------------------------------------------------------
# Memory


def run_log(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> str:
    return "\n".join(record.user_message for record in instance.all_logs(result.run_id))


@pytest.mark.processes
def test_rows_too_long_for_the_default_memory_limit_are_retried_uncapped(db: Path) -> None:
    # 4,096 rows of 20,000-character non-ASCII texts: one batch of rows needs more than the
    # 32MB cap, for the write and again for the load.
    materialize_events(db, partition="2026-01-02", version=1)
    rows, chars = 4096, 20_000
    with dg.instance_for_test() as instance:
        result = materialize_events(
            db, partition="2026-01-02", mode="long_text", rows=rows, text_chars=chars, instance=instance
        )
        assert "ran out of memory under memory_limit=" in run_log(instance, result)
    stored = query(db, f"SELECT count(*), min(length(model)), sum(length(model)) FROM {TABLE}")
    expected_frame = ia.events_frame(
        pd.Timestamp("2026-01-02"),
        pd.Timestamp("2026-01-03"),
        ia.EventsConfig(mode="long_text", rows=rows, text_chars=chars),
    )
    lengths = expected_frame["model"].str.len()
    assert lengths.min() >= chars
    assert stored == [(rows, lengths.min(), lengths.sum())]  # the day's 3 earlier rows are gone

    loaded = load_through(db, ia.iom_day_reader, partition_key="2026-01-02")
    assert sorted(loaded["model"]) == sorted(expected_frame["model"])
    assert str(loaded["model"].dtype) == "string"


def test_a_memory_limit_you_set_fails_clearly_and_keeps_the_rows(db: Path) -> None:
    materialize_events(db, partition="2026-01-02", version=1)
    before = query(db, f"SELECT * FROM {TABLE} ORDER BY id")
    result = materialize_events(
        db,
        partition="2026-01-02",
        mode="long_text",
        rows=4096,
        text_chars=20_000,
        connection_config={"memory_limit": DEFAULT_MEMORY_LIMIT},
        raise_on_error=False,
    )
    assert not result.success
    error = result.get_step_failure_events()[0].event_specific_data.error
    assert error.cls_name == DuckDBMemoryLimitError.__name__
    message = error.to_string()
    assert "ran out of memory under memory_limit=30.5 MiB; the previous rows are kept" in message
    assert "Raise connection_config['memory_limit']" in message
    assert str(db.resolve()) in message
    assert query(db, f"SELECT * FROM {TABLE} ORDER BY id") == before


def test_a_file_of_an_older_storage_version_keeps_duckdbs_own_compression(db: Path) -> None:
    # Forced on a v1.0.0 file, zstd is stored uncompressed: the file would grow severalfold.
    db.parent.mkdir(parents=True)
    creator = duckdb.connect()
    creator.execute(f"ATTACH '{db}' AS old (STORAGE_VERSION 'v1.0.0')")
    creator.close()
    conn = open_connection(str(db), read_only=False, config={}, lock_timeout_seconds=1)
    try:
        assert conn.execute("SELECT current_setting('force_compression')").fetchall() == [("auto",)]
        conn.execute("CREATE TABLE t AS SELECT 'completion ' || (i % 50) AS text FROM range(200000) r(i)")
        conn.execute("CHECKPOINT")
        used = conn.execute(
            "SELECT DISTINCT compression FROM pragma_storage_info('t') WHERE segment_type = 'VARCHAR'"
        ).fetchall()
    finally:
        conn.close()
    assert used and ("Uncompressed",) not in used


def test_a_held_writer_sees_the_columns_its_own_writes_add(db: Path) -> None:
    # The day store's connection remembers the catalog; its own CREATE and ALTER are forgotten
    # as they are made, so a later day's insert and types check see the new column.
    db.parent.mkdir(parents=True)
    conn = open_connection(str(db), read_only=False, config={}, lock_timeout_seconds=1)
    try:
        remember_catalog(conn)
        conn.execute("CREATE SCHEMA s")
        write_frame(conn, pd.DataFrame({"id": ["a"]}), schema="s", table="t", replace_table=False)
        assert list(table_columns(conn, "s", "t") or {}) == ["id"]
        write_frame(conn, pd.DataFrame({"id": ["b"], "n": [1]}), schema="s", table="t", replace_table=False)
        assert table_columns(conn, "s", "t") == {"id": ("id", "VARCHAR"), "n": ("n", "BIGINT")}
        with pytest.raises(DuckDBSchemaError, match="n is BIGINT in the table, DOUBLE in the frame"):
            write_frame(conn, pd.DataFrame({"id": ["c"], "n": [2.5]}), schema="s", table="t", replace_table=False)
    finally:
        conn.close()
    assert query(db, "SELECT id, n FROM s.t ORDER BY id") == [("a", None), ("b", 1)]


def test_a_frame_with_two_columns_of_one_name_is_refused_before_anything_is_written(db: Path) -> None:
    db.parent.mkdir(parents=True)
    frame = pd.DataFrame([["a", "b", 1]], columns=["id", "id", "n"]).astype({"id": "string"})
    conn = open_connection(str(db), read_only=False, config={}, lock_timeout_seconds=1)
    try:
        conn.execute("CREATE SCHEMA s")
        with pytest.raises(ValueError, match="more than one column named id; columns are written by name"):
            write_frame(conn, frame, schema="s", table="t", replace_table=False)
        assert table_columns(conn, "s", "t") is None
    finally:
        conn.close()


def test_text_columns_are_written_as_they_are_in_a_frame_with_its_own_index(db: Path) -> None:
    # Text columns are handed to DuckDB as objects (one new frame, the index kept): every
    # value, <NA> as NULL, in its row beside the other columns.
    db.parent.mkdir(parents=True)
    frame = pd.DataFrame(
        {"id": pd.array(["a", "b", None], dtype="string"), "n": [1, 2, 3], "note": pd.array(["x", None, "é|z"])},
        index=[10, 5, 7],
    ).astype({"note": "string"})
    conn = open_connection(str(db), read_only=False, config={}, lock_timeout_seconds=1)
    try:
        conn.execute("CREATE SCHEMA s")
        write_frame(conn, frame, schema="s", table="t", replace_table=False)
    finally:
        conn.close()
    assert query(db, "SELECT n, id, note FROM s.t ORDER BY n") == [(1, "a", "x"), (2, "b", None), (3, None, "é|z")]
    assert query(db, "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 't'") == [
        ("id", "VARCHAR"),
        ("n", "BIGINT"),
        ("note", "VARCHAR"),
    ]


def test_loaded_columns_get_nullable_dtypes_whatever_their_names_and_index() -> None:
    # One new frame of the converted columns; a frame with two columns of one name (a query's
    # own SELECT a, a) is converted column by column, each in its place.
    frame = pd.DataFrame({"n": [1, 2], "t": ["x", None], "f": [0.5, None]}, index=[7, 3])
    loaded = to_nullable_dtypes(frame, ["BIGINT", "VARCHAR", "DOUBLE"])
    assert loaded.dtypes.astype(str).tolist() == ["Int64", "string", "Float64"]
    assert loaded.index.tolist() == [7, 3] and loaded["t"].isna().tolist() == [False, True]
    twice = to_nullable_dtypes(frame[["n", "t"]].set_axis(["a", "a"], axis=1), ["BIGINT", "VARCHAR"])
    assert list(twice.columns) == ["a", "a"] and twice.dtypes.astype(str).tolist() == ["Int64", "string"]
    unknown = to_nullable_dtypes(frame, ["HUGEINT", "UUID", "INTERVAL"])  # kept as DuckDB gave them
    assert unknown is frame


def test_a_held_writer_forgets_a_table_whose_creation_was_rolled_back(db: Path) -> None:
    db.parent.mkdir(parents=True)
    client = UTCDuckDbClient(database=str(db), connection_config={}, lock_timeout_seconds=1)
    context = dg.build_output_context(asset_key=dg.AssetKey(["s", "t"]))
    table_slice = TableSlice(table="t", schema="s", database=str(db))
    conn = open_connection(str(db), read_only=False, config={}, lock_timeout_seconds=1)
    try:
        remember_catalog(conn)
        conn.execute("CREATE SCHEMA s")
        with pytest.raises(DuckDBWriteError), client.transaction(context, table_slice, conn):
            write_frame(conn, pd.DataFrame({"id": ["a"]}), schema="s", table="t", replace_table=False)
            assert table_columns(conn, "s", "t") is not None  # as the handler asks, for its metadata
            conn.execute("SELECT * FROM s.missing")  # fails the day after its table was created
        # Remembered, the rolled-back table would make this an INSERT into nothing.
        with client.transaction(context, table_slice, conn):
            write_frame(conn, pd.DataFrame({"id": ["b"]}), schema="s", table="t", replace_table=False)
    finally:
        conn.close()
    assert query(db, "SELECT id FROM s.t") == [("b",)]


def test_each_checkpoint_writes_its_own_rows_instead_of_merging_the_row_groups_before(db: Path) -> None:
    # With DuckDB's vacuum (max_vacuum_tasks=100) the three writes below end in one row group:
    # each checkpoint rewrote the rows before it. Without, a day written again still drops
    # its old row group whole.
    db.parent.mkdir(parents=True)

    def write(days: range, **config) -> None:
        conn = open_connection(str(db), read_only=False, config=config, lock_timeout_seconds=1)
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS t (day INTEGER, text VARCHAR)")
            for day in days:
                conn.execute("DELETE FROM t WHERE day = ?", [day])
                conn.execute("INSERT INTO t SELECT ?, 'completion ' || i FROM range(5000) r(i)", [day])
        finally:
            conn.close()  # a checkpoint

    def row_groups() -> int:
        conn = duckdb.connect(str(db), read_only=True)
        try:
            return conn.execute("SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('t')").fetchall()[0][0]
        finally:
            conn.close()

    for days in (range(0, 2), range(2, 4), range(4, 6)):
        write(days)
    assert row_groups() == 3
    write(range(2, 4))  # the middle checkpoint's days again
    assert row_groups() == 3
    assert query(db, "SELECT count(*), count(DISTINCT day) FROM t") == [(30000, 6)]
    write(range(6, 8), max_vacuum_tasks=100)
    assert row_groups() == 1


def test_a_long_write_checkpoints_as_its_wal_passes_the_threshold_so_its_rows_stay_under_the_cap(
    db: Path,
) -> None:
    # A day store holds its connection for several days' commits. Each commit below adds
    # about 2 MiB to the WAL; the one that takes it past the 16MB threshold checkpoints
    # instead, so the rows not yet checkpointed (the WAL's) stay below the 32MB memory cap.
    # At 1GB the WAL held all 24 MiB here, and 60 days of a range spilled 75 MiB to <file>.tmp.
    db.parent.mkdir(parents=True)
    conn = open_connection(str(db), read_only=False, config={}, lock_timeout_seconds=1)
    wal = Path(f"{db}.wal")
    largest = 0
    try:
        conn.execute("CREATE TABLE t (day INTEGER, text VARCHAR)")
        for day in range(12):
            conn.execute("INSERT INTO t SELECT ?, repeat(md5(i || '-' || ?), 32) FROM range(2000) r(i)", [day, day])
            largest = max(largest, wal.stat().st_size if wal.exists() else 0)
    finally:
        conn.close()
    assert 0 < largest < 20 * 2**20
    assert query(db, "SELECT count(*), count(DISTINCT day) FROM t") == [(24000, 12)]


def test_connections_are_capped_and_writes_use_one_thread_zstd_duckdbs_checkpoint_threshold_and_no_vacuum(
    db: Path,
) -> None:
    db.parent.mkdir(parents=True)

    def settings(read_only: bool, **config) -> tuple:
        conn = open_connection(str(db), read_only=read_only, config=config, lock_timeout_seconds=1)
        try:
            return conn.execute(
                "SELECT current_setting('memory_limit'), current_setting('threads'), current_setting('TimeZone'),"
                " current_setting('checkpoint_threshold'), current_setting('force_compression'),"
                " current_setting('max_vacuum_tasks')"
            ).fetchall()[0]
        finally:
            conn.close()

    machine_threads = duckdb.connect().execute("SELECT current_setting('threads')").fetchall()[0][0]
    # zstd where the file's storage version has it: every file DuckDB 2 creates (1.x: v1.0.0).
    zstd = "zstd" if int(duckdb.__version__.split(".")[0]) >= 2 else "auto"
    assert settings(False) == ("30.5 MiB", 1, "UTC", "15.2 MiB", zstd, 0)
    assert settings(True)[:3] == ("30.5 MiB", machine_threads, "UTC")
    # What connection_config sets wins.
    overrides = dict(memory_limit="1GB", threads=2, checkpoint_threshold="1GB", force_compression="auto")
    assert settings(False, **overrides, max_vacuum_tasks=100) == ("953.6 MiB", 2, "UTC", "953.6 MiB", "auto", 100)
