"""Freshness checks and the late-data sensor."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.test_utils import freeze_time
from support.pipeline import TEST_KEY, Pipeline

from cloudglue_dagster import CloudglueConfigError, build_cloudglue_assets
from cloudglue_dagster.assets.sensors import LoadedDay, late_days
from cloudglue_dagster.emulator import Dataset, Emulator

UTC = dt.timezone.utc


# -- freshness ------------------------------------------------------------------


def test_freshness_checks_and_sensors_are_built_per_account() -> None:
    built = build_cloudglue_assets(start_date="2026-01-01")
    [checks] = built.freshness_checks
    assert {s.asset_key for s in checks.check_specs} == set(built.keys.values())
    assert {s.name for s in checks.check_specs} == {"freshness_check"}
    assert {s.name: s.default_status for s in built.sensors} == {
        "cloudglue_freshness_sensor": dg.DefaultSensorStatus.STOPPED,
        "cloudglue_late_data_sensor": dg.DefaultSensorStatus.STOPPED,
        "cloudglue_responses_late_data_sensor": dg.DefaultSensorStatus.STOPPED,
        "cloudglue_in_progress_sensor": dg.DefaultSensorStatus.STOPPED,
    }
    quiet = build_cloudglue_assets(
        start_date="2026-01-01",
        freshness_deadline_hour=None,
        late_data_lookback_days=None,
        in_progress_limit_hours=None,
    )
    assert quiet.freshness_checks == () and quiet.sensors == ()
    with pytest.raises(CloudglueConfigError, match="freshness_deadline_hour"):
        build_cloudglue_assets(start_date="2026-01-01", schedule_hour=7)  # deadline 06:00 would precede the run
    with pytest.raises(CloudglueConfigError, match="late_data_lookback_days"):
        build_cloudglue_assets(start_date="2026-01-01", late_data_lookback_days=0)


@pytest.fixture
def march(tmp_path: Path):
    with Emulator(Dataset(dt.date(2026, 3, 1), dt.date(2026, 3, 5), per_day=10, seed=2), api_key=TEST_KEY) as emu:
        pipeline = Pipeline(emu, tmp_path / "w.duckdb", "2026-03-01")
        freshness_job = dg.define_asset_job(
            "freshness", selection=dg.AssetSelection.checks(*pipeline.built.freshness_checks)
        )
        defs = dg.Definitions.merge(
            pipeline.built.definitions(), dg.Definitions(jobs=[freshness_job], resources=pipeline.resources)
        )
        yield pipeline, defs


def freshness(defs: dg.Definitions, instance: dg.DagsterInstance, at: dt.datetime) -> dict[str, bool]:
    with freeze_time(at):
        result = defs.resolve_job_def("freshness").execute_in_process(instance=instance)
    return {e.asset_key.path[-1]: e.passed for e in result.get_asset_check_evaluations()}


def test_freshness_follows_the_deadline(march) -> None:
    pipeline, defs = march
    assert pipeline.materialize("2026-03-03").success
    fresh = {"chat_completions": True, "chat_messages": True, "token_usage": True}
    stale = dict.fromkeys(fresh, False)
    assert freshness(defs, pipeline.instance, dt.datetime(2026, 3, 4, 6, 30, tzinfo=UTC)) == fresh  # wants 03-03
    assert freshness(defs, pipeline.instance, dt.datetime(2026, 3, 4, 5, 59, tzinfo=UTC)) == stale  # wants 03-02
    assert freshness(defs, pipeline.instance, dt.datetime(2026, 3, 5, 6, 0, tzinfo=UTC)) == stale  # wants 03-04


def test_the_daily_run_evaluates_freshness_after_loading(march) -> None:
    """The freshness checks of a run that loads the awaited day see that day's materialization."""
    pipeline, defs = march
    with freeze_time(dt.datetime(2026, 3, 5, 7, tzinfo=UTC)):
        result = defs.resolve_job_def("cloudglue_daily").execute_in_process(
            instance=pipeline.instance, partition_key="2026-03-04"
        )
    evaluations = [e for e in result.get_asset_check_evaluations() if e.check_name == "freshness_check"]
    assert len(evaluations) == 3 and all(e.passed for e in evaluations)


# -- late data: the pure rule ---------------------------------------------------


def test_late_days_baselines() -> None:
    loaded = {"d1": LoadedDay(10, 5), "d2": LoadedDay(11, None), "d3": LoadedDay(12, None)}
    # d1: single-day load, baseline 5 -> 6 changed. d2: range load, first probe is the baseline.
    # d3: range load seen by the cursor with the same storage id -> its baseline 7.
    changed, cursor = late_days(loaded, {"d1": 6, "d2": 9, "d3": 8}, {"d3": (12, 7), "gone": (1, 1)})
    assert changed == ["d1", "d3"]
    assert cursor == {"d1": (10, 5), "d2": (11, 9), "d3": (12, 7)}
    # A new load of d3 (storage id 13) resets its baseline; a new load of d1 takes its own count.
    loaded = {**loaded, "d1": LoadedDay(14, 6), "d3": LoadedDay(13, None)}
    changed, cursor = late_days(loaded, {"d1": 6, "d2": 9, "d3": 8}, cursor)
    assert changed == [] and cursor == {"d1": (14, 6), "d2": (11, 9), "d3": (13, 8)}


# -- late data: the sensor against the emulator ---------------------------------


def late_record(emu: Emulator, day: dt.date, id: str) -> None:
    at = int(dt.datetime(day.year, day.month, day.day, 12, tzinfo=UTC).timestamp() * 1000)
    emu.add_record(
        {
            "id": id,
            "object": "chat.completion",
            "model": "nimbus-001",
            "usage": {"total_tokens": 3},
            "choices": [],
            "payload": {},
        },
        at_ms=at,
    )


