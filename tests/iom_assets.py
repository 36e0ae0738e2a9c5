"""Test assets for ``tests/test_io_manager.py``, importable from subprocesses.

Run as a script it materializes ``iom_events`` once in a fresh process (the I/O manager's
behaviour across processes, time zones and kills can only be seen that way)::

    python tests/iom_assets.py --db DB --partition 2026-01-02 [--range-end 2026-01-03]
        [--config '{"version": 2}'] [--lock-timeout 5] [--read-dump out.json]

With ``DAGSTER_IOM_DB`` set, ``defs`` serves ``dagster asset materialize -f tests/iom_assets.py``.
"""

# No "from __future__ import annotations": Dagster reads the Config annotations at runtime.
import argparse
import json
import os
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from cloudglue_dagster.io_managers.duckdb import CloudglueDuckDBIOManager

PARTITIONS = dg.DailyPartitionsDefinition(start_date="2026-01-01", timezone="UTC")
SCHEMA = "cloudglue"
TABLE = "iom_events"

# Offsets of the rows written for each day: both edges of the day, to catch off-by-one and
# time-zone shifts at the boundaries, and midday.
SLOTS = {
    "start": pd.Timedelta(0),
    "noon": pd.Timedelta(hours=12),
    "end": pd.Timedelta(hours=23, minutes=59, seconds=59, milliseconds=999),
}

COLUMNS = ["id", "created_at", "version", "tokens", "cost", "model", "cached", "finished_at"]

# On every asset here: an error the I/O manager raises must fail the step at once, so a test
# seeing a STEP_UP_FOR_RETRY event (or waiting 30 s) has found an error that is not permanent.
RETRY_POLICY = dg.RetryPolicy(max_retries=3, delay=30)


class EventsConfig(dg.Config):
    """How ``iom_events`` builds its frame (every mode still covers the whole window)."""

    version: int = 1
    # normal | swapped | new_column | all_null | all_null_object | missing_column | bad_type
    # | overflow | surrogate | fractional | float_tokens | no_columns | big | long_text
    mode: str = "normal"
    # Days of the window (YYYY-MM-DD) that get no rows at all.
    empty_days: list[str] = []
    # Columns left out of the frame, whatever the mode.
    drop_columns: list[str] = []
    # Rows of the "big" and "long_text" frames.
    rows: int = 0
    # Characters of each "long_text" model value.
    text_chars: int = 0
    # File written just before the asset returns (the kill test waits for it).
    marker: str = ""
    # Mark the run CANCELING before returning, as the UI's Terminate does.
    terminate_run: bool = False
    # Replace the file at clobber_path, after the run's resources were checked: "garbage"
    # (a file that is not a DuckDB database) or "directory".
    clobber: str = ""
    clobber_path: str = ""


def day_rows(day: pd.Timestamp, version: int) -> pd.DataFrame:
    """The three rows of ``day`` (UTC midnight) for ``version``, in the canonical dtypes."""
    n = len(SLOTS)
    return pd.DataFrame(
        {
            "id": pd.array([f"{day:%Y-%m-%d}-{slot}" for slot in SLOTS], dtype="string"),
            "created_at": pd.DatetimeIndex([day + offset for offset in SLOTS.values()]),
            "version": pd.array([version] * n, dtype="Int64"),
            "tokens": pd.array([10 * version + i for i in range(n - 1)] + [None], dtype="Int64"),
            "cost": pd.array([0.5 * version + i for i in range(n - 1)] + [None], dtype="Float64"),
            "model": pd.array([f"model-v{version}"] * (n - 1) + [None], dtype="string"),
            "cached": pd.array([True, False, None], dtype="boolean"),
            "finished_at": pd.Series(
                [day + pd.Timedelta(seconds=1), pd.NaT, pd.NaT], dtype="datetime64[ns, UTC]"
            ).array,
        }
    )


def big_frame(day: pd.Timestamp, rows: int, version: int) -> pd.DataFrame:
    """``rows`` rows spread over ``day``: large enough that inserting takes a while."""
    index = np.arange(rows)
    return pd.DataFrame(
        {
            "id": pd.array(np.char.add(f"{day:%Y-%m-%d}-big-", index.astype(str)), dtype="string"),
            "created_at": day + pd.to_timedelta(index % 86_400_000, unit="ms"),
            "version": pd.array(np.full(rows, version), dtype="Int64"),
            "tokens": pd.array(index, dtype="Int64"),
            "cost": pd.array(index * 0.001, dtype="Float64"),
            "model": pd.array(np.where(index % 2 == 0, "model-a", "model-b"), dtype="string"),
            "cached": pd.array(index % 3 == 0, dtype="boolean"),
            "finished_at": day + pd.to_timedelta(index % 86_400_000, unit="ms"),
        }
    )


