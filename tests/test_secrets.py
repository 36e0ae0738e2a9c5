"""The API key never leaves the Authorization header.

After real runs (the ``dagster`` CLI with a real DAGSTER_HOME, retries caused by injected
faults, and a run failing on a wrong key) the key is searched, as bytes, in everything those
runs left: the CLI's output, every file under DAGSTER_HOME (SQLite run and event storage,
compute logs), the warehouse; in what the web UI serves (GraphQL: resource config, run config,
event logs, captured logs); and in exceptions and ``repr`` inside a run. Each search is shown
able to find the key where it is planted, so a pass means absent, not unsearched.

A server can also put the key into its data (a record's id, model, prompt, answer): the tables
keep what it sent, and after real CLI runs (one that succeeds, some that fail on such a record)
the key is in none of what those runs show, in no encoding and in no part of 16 characters.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from pydantic import ValidationError
from support.hostile_server import HostileProxy
from support.leaks import assert_no_encoding, assert_no_leak, hostile_key, what_the_run_left
from support.reliability import (
    RETRYABLE_FAULTS,
    Seen,
    cli_env,
    faults_before_success,
    free_port,
    http_server,
    materialize_cmd,
    ms,
    pages,
    pick_fault_seed,
    read_table,
)

from cloudglue_dagster import (
    AuthenticationError,
    BadRequestError,
    CloudglueClient,
    CloudglueResource,
    InvalidResponseError,
    RetriesExhaustedError,
    build_cloudglue_assets,
)
from cloudglue_dagster.emulator import Dataset, Emulator
from cloudglue_dagster.io_managers.duckdb import CloudglueDuckDBIOManager

WEBSERVER = str(Path(sys.executable).parent / "dagster-webserver")


@pytest.fixture
def key() -> str:
    """A distinctive key, new for every test, so no stale file can match it by chance."""
    return f"sk-cg-live-{secrets.token_hex(16)}"


def needles(key: str) -> list[bytes]:
    """What counts as a leak: the key, or its random part alone (a key cut or re-prefixed)."""
    return [key.encode(), key.rsplit("-", 1)[1].encode()]


def files_containing(root: Path, key: str) -> dict[str, list[bytes]]:
    """Every file under ``root`` whose bytes contain the key (or its random part)."""
    found: dict[str, list[bytes]] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            hits = [n for n in needles(key) if n in data]
            if hits:
                found[str(path.relative_to(root))] = hits
    return found


def assert_absent(text: str | bytes, key: str, where: str) -> None:
    data = text if isinstance(text, bytes) else text.encode()
    assert not [n for n in needles(key) if n in data], f"the API key leaked into {where}"


def plant_and_find(root: Path, key: str) -> None:
    """Sanity of the file search: the key planted in a SQLite database and in a binary file
    under ``root`` is found there, and only there."""
    planted_db = root / "planted.db"
    with sqlite3.connect(planted_db) as conn:
        conn.execute("CREATE TABLE event_logs (id INTEGER PRIMARY KEY, event TEXT)")
        conn.execute("INSERT INTO event_logs (event) VALUES (?)", (json.dumps({"headers": f"Bearer {key}"}),))
    conn.close()
    planted_log = root / "storage" / "planted" / "compute.err"
    planted_log.parent.mkdir(parents=True, exist_ok=True)
    planted_log.write_bytes(os.urandom(4096) + key.rsplit("-", 1)[1].encode() + os.urandom(4096))
    try:
        assert set(files_containing(root, key)) == {"planted.db", "storage/planted/compute.err"}
    finally:
        planted_db.unlink()
        planted_log.unlink()


# -- the CLI, DAGSTER_HOME and the web UI --------------------------------------------------------

RESOURCES_QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message }
    ... on RepositoryLocation { name repositories { name
      allTopLevelResourceDetails { name configFields { name defaultValueAsJson } configuredValues { key value type } }
} } } } } } }
"""
ENV_VARS_QUERY = """
query($selector: RepositorySelector!) { utilizedEnvVarsOrError(repositorySelector: $selector) {
  __typename ... on EnvVarWithConsumersList { results { envVarName envVarConsumers { name } } } } }
"""
RUNS_QUERY = """
{ runsOrError { __typename ... on Runs { results { runId status runConfigYaml tags { key value } } } } }
"""
LOGS_QUERY = """
query($runId: ID!) { logsForRun(runId: $runId) { __typename ... on EventConnection { events {
  __typename ... on MessageEvent { message }
  ... on ErrorEvent { error { message stack cause { message stack } } } } } } }
"""
CAPTURED_QUERY = """
query($logKey: [String!]!) { capturedLogs(logKey: $logKey) { stdout stderr } }
"""


