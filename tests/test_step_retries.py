"""Step retries through the real Dagster CLI: a stop during a retry's wait ends the run within
seconds, and the delay a retry logs is the one waited.

Each test runs ``dagster asset materialize -f tests/retry_defs.py`` (the bundled definitions'
assets, the step retry policy and the executor from the environment) against the emulator
behind a loopback proxy that can go down (``HostileProxy.down_until``), into a real DuckDB file
and a real ``DAGSTER_HOME``. The client retries a request once, so an outage outlasts its
retries in about a second and the step asks for a step retry.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from support.hostile_server import HostileProxy
from support.pipeline import TABLES, TEST_KEY, stored_tables
from support.reliability import DAGSTER_SELECT, cli_env, dagster

from cloudglue_dagster.emulator import Dataset, Emulator

# serial: each test holds a stop or a retry delay to a bound of seconds or tenths of one.
pytestmark = [pytest.mark.processes, pytest.mark.serial]

START = dt.date(2026, 6, 1)
FIRST, LAST = "2026-06-02", "2026-06-04"
DEFS = str(Path(__file__).with_name("retry_defs.py"))
COMMAND = dagster("asset", "materialize", "-f", DEFS, *DAGSTER_SELECT, "--partition-range", f"{FIRST}...{LAST}")
RETRY = dg.DagsterEventType.STEP_UP_FOR_RETRY
STOPPED = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    days = [START + dt.timedelta(days=i) for i in range(6)]
    dataset = Dataset(START, days[-1], seed=17, counts={d: 40 + 9 * i for i, d in enumerate(days)})
    with Emulator(dataset, api_key=TEST_KEY) as server:
        yield server


@pytest.fixture
def proxy(emu: Emulator) -> Iterator[HostileProxy]:
    with HostileProxy(emu) as server:
        yield server


@pytest.fixture(scope="module")
def seeded(emu: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DAGSTER_HOME and a DuckDB file holding an honest load of FIRST..LAST (copied by each test)."""
    root = tmp_path_factory.mktemp("seeded")
    env = cli_env(
        key=TEST_KEY, base_url=emu.base_url, start=START.isoformat(), database=root / "w.duckdb", home=root / "home"
    )
    done = subprocess.run(COMMAND, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return root


def copy_of(seeded: Path, tmp_path: Path, proxy: HostileProxy, **settings: str) -> tuple[Path, Path, dict[str, str]]:
    """This test's own copy of the seeded home and warehouse, and the CLI's environment."""
    home, database = tmp_path / "home", tmp_path / "w.duckdb"
    shutil.copytree(seeded / "home", home)
    shutil.copy(seeded / "w.duckdb", database)
    env = cli_env(
        key=TEST_KEY, base_url=proxy.base_url, start=START.isoformat(), database=database, home=home, **settings
    )
    return home, database, env


def retry_requests(instance: dg.DagsterInstance, run_id: str) -> list[dg.EventLogEntry]:
    return [r.event_log_entry for r in instance.get_records_for_run(run_id, of_type=RETRY).records]


def first_retry_request(instance: dg.DagsterInstance, proc: subprocess.Popen, known: set[str]) -> str:
    """The id of the CLI's run (the one not in ``known``), once its step asked for a retry."""
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None and time.monotonic() < deadline, "the step never asked for a retry"
        runs = [r.run_id for r in instance.get_runs(limit=5) if r.run_id not in known]
        if runs and retry_requests(instance, runs[0]):
            return runs[0]
        time.sleep(0.05)


def worker_startup(instance: dg.DagsterInstance, run_id: str) -> float:
    """Seconds the retried attempt's step process took to start, under the multiprocess
    executor (it launches one per attempt): from its STEP_WORKER_STARTING to its
    RESOURCE_INIT_STARTED, from where Dagster raises a signal at once in it. 0 in process."""
    launched = started = 0.0
    for entry in instance.all_logs(run_id):
        kind = entry.dagster_event.event_type_value if entry.dagster_event else ""
        if kind == "STEP_WORKER_STARTING":
            launched = entry.timestamp  # the last one: the retried attempt's
        elif kind == "RESOURCE_INIT_STARTED":
            started = entry.timestamp
    return started - launched if launched and started > launched else 0.0


def stop(how: str, proc: subprocess.Popen, instance: dg.DagsterInstance, run_id: str) -> None:
    """SIGTERM or SIGINT to the CLI (what a deployment and Ctrl-C send), or the UI's Terminate:
    the run launcher's terminate(), which the webserver calls (a CLI run has no process it can
    signal: the run is marked CANCELING)."""
    if how == "ui-terminate":
        instance.run_launcher.terminate(run_id)
    else:
        proc.send_signal(getattr(signal, how))


@pytest.mark.parametrize("executor", ["in_process", "multiprocess"])
@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "ui-terminate"])
def test_a_run_stopped_while_its_step_waits_to_retry_ends_within_seconds_and_fetches_nothing_more(
    seeded: Path, proxy: HostileProxy, tmp_path: Path, executor: str, how: str
) -> None:
    """An outage outlasts the client's retries; the step asks for a retry 30 s later (the
    default policy's first delay, without its jitter). A stop 1 s into the wait used to take
    the rest of it (Dagster waited outside the step, where a signal is only noted and the run's
    status is not read); now the run ends within 5 s, failed or canceled, no attempt fetches
    anything more, and every stored row stays. Under the multiprocess executor the retried
    attempt's new step process starts first (a few seconds): a stop during its start-up takes
    effect once it has started."""
    home, database, env = copy_of(
        seeded, tmp_path, proxy, RETRY_EXECUTOR=executor, RETRY_DELAY="30", RETRY_JITTER="none"
    )
    before = stored_tables(database)
    instance = dg.DagsterInstance.from_config(str(home))
    known = {r.run_id for r in instance.get_runs()}
    proxy.down_until = time.monotonic() + 3600
    proc = subprocess.Popen(COMMAND, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        run_id = first_retry_request(instance, proc, known)
        fetched = proxy.requests
        time.sleep(1.0)  # well inside the 30 s wait
        stopped_at = time.monotonic()
        stop(how, proc, instance, run_id)
        output, _ = proc.communicate(timeout=120)
        took = time.monotonic() - stopped_at
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0, output[-3000:]
    assert took < 5 + worker_startup(instance, run_id), took
    assert proxy.requests == fetched, "an attempt fetched during the wait or after the stop"
    run = instance.get_run_by_id(run_id)
    assert run is not None and run.status in STOPPED, run
    assert len(retry_requests(instance, run_id)) == 1
    after = stored_tables(database)
    for name in TABLES:
        pd.testing.assert_frame_equal(before[name], after[name], obj=name)
    instance.dispose()


def test_the_delay_a_step_retry_logs_is_the_time_until_the_retried_attempt_reads_the_api(
    seeded: Path, proxy: HostileProxy, tmp_path: Path
) -> None:
    """In process, with a policy of 2 s, exponential, +-2 s of jitter and 2 retries, each
    retry's warning names its delay; the retried attempt's first request comes that long after
    the retry was requested (the STEP_UP_FOR_RETRY event), give or take the attempt's start-up
    when the delay is shorter than it. The warning's figure used to be another draw than the
    one Dagster waited."""
    home, _, env = copy_of(seeded, tmp_path, proxy, RETRY_DELAY="2", RETRY_JITTER="PLUS_MINUS", RETRY_MAX_RETRIES="2")
    instance = dg.DagsterInstance.from_config(str(home))
    known = {r.run_id for r in instance.get_runs()}
    requested_at: list[float] = []
    proxy.on_request = lambda _n: requested_at.append(time.time())
    proxy.down_until = time.monotonic() + 3600
    done = subprocess.run(COMMAND, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode != 0, done.stderr[-3000:]
    (run_id,) = [r.run_id for r in instance.get_runs() if r.run_id not in known]
    retries = retry_requests(instance, run_id)
    assert len(retries) == 2
    messages = [e.user_message for e in instance.all_logs(run_id) if "Step retry" in e.user_message]
    logged = [float(m) for m in re.findall(r"Step retry \d+ of 2 in ([\d.]+)s", "\n".join(messages))]
    assert len(logged) >= 2, messages
    for retry, delay in zip(retries, logged[:2]):
        waited = min(t for t in requested_at if t > retry.timestamp) - retry.timestamp
        # The attempt's start-up (in process: a few tenths of a second) is part of the wait,
        # unless the delay is shorter than it.
        assert delay - 0.1 <= waited <= max(delay, 0.6) + 0.3, (delay, waited)
    assert all("next attempt" in m for m in messages if re.search(r"Step retry \d+ of 2 in", m)), messages
    instance.dispose()