class Recent:
    """Five UTC days ending yesterday, loaded into a persistent instance."""

    def __init__(self, tmp_path: Path, boundary: str, sensor: str = "cloudglue_late_data_sensor", **factory) -> None:
        self.dataset = Dataset.recent(days=5, per_day=12, seed=4, empty_days=[])
        self.days = [self.dataset.start + dt.timedelta(days=i) for i in range(5)]
        self.emu = Emulator(self.dataset, api_key=TEST_KEY, boundary=boundary).start()
        self.pipeline = Pipeline(self.emu, tmp_path / "w.duckdb", self.days[0].isoformat(), **factory)
        (tmp_path / "home").mkdir(parents=True)
        self.pipeline.instance = dg.DagsterInstance.local_temp(str(tmp_path / "home"))
        [self.sensor] = [s for s in self.pipeline.built.sensors if s.name == sensor]
        self.defs = dg.Definitions.merge(
            self.pipeline.built.definitions(), dg.Definitions(resources=self.pipeline.resources)
        )
        self.cursor: str | None = None

    def tick(self) -> list[str]:
        """One evaluation; the days it asks to re-load."""
        self.emu.reset_stats()
        context = dg.build_sensor_context(
            instance=self.pipeline.instance,
            cursor=self.cursor,
            definitions=self.defs,
            resources=self.pipeline.resources,
        )
        result = self.sensor.evaluate_tick(context)
        self.cursor = result.cursor or self.cursor
        self.requests = list(result.run_requests or [])
        return sorted(r.partition_key for r in self.requests)

    def close(self) -> None:
        self.emu.stop()
        self.pipeline.instance.dispose()


@pytest.fixture
def recent_factory(tmp_path: Path):
    made: list[Recent] = []

    def make(boundary: str, **factory) -> Recent:
        made.append(Recent(tmp_path / str(len(made)), boundary, **factory))
        return made[-1]

    yield make
    for r in made:
        r.close()


@pytest.mark.processes
def test_range_loaded_days_take_the_first_probe_as_baseline(recent_factory) -> None:
    r = recent_factory("exclusive")  # the padded query of a day is exactly that day
    d = [x.isoformat() for x in r.days]
    assert r.tick() == []  # nothing loaded: no request at all
    assert r.emu.requests_served == 0
    assert r.pipeline.materialize(d[1], d[3], checks=False).success
    assert r.tick() == []  # baselines: the first probes after the load
    probes = [q.query for q in r.emu.request_log]
    assert len(probes) == 3 and all(q["limit"] == "1" for q in probes)  # one cheap request per loaded day
    assert {(q["created_after"], q["created_before"]) for q in probes} == {
        ((x - dt.timedelta(days=1)).isoformat(), (x + dt.timedelta(days=1)).isoformat()) for x in r.days[1:4]
    }
    late_record(r.emu, r.days[2], "late-1")
    assert r.tick() == [d[2]]  # only the day that changed
    assert r.tick() == [d[2]]  # asked again until it is re-loaded (the run key deduplicates)
    assert r.pipeline.materialize(d[2], checks=False).success
    assert r.tick() == []
    assert "late-1" in set(r.pipeline.table("chat_completions")["id"])


@pytest.mark.processes
def test_single_day_load_is_its_own_baseline(recent_factory) -> None:
    r = recent_factory("exclusive")
    day = r.days[3].isoformat()
    assert r.pipeline.materialize(day, checks=False).success
    late_record(r.emu, r.days[3], "late-2")  # arrives before the sensor ever ran
    assert r.tick() == [day]  # window_received, recorded at load time, is the baseline


@pytest.mark.processes
def test_inclusive_boundaries_reload_the_neighbours_too(recent_factory) -> None:
    r = recent_factory("inclusive")  # the padded query of D covers D-1..D+1
    d = [x.isoformat() for x in r.days]
    assert r.pipeline.materialize(d[0], d[4], checks=False).success
    assert r.tick() == []
    late_record(r.emu, r.days[2], "late-3")
    assert r.tick() == d[1:4]


@pytest.mark.processes
def test_lookback_limits_the_watched_days(recent_factory) -> None:
    r = recent_factory("exclusive", late_data_lookback_days=2)
    d = [x.isoformat() for x in r.days]
    assert r.pipeline.materialize(d[0], d[4], checks=False).success
    assert r.tick() == []
    assert len(r.emu.request_log) == 2
    assert sorted(json.loads(r.cursor or "{}")) == d[3:]
    late_record(r.emu, r.days[1], "too-old")
    assert r.tick() == []


@pytest.mark.processes
def test_a_late_response_reloads_its_day_of_responses_and_llm_usage(recent_factory) -> None:
    r = recent_factory("exclusive", sensor="cloudglue_responses_late_data_sensor", responses=True)
    day = r.days[3]
    assert r.pipeline.materialize(day.isoformat(), checks=False).success
    assert r.tick() == []
    at = int(dt.datetime(day.year, day.month, day.day, 15, tzinfo=UTC).timestamp() * 1000)
    r.emu.responses.add_record({"id": "resp_late", "object": "response", "status": "completed"}, at_ms=at)
    assert r.tick() == [day.isoformat()]
    assert all(q.path == "/v1/responses" for q in r.emu.request_log)  # it probes its own endpoint
    [request] = r.requests
    keys = r.pipeline.built.keys
    assert set(request.asset_selection or []) == {keys["responses"], keys["llm_usage"]}
    assert r.pipeline.materialize(day.isoformat(), selection=request.asset_selection, checks=False).success
    assert "resp_late" in set(r.pipeline.table("responses")["id"])
    assert r.tick() == []