class WebUI:
    """``dagster-webserver`` on a free loopback port; every GraphQL answer is kept."""

    def __init__(self, workspace: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.answers: list[bytes] = []
        self.proc = subprocess.Popen(
            [WEBSERVER, "-w", str(workspace), "-h", "127.0.0.1", "-p", str(self.port)],
            env=env,
            cwd=workspace.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 90
        while True:
            assert self.proc.poll() is None, self.stop()[-3000:]
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/server_info", timeout=2).read()
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                assert time.monotonic() < deadline, "dagster-webserver did not start"
                time.sleep(0.2)

    def graphql(self, query: str, **variables: Any) -> dict[str, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/graphql",
            data=json.dumps({"query": query, "variables": variables}).encode(),
            headers={"Content-Type": "application/json"},
        )
        raw = urllib.request.urlopen(request, timeout=60).read()
        self.answers.append(raw)
        answer = json.loads(raw)
        assert "errors" not in answer, answer["errors"]
        return answer["data"]

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            output, _ = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            output, _ = self.proc.communicate()
        return output.decode(errors="replace")


@pytest.mark.processes
def test_key_is_in_no_output_file_or_ui_after_real_runs(tmp_path: Path, key: str) -> None:
    home = tmp_path / "home"
    database = home / "warehouse.duckdb"
    dataset = Dataset(dt.date(2026, 9, 1), dt.date(2026, 9, 7), per_day=40, seed=9)
    with Emulator(dataset, api_key=key, fault_kinds=RETRYABLE_FAULTS, retry_after_seconds=0) as emu:
        env = cli_env(key=key, base_url=emu.base_url, start="2026-09-01", database=database, home=home)
        # A run that succeeds after retrying failures of >= 4 kinds. The seed is chosen so
        # that the whole run meets at most 5 failures: the default max_retries=5 cannot run out.
        needed = pages(emu, dt.date(2026, 9, 2), dt.date(2026, 9, 5), 100)
        emu.fault_rate = 0.6
        emu.fault_seed = pick_fault_seed(0.6, RETRYABLE_FAULTS, needed, max_faults=5, min_kinds=4)
        ok = subprocess.run(
            materialize_cmd("--partition-range", "2026-09-02...2026-09-05"), env=env, capture_output=True, timeout=180
        )
        assert ok.returncode == 0, ok.stderr[-4000:].decode()
        met = faults_before_success(emu.fault_seed, 0.6, RETRYABLE_FAULTS, needed)
        assert {k: n for k, n in emu.faults_injected.items() if n} == Counter(met)
        assert ok.stderr.count(b"Cloudglue API: ") >= len(met)  # every retry was logged

        # A run that fails: the key was rotated on the server.
        emu.api_key = "sk-cg-rotated-key"
        failed = subprocess.run(materialize_cmd("--partition", "2026-09-03"), env=env, capture_output=True, timeout=180)
        assert failed.returncode != 0
        assert b"refused the API key" in failed.stderr and b"CLOUDGLUE_API_KEY" in failed.stderr

    for name, stream in [
        ("run stdout", ok.stdout),
        ("run stderr", ok.stderr),
        ("failed run stdout", failed.stdout),
        ("failed run stderr", failed.stderr),
    ]:
        assert_absent(stream, key, name)

    # What the web UI shows, from the same DAGSTER_HOME, with the key in its environment.
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text("load_from:\n  - python_module:\n      module_name: cloudglue_dagster.definitions\n")
    ui = WebUI(workspace, env)
    try:
        deadline = time.monotonic() + 90
        while True:
            entries = ui.graphql(RESOURCES_QUERY)["workspaceOrError"]["locationEntries"]
            if entries and entries[0]["loadStatus"] == "LOADED":
                break
            assert time.monotonic() < deadline, entries
            time.sleep(0.3)
        location = entries[0]["locationOrLoadError"]
        assert location["__typename"] == "RepositoryLocation", location
        repository = location["repositories"][0]
        resources = {r["name"]: r for r in repository["allTopLevelResourceDetails"]}
        configured = {v["key"]: (v["value"], v["type"]) for v in resources["cloudglue"]["configuredValues"]}
        assert configured["api_key"] == ("CLOUDGLUE_API_KEY", "ENV_VAR")  # the name, never the value
        assert "api_key" in {f["name"] for f in resources["cloudglue"]["configFields"]}
        env_vars = ui.graphql(
            ENV_VARS_QUERY, selector={"repositoryLocationName": location["name"], "repositoryName": repository["name"]}
        )
        assert "CLOUDGLUE_API_KEY" in {v["envVarName"] for v in env_vars["utilizedEnvVarsOrError"]["results"]}

        runs = ui.graphql(RUNS_QUERY)["runsOrError"]["results"]
        assert sorted(r["status"] for r in runs) == ["FAILURE", "SUCCESS"]
        shown = []
        for run in runs:
            shown.append(json.dumps(ui.graphql(LOGS_QUERY, runId=run["runId"])))
            for log in (home / "storage" / run["runId"] / "compute_logs").glob("*.complete"):
                captured = ui.graphql(CAPTURED_QUERY, logKey=[run["runId"], "compute_logs", log.stem])
                shown.append(json.dumps(captured))
        # The UI did serve the failure and the retries: had they held the key, we would see it.
        assert "refused the API key" in "".join(shown) and "retry 1 of 5" in "".join(shown)
    finally:
        ui_output = ui.stop()
    for i, answer in enumerate(ui.answers):
        assert_absent(answer, key, f"GraphQL answer {i}")
    assert_absent(ui_output, key, "the webserver's output")

    # Every byte the runs and the UI left on disk.
    stored = {str(p.relative_to(home)) for p in home.rglob("*") if p.is_file()}
    assert {"history/runs.db", "history/runs/index.db"} <= stored
    assert sum(s.startswith("history/runs/") and s.endswith(".db") for s in stored) >= 3  # 2 runs + index
    assert any(s.endswith(".err") and "compute_logs" in s for s in stored)
    assert files_containing(tmp_path, key) == {}
    plant_and_find(home, key)


# -- exceptions and reprs inside runs ------------------------------------------------------------


def _echo_server(mode: dict[str, int]):
    """A server that quotes the request's Authorization header in its JSON error, as some
    APIs and proxies do."""

    def reply(request: Seen) -> tuple[int, dict[str, str], bytes]:
        said = f"no access for 'Authorization: {request.headers.get('Authorization')}'"
        return mode["status"], {"Retry-After": "0"}, json.dumps({"error": said}).encode()

    return http_server("127.0.0.1", reply)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, AuthenticationError),
        (403, AuthenticationError),
        (400, BadRequestError),
        (503, RetriesExhaustedError),
        (500, RetriesExhaustedError),
    ],
)
@pytest.mark.processes
def test_key_is_in_no_exception_log_or_repr_when_the_server_echoes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, status: int, error: type
) -> None:
    """The server puts the key in its error text; the exception, the run's failure event, the
    event log on disk and the reprs of resource and client all stay clean, while still
    carrying the server's text (with the key masked)."""
    monkeypatch.setenv("CLOUDGLUE_API_KEY", key)
    mode = {"status": status}
    seen_reprs: list[str] = []
    with _echo_server(mode) as (root, seen):
        resource = CloudglueResource(api_key=dg.EnvVar("CLOUDGLUE_API_KEY"), base_url=f"{root}/v1", max_retries=1)

        @dg.asset
        def probe(cloudglue: CloudglueResource) -> None:
            client = cloudglue.get_client()
            seen_reprs.extend([repr(cloudglue), str(cloudglue), repr(client), str(client)])
            try:
                client.list_chat_completions()
            except error as exc:
                seen_reprs.extend([str(exc), repr(exc), repr(vars(exc))])
                raise

        built = build_cloudglue_assets(start_date="2026-01-01", retry_policy=None)
        (tmp_path / "instance").mkdir()
        instance = dg.DagsterInstance.local_temp(str(tmp_path / "instance"))
        resources = {
            "cloudglue": resource,
            "io_manager": CloudglueDuckDBIOManager(database=str(tmp_path / "w.duckdb"), schema="cloudglue"),
        }
        probe_run = dg.materialize([probe], resources=resources, instance=instance, raise_on_error=False)
        asset_run = dg.materialize(
            list(built.assets), resources=resources, instance=instance, partition_key="2026-01-02", raise_on_error=False
        )
    assert len(seen) >= 2 and all(s.headers["Authorization"] == f"Bearer {key}" for s in seen)  # the key was sent
    assert not probe_run.success and not asset_run.success
    texts = list(seen_reprs)
    for result in (probe_run, asset_run):
        failure = result.get_step_failure_events()[0].step_failure_data.error
        texts.append(failure.to_string())
        texts.extend(str(record) for record in instance.all_logs(result.run_id))
    joined = "\n".join(texts)
    assert error.__name__ in joined and "Bearer ***" in joined  # the server's text, masked
    assert_absent(joined, key, "exceptions, reprs or events")
    instance.dispose()
    assert files_containing(tmp_path, key) == {}
    plant_and_find(tmp_path / "instance", key)


