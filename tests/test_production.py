"""Dagster as a service: PostgreSQL storage, the run queue, the daemon and the webserver's GraphQL.

One deployment serves the module (about two minutes, most of it the backfill daemon's 30-second
loop): a real PostgreSQL server (``tests/support/postgres.py``), ``dagster.yaml`` on Postgres storage with
the ``QueuedRunCoordinator``, and ``dagster-webserver`` and ``dagster-daemon`` as real processes
over a workspace of two code locations, each reading its own emulator:

* ``cloudglue``: ``cloudglue_dagster.definitions``, backfills in one run;
* ``capped``: ``tests/production_defs.py``, at most 10 days a run, its pool ``capped`` limited to
  one step at a time with ``dagster instance concurrency set``.

Both backfills are launched as the UI launches them (GraphQL ``launchPartitionBackfill``) as soon
as the deployment is up, so they run side by side. Run on their own with ``pytest -m production``.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import requests
import yaml
from support.postgres import PostgresServer
from support.reliability import assert_tables_equal_truth, free_port

from cloudglue_dagster.definitions import build_definitions
from cloudglue_dagster.emulator import Dataset, Emulator

# One xdist worker runs the module: its deployment (PostgreSQL, webserver, daemon) is made once.
pytestmark = [
    pytest.mark.production,
    pytest.mark.servers,
    pytest.mark.processes,
    pytest.mark.xdist_group("production"),
    pytest.mark.timeout(420),
]

UTC = dt.timezone.utc
KEY = "cg-production-test-key"
DAYS = 30
DAYS_PER_RUN = 10
POOL_LIMIT = 1
CONCURRENCY = 2
ASSETS = ("chat_completions", "chat_messages", "token_usage")
SETTLE_SECONDS = 300


DEPLOYMENT_PAGE = Path(__file__).resolve().parents[1] / "docs" / "deployment.md"


def dagster_yaml() -> str:
    """The ``dagster.yaml`` of docs/deployment.md (its first YAML block), with quick queue polling."""
    text = DEPLOYMENT_PAGE.read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    config = yaml.safe_load(block)
    assert "postgres_db" in config["storage"]["postgres"], block
    config["run_coordinator"]["config"]["dequeue_interval_seconds"] = 1
    return yaml.safe_dump(config)


WORKSPACE = """\
load_from:
  - python_module:
      module_name: cloudglue_dagster.definitions
      location_name: cloudglue
  - python_file:
      relative_path: {defs}
      location_name: capped
"""


@dataclass
class Deployment:
    home: Path
    env: dict[str, str]
    graphql: str
    emu: Emulator
    capped_emu: Emulator
    database: Path
    capped_database: Path
    days: list[dt.date]
    backfills: dict[str, str] = field(default_factory=dict)
    launched_at: float = 0.0

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.home))

    def gql(self, query: str, **variables: Any) -> dict[str, Any]:
        reply = requests.post(self.graphql, json={"query": query, "variables": variables}, timeout=60)
        reply.raise_for_status()
        body = reply.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]


LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on PartitionKeysNotFoundError { message }
  }
}"""

