"""Benchmark: Dagster's floor for a single-run range backfill shaped like the project's.

docs/performance.md judges a backfill against the real limit: the floor (what Dagster alone
costs a run of exactly this shape) plus the latency bound (pages x latency / concurrency, which
no client can beat). This script measures the floor. Run as a script, it times, in a fresh
``DAGSTER_HOME`` (SQLite storage, the default ``dagster.yaml`` with telemetry off), the command
a user runs::

    dagster asset materialize -f bench/floor.py --select S --partition-range A...B

on the definitions this file holds. They have the shape of the project's
(``cloudglue_dagster.assets.factory``), with the same in-process executor:

* one ``dg.multi_asset``, op ``cloudglue__tables``, ``can_subset=True``, daily UTC partitions
  from ``--start``, one run for a range (``BackfillPolicy.single_run()``), specs for
  ``cloudglue/chat_completions``, ``cloudglue/chat_messages`` and ``cloudglue/token_usage``
  (the latter two depending on the first), and the ``rows_valid`` checks of chat_completions
  and chat_messages. Its step does what ``steps.step.TablesStep`` does: per selected table and
  day, materialization metadata (``add_asset_metadata``: a column schema, counts, a JSON, a
  preview and a query, about the size of the real ones); one output per selected table; then
  one check evaluation per selected check and day, the checks' (empty) outputs and one
  observation per table;
* the ``token_usage`` check (``cloudglue__token_usage_checks``, as ``usage_checks.build_usage_check``):
  a ``multi_asset_check`` loading ``token_usage``, one evaluation per day;
* the freshness checks the project's definitions carry (``dg.build_time_partition_freshness_checks``,
  as ``sensors.build_freshness``), which a selection by asset key runs too.

They fetch, build and write nothing: their I/O manager stores and loads nothing. So the run
writes the events the project's run writes, and the time is Dagster's: start-up, the plan, the
events. Measured against a real run from the emulator (``dagster asset materialize -m
cloudglue_dagster.definitions``, 5 days from 2025-01-01, SQLite storage), the events by type
agree exactly, type by type, for both selections (all: 15 ASSET_MATERIALIZATION_PLANNED, 15
ASSET_MATERIALIZATION, 6 ASSET_CHECK_EVALUATION_PLANNED, 18 ASSET_CHECK_EVALUATION (5 days x 3
checks + 3 freshness), 3 ASSET_OBSERVATION, 3 steps, 9 STEP_OUTPUT, 3 HANDLED_OUTPUT, 1
LOADED_INPUT...; chat_completions only: 5, 5, 2, 6, 1, 2 steps, 3, 1, 0), except the real run's
two log lines (84 events against 86, 34 against 36). The stored events are about as large: a
materialization 7.1 KB against 7.0 KB, a check evaluation 2.1 against 2.3 KB (an observation
1.6 against 2.4 KB, a HANDLED_OUTPUT 1.2 against 4.0 KB: the DuckDB I/O manager's metadata).
What the floor leaves out is the project's own work inside the step and the check: the fetch,
the frames, the writes, the check rules and their look-ups of the latest materializations.

Prints one row per selection and repetition: wall seconds, the events by type (read back from
the run's storage) and the wall per event. Not part of the test suite::

    python bench/floor.py --days 180 --select both --repeat 2

``bench/run.py`` calls :func:`measure` for each range it measures.
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

from cloudglue_dagster.assets.metadata import column_schema
from cloudglue_dagster.assets.steps import tables_for

START = os.environ.get("CLOUDGLUE_FLOOR_START", "2025-01-01")
"""First partition (UTC date) of the assets below; the script passes ``--start`` through it."""

PARTITIONS = dg.DailyPartitionsDefinition(start_date=START, timezone="UTC")
CHECK = "rows_valid"
USAGE_CHECK = "sums_match_chat_completions"
TABLES = ("chat_completions", "chat_messages", "token_usage")
KEYS = {table: dg.AssetKey(["cloudglue", table]) for table in TABLES}
CHECKED = ("chat_completions", "chat_messages")
"""The tables whose check runs inside the multi-asset (token_usage's is a separate step)."""
SELECTIONS = {"chat": 'key:"cloudglue/chat_completions"', "all": 'key:"cloudglue/*"'}
SCHEMAS = {table: column_schema(tables_for({})[table].columns) for table in TABLES}


class NullIOManager(dg.ConfigurableIOManager):
    """Stores nothing and loads nothing: the floor's outputs cost no I/O."""

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        return None

    def load_input(self, context: dg.InputContext) -> object:
        return None


def _day_metadata(table: str, day: str) -> dict[str, object]:
    """About what the project records per table and day (steps/tables.py's ``describe`` and the
    I/O manager's entries): the schema, a dozen figures, a JSON, a markdown preview, a query."""
    preview = "| a | b | c | d | e |\n|---|---|---|---|---|\n" + "| 2025-01-01 00:00:00 | x | 1 | 2 | text… |\n" * 5
    return {
        "dagster/storage_kind": "duckdb",
        "dagster/table_name": f"bench.cloudglue.{table}",
        "dagster/column_schema": SCHEMAS[table],
        "dagster/partition_row_count": dg.MetadataValue.int(0),
        **{f"figure_{i}": dg.MetadataValue.int(i) for i in range(8)},
        "by_model": dg.MetadataValue.json({"model-a": 1, "model-b": 2, "model-c": 3}),
        "preview": dg.MetadataValue.md(preview),
        "Query": f"SELECT * FROM bench.cloudglue.{table} WHERE day = '{day}'",
    }


def _check_metadata() -> dict[str, object]:
    """About what ``checks._combined`` reports per day: a dozen rule figures."""
    return {"rows": 0, "failed_rules": "(none)", **{f"rule_{i}": "passed" for i in range(4)}} | {
        f"rule_{i}.count": 0 for i in range(6)
    }


def _tables_asset() -> dg.AssetsDefinition:
    specs = [
        dg.AssetSpec(
            KEYS[table],
            deps=[] if table == "chat_completions" else [KEYS["chat_completions"]],
            partitions_def=PARTITIONS,
            skippable=True,
        ).with_io_manager_key("io_manager")  # as _full_spec: an output the I/O manager handles
        for table in TABLES
    ]
    check_specs = [dg.AssetCheckSpec(CHECK, asset=KEYS[table], partitions_def=PARTITIONS) for table in CHECKED]

    @dg.multi_asset(
        name="cloudglue__tables",
        specs=specs,
        check_specs=check_specs,
        can_subset=True,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def tables_step(context):
        days = context.partition_keys
        written = [t for t in TABLES if KEYS[t] in context.selected_asset_keys]
        checks = {c.asset_key for c in context.selected_asset_check_keys}
        for day in days:  # as each day is written
            for table in written:
                context.add_asset_metadata(_day_metadata(table, day), asset_key=KEYS[table], partition_key=day)
        for table in written:
            # A sentinel, as the project's TableWritten: one HANDLED_OUTPUT per table, as there.
            yield dg.Output(table, output_name=KEYS[table].to_python_identifier())
        for table in written:
            if KEYS[table] in checks:
                for day in days:
                    yield dg.AssetCheckEvaluation(
                        asset_key=KEYS[table], check_name=CHECK, passed=True, metadata=_check_metadata(), partition=day
                    )
        for output_name, spec in context.assets_def.check_specs_by_output_name.items():
            if spec.key in context.selected_asset_check_keys:
                yield dg.Output(None, output_name=output_name)
        for table in written:
            yield dg.AssetObservation(
                asset_key=KEYS[table], metadata={"run_partitions": len(days), "days_written": len(days)}
            )

    return tables_step


def _usage_check() -> dg.AssetChecksDefinition:
    spec = dg.AssetCheckSpec(
        USAGE_CHECK, asset=KEYS["token_usage"], partitions_def=PARTITIONS, additional_deps=[KEYS["chat_completions"]]
    )

    @dg.multi_asset_check(
        specs=[spec], name="cloudglue__token_usage_checks", ins={"token_usage": dg.AssetIn(key=KEYS["token_usage"])}
    )
    def usage_check(context, token_usage):
        for day in context.op_execution_context.partition_keys:
            yield dg.AssetCheckEvaluation(
                asset_key=KEYS["token_usage"],
                check_name=USAGE_CHECK,
                passed=True,
                metadata={"mismatches": 0, "details": dg.MetadataValue.json([])},
                partition=day,
            )
        for output_name in context.op_execution_context.assets_def.check_specs_by_output_name:
            yield dg.Output(None, output_name=output_name)

    return usage_check


def _definitions() -> dg.Definitions:
    # Beta and preview parameters and superseded builders: the project silences the same
    # warnings for its own definitions (assets.py).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        warnings.simplefilter("ignore", dg.PreviewWarning)
        warnings.simplefilter("ignore", dg.SupersessionWarning)
        tables = _tables_asset()
        freshness = dg.build_time_partition_freshness_checks(
            assets=[tables], deadline_cron="0 6 * * *", timezone="UTC", severity=dg.AssetCheckSeverity.WARN
        )
        return dg.Definitions(
            assets=[tables],
            asset_checks=[_usage_check(), *freshness],
            resources={"io_manager": NullIOManager()},
            executor=dg.in_process_executor,
        )


defs = _definitions()


@dataclasses.dataclass
class Floor:
    """One timed command: its wall, when its run started and ended (epoch seconds), its events."""

    began: float
    wall: float
    run_start: float
    run_end: float
    events: collections.Counter[str]
    seconds: collections.Counter[str]


def _read_run(home: Path) -> tuple[float, float, collections.Counter[str], collections.Counter[str]]:
    """RUN_START's and RUN_SUCCESS's timestamps, the run's events by type, and the seconds
    spent on each type, from the run's SQLite shard (``history/runs/<run id>.db``: every
    event of the run).

    An event's cost is the time since the event before it (in the order stored): the step
    does nothing but make events, so that time is the event's making, logging and storing.
    The first event's is not counted."""
    (shard,) = [path for path in (home / "history" / "runs").glob("*.db") if path.name != "index.db"]
    with sqlite3.connect(shard) as conn:
        rows = conn.execute("SELECT dagster_event_type, event FROM event_logs ORDER BY id").fetchall()
    stamps = [(kind or "log message", json.loads(body)["timestamp"]) for kind, body in rows]
    start = next(t for kind, t in stamps if kind == "PIPELINE_START")
    end = next(t for kind, t in stamps if kind == "PIPELINE_SUCCESS")
    events = collections.Counter(kind for kind, _ in stamps)
    seconds: collections.Counter[str] = collections.Counter()
    for (_, before), (kind, at) in zip(stamps, stamps[1:]):
        seconds[kind] += at - before
    return start, end, events, seconds


def measure(select: str, start: dt.date, days: int, planned_subset: bool = False) -> Floor:
    """Time `dagster asset materialize -f bench/floor.py` for ``days`` days from ``start``
    (``select``: "chat" or "all") in a fresh DAGSTER_HOME; ``planned_subset`` sets
    ``DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=true`` (one planned event per asset)."""
    last = start + dt.timedelta(days=days - 1)
    with tempfile.TemporaryDirectory(prefix="floor-home-") as tmp:
        home = Path(tmp)
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        env = {**os.environ, "DAGSTER_HOME": str(home), "CLOUDGLUE_FLOOR_START": start.isoformat()}
        env.pop(PLANNED_SUBSET, None)
        if planned_subset:
            env[PLANNED_SUBSET] = "true"
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


PLANNED_SUBSET = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"
KINDS = {
    "ASSET_MATERIALIZATION_PLANNED": "planned",
    "ASSET_MATERIALIZATION": "materializations",
    "ASSET_CHECK_EVALUATION_PLANNED": "check planned",
    "ASSET_CHECK_EVALUATION": "check evaluations",
}


def _kind_cells(floor: Floor) -> str:
    """`count: seconds` of each kind of :data:`KINDS`, then of every other kind together."""
    cells = [f"{floor.events[k]}: {floor.seconds[k]:.1f}" for k in KINDS]
    rest = [k for k in floor.events if k not in KINDS]
    cells.append(f"{sum(floor.events[k] for k in rest)}: {sum(floor.seconds[k] for k in rest):.1f}")
    return " | ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2025, 1, 1))
    parser.add_argument("--select", choices=("chat", "all", "both"), default="both")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--planned-subset",
        choices=("off", "on", "both"),
        default="off",
        help=f"run with {PLANNED_SUBSET}=true (on), without (off), or each in turn (both)",
    )
    args = parser.parse_args()
    if args.start + dt.timedelta(days=args.days) > dt.datetime.now(dt.timezone.utc).date():
        parser.error("--start + --days must end before today (UTC): partitions end yesterday")
    selections = ["chat", "all"] if args.select == "both" else [args.select]
    print(f"Dagster's floor: {args.days} days from {args.start}, SQLite storage, `dagster asset materialize -f`")
    subsets = {"off": [False], "on": [True], "both": [False, True]}[args.planned_subset]
    print("Each kind of event: `count: seconds` (an event's seconds: the time since the event before it).")
    print()
    print(
        "| selection | planned subset | wall s | before RUN_START s | RUN_START to RUN_SUCCESS s | events"
        " | planned | materializations | check planned | check evaluations | other |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for _ in range(args.repeat):
        for select in selections:
            for subset in subsets:
                floor = measure(select, args.start, args.days, planned_subset=subset)
                print(
                    f"| {select} | {'on' if subset else 'off'} | {floor.wall:.1f} | {floor.run_start - floor.began:.1f}"
                    f" | {floor.run_end - floor.run_start:.1f} | {sum(floor.events.values())} | {_kind_cells(floor)} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