def events_frame(start: pd.Timestamp, end: pd.Timestamp, config: EventsConfig) -> pd.DataFrame:
    days = [d for d in pd.date_range(start, end, freq="D", inclusive="left")]
    if config.mode == "big":
        return pd.concat([big_frame(d, config.rows, config.version) for d in days])
    if config.mode == "long_text":
        # Long non-ASCII texts: a batch of rows then outgrows the I/O manager's default memory_limit.
        frame = pd.concat([big_frame(d, config.rows, config.version) for d in days], ignore_index=True)
        unit = "é" + "x" * 9
        frame["model"] = pd.array(
            [f"{i}:" + unit * (config.text_chars // len(unit)) for i in range(len(frame))], dtype="string"
        )
        return frame
    if config.mode == "no_columns":
        return pd.DataFrame()
    parts = [day_rows(d, config.version) for d in days if f"{d:%Y-%m-%d}" not in config.empty_days]
    frame = pd.concat(parts, ignore_index=True) if parts else day_rows(start, 0).iloc[0:0]
    if config.mode == "swapped":
        frame = frame[list(reversed(frame.columns))]
    elif config.mode == "new_column":
        frame["latency_ms"] = pd.array([12.5] * len(frame), dtype="Float64")
        frame["note"] = pd.Series([None] * len(frame), dtype=object)  # no type of its own
    elif config.mode == "all_null":
        for column in ["tokens", "cost", "model", "cached", "finished_at"]:
            frame[column] = pd.Series([None] * len(frame), dtype=frame[column].dtype)
    elif config.mode == "all_null_object":
        # What pandas code often produces for "no values": object None and float NaN.
        frame["tokens"] = np.nan
        frame["cost"] = pd.Series([None] * len(frame), dtype=object)
        frame["model"] = np.nan
        frame["cached"] = pd.Series([None] * len(frame), dtype=object)
        frame["finished_at"] = pd.Series([None] * len(frame), dtype=object)
    elif config.mode == "missing_column":
        frame = frame.drop(columns=["model", "cost"])
    elif config.mode == "bad_type":
        # tokens is BIGINT in the table: text would have to be cast into numbers.
        frame["tokens"] = pd.array(["not-a-number"] * len(frame), dtype="string")
        frame["brand_new"] = pd.array([1] * len(frame), dtype="Int64")
    elif config.mode == "overflow":
        # Whole floats (what pandas makes of integers with a missing value) fit tokens' BIGINT,
        # but 1e20 is out of its range: the INSERT fails after the slice's DELETE and after
        # brand_new was added, in the same transaction.
        frame["tokens"] = [1e20 if i.endswith("-noon") else np.nan for i in frame["id"]]
        frame["brand_new"] = pd.array([1] * len(frame), dtype="Int64")
    elif config.mode == "surrogate":
        # A lone surrogate, as a JSON "\ud800" escape decodes to: not encodable as UTF-8.
        frame["model"] = frame["model"].where(~frame["id"].str.endswith("-noon"), "model-\ud800-x")
    elif config.mode == "fractional":
        # A cast into tokens' BIGINT would round 10.5 silently.
        frame["tokens"] = [10.5 if i.endswith("-noon") else 3.0 for i in frame["id"]]
    elif config.mode == "float_tokens":
        # Integers as pandas often hands them over: float64 with NaN, and a narrower Int32.
        frame["tokens"] = [float(10 * config.version + i) for i in range(len(frame) - 1)] + [np.nan]
        frame["version"] = frame["version"].astype("Int32")
    return frame.drop(columns=config.drop_columns)


@dg.asset(
    partitions_def=PARTITIONS,
    key_prefix=[SCHEMA],
    metadata={"partition_expr": "created_at"},
    backfill_policy=dg.BackfillPolicy.single_run(),
    retry_policy=RETRY_POLICY,
)
def iom_events(context: dg.AssetExecutionContext, config: EventsConfig) -> pd.DataFrame:
    window = context.partition_time_window
    frame = events_frame(pd.Timestamp(window.start), pd.Timestamp(window.end), config)
    if config.clobber == "garbage":
        Path(config.clobber_path).write_bytes(b"id,tokens\n1,2\n")
    elif config.clobber == "directory":
        Path(config.clobber_path).unlink()
        Path(config.clobber_path).mkdir()
    if config.terminate_run:
        context.instance.report_run_canceling(context.run)
    if config.marker:
        Path(config.marker).write_text("returning")
    return frame


class ReaderConfig(dg.Config):
    # JSON file the loaded frame is described in (for subprocess runs).
    dump_path: str = ""


LOADED: list[pd.DataFrame] = []


def describe_frame(frame: pd.DataFrame) -> dict:
    return {
        "ids": sorted(frame["id"].tolist()) if "id" in frame else [],
        "versions": {i: int(v) for i, v in zip(frame.get("id", []), frame.get("version", []))},
        "created_at": sorted(str(t) for t in frame.get("created_at", [])),
        "dtypes": {c: str(t) for c, t in frame.dtypes.items()},
    }


@dg.asset(
    partitions_def=PARTITIONS,
    key_prefix=[SCHEMA],
    backfill_policy=dg.BackfillPolicy.single_run(),
    ins={"iom_events": dg.AssetIn(key=[SCHEMA, "iom_events"])},
    retry_policy=RETRY_POLICY,
)
def iom_day_reader(config: ReaderConfig, iom_events: pd.DataFrame) -> None:
    """Loads the same partition(s) of ``iom_events``."""
    LOADED.append(iom_events)
    if config.dump_path:
        Path(config.dump_path).write_text(json.dumps(describe_frame(iom_events)))


@dg.asset(
    partitions_def=PARTITIONS,
    key_prefix=[SCHEMA],
    backfill_policy=dg.BackfillPolicy.single_run(),
    ins={
        "iom_events": dg.AssetIn(
            key=[SCHEMA, "iom_events"],
            partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-2),
        )
    },
    retry_policy=RETRY_POLICY,
)
def iom_window_reader(iom_events: pd.DataFrame) -> None:
    """Loads a three-day window of ``iom_events`` ending on its own partition."""
    LOADED.append(iom_events)


class SnapshotConfig(dg.Config):
    # v1 | v2 | unknown_n | empty | bad_type
    mode: str = "v1"


@dg.asset(key_prefix=[SCHEMA], retry_policy=RETRY_POLICY)
def iom_snapshot(config: SnapshotConfig) -> pd.DataFrame:
    """An unpartitioned table, replaced whole on every run."""
    if config.mode == "v1":
        return pd.DataFrame(
            {"name": pd.array(["a", "b", "c"], dtype="string"), "n": pd.array([1, 2, 3], dtype="Int64")}
        )
    if config.mode == "v2":
        return pd.DataFrame(
            {
                "n": pd.array(["one", "two"], dtype="string"),
                "name": pd.array(["x", "y"], dtype="string"),
                "extra": pd.array([1.5, None], dtype="Float64"),
            }
        )
    if config.mode == "unknown_n":
        # n holds only None in an object column: DuckDB cannot tell its type.
        return pd.DataFrame({"name": pd.array(["q"], dtype="string"), "n": [None]})
    if config.mode == "empty":
        return pd.DataFrame({"name": pd.array([], dtype="string"), "n": pd.array([], dtype="Int64")})
    # DuckDB cannot store complex numbers: the write fails.
    return pd.DataFrame({"name": ["z"], "n": np.array([1 + 2j])})


@dg.asset(ins={"iom_snapshot": dg.AssetIn(key=[SCHEMA, "iom_snapshot"])}, retry_policy=RETRY_POLICY)
def iom_snapshot_reader(iom_snapshot: pd.DataFrame) -> None:
    LOADED.append(iom_snapshot)


ALL_ASSETS = [iom_events, iom_day_reader, iom_window_reader, iom_snapshot, iom_snapshot_reader]


def io_manager(
    database: str, lock_timeout_seconds: float = 120.0, connection_config: dict | None = None
) -> CloudglueDuckDBIOManager:
    return CloudglueDuckDBIOManager(
        database=database,
        schema=SCHEMA,
        lock_timeout_seconds=lock_timeout_seconds,
        connection_config=connection_config or {},
    )


if os.environ.get("DAGSTER_IOM_DB"):
    defs = dg.Definitions(assets=ALL_ASSETS, resources={"io_manager": io_manager(os.environ["DAGSTER_IOM_DB"])})


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--partition", required=True)
    parser.add_argument("--range-end")
    parser.add_argument("--config", default="{}")
    parser.add_argument("--lock-timeout", type=float, default=120.0)
    parser.add_argument("--read-dump", help="then load the partition and describe it here")
    args = parser.parse_args(argv)

    resources = {"io_manager": io_manager(args.db, args.lock_timeout)}
    run_config = {"ops": {"cloudglue__iom_events": {"config": json.loads(args.config)}}}
    if args.range_end:
        kwargs: dict = {
            "tags": {
                "dagster/asset_partition_range_start": args.partition,
                "dagster/asset_partition_range_end": args.range_end,
            }
        }
    else:
        kwargs = {"partition_key": args.partition}
    result = dg.materialize([iom_events], resources=resources, run_config=run_config, raise_on_error=False, **kwargs)
    if not result.success:
        return 1
    if args.read_dump:
        read = dg.materialize(
            [iom_events, iom_day_reader],
            selection=[iom_day_reader],
            resources=resources,
            run_config={"ops": {"cloudglue__iom_day_reader": {"config": {"dump_path": args.read_dump}}}},
            raise_on_error=False,
            **kwargs,
        )
        if not read.success:
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
