"""The Responses API end to end: the emulator over real HTTP, real Dagster runs, a real DuckDB file.

``responses`` exact per day (ids and statuses) under every boundary reading and timestamp unit,
``llm_usage`` equal to both sources on every partition, days re-read until their in-progress
responses complete, deletions, an account without responses, and the switch that turns it off.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
import requests
from support.pipeline import TEST_KEY, Pipeline, day_range, read_table
from support.reliability import materialize_cmd

from cloudglue_dagster.assets.in_progress import build_in_progress_sensor
from cloudglue_dagster.definitions import build_definitions
from cloudglue_dagster.emulator import Dataset, Emulator, ResponsesDataset
from cloudglue_dagster.emulator.timeutil import BOUNDARY_READINGS

D1, D5 = dt.date(2026, 3, 1), dt.date(2026, 3, 5)
FIRST, LAST = dt.date(2026, 3, 2), dt.date(2026, 3, 4)  # the padding days hold records too


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    """5 days of completions (~30 a day) and responses (~25 a day, a tenth in progress)."""
    responses = ResponsesDataset(D1, D5, per_day=25, seed=5, in_progress_rate=0.1)
    with Emulator(Dataset(D1, D5, per_day=30, seed=5), responses=responses, api_key=TEST_KEY) as e:
        yield e


def _responses_requests(emu: Emulator) -> list[Any]:
    return [r for r in emu.request_log if r.path == "/v1/responses"]


def _assert_exact(emu: Emulator, database: Path, days: list[dt.date]) -> None:
    """Every day's responses equal the emulator's (ids, statuses, tokens), and llm_usage equals
    both sources: its chat rows token_usage, its responses rows the responses' sums."""
    responses = read_table(database, "responses")
    usage = read_table(database, "token_usage")
    spend = read_table(database, "llm_usage")
    assert responses["id"].is_unique
    for day in days:
        truth = emu.responses_ground_truth(day)
        rows = responses[responses["created_at"].dt.date == day]
        assert dict(zip(rows["id"], rows["status"])) == dict(truth.statuses), day
        assert int(rows["total_tokens"].sum()) == truth.total_tokens
        mine = spend[(spend["date"] == pd.Timestamp(day)) & (spend["source"] == "responses")]
        assert int(mine["requests"].sum()) == truth.count
        named = {m: int(n) for m, n in zip(mine["model"], mine["requests"]) if not pd.isna(m)}
        assert named == {m: n for m, n in truth.by_model.items() if m is not None}
        assert int(mine["input_tokens"].sum()) == truth.input_tokens
        assert int(mine["output_tokens"].sum()) == truth.output_tokens
        assert int(mine["in_progress"].sum()) == truth.by_status.get("in_progress", 0)
        chat = spend[(spend["date"] == pd.Timestamp(day)) & (spend["source"] == "chat_completions")]
        day_usage = usage[usage["date"] == pd.Timestamp(day)]
        assert dict(zip(chat["model"], chat["requests"])) == dict(zip(day_usage["model"], day_usage["completions"]))
        assert int(chat["input_tokens"].sum()) == int(day_usage["prompt_tokens"].sum())


def _run_bundled(emu: Emulator, database: Path, monkeypatch: pytest.MonkeyPatch) -> dg.ExecuteInProcessResult:
    monkeypatch.setenv("CLOUDGLUE_API_KEY", TEST_KEY)
    defs = build_definitions(start_date=D1.isoformat(), duckdb_path=str(database), base_url=emu.base_url)
    return defs.resolve_job_def("cloudglue_daily").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        tags={
            "dagster/asset_partition_range_start": FIRST.isoformat(),
            "dagster/asset_partition_range_end": LAST.isoformat(),
        },
    )


