"""Benchmark: what Dagster alone costs a single-run range backfill shaped like the project's.

The latency targets of the scale issue are multiples of the latency bound (pages x latency /
concurrency): 12 s for 180 days of ``chat_completions`` at 2.5x, 19 s for all three assets at
4x. This script measures the part of such a run that no ingestion code can remove: Dagster's
own. Run as a script, it times, in a fresh ``DAGSTER_HOME`` (SQLite storage, the default
``dagster.yaml`` with telemetry off), the command a user runs::

    dagster asset materialize -f bench/floor.py --select S --partition-range A...B

on the assets this file defines. They have the shape of the project's: the same asset keys,
daily UTC partitions from ``--start``, one run for a range (``BackfillPolicy.single_run()``),
``chat_messages`` and ``token_usage`` after ``chat_completions``, one check per asset, an
evaluation per check and partition reported by the asset (as ``cloudglue_dagster.checks``
does), metadata per partition and an observation of the run's figures. They fetch, build and
write nothing: their I/O manager stores nothing. So each run writes the events the project's
run writes (a planned event per asset and day when the run is created, then a materialization
and a check evaluation), and the time is Dagster's: start-up, the plan, the events.

Prints one row per selection and repetition: wall seconds, the events by type (read back from
the run's storage) and the wall per event. Not part of the test suite::

    python bench/floor.py --days 180 --select both --repeat 2
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import dagster as dg

START = os.environ.get("CLOUDGLUE_FLOOR_START", "2025-01-01")
"""First partition (UTC date) of the assets below; the script passes ``--start`` through it."""

PARTITIONS = dg.DailyPartitionsDefinition(start_date=START, timezone="UTC")
CHECK = "rows_valid"
SELECTIONS = {"chat": 'key:"cloudglue/chat_completions"', "all": 'key:"cloudglue/*"'}


class NullIOManager(dg.ConfigurableIOManager):
    """Stores nothing and loads nothing: the floor's outputs cost no I/O."""

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        return None

    def load_input(self, context: dg.InputContext) -> object:
        return None


def _floor_asset(name: str, deps: list[str]) -> dg.AssetsDefinition:
    key = dg.AssetKey(["cloudglue", name])

    # backfill_policy is a beta parameter; the project silences the same warning (assets.py).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return _define(key, deps)


def _define(key: dg.AssetKey, deps: list[str]) -> dg.AssetsDefinition:
    @dg.asset(
        key=key,
        deps=[dg.AssetKey(["cloudglue", dep]) for dep in deps],
        partitions_def=PARTITIONS,
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=[dg.AssetCheckSpec(CHECK, asset=key)],
    )
    def _asset(context):
        days = context.partition_keys
        for day in days:
            context.add_asset_metadata({"dagster/row_count": dg.MetadataValue.int(0)}, partition_key=day)
        yield dg.Output(None)
        for day in days:
            yield dg.AssetCheckEvaluation(asset_key=key, check_name=CHECK, passed=True, partition=day)
        for output_name in context.op_execution_context.assets_def.check_specs_by_output_name:
            yield dg.Output(None, output_name=output_name)
        yield dg.AssetObservation(asset_key=key, metadata={"run_partitions": dg.MetadataValue.int(len(days))})

    return _asset


defs = dg.Definitions(
    assets=[
        _floor_asset("chat_completions", []),
        _floor_asset("chat_messages", ["chat_completions"]),
        _floor_asset("token_usage", ["chat_completions"]),
    ],
    resources={"io_manager": NullIOManager()},
)


@dataclasses.dataclass
class Floor:
    """One timed command: its wall, when its run started and ended (epoch seconds), its events."""

    began: float
    wall: float
    run_start: float
    run_end: float
    events: collections.Counter[str]


def _read_run(home: Path) -> tuple[float, float, collections.Counter[str]]:
    """RUN_START's and RUN_SUCCESS's timestamps and the run's events by type, from the run's
    SQLite shard (``history/runs/<run id>.db``: every event of the run)."""
    (shard,) = [path for path in (home / "history" / "runs").glob("*.db") if path.name != "index.db"]
    with sqlite3.connect(shard) as conn:
        rows = conn.execute("SELECT dagster_event_type, event FROM event_logs").fetchall()
    stamps = {
        kind: json.loads(body)["timestamp"] for kind, body in rows if kind in ("PIPELINE_START", "PIPELINE_SUCCESS")
    }
    events = collections.Counter(kind or "log message" for kind, _ in rows)
    return stamps["PIPELINE_START"], stamps["PIPELINE_SUCCESS"], events


def _run(select: str, start: dt.date, days: int) -> Floor:
    last = start + dt.timedelta(days=days - 1)
    with tempfile.TemporaryDirectory(prefix="floor-home-") as tmp:
        home = Path(tmp)
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        env = {**os.environ, "DAGSTER_HOME": str(home), "CLOUDGLUE_FLOOR_START": start.isoformat()}
        command = [
            str(Path(sys.executable).with_name("dagster")),
            "asset",
            "materialize",
            "-f",
            __file__,
            "--select",
            SELECTIONS[select],
            "--partition-range",
            f"{start.isoformat()}...{last.isoformat()}",
        ]
        began, clock = time.time(), time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - clock
        if done.returncode != 0:
            sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return Floor(began, wall, *_read_run(home))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2025, 1, 1))
    parser.add_argument("--select", choices=("chat", "all", "both"), default="both")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    if args.start + dt.timedelta(days=args.days) > dt.datetime.now(dt.timezone.utc).date():
        parser.error("--start + --days must end before today (UTC): partitions end yesterday")
    selections = ["chat", "all"] if args.select == "both" else [args.select]
    print(f"Dagster's floor: {args.days} days from {args.start}, SQLite storage, `dagster asset materialize -f`")
    print(
        "| selection | wall s | before RUN_START s | RUN_START to RUN_SUCCESS s | events"
        " | planned | materializations | check evaluations |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for _ in range(args.repeat):
        for select in selections:
            floor = _run(select, args.start, args.days)
            events = floor.events
            print(
                f"| {select} | {floor.wall:.1f} | {floor.run_start - floor.began:.1f}"
                f" | {floor.run_end - floor.run_start:.1f} | {sum(events.values())}"
                f" | {events['ASSET_MATERIALIZATION_PLANNED']} | {events['ASSET_MATERIALIZATION']}"
                f" | {events['ASSET_CHECK_EVALUATION']} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