BACKFILL_STATUS = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status numPartitions }
    ... on PythonError { message }
  }
}"""

LOCATIONS = """
{ workspaceOrError { __typename ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


def launch_backfill(deployment: Deployment, prefix: str) -> str:
    """The mutation the UI's *Materialize* > *Launch backfill* sends for a partition range of assets."""
    data = deployment.gql(
        LAUNCH_BACKFILL,
        params={
            "assetSelection": [{"path": [prefix, name]} for name in ASSETS],
            "partitionNames": [d.isoformat() for d in deployment.days],
            "fromFailure": False,
            "tags": [],
        },
    )["launchPartitionBackfill"]
    assert data["__typename"] == "LaunchBackfillSuccess", data
    return data["backfillId"]


def wait_for_locations(deployment: Deployment, procs: list[subprocess.Popen], logs: list[Path]) -> None:
    deadline = time.monotonic() + 180
    while True:
        for proc, log in zip(procs, logs):
            if proc.poll() is not None:
                raise AssertionError(f"{log.name} exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
        try:
            entries = deployment.gql(LOCATIONS)["workspaceOrError"]["locationEntries"]
            if len(entries) == 2 and all(e["loadStatus"] == "LOADED" for e in entries):
                errors = [e for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
                assert not errors, errors
                return
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"the webserver did not load both code locations:\n{logs[0].read_text()[-4000:]}")
        time.sleep(0.5)


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("production")
    dataset = Dataset.recent(days=DAYS, per_day=40, seed=14, empty_days=[])
    days = [dataset.start + dt.timedelta(days=i) for i in range(DAYS)]
    # Every request takes 50 ms, so steps that overlap show at the emulators.
    emu = Emulator(dataset, api_key=KEY, latency_seconds=0.05)
    capped_emu = Emulator(
        Dataset.recent(days=DAYS, per_day=40, seed=14, empty_days=[]), api_key=KEY, latency_seconds=0.05
    )
    procs: list[subprocess.Popen] = []
    with PostgresServer() as pg, emu, capped_emu:
        home = root / "home"
        home.mkdir()
        (home / "dagster.yaml").write_text(dagster_yaml())
        workspace = root / "workspace.yaml"
        workspace.write_text(WORKSPACE.format(defs=Path(__file__).with_name("production_defs.py")))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDGLUE_", "CAPPED_", "DAGSTER_"))}
        env.update(
            DAGSTER_HOME=str(home),
            # What the page's dagster.yaml reads (the server trusts loopback: any password).
            DAGSTER_PG_HOST="127.0.0.1",
            DAGSTER_PG_PORT=str(pg.port),
            DAGSTER_PG_USER=pg.user,
            DAGSTER_PG_PASSWORD="unused",
            CLOUDGLUE_API_KEY=KEY,
            CLOUDGLUE_BASE_URL=emu.base_url,
            CLOUDGLUE_START_DATE=days[0].isoformat(),
            CLOUDGLUE_DUCKDB_PATH=str(root / "warehouse.duckdb"),
            CLOUDGLUE_MAX_CONCURRENT_REQUESTS=str(CONCURRENCY),
            CAPPED_BASE_URL=capped_emu.base_url,
            CAPPED_DUCKDB_PATH=str(root / "capped.duckdb"),
            CAPPED_DAYS_PER_RUN=str(DAYS_PER_RUN),
            CAPPED_CONCURRENCY=str(CONCURRENCY),
        )
        dagster_bin = Path(sys.executable).parent
        subprocess.run(
            [str(dagster_bin / "dagster"), "instance", "concurrency", "set", "capped", str(POOL_LIMIT)],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        port = free_port()
        commands = {
            "webserver.log": [
                str(dagster_bin / "dagster-webserver"),
                "-w",
                str(workspace),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            "daemon.log": [str(dagster_bin / "dagster-daemon"), "run", "-w", str(workspace)],
        }
        logs = []
        for name, cmd in commands.items():
            logs.append(root / name)
            with open(root / name, "wb") as out:
                procs.append(
                    subprocess.Popen(
                        cmd, env=env, cwd=root, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                    )
                )
        # This process reads the same instance (its dagster.yaml reads DAGSTER_PG_*).
        saved = {k: os.environ.get(k) for k in env if k.startswith("DAGSTER_")}
        os.environ.update({k: env[k] for k in saved})
        try:
            d = Deployment(
                home=home,
                env=env,
                graphql=f"http://127.0.0.1:{port}/graphql",
                emu=emu,
                capped_emu=capped_emu,
                database=root / "warehouse.duckdb",
                capped_database=root / "capped.duckdb",
                days=days,
            )
            wait_for_locations(d, procs, logs)
            d.launched_at = time.monotonic()
            for prefix in ("cloudglue", "capped"):
                d.backfills[prefix] = launch_backfill(d, prefix)
            yield d
        finally:
            stop(procs)
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def wait_for_backfill(deployment: Deployment, backfill_id: str) -> tuple[str, float]:
    """The backfill's final status and the seconds from its launch to then."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        data = deployment.gql(BACKFILL_STATUS, id=backfill_id)["partitionBackfillOrError"]
        assert data["__typename"] == "PartitionBackfill", data
        if data["status"] not in ("REQUESTED", "CANCELING", "FAILING"):
            return data["status"], time.monotonic() - deployment.launched_at
        time.sleep(1)
    raise AssertionError(f"backfill {backfill_id} did not finish within {SETTLE_SECONDS}s")


def backfill_runs(instance: dg.DagsterInstance, backfill_id: str) -> list[dg.RunRecord]:
    return list(instance.get_run_records(dg.RunsFilter(tags={"dagster/backfill": backfill_id})))


def failed_checks(instance: dg.DagsterInstance, run_ids: list[str]) -> list[tuple[str, str]]:
    """The partitioned checks (rows_valid and the token_usage checks) that failed in the runs.

    Freshness checks are left out: a run of older days rightly warns that yesterday is not
    loaded yet."""
    failed = []
    for run_id in run_ids:
        for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
            evaluation = record.dagster_event.event_specific_data
            if evaluation.check_name == "freshness_check":
                continue
            if not evaluation.passed:
                failed.append((evaluation.check_name, evaluation.partition or ""))
    return failed


def test_a_backfill_launched_as_the_ui_launches_it_runs_through_the_daemon_on_postgres_as_one_run(
    deployment: Deployment,
) -> None:
    status, seconds = wait_for_backfill(deployment, deployment.backfills["cloudglue"])
    instance = deployment.instance()
    runs = backfill_runs(instance, deployment.backfills["cloudglue"])
    assert status == "COMPLETED_SUCCESS", [(r.dagster_run.run_id, r.dagster_run.status) for r in runs]
    assert [r.dagster_run.status for r in runs] == [dg.DagsterRunStatus.SUCCESS]
    assert_tables_equal_truth(deployment.database, deployment.emu, deployment.days)
    assert failed_checks(instance, [runs[0].dagster_run.run_id]) == []
    run = runs[0]
    print(
        f"\nsingle-run backfill of {DAYS} days through the daemon: {seconds:.1f}s from launch to"
        f" COMPLETED_SUCCESS, the run itself {run.end_time - run.start_time:.1f}s"
    )


def test_a_capped_backfill_becomes_runs_of_n_days_whose_api_steps_share_the_pool(deployment: Deployment) -> None:
    status, seconds = wait_for_backfill(deployment, deployment.backfills["capped"])
    instance = deployment.instance()
    runs = backfill_runs(instance, deployment.backfills["capped"])
    assert status == "COMPLETED_SUCCESS", [(r.dagster_run.run_id, r.dagster_run.status) for r in runs]
    assert len(runs) == -(-DAYS // DAYS_PER_RUN)
    assert {r.dagster_run.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
    assert_tables_equal_truth(deployment.capped_database, deployment.capped_emu, deployment.days)
    assert failed_checks(instance, [r.dagster_run.run_id for r in runs]) == []
    # All three were queued before the first ended, and the queue admits 10 runs at once: only
    # the pool kept their sweeps apart (Dagster holds a run in the queue while its pool is full,
    # or its step waits for a slot, depending on timing).
    assert max(r.create_timestamp.timestamp() for r in runs) < min(r.end_time for r in runs)
    emu = deployment.capped_emu
    assert emu.peak_windows_in_flight == POOL_LIMIT
    assert emu.peak_in_flight <= POOL_LIMIT * CONCURRENCY
    print(
        f"\ncapped backfill: {len(runs)} runs in {seconds:.1f}s from launch, the runs"
        f" {max(r.end_time for r in runs) - min(r.start_time for r in runs):.1f}s; at most {emu.peak_windows_in_flight}"
        f" sweep(s) and {emu.peak_in_flight} request(s) in flight at the emulator"
    )


def test_the_schedule_requests_yesterday_and_the_late_data_sensor_replaces_a_day_through_the_daemon(
    deployment: Deployment,
) -> None:
    # After the single-run backfill, so that run and this one do not overlap.
    wait_for_backfill(deployment, deployment.backfills["cloudglue"])
    instance = deployment.instance()
    defs = build_definitions(
        start_date=deployment.days[0].isoformat(),
        duckdb_path=str(deployment.database),
        base_url=deployment.emu.base_url,
    )
    tick = dt.datetime.combine(deployment.days[-1] + dt.timedelta(days=1), dt.time(1, 0), tzinfo=UTC)
    schedule = defs.get_schedule_def("cloudglue_daily_schedule")
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=tick) as context:
        requests_ = schedule.evaluate_tick(context).run_requests
    yesterday = deployment.days[-1].isoformat()
    assert [r.partition_key for r in requests_ or []] == [yesterday]

    # That run request, launched as the UI's Launch run does, and run by the daemon: a one-day run.
    data = deployment.gql(
        LAUNCH_RUN,
        params={
            "selector": {**REPOSITORY, "jobName": "cloudglue_daily"},
            "runConfigData": {},
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in requests_[0].tags.items()]},
        },
    )["launchRun"]
    assert data["__typename"] == "LaunchRunSuccess", data
    assert wait_for_run(instance, data["run"]["runId"]).tags["dagster/partition"] == yesterday

    # A completion of yesterday turns up late; the sensor, started as the UI starts it, sees the
    # day's count change at its first tick and its run replaces the day.
    late_id = "chatcmpl-late-production"
    at = int(dt.datetime.combine(deployment.days[-1], dt.time(12), tzinfo=UTC).timestamp() * 1000)
    deployment.emu.add_record(
        {
            "id": late_id,
            "object": "chat.completion",
            "model": "nimbus-001",
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
            "choices": [],
            "payload": {},
        },
        at_ms=at,
    )
    data = deployment.gql(START_SENSOR, selector={**REPOSITORY, "sensorName": "cloudglue_late_data_sensor"})
    assert data["startSensor"]["__typename"] == "Sensor", data
    deadline = time.monotonic() + 120
    while not (late := [r for r in instance.get_runs(limit=20) if "cloudglue/late_data" in r.tags]):
        assert time.monotonic() < deadline, "the late-data sensor requested no run"
        time.sleep(1)
    run = wait_for_run(instance, late[0].run_id)
    assert run.tags["dagster/partition"] == yesterday
    assert_tables_equal_truth(deployment.database, deployment.emu, deployment.days)


REPOSITORY = {"repositoryLocationName": "cloudglue", "repositoryName": "__repository__"}

LAUNCH_RUN = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message stack }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""

START_SENSOR = """
mutation($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) { __typename ... on PythonError { message } }
}"""


def wait_for_run(instance: dg.DagsterInstance, run_id: str, timeout: float = 120) -> dg.DagsterRun:
    """The run once it has ended; it must have succeeded."""
    deadline = time.monotonic() + timeout
    while (run := instance.get_run_by_id(run_id)) is None or not run.is_finished:
        assert time.monotonic() < deadline, f"run {run_id} still {run.status if run else 'missing'}"
        time.sleep(0.5)
    assert run.status == dg.DagsterRunStatus.SUCCESS, run.status
    return run