# -- the key in any encoding, keys that cannot be sent, user info ---------------------------------


@pytest.mark.processes
def test_a_key_with_a_control_character_is_refused_without_being_shown(tmp_path: Path, key: str) -> None:
    """A key with a pasted line break used to reach requests, whose InvalidHeader error
    quoted it escaped (past the redaction) into stderr, the run storage and compute logs.
    Now it is refused where the definitions load (CLI) or where the run starts (EnvVar),
    before anything is sent, by an error that names the variable, not the value."""
    bad = key[:-8] + "\n" + key[-8:]
    home = tmp_path / "home"
    with Emulator(Dataset(dt.date(2026, 9, 1), dt.date(2026, 9, 3), per_day=5), api_key=key) as emu:
        env = cli_env(key=bad, base_url=emu.base_url, start="2026-09-01", database=tmp_path / "w.duckdb", home=home)
        done = subprocess.run(materialize_cmd("--partition", "2026-09-02"), env=env, capture_output=True, timeout=180)
        assert done.returncode != 0
        assert b"CLOUDGLUE_API_KEY" in done.stderr and b"control character" in done.stderr

        os.environ["CLOUDGLUE_BAD_KEY"] = bad
        try:
            with pytest.raises(ValidationError) as refused:  # set where the resource is built: refused there
                CloudglueResource(api_key=dg.EnvVar("CLOUDGLUE_BAD_KEY"), base_url=emu.base_url)
            assert "environment variable CLOUDGLUE_BAD_KEY (for api_key)" in str(refused.value)
            assert_no_encoding(str(refused.value), bad, "the load-time error")
            del os.environ["CLOUDGLUE_BAD_KEY"]  # set only where the run executes: refused when it starts
            built = build_cloudglue_assets(start_date="2026-09-01")
            resources = {
                "cloudglue": CloudglueResource(api_key=dg.EnvVar("CLOUDGLUE_BAD_KEY"), base_url=emu.base_url),
                "io_manager": CloudglueDuckDBIOManager(database=str(tmp_path / "w.duckdb"), schema="cloudglue"),
            }
            os.environ["CLOUDGLUE_BAD_KEY"] = bad
            instance = dg.DagsterInstance.ephemeral()
            run = dg.materialize(
                list(built.assets),
                resources=resources,
                instance=instance,
                partition_key="2026-09-02",
                raise_on_error=False,
            )
        finally:
            os.environ.pop("CLOUDGLUE_BAD_KEY", None)
        assert emu.requests_served == 0  # refused before anything was sent
    assert not run.success
    logs = "\n".join(str(record) for record in instance.all_logs(run.run_id))
    assert "control character" in logs and "STEP_UP_FOR_RETRY" not in logs
    for where, text in [("stdout", done.stdout), ("stderr", done.stderr), ("the in-process run's events", logs)]:
        assert_no_encoding(text, bad, where)
        assert_absent(text, key[:-8], where)
    assert files_containing(tmp_path, key[:-8]) == {}