@pytest.mark.parametrize(
    ("boundary", "unit"),
    [(b, "int-s") for b in BOUNDARY_READINGS] + [("inclusive", u) for u in ("ms", "s", "iso")],
)
def test_a_backfill_through_the_bundled_definitions_is_exact_under_each_boundary_and_unit(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, boundary: str, unit: str
) -> None:
    emu.boundary, emu.responses_timestamp_unit = boundary, unit
    try:
        emu.reset_stats()
        result = _run_bundled(emu, tmp_path / "w.duckdb", monkeypatch)
    finally:
        emu.boundary, emu.responses_timestamp_unit = "inclusive", "int-s"
    assert result.success
    checks = [e for e in result.get_asset_check_evaluations() if e.check_name != "freshness_check"]
    responses_checks = [e for e in checks if e.asset_key.path[-1] == "responses"]
    # rows_valid passes every rule but warns of responses left in progress for more than 24 h:
    # these days are long past, so every in-progress response there is stuck.
    assert {e.partition for e in responses_checks} == {d.isoformat() for d in day_range(FIRST, LAST)}
    for evaluation in responses_checks:
        failed = evaluation.metadata["failed_rules"].value
        assert failed in ("(none)", "no_stuck_in_progress"), failed
    assert all(e.passed for e in checks if e.asset_key.path[-1] != "responses")
    assert {e.check_name for e in checks if e.asset_key.path[-1] == "llm_usage"} == {"sums_match_sources"}
    sweep = _responses_requests(emu)  # one sweep of the range's padded window, page by page
    assert {(r.query["created_after"], r.query["created_before"]) for r in sweep} == {("2026-03-01", "2026-03-05")}
    assert sorted(int(r.query["offset"]) for r in sweep) == list(range(0, 100 * len(sweep), 100))
    _assert_exact(emu, tmp_path / "w.duckdb", day_range(FIRST, LAST))


@pytest.mark.processes
def test_the_readmes_backfill_command_loads_responses_and_llm_usage(emu: Emulator, tmp_path: Path) -> None:
    database = tmp_path / "w.duckdb"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path),
        "CLOUDGLUE_API_KEY": TEST_KEY,
        "CLOUDGLUE_BASE_URL": emu.base_url,
        "CLOUDGLUE_START_DATE": D1.isoformat(),
        "CLOUDGLUE_DUCKDB_PATH": str(database),
    }
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    command = materialize_cmd("--partition-range", f"{FIRST}...{LAST}")
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_exact(emu, database, day_range(FIRST, LAST))


def test_a_day_read_again_after_its_responses_complete_holds_their_final_status_and_usage(tmp_path: Path) -> None:
    yesterday = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
    first = yesterday - dt.timedelta(days=2)
    responses = ResponsesDataset(first, yesterday, per_day=20, seed=9, in_progress_rate=0.3)
    with Emulator(Dataset(first, yesterday, per_day=10, seed=9), responses=responses, api_key=TEST_KEY) as emu:
        # 72 h: every response of yesterday is younger than the limit, whatever the hour now.
        pipeline = Pipeline(emu, tmp_path / "w.duckdb", first.isoformat(), responses=True, in_progress_limit_hours=72)
        day = yesterday.isoformat()
        assert pipeline.materialize(day).success
        stored = pipeline.table("responses")
        waiting = int((stored["status"] == "in_progress").sum())
        assert waiting == emu.responses_ground_truth(yesterday).by_status["in_progress"] > 0
        assert stored.loc[stored["status"] == "in_progress", "total_tokens"].isna().all()
        sensor = next(s for s in pipeline.built.sensors if s.name == "cloudglue_in_progress_sensor")
        keys = pipeline.built.keys

        def evaluate() -> list[dg.RunRequest]:
            defs = dg.Definitions.merge(pipeline.built.definitions(), dg.Definitions(resources=pipeline.resources))
            context = dg.build_sensor_context(instance=pipeline.instance, definitions=defs)
            result = sensor(context)
            return list(result.run_requests or []) if isinstance(result, dg.SensorResult) else []

        [request] = evaluate()
        assert request.partition_key == day
        assert set(request.asset_selection or []) == {keys["responses"], keys["llm_usage"]}
        assert emu.responses.complete(yesterday) == waiting
        assert pipeline.materialize(day, selection=request.asset_selection).success
        stored = pipeline.table("responses")
        truth = emu.responses_ground_truth(yesterday)
        assert dict(zip(stored["id"], stored["status"])) == dict(truth.statuses)
        assert "in_progress" not in set(stored["status"])
        assert int(stored["total_tokens"].sum()) == truth.total_tokens
        spend = pipeline.table("llm_usage", f"WHERE date = '{day}'")
        assert int(spend["in_progress"].sum()) == 0
        assert int(spend.loc[spend["source"] == "responses", "total_tokens"].sum()) == truth.total_tokens
        assert evaluate() == []  # nothing in progress any more: no re-read


