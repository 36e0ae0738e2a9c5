"""The backfill planner: its request count against real runs, its time against a real CLI backfill."""

from __future__ import annotations

import datetime as dt
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from support.pipeline import TEST_KEY, Pipeline
from support.reliability import cli_env, materialize_cmd

from cloudglue_dagster import CloudglueClient, CloudglueConfigError, CloudglueResource, build_cloudglue_assets
from cloudglue_dagster.emulator import Dataset, Emulator
from cloudglue_dagster.planner import Assumptions, DayProbe, parse_size, plan_backfill
from cloudglue_dagster.planner.plan import plan_from_probes

FIRST, LAST = dt.date(2026, 5, 1), dt.date(2026, 5, 14)
MiB = 2**20


def test_memory_sizes_read_as_people_write_them() -> None:
    assert parse_size("2GiB") == 2 * 1024**3
    assert parse_size("512 MiB") == 512 * MiB
    assert parse_size("1.5GB") == 1_500_000_000
    assert parse_size("800M") == 800_000_000
    assert parse_size("1048576") == MiB
    with pytest.raises(CloudglueConfigError, match="memory must be like 2GiB"):
        parse_size("lots")


@pytest.mark.parametrize("boundary", ["inclusive", "exclusive", "half-open"])
@pytest.mark.parametrize("per_run", [None, 4])
def test_the_planned_requests_are_exactly_what_the_runs_then_make(
    tmp_path: Path, boundary: str, per_run: int | None
) -> None:
    dataset = Dataset(FIRST, LAST, per_day=90, seed=8, empty_days=[dt.date(2026, 5, 6)])
    with Emulator(dataset, api_key=TEST_KEY, boundary=boundary) as emu:
        with CloudglueClient(TEST_KEY, emu.base_url) as client:
            plan = plan_backfill(client, dt.date(2026, 5, 2), dt.date(2026, 5, 12), max_partitions_per_run=per_run)
        assert emu.requests_served == plan.probe_requests  # one limit=1 request per window probed
        pipeline = Pipeline(emu, tmp_path / "w.duckdb", "2026-04-30", max_partitions_per_run=per_run)
        made = []
        for run in plan.runs:  # the runs the backfill policy makes, as the daemon launches them
            before = emu.requests_served
            assert pipeline.materialize(run.first.isoformat(), run.last.isoformat(), checks=False).success
            made.append(emu.requests_served - before)
    assert [r.requests for r in plan.runs] == made
    assert len(plan.runs) == (1 if per_run is None else 3)


@pytest.mark.processes
@pytest.mark.serial  # the estimate is held to the time measured
def test_a_cli_backfill_takes_the_planned_api_time_and_the_estimate_is_of_its_order(tmp_path: Path) -> None:
    """At a fixed latency of 0.5 s per request the run cannot be faster than the API time the
    plan counts (the first page, then the others four at a time). The estimate's other terms
    (start-up, work per day and per completion) are the defaults fitted by
    ``bench/planner_calibration.py`` on one day of this machine, whose speed varies by up to
    twice from one day to the next: a band, not a timing, is what a test can hold."""
    dataset = Dataset(FIRST, LAST, per_day=300, seed=9)
    first, last = dt.date(2026, 5, 2), dt.date(2026, 5, 13)
    with Emulator(dataset, api_key=TEST_KEY, latency_seconds=0.5) as emu:
        with CloudglueClient(TEST_KEY, emu.base_url, max_concurrent_requests=4) as client:
            plan = plan_backfill(client, first, last, assumptions=Assumptions(concurrency=4))
        env = cli_env(
            key=TEST_KEY,
            base_url=emu.base_url,
            start="2026-05-01",
            database=tmp_path / "w.duckdb",
            home=tmp_path / "home",
            CLOUDGLUE_MAX_CONCURRENT_REQUESTS="4",
        )
        command = materialize_cmd("--partition-range", f"{first}...{last}")
        began = time.monotonic()
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
        measured = time.monotonic() - began
        assert done.returncode == 0, done.stderr[-3000:]
    (run,) = plan.runs
    api = 0.5 * (1 + math.ceil((run.requests - 1) / 4))
    print(f"planned {plan.seconds:.1f} s (API {api:.1f} s), measured {measured:.1f} s, {plan.requests} requests")
    assert api <= measured
    assert 0.5 * measured <= plan.seconds <= 2.5 * measured