def test_the_key_is_masked_in_every_encoding_a_server_echoes(tmp_path: Path, key: str) -> None:
    """A 401 whose text carries the key raw, repr-escaped, URL-encoded and base64-encoded
    (at two alignments): the error, the run's events and the logs show none of them."""
    from support.hostile_server import HostileProxy

    with Emulator(Dataset(dt.date(2026, 9, 1), dt.date(2026, 9, 3), per_day=5), api_key=key) as emu:
        with HostileProxy(emu, lie="echo_key") as proxy:
            with pytest.raises(AuthenticationError) as info:
                CloudglueClient(key, proxy.base_url).list_chat_completions()
            built = build_cloudglue_assets(start_date="2026-09-01")
            resources = {
                "cloudglue": CloudglueResource(api_key=key, base_url=proxy.base_url),
                "io_manager": CloudglueDuckDBIOManager(database=str(tmp_path / "w.duckdb"), schema="cloudglue"),
            }
            instance = dg.DagsterInstance.ephemeral()
            run = dg.materialize(
                list(built.assets),
                resources=resources,
                instance=instance,
                partition_key="2026-09-02",
                raise_on_error=False,
            )
    assert not run.success
    message = str(info.value)
    assert message.count("***") >= 7  # every form was there, and masked
    texts = [
        message,
        repr(info.value),
        run.get_step_failure_events()[0].step_failure_data.error.to_string(),
        *(str(r) for r in instance.all_logs(run.run_id)),
    ]
    for i, text in enumerate(texts):
        assert_no_encoding(text, key, f"text {i}")