def test_a_response_stuck_past_the_limit_is_reported_by_the_check_and_not_read_again(tmp_path: Path) -> None:
    responses = ResponsesDataset(D1, D5, per_day=20, seed=2, in_progress_rate=0.3)
    with Emulator(Dataset(D1, D5, per_day=10, seed=2), responses=responses, api_key=TEST_KEY) as emu:
        pipeline = Pipeline(emu, tmp_path / "w.duckdb", D1.isoformat(), responses=True)
        result = pipeline.materialize(FIRST.isoformat())
        assert result.success
        [rows_valid] = [e for e in result.get_asset_check_evaluations() if e.asset_key.path[-1] == "responses"]
        assert not rows_valid.passed and rows_valid.severity == dg.AssetCheckSeverity.WARN
        assert rows_valid.metadata["failed_rules"].value == "no_stuck_in_progress"
        stuck = rows_valid.metadata["no_stuck_in_progress.rows"].value
        assert stuck == emu.responses_ground_truth(FIRST).by_status["in_progress"] > 0

        def sensor(limit_hours: int) -> dg.SensorDefinition:
            return build_in_progress_sensor(
                name="s",
                job=pipeline.built.job,
                responses_key=pipeline.built.keys["responses"],
                llm_usage_key=pipeline.built.keys["llm_usage"],
                partitions_def=pipeline.built.partitions_def,
                limit_hours=limit_hours,
                minimum_interval_seconds=30,
            )

        # Months past the 24 h limit: the day is not read again (the check said why).
        assert isinstance(sensor(24)(dg.build_sensor_context(instance=pipeline.instance)), dg.SkipReason)
        # Within a limit of five years, the same day would be read again: its write held
        # in-progress responses younger than the limit.
        within = sensor(24 * 365 * 5)(dg.build_sensor_context(instance=pipeline.instance))
        assert isinstance(within, dg.SensorResult)
        assert [r.partition_key for r in within.run_requests or []] == [FIRST.isoformat()]


def test_an_account_without_responses_costs_one_request_per_run_and_gets_empty_partitions(tmp_path: Path) -> None:
    with Emulator(
        Dataset(D1, D5, per_day=20, seed=4), responses=ResponsesDataset(D1, D5, per_day=0), api_key=TEST_KEY
    ) as emu:
        pipeline = Pipeline(emu, tmp_path / "w.duckdb", D1.isoformat(), responses=True)
        result = pipeline.materialize(FIRST.isoformat(), LAST.isoformat())
        assert result.success
        assert len(_responses_requests(emu)) == 1
        assert pipeline.table("responses").empty
        spend = pipeline.table("llm_usage")
        assert set(spend["source"]) == {"chat_completions"}
        partitions = {
            e.partition for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == "responses"
        }
        assert partitions == {d.isoformat() for d in day_range(FIRST, LAST)}


def test_responses_false_sends_no_responses_request_and_builds_neither_table(tmp_path: Path) -> None:
    with Emulator(Dataset(D1, D5, per_day=20, seed=4), api_key=TEST_KEY) as emu:
        pipeline = Pipeline(emu, tmp_path / "w.duckdb", D1.isoformat(), responses=False)
        assert set(pipeline.built.keys) == {"chat_completions", "chat_messages", "token_usage"}
        assert pipeline.built.assets == (pipeline.built.assets_def,)
        assert pipeline.materialize(FIRST.isoformat()).success
        assert _responses_requests(emu) == []