def probes(*totals: int) -> list[DayProbe]:
    return [DayProbe(FIRST + dt.timedelta(days=i), t) for i, t in enumerate(totals)]


def planned(days: list[DayProbe], budget: int, streaming: bool):
    runs = {(d.day, d.day): d.window_total for d in days}
    runs[days[0].day, days[-1].day] = sum(d.window_total for d in days)
    a = Assumptions(base_memory_bytes=100 * MiB, bytes_per_completion=MiB, streaming=streaming)
    return plan_from_probes(
        days, runs, max_partitions_per_run=None, assumptions=a, latency_seconds=0.1, probe_requests=0,
        memory_budget_bytes=budget,
    )  # fmt: skip


def test_the_memory_budget_picks_the_largest_split_that_fits() -> None:
    days = probes(10, 10, 50, 10, 10, 10)  # MiB held per day, over a 100 MiB base
    streaming = planned(days, 160 * MiB, streaming=True)  # a run holds its busiest day: 150 MiB
    assert streaming.recommended_max_partitions_per_run is None and "whole range" in streaming.recommendation
    whole = planned(days, 160 * MiB, streaming=False)  # a run holds all its days
    assert whole.recommended_max_partitions_per_run == 2  # [10,10] [50,10] [10,10]: at most 160 MiB
    assert "max_partitions_per_run = 2 fits 160 MiB" in whole.recommendation
    tight = planned(days, 120 * MiB, streaming=True)
    assert "no split fits 120 MiB: the busiest day alone needs about 150 MiB" in tight.recommendation


@pytest.mark.processes
def test_the_cli_prints_the_plan_with_its_assumptions_and_never_the_key() -> None:
    with Emulator(Dataset(FIRST, LAST, per_day=40, seed=2), api_key=TEST_KEY) as emu:
        env = {**os.environ, "CLOUDGLUE_API_KEY": TEST_KEY, "CLOUDGLUE_BASE_URL": emu.base_url}
        command = [sys.executable, "-m", "cloudglue_dagster", "plan", "--start", "2026-05-02", "--end", "2026-05-05"]
        done = subprocess.run([*command, "--memory", "2GiB"], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "Backfill plan: 2026-05-02..2026-05-05 (4 UTC days)" in done.stdout
        assert "requests (exact, for honest answers)" in done.stdout and "Assumptions:" in done.stdout
        assert "max_partitions_per_run = None (the whole range in one run) fits 2,048 MiB" in done.stdout
        assert TEST_KEY not in done.stdout + done.stderr
        no_key = subprocess.run(
            command, env={k: v for k, v in env.items() if k != "CLOUDGLUE_API_KEY"}, capture_output=True, text=True
        )
        assert no_key.returncode == 2 and "set CLOUDGLUE_API_KEY" in no_key.stderr
        wrong_key = subprocess.run(
            command, env={**env, "CLOUDGLUE_API_KEY": "sk-wrong-0123456789abcdef"}, capture_output=True, text=True
        )
        assert wrong_key.returncode == 1 and "refused the API key" in wrong_key.stderr
        assert "sk-wrong-0123456789abcdef" not in wrong_key.stdout + wrong_key.stderr


def test_the_plan_job_records_the_plan_as_markdown_on_chat_completions() -> None:
    with Emulator(Dataset(FIRST, LAST, per_day=40, seed=2), api_key=TEST_KEY) as emu:
        built = build_cloudglue_assets(start_date="2026-05-01")
        defs = dg.Definitions.merge(
            built.definitions(),
            dg.Definitions(resources={"cloudglue": CloudglueResource(api_key=TEST_KEY, base_url=emu.base_url)}),
        )
        config = {"start": "2026-05-02", "end": "2026-05-08", "max_partitions_per_run": 3, "memory": "1GiB"}
        result = defs.resolve_job_def("cloudglue_plan_backfill").execute_in_process(
            run_config={"ops": {"cloudglue__plan_backfill": {"config": config}}}
        )
    assert result.success
    (observation,) = [
        e.event_specific_data.asset_observation for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"
    ]
    assert observation.asset_key == dg.AssetKey(["cloudglue", "chat_completions"])
    metadata = {k: v.value for k, v in observation.metadata.items()}
    assert metadata["planned_runs"] == 3 and metadata["planned_days"] == "2026-05-02...2026-05-08"
    assert metadata["backfill_plan"].startswith("## Backfill plan: 2026-05-02..2026-05-08 (7 UTC days)")
    assert "| run | days | window completions | requests |" in metadata["backfill_plan"]