@pytest.mark.processes
def test_user_info_in_base_url_is_refused_and_never_shown(tmp_path: Path, key: str) -> None:
    """``https://user:password@host`` would switch requests to Basic auth and echo the
    password in errors: refused when the definitions load, without repeating it."""
    password = f"pw-{secrets.token_hex(8)}"
    url = f"https://alice:{password}@api.cloudglue.dev/v1"
    with pytest.raises(Exception) as info:
        CloudglueResource(api_key=key, base_url=url)
    assert "user info" in str(info.value)
    assert_no_encoding(str(info.value), password, "the resource's error")
    env = cli_env(key=key, base_url=url, start="2026-01-01", database=tmp_path / "w.duckdb", home=tmp_path / "home")
    done = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-m", "cloudglue_dagster.definitions"],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode != 0 and b"user info" in done.stdout + done.stderr
    assert_no_encoding(done.stdout + done.stderr, password, "dagster definitions validate")


# -- a server that puts the key into its data --------------------------------------------------------

LYING_DATA = Dataset(dt.date(2026, 9, 1), dt.date(2026, 9, 7), per_day=40, seed=9)
LYING_RANGE = "2026-09-02...2026-09-05"


def run_against_a_lying_server(
    tmp_path: Path, key: str, lie: str | tuple[str, ...], prepare: Any
) -> tuple[subprocess.CompletedProcess[bytes], Path, Path]:
    """``dagster asset materialize`` of :data:`LYING_RANGE` through a :class:`HostileProxy`
    telling ``lie``, after ``prepare(emu, proxy)``; returns the CLI's outcome, DAGSTER_HOME and
    the DuckDB file (outside DAGSTER_HOME: the data keeps what the server sent)."""
    home, database = tmp_path / "home", tmp_path / "w.duckdb"
    with Emulator(LYING_DATA, api_key=key) as emu, HostileProxy(emu, lie=lie) as proxy:
        prepare(emu, proxy)
        env = cli_env(key=key, base_url=proxy.base_url, start="2026-09-01", database=database, home=home)
        done = subprocess.run(
            materialize_cmd("--partition-range", LYING_RANGE), env=env, capture_output=True, timeout=300
        )
    return done, home, database