def test_a_deleted_response_leaves_its_day_and_a_mass_deletion_is_refused_until_allowed(tmp_path: Path) -> None:
    responses = ResponsesDataset(D1, D5, per_day=40, seed=6)
    with Emulator(Dataset(D1, D5, per_day=10, seed=6), responses=responses, api_key=TEST_KEY) as emu:
        pipeline = Pipeline(emu, tmp_path / "w.duckdb", D1.isoformat(), responses=True)
        day = FIRST.isoformat()
        assert pipeline.materialize(day).success
        ids = sorted(emu.responses_ground_truth(FIRST).ids)
        response = requests.delete(  # the emulator answers DELETE as the API does
            f"{emu.base_url}/responses/{ids[0]}", headers={"Authorization": f"Bearer {TEST_KEY}"}, timeout=10
        )
        assert response.status_code == 200
        assert pipeline.materialize(day).success
        assert set(pipeline.table("responses")["id"]) == set(ids[1:])
        for rid in ids[1:-3]:
            assert emu.responses.delete(rid)
        before = {t: pipeline.table(t) for t in ("responses", "llm_usage", "chat_completions", "token_usage")}
        refused = pipeline.materialize(day, raise_on_error=False)
        assert not refused.success
        error = refused.get_step_failure_events()[0].step_failure_data.error.to_string()
        assert "Refused to replace 1 stored day(s)" in error and "cloudglue__responses" in error
        assert "If the responses really were deleted upstream" in error
        for table, rows in before.items():  # every table as it was (llm_usage is not re-built from a refused day)
            after = pipeline.table(table)
            pd.testing.assert_frame_equal(
                rows.sort_values(list(rows.columns[:3])).reset_index(drop=True),
                after.sort_values(list(rows.columns[:3])).reset_index(drop=True),
                obj=table,
            )
        allowed = dg.materialize(
            [*pipeline.built.assets, *pipeline.built.asset_checks],
            resources=pipeline.resources,
            instance=pipeline.instance,
            partition_key=day,
            tags={"cloudglue/allow_shrink": "true"},
        )
        assert allowed.success
        assert set(pipeline.table("responses")["id"]) == set(ids[-3:])


def test_the_llm_usage_check_catches_a_day_reloaded_in_responses_only(tmp_path: Path) -> None:
    responses = ResponsesDataset(D1, D5, per_day=20, seed=8)
    with Emulator(Dataset(D1, D5, per_day=10, seed=8), responses=responses, api_key=TEST_KEY) as emu:
        pipeline = Pipeline(emu, tmp_path / "w.duckdb", D1.isoformat(), responses=True)
        day = FIRST.isoformat()
        assert pipeline.materialize(day).success
        rid = sorted(emu.responses_ground_truth(FIRST).ids)[0]
        assert emu.responses.delete(rid)
        keys = pipeline.built.keys
        assert pipeline.materialize(day, selection=[keys["responses"]], checks=False).success
        job = dg.define_asset_job("spend_check", selection=dg.AssetSelection.checks(*pipeline.built.asset_checks))
        defs = dg.Definitions.merge(
            pipeline.built.definitions(), dg.Definitions(jobs=[job], resources=pipeline.resources)
        )
        check_only = defs.resolve_job_def("spend_check").execute_in_process(
            instance=pipeline.instance, tags={"dagster/partition": day}
        )
        [evaluation] = [e for e in check_only.get_asset_check_evaluations() if e.check_name == "sums_match_sources"]
        assert not evaluation.passed and evaluation.partition == day
        details = evaluation.metadata["details"].value
        assert {d["column"] for d in details} >= {"requests"}
        assert pipeline.materialize(day).success  # re-loading llm_usage heals it
