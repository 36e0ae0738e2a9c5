"""The assets end to end: real materializations, the emulator over HTTP, a real DuckDB file."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from support.pipeline import TEST_KEY, Pipeline, day_range, read_table, run_figures
from support.reliability import materialize_cmd

from cloudglue_dagster import CloudglueConfigError, CloudglueResource, build_cloudglue_assets
from cloudglue_dagster.emulator import BOUNDARY_READINGS, Dataset, Emulator
from cloudglue_dagster.tables.frames import CHAT_COMPLETIONS_COLUMNS, TOKEN_USAGE_COLUMNS

FIRST, LAST = dt.date(2026, 3, 1), dt.date(2026, 3, 7)
UTC = dt.timezone.utc


@pytest.fixture
def emu():
    dataset = Dataset(FIRST, LAST, per_day=40, seed=7, empty_days=[dt.date(2026, 3, 6)])
    with Emulator(dataset, api_key=TEST_KEY, retry_after_seconds=0) as server:
        yield server


def ids_by_day(frame: pd.DataFrame) -> dict[dt.date, set[str]]:
    out: dict[dt.date, set[str]] = {}
    for created, id_ in zip(frame["created_at"], frame["id"]):
        out.setdefault(created.tz_convert("UTC").date(), set()).add(id_)
    return out


def assert_equals_truth(pipeline: Pipeline, days: list[dt.date]) -> None:
    chat = pipeline.table("chat_completions")
    assert chat["id"].is_unique
    got = ids_by_day(chat)
    usage = pipeline.table("token_usage")
    for day in days:
        truth = pipeline.emu.ground_truth(day)
        assert got.get(day, set()) == set(truth.ids), day
        rows = usage[usage["date"] == pd.Timestamp(day)]
        assert int(rows["completions"].sum()) == truth.count
        assert int(rows["total_tokens"].sum()) == truth.total_tokens
        assert int(rows["prompt_tokens"].sum()) == truth.prompt_tokens
        assert int(rows["completion_tokens"].sum()) == truth.completion_tokens
        assert int(rows["completions_without_usage"].sum()) == truth.no_usage
        assert dict(zip(rows["model"], rows["completions"])) == truth.by_model


def materializations(result: dg.ExecuteInProcessResult, name: str) -> dict[str, dict]:
    return {
        e.partition: {k: v.value for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
        if e.asset_key.path[-1] == name
    }


def test_one_day(emu: Emulator, pipeline_factory) -> None:
    pipeline = pipeline_factory(emu, "2026-03-01")
    day = dt.date(2026, 3, 2)
    result = pipeline.materialize("2026-03-02")
    assert result.success
    assert_equals_truth(pipeline, [day])
    truth = emu.ground_truth(day)
    md = materializations(result, "chat_completions")["2026-03-02"]
    assert md["dagster/partition_row_count"] == truth.count
    assert md["total_tokens"] == truth.total_tokens
    assert md["window_asked"] == "created_after=2026-03-01 created_before=2026-03-03"
    assert md["window_kept"] == truth.count
    assert md["window_dropped"] == md["window_received"] - truth.count > 0  # the padding days
    assert md["api_requests"] >= 1
    assert md["run_partitions"] == 1  # a one-day run: the run is the day, so its figures are the day's too
    assert run_figures(result, "chat_completions")["api_requests"] == md["api_requests"]
    assert md["first_created_at"] == dt.datetime(2026, 3, 2, tzinfo=UTC).timestamp()  # the 00:00:00.000 record
    assert md["last_created_at"] == pytest.approx(dt.datetime(2026, 3, 3, tzinfo=UTC).timestamp() - 0.001)
    assert "| created_at |" in md["preview"]
    assert isinstance(md["dagster/column_schema"], dg.TableSchema)
    usage_md = materializations(result, "token_usage")["2026-03-02"]
    assert usage_md["total_tokens"] == truth.total_tokens
    assert usage_md["completions_without_usage"] == truth.no_usage


def test_range_is_one_sweep_with_per_partition_metadata(emu: Emulator, pipeline_factory) -> None:
    pipeline = pipeline_factory(emu, "2026-03-01")
    result = pipeline.materialize("2026-03-02", "2026-03-06")
    assert result.success
    days = day_range(dt.date(2026, 3, 2), dt.date(2026, 3, 6))
    assert_equals_truth(pipeline, days)
    # One sweep: every request asked for the same padded window.
    windows = {(r.query["created_after"], r.query["created_before"]) for r in emu.request_log}
    assert windows == {("2026-03-01", "2026-03-07")}
    padded = sum(emu.ground_truth(d).count for d in day_range(dt.date(2026, 3, 1), dt.date(2026, 3, 7)))
    assert emu.requests_served == -(-padded // 100)
    chat_md = materializations(result, "chat_completions")
    assert sorted(chat_md) == [d.isoformat() for d in days]
    for day in days:
        truth = emu.ground_truth(day)
        assert chat_md[day.isoformat()]["dagster/partition_row_count"] == truth.count  # the day's, not the range's
        assert chat_md[day.isoformat()]["total_tokens"] == truth.total_tokens
    # Each partition's metadata describes that partition only; the run's figures are reported once.
    run_keys = {"api_requests", "fetch_seconds", "window_received", "run_partitions", "days_written", "days_resumed"}
    for name in ("chat_completions", "chat_messages", "token_usage"):
        by_day = materializations(result, name)
        for day in days:
            md = by_day[day.isoformat()]
            assert not run_keys & set(md), f"{name} {day}: run figures on a partition"
            next_day = (day + dt.timedelta(days=1)).isoformat()
            assert f">= '{day.isoformat()} 00:00:00' AND" in md["Query"] and f"< '{next_day} 00:00:00'" in md["Query"]
        usage_rows = read_table(pipeline.database, "token_usage").groupby("date").size()
        if name == "token_usage":  # the UI's per-partition plot is no flat line at the range total
            assert [by_day[d.isoformat()]["dagster/partition_row_count"] for d in days] == [
                int(usage_rows.get(pd.Timestamp(d), 0)) for d in days
            ]
        figures = run_figures(result, name)
        assert (figures["run_partitions"], figures["days_written"], figures["days_resumed"]) == (5, 5, 0)
        assert figures["run_days"] == "2026-03-02...2026-03-06"
    assert run_figures(result, "chat_completions")["api_requests"] == emu.requests_served
    checks = result.get_asset_check_evaluations()
    # One evaluation per asset and partition, every rule in its metadata.
    assert sorted((c.asset_key.path[-1], c.check_name, c.partition) for c in checks) == sorted(
        (asset, name, d.isoformat())
        for asset, name in [
            ("chat_completions", "rows_valid"),
            ("chat_messages", "rows_valid"),
            ("token_usage", "sums_match_chat_completions"),
        ]
        for d in days
    )
    assert all(c.passed for c in checks)
    chat_check = next(c for c in checks if c.asset_key.path[-1] == "chat_completions")
    assert chat_check.metadata["failed_rules"].value == "(none)"
    assert {k: chat_check.metadata[k].value for k in ("ids_unique", "tokens_non_negative")} == dict.fromkeys(
        ("ids_unique", "tokens_non_negative"), "passed"
    )


@pytest.mark.parametrize("unit", ["ms", "s"])
@pytest.mark.parametrize("boundary", BOUNDARY_READINGS)
def test_exact_days_under_every_boundary_reading(emu: Emulator, pipeline_factory, boundary: str, unit: str) -> None:
    emu.boundary = boundary
    emu.timestamp_unit = unit
    pipeline = pipeline_factory(emu, "2026-03-01")
    assert pipeline.materialize("2026-03-03", "2026-03-04", checks=False).success
    chat = pipeline.table("chat_completions")
    for day in (dt.date(2026, 3, 3), dt.date(2026, 3, 4)):
        truth = emu.ground_truth(day)
        assert ids_by_day(chat).get(day, set()) == set(truth.ids)
        times = chat[chat["created_at"].dt.date == day]["created_at"]
        if truth.count >= 2:  # the generator puts records on both edges of every such day
            assert times.min() == pd.Timestamp(day, tz="UTC")
            assert times.max() == pd.Timestamp(day, tz="UTC") + pd.Timedelta(days=1) - pd.Timedelta(milliseconds=1)
    assert len(chat) == sum(emu.ground_truth(d).count for d in (dt.date(2026, 3, 3), dt.date(2026, 3, 4)))


def test_rerun_replaces_without_duplicates_and_keeps_neighbours(emu: Emulator, pipeline_factory) -> None:
    pipeline = pipeline_factory(emu, "2026-03-01")
    assert pipeline.materialize("2026-03-02", "2026-03-06").success
    before = pipeline.table("chat_completions")
    assert pipeline.materialize("2026-03-04").success
    assert pipeline.materialize("2026-03-04").success
    after = pipeline.table("chat_completions")
    pd.testing.assert_frame_equal(
        before.sort_values("id").reset_index(drop=True), after.sort_values("id").reset_index(drop=True)
    )


def test_empty_day_creates_table_and_removes_stale_rows(tmp_path: Path) -> None:
    busy, empty = dt.date(2026, 4, 1), dt.date(2026, 4, 2)
    counts = {busy: 30, empty: 0}
    with Emulator(Dataset(busy, empty, counts=counts), api_key=TEST_KEY) as emu:
        pipeline = Pipeline(emu, tmp_path / "w.duckdb", "2026-04-01")
        # First thing ever written: an empty day. The tables must exist with the contract's columns.
        result = pipeline.materialize("2026-04-02")
        assert result.success
        chat, usage = pipeline.table("chat_completions"), pipeline.table("token_usage")
        assert chat.empty and usage.empty
        assert list(chat.columns) == [c.name for c in CHAT_COMPLETIONS_COLUMNS]
        assert list(usage.columns) == [c.name for c in TOKEN_USAGE_COLUMNS]
        assert materializations(result, "chat_completions")["2026-04-02"]["dagster/partition_row_count"] == 0
        assert pipeline.materialize("2026-04-01").success
        assert len(pipeline.table("chat_completions")) == 30
    # The API now has nothing for 04-01 (deleted upstream). A new instance remembers nothing,
    # but the warehouse holds 30 rows: the shrink guard refuses; allow_shrink then leaves no
    # stale rows in any table (the documented path of an honest upstream deletion).
    with Emulator(Dataset(busy, empty, counts={busy: 0, empty: 0}), api_key=TEST_KEY) as emu2:
        pipeline2 = Pipeline(emu2, tmp_path / "w.duckdb", "2026-04-01")
        assert not pipeline2.materialize("2026-04-01", raise_on_error=False).success
        assert len(pipeline2.table("chat_completions")) == 30
        assert pipeline2.materialize("2026-04-01", allow_shrink=True).success
        for table in ("chat_completions", "chat_messages", "token_usage"):
            assert pipeline2.table(table).empty, table


def test_database_file_named_like_the_schema(emu: Emulator, tmp_path: Path) -> None:
    """cloudglue.duckdb holds catalog 'cloudglue' and schema 'cloudglue': names must not be ambiguous."""
    pipeline = Pipeline(emu, tmp_path / "cloudglue.duckdb", "2026-03-01")
    assert pipeline.materialize("2026-03-02", "2026-03-03").success
    assert pipeline.materialize("2026-03-03").success
    assert_equals_truth(pipeline, [dt.date(2026, 3, 2), dt.date(2026, 3, 3)])


def test_same_types_in_every_partition(emu: Emulator, pipeline_factory) -> None:
    """An all-null optional column or an empty day never changes the stored types."""
    day = dt.datetime(2026, 3, 5, 12, tzinfo=UTC)
    pipeline = pipeline_factory(emu, "2026-03-01")
    emu.dataset._base_counts[dt.date(2026, 3, 5)] = 0  # noqa: SLF001 - only the records below that day
    emu.add_record(
        {"id": "sparse-1", "object": "chat.completion", "model": "m", "usage": {}, "choices": [], "payload": {}},
        at_ms=int(day.timestamp() * 1000),
    )
    assert pipeline.materialize("2026-03-05").success  # first write: every optional column null
    assert pipeline.materialize("2026-03-02", "2026-03-04").success
    chat = pipeline.table("chat_completions")
    sparse = chat[chat["id"] == "sparse-1"].iloc[0]
    assert pd.isna(sparse["total_tokens"]) and pd.isna(sparse["temperature"]) and pd.isna(sparse["prompt"])
    conn_types = read_table(pipeline.database, "chat_completions").dtypes
    assert str(conn_types["total_tokens"]).lower() in ("int64", "float64")  # numeric, never text
    full = chat[chat["id"] != "sparse-1"]
    assert full["total_tokens"].notna().any() and full["temperature"].notna().any()


def test_checks_fail_on_the_offending_partition_only(emu: Emulator, pipeline_factory) -> None:
    at = int(dt.datetime(2026, 3, 3, 8, tzinfo=UTC).timestamp() * 1000)
    base = {"object": "chat.completion", "model": "nimbus-001", "choices": [], "payload": {}}
    emu.add_record({**base, "id": "neg", "usage": {"prompt_tokens": -5}}, at_ms=at)
    odd = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 5}
    emu.add_record({**base, "id": "odd", "usage": odd}, at_ms=at + 86_400_000)  # 03-04
    pipeline = pipeline_factory(emu, "2026-03-01")
    result = pipeline.materialize("2026-03-02", "2026-03-04")
    assert result.success  # checks are not blocking: the data is loaded and flagged
    outcomes = {(c.asset_key.path[-1], c.check_name, c.partition): c for c in result.get_asset_check_evaluations()}
    bad = outcomes[("chat_completions", "rows_valid", "2026-03-03")]
    assert not bad.passed and bad.severity == dg.AssetCheckSeverity.ERROR
    assert bad.metadata["failed_rules"].value == "tokens_non_negative"
    assert bad.metadata["tokens_non_negative.examples"].value == "neg"
    assert outcomes[("chat_completions", "rows_valid", "2026-03-02")].passed
    warn = outcomes[("chat_completions", "rows_valid", "2026-03-04")]  # only the warning rule fails
    assert not warn.passed and warn.severity == dg.AssetCheckSeverity.WARN
    assert warn.metadata["failed_rules"].value == "total_tokens_consistent"
    assert outcomes[("token_usage", "sums_match_chat_completions", "2026-03-03")].passed


def test_usage_check_catches_a_day_reloaded_in_one_table_only(emu: Emulator, pipeline_factory) -> None:
    pipeline = pipeline_factory(emu, "2026-03-01")
    assert pipeline.materialize("2026-03-03").success
    at = int(dt.datetime(2026, 3, 3, 9, tzinfo=UTC).timestamp() * 1000)
    emu.add_record(
        {
            "id": "late",
            "object": "chat.completion",
            "model": "nimbus-001",
            "usage": {"total_tokens": 9},
            "choices": [],
            "payload": {},
        },
        at_ms=at,
    )
    chat_only = pipeline.materialize("2026-03-03", selection=[pipeline.built.keys["chat_completions"]])
    assert chat_only.success
    job = dg.define_asset_job("usage_check", selection=dg.AssetSelection.checks(*pipeline.built.asset_checks))
    defs = dg.Definitions.merge(pipeline.built.definitions(), dg.Definitions(jobs=[job], resources=pipeline.resources))
    check_only = defs.resolve_job_def("usage_check").execute_in_process(
        instance=pipeline.instance, tags={"dagster/partition": "2026-03-03"}
    )
    [evaluation] = check_only.get_asset_check_evaluations()
    assert evaluation.check_name == "sums_match_chat_completions" and not evaluation.passed
    assert evaluation.partition == "2026-03-03"
    assert pipeline.materialize("2026-03-03").success  # re-loading both tables heals it
    assert all(e.passed for e in pipeline.materialize("2026-03-03").get_asset_check_evaluations())


def test_wrong_key_fails_fast_without_retries_and_keeps_data(emu: Emulator, tmp_path: Path) -> None:
    pipeline = Pipeline(emu, tmp_path / "w.duckdb", "2026-03-01", retry_policy=dg.RetryPolicy(max_retries=3, delay=60))
    assert pipeline.materialize("2026-03-02").success
    before = pipeline.table("chat_completions")
    emu.api_key = "rotated-key"
    emu.reset_stats()
    result = pipeline.materialize("2026-03-02", raise_on_error=False)
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert "CLOUDGLUE_API_KEY" in failure.message
    assert TEST_KEY not in str(failure.to_string())
    assert emu.requests_served == 1  # no client retry, no step retry
    pd.testing.assert_frame_equal(before, pipeline.table("chat_completions"))


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"created_at": "last tuesday"}, "created_at"),
        ({"usage": {"total_tokens": "many"}}, "usage.total_tokens"),
        ({"id": None}, "id"),
    ],
)
def test_malformed_record_fails_naming_it_and_keeps_data(
    emu: Emulator, pipeline_factory, record: dict, field: str
) -> None:
    pipeline = pipeline_factory(emu, "2026-03-01")
    assert pipeline.materialize("2026-03-02").success
    before = pipeline.table("chat_completions")
    raw = {
        "id": "bad-record-1",
        "object": "chat.completion",
        "model": "m",
        "usage": {},
        "choices": [],
        "payload": {},
        "created_at": int(dt.datetime(2026, 3, 2, 9, tzinfo=UTC).timestamp() * 1000),
    }
    raw.update(record)
    emu.add_record(raw, at_ms=int(dt.datetime(2026, 3, 2, 9, tzinfo=UTC).timestamp() * 1000))
    result = pipeline.materialize("2026-03-02", raise_on_error=False)
    assert not result.success
    message = result.get_step_failure_events()[0].step_failure_data.error.message
    assert field in message
    if record.get("id", "") is not None:
        assert "bad-record-1" in message
    pd.testing.assert_frame_equal(before, pipeline.table("chat_completions"))


@pytest.mark.processes
def test_results_do_not_depend_on_local_time_zone(emu: Emulator, tmp_path: Path) -> None:
    """The real CLI under two far-apart TZ settings writes and rewrites exactly the UTC days."""
    database = tmp_path / "tz.duckdb"
    env = {
        **os.environ,
        "CLOUDGLUE_API_KEY": TEST_KEY,
        "CLOUDGLUE_BASE_URL": emu.base_url,
        "CLOUDGLUE_START_DATE": "2026-03-01",
        "CLOUDGLUE_DUCKDB_PATH": str(database),
        "DAGSTER_HOME": str(tmp_path),
    }
    for tz, partition in [
        ("America/Los_Angeles", ["--partition-range", "2026-03-02...2026-03-05"]),
        ("Asia/Tokyo", ["--partition", "2026-03-03"]),
        ("Pacific/Kiritimati", ["--partition", "2026-03-04"]),
    ]:
        done = subprocess.run(
            materialize_cmd(*partition), env={**env, "TZ": tz}, capture_output=True, text=True, timeout=180
        )
        assert done.returncode == 0, done.stderr[-3000:]
    chat = read_table(database, "chat_completions")
    assert chat["id"].is_unique
    got = ids_by_day(chat)
    for day in day_range(dt.date(2026, 3, 2), dt.date(2026, 3, 5)):
        assert got.get(day, set()) == set(emu.ground_truth(day).ids), day
    assert set(got) <= set(day_range(dt.date(2026, 3, 2), dt.date(2026, 3, 5)))
    responses = read_table(database, "responses")  # the bundled definitions load them too
    assert responses["id"].is_unique
    for day in day_range(dt.date(2026, 3, 2), dt.date(2026, 3, 5)):
        stored = set(responses.loc[responses["created_at"].dt.date == day, "id"])
        assert stored == set(emu.responses_ground_truth(day).ids), day


def test_factory_options() -> None:
    capped = build_cloudglue_assets(
        start_date="2026-01-01", max_partitions_per_run=31, key_prefix=["acme", "cg"], group_name="acme"
    )
    tables = capped.assets_def
    assert tables.backfill_policy == dg.BackfillPolicy.multi_run(31)
    assert capped.keys["chat_completions"] == dg.AssetKey(["acme", "cg", "chat_completions"])
    assert capped.keys["token_usage"] == dg.AssetKey(["acme", "cg", "token_usage"])
    spec = tables.specs_by_key[capped.keys["token_usage"]]
    assert {d.asset_key for d in spec.deps} == {capped.keys["chat_completions"]}
    assert spec.group_name == "acme" and spec.kinds == {"cloudglue", "pandas", "duckdb"}
    assert spec.metadata["partition_expr"] == "date"
    assert tables.can_subset and capped.op_name == "acme_cg__tables"
    single = build_cloudglue_assets(start_date="2026-01-01")
    assert single.assets_def.backfill_policy == dg.BackfillPolicy.single_run()
    assert single.partitions_def.timezone == "UTC"
    assert single.assets_def.op.pool == "cloudglue"  # the step calls the API: it shares a pool
    assert build_cloudglue_assets(start_date="2026-01-01", pool=None).assets_def.op.pool is None
    defs = dg.Definitions.merge(
        single.definitions(), dg.Definitions(resources={"cloudglue": CloudglueResource(api_key="k")})
    )
    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_schedule_def("cloudglue_daily_schedule").cron_schedule == "0 1 * * *"


def test_the_schedule_is_the_schedule_definition_its_type_says_with_the_hour_asked() -> None:
    """``CloudglueAssets.schedule`` is a ``dg.ScheduleDefinition`` before any ``Definitions``
    resolves it: its cron, time zone and job can be read from it as from any schedule."""
    assets = build_cloudglue_assets(start_date="2026-01-01", schedule_hour=3)
    schedule = assets.schedule
    assert isinstance(schedule, dg.ScheduleDefinition)
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 3 * * *", "UTC")
    assert schedule.job_name == assets.job.name == "cloudglue_daily"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED


@pytest.mark.parametrize("start", ["2999-01-01", "yesterday", dt.datetime.now(UTC).date().isoformat()])
def test_start_date_must_be_a_past_day(start: str) -> None:
    with pytest.raises(CloudglueConfigError, match="start_date"):
        build_cloudglue_assets(start_date=start)


def test_another_pandas_io_manager_gets_one_frame_per_range_with_each_days_metadata(
    emu: Emulator, pipeline_factory
) -> None:
    """Without our I/O manager (here the stock DuckDBPandasIOManager) nothing is streamed:
    each asset hands one DataFrame for the range, and the partitions still get their own
    row counts and check results."""
    from dagster_duckdb_pandas import DuckDBPandasIOManager

    pipeline = pipeline_factory(emu, "2026-03-01")
    pipeline.resources["io_manager"] = DuckDBPandasIOManager(database=str(pipeline.database), schema="cloudglue")
    result = pipeline.materialize("2026-03-02", "2026-03-04")
    assert result.success
    days = day_range(dt.date(2026, 3, 2), dt.date(2026, 3, 4))
    chat_md = materializations(result, "chat_completions")
    messages_md = materializations(result, "chat_messages")
    for day in days:
        assert chat_md[day.isoformat()]["dagster/partition_row_count"] == emu.ground_truth(day).count
        assert messages_md[day.isoformat()]["completions"] == emu.ground_truth(day).count
    assert sorted(ids_by_day(pipeline.table("chat_completions"))) == [d for d in days if emu.ground_truth(d).count]
    assert all(c.passed for c in result.get_asset_check_evaluations())


def test_the_factory_definitions_run_in_process_unless_told_otherwise() -> None:
    built = build_cloudglue_assets(start_date="2026-01-01")
    assert built.definitions().executor is dg.in_process_executor
    mine = dg.Definitions(executor=dg.multiprocess_executor)
    assert dg.Definitions.merge(built.definitions(executor=None), mine).executor is dg.multiprocess_executor
    with pytest.raises(dg.DagsterInvariantViolationError, match="both have an executor"):
        dg.Definitions.merge(built.definitions(), mine)