def metadata_of(records: list[Any], table: str) -> list[dict[str, Any]]:
    """The metadata values of ``table``'s materializations of days with rows in ``records``."""
    days = [
        {k: v.value for k, v in r.asset_materialization.metadata.items()}
        for r in records
        if r.asset_materialization is not None and r.asset_materialization.asset_key.path[-1] == table
    ]
    return [day for day in days if day["dagster/partition_row_count"]]


@pytest.mark.processes
def test_a_server_putting_the_key_in_its_records_finds_it_only_in_the_tables(tmp_path: Path) -> None:
    """The server puts the key into every record (``key_in_records``): raw in its id and model,
    raw, base64 and URL-encoded in its prompt, JSON- and repr-escaped in its answer; and one
    record claims a day already written, so days are reopened with a warning naming the next
    record, whose id holds the key. The run succeeds and every check passes (token_usage's
    compares the models, masked alike on both sides). The tables keep what the server sent; the
    CLI's output, every file under DAGSTER_HOME and every event of the run (log lines, the
    tables' materialization metadata with their previews and models, check evaluations, the
    run's observations) show ``***`` where the key was, and the key in no encoding and no part."""
    key = hostile_key()

    def reopen_a_day(emu: Emulator, proxy: HostileProxy) -> None:
        records = emu.dataset.records(dt.date(2026, 9, 4), "ms")
        proxy.moves = {records[len(records) // 2]["id"]: ms(dt.datetime(2026, 9, 2, 12, tzinfo=dt.timezone.utc))}

    done, home, database = run_against_a_lying_server(tmp_path, key, "key_in_records", reopen_a_day)
    assert done.returncode == 0, done.stderr[-4000:].decode(errors="replace")
    chat = read_table(database, "chat_completions")
    assert chat["id"].str.endswith(key).all() and chat["model"].str.endswith(key).all()
    with pytest.raises(AssertionError):  # the search below finds the key where the server put it
        assert_no_leak("".join(chat["prompt"]), key, "the prompts")

    records, left = what_the_run_left(done, home)
    for where, data in left:
        assert_no_leak(data, key, where)
    plant_and_find(home, key)
    messages = "\n".join(r.user_message for r in records)
    assert re.search(r"Completion [0-9a-f-]{36}\.\*\*\* of 2026-09-0\d arrived after that day was handed on", messages)
    chat_days, usage_days = metadata_of(records, "chat_completions"), metadata_of(records, "token_usage")
    assert len(chat_days) >= 3 and len(usage_days) >= 3  # the days with rows (2026-09-05 has none)
    for day in (*chat_days, *usage_days):
        assert day["completions_by_model"] and all(m.endswith(":***") for m in day["completions_by_model"])
        assert ":***" in day["models"] and ":***" in day["preview"]
    # Each cell was masked before it was escaped for markdown (| as \|) and cut to 40 characters.
    assert all(
        "[*** \\| *** \\| ***]" in day["preview"] and "[\"***\" \\| '***']" in day["preview"] for day in chat_days
    )
    checks = [
        r.dagster_event.event_specific_data
        for r in records
        if r.dagster_event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ]
    ours = [c for c in checks if c.check_name in ("rows_valid", "sums_match_chat_completions")]
    assert {c.check_name for c in ours} == {"rows_valid", "sums_match_chat_completions"}
    assert all(c.passed for c in ours)


@pytest.mark.parametrize(
    ("lie", "error", "named", "days_kept"),
    [
        ("huge_tokens", "InvalidResponseError", "completion '{id}'", 0),
        ("lone_surrogate", "DuckDBWriteError", "Row at fault: id '{id}'", 2),
    ],
)
@pytest.mark.processes
def test_a_run_failing_on_a_record_that_holds_the_key_names_the_record_masked(
    tmp_path: Path, lie: str, error: str, named: str, days_kept: int
) -> None:
    """A record whose id holds the key brings a value the client refuses (a token count of
    2**70 in the first record of every page: InvalidResponseError names the completion, before
    anything is written) or DuckDB refuses (a lone surrogate in the answer of a record of the
    range's oldest day: DuckDBWriteError, raised by the I/O manager, names the row, after the
    newer days were committed). The run fails with that error naming the record as
    ``<id>.***``; the key is in none of what the run left: the failure's message, stack and
    cause chain, a ``dg.Failure``'s description and metadata, the materializations of the days
    committed before it, the log lines, the files."""
    key = hostile_key()

    def corrupt_a_record(emu: Emulator, proxy: HostileProxy) -> None:
        proxy.targets = {emu.dataset.records(dt.date(2026, 9, 2), "ms")[3]["id"]}

    done, home, _ = run_against_a_lying_server(tmp_path, key, (lie, "key_in_records"), corrupt_a_record)
    assert done.returncode != 0
    records, left = what_the_run_left(done, home)
    for where, data in left:
        assert_no_leak(data, key, where)
    plant_and_find(home, key)
    (failure,) = [
        r.dagster_event.step_failure_data for r in records if r.dagster_event_type == dg.DagsterEventType.STEP_FAILURE
    ]
    shown = failure.error.to_string()
    assert error in shown and re.search(re.escape(named).replace(r"\{id\}", r"[0-9a-f-]{36}\.\*\*\*"), shown), shown
    if failure.user_failure_data is not None:  # a dg.Failure raised by the step: its description and metadata
        assert ".***'" in failure.user_failure_data.description
    kept = metadata_of(records, "chat_completions")  # reported by the failing step, masked
    assert len(kept) == days_kept and all(":***" in day["models"] for day in kept)


def test_the_client_alone_names_a_record_that_holds_the_key_masked() -> None:
    """Outside Dagster too: the InvalidResponseError of a record whose id holds the key shows
    ``<id>.***`` in its text and its ``completion_id``."""
    key = hostile_key()
    with Emulator(LYING_DATA, api_key=key) as emu, HostileProxy(emu, lie=("huge_tokens", "key_in_records")) as proxy:
        with pytest.raises(InvalidResponseError) as info:
            CloudglueClient(key, proxy.base_url).list_chat_completions(created_after="2026-09-01")
    error = info.value
    assert re.fullmatch(r"[0-9a-f-]{36}\.\*\*\*", error.completion_id or ""), error.completion_id
    for where, text in [("the error", str(error)), ("its repr", repr(error)), ("its attributes", repr(vars(error)))]:
        assert_no_leak(text, key, where)
