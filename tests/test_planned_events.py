"""Dagster's one-planned-event-per-asset setting, which docs/operations.md recommends for long
single-run backfills, with the bundled definitions through the CLI."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import dagster as dg
import pytest
from support.reliability import assert_tables_equal_truth, cli_env, days, materialize_cmd

from cloudglue_dagster.emulator import Dataset, Emulator

KEY = "sk-planned-3c9e1f77"
TABLES = ("chat_completions", "chat_messages", "token_usage")

pytestmark = pytest.mark.processes  # the dagster CLI


def test_a_range_run_with_one_planned_event_per_asset_still_marks_every_partition(tmp_path: Path) -> None:
    first, last = dt.date(2026, 5, 2), dt.date(2026, 5, 6)
    dataset = Dataset(dt.date(2026, 5, 1), dt.date(2026, 5, 8), per_day=30, seed=28)
    database, home = tmp_path / "warehouse.duckdb", tmp_path / "home"
    with Emulator(dataset, api_key=KEY) as emu:
        env = cli_env(
            key=KEY,
            base_url=emu.base_url,
            start="2026-05-01",
            database=database,
            home=home,
            DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS="true",
        )
        done = subprocess.run(
            materialize_cmd("--partition-range", f"{first}...{last}"),
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert_tables_equal_truth(database, emu, days(first, last))

    wanted = {d.isoformat() for d in days(first, last)}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for table in TABLES:
            key = dg.AssetKey(["cloudglue", table])
            planned = instance.get_event_records(
                dg.EventRecordsFilter(dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED, asset_key=key)
            )
            assert len(planned) == 1, (table, len(planned))  # one for the range, not one per day
            assert instance.get_materialized_partitions(key) == wanted, table
            check = "sums_match_chat_completions" if table == "token_usage" else "rows_valid"
            checks = instance.event_log_storage.get_asset_check_execution_history(
                dg.AssetCheckKey(key, check), limit=100
            )
            assert {c.partition for c in checks} == wanted, table
