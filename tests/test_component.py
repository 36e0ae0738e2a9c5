"""CloudglueComponent: YAML configuration, the shipped example, registration with `dg`."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml
from dagster.components.testing import create_defs_folder_sandbox
from dagster.components.testing.utils import component_defs
from support.pipeline import read_table

from cloudglue_dagster import CloudglueComponent, CloudglueDuckDBIOManager, CloudglueResource
from cloudglue_dagster.components.component import CloudglueAccount, DuckDBStorage
from cloudglue_dagster.emulator import Dataset, Emulator

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "components"
TYPE = "cloudglue_dagster.CloudglueComponent"


def test_registered_for_dg() -> None:
    from dagster.components.core.package_entry import discover_entry_point_package_objects

    found = {(k.namespace, k.name): v for k, v in discover_entry_point_package_objects().items()}
    assert found[("cloudglue_dagster", "CloudglueComponent")] is CloudglueComponent


@pytest.mark.processes
def test_example_passes_dagster_definitions_validate() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDGLUE_")}  # no key needed to validate
    done = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "Validation successful for code location cloudglue_example" in done.stdout + done.stderr


DG = Path(sys.executable).with_name("dg")  # dagster-dg-cli, a dev dependency


def dg_cli(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDGLUE_")}  # no key needed
    env["PATH"] = f"{DG.parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run([str(DG), *args], cwd=project, env=env, capture_output=True, text=True, timeout=180)


@pytest.mark.processes
def test_dg_scaffolds_a_defs_yaml_that_passes_dg_check_defs_as_written(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(EXAMPLE, project)
    database = tmp_path / "acme.duckdb"
    options = ["--api-key-env-var", "ACME_KEY", "--key-prefix", "acme_main", "--duckdb-path", str(database)]
    made = dg_cli(project, "scaffold", "defs", TYPE, "acme", *options)
    assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-3000:]
    default = dg_cli(project, "scaffold", "defs", TYPE, "plain-account")  # every option defaulted
    assert default.returncode == 0, default.stdout[-2000:] + default.stderr[-3000:]
    checked = dg_cli(project, "check", "defs")
    assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-3000:]
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr
    listed = dg_cli(project, "list", "defs", "--json")
    jobs = {job["name"] for job in json.loads(listed.stdout)["jobs"]}
    assert {"acme_main_daily", "plain_account_daily", "cloudglue_daily"} <= jobs

    defs_folder = project / "cloudglue_example" / "defs"
    acme = yaml.safe_load((defs_folder / "acme" / "defs.yaml").read_text())
    assert acme["type"] == TYPE
    assert acme["attributes"]["account"] == {"api_key_env_var": "ACME_KEY"}
    assert acme["attributes"]["io_manager"] == {"duckdb_path": str(database)}
    assert acme["attributes"]["key_prefix"] == "acme_main"
    plain = yaml.safe_load((defs_folder / "plain-account" / "defs.yaml").read_text())["attributes"]
    assert plain["key_prefix"] == "plain_account"  # the folder's name, made a valid job name
    thirty_days_ago = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=30)
    assert plain["start_date"] == thirty_days_ago.isoformat()
    assert plain["account"]["api_key_env_var"] == "CLOUDGLUE_API_KEY"
    assert plain["io_manager"]["duckdb_path"] == "warehouse.duckdb"


def test_the_scaffolded_yaml_loads_a_day_once_its_variable_is_set(tmp_path: Path, monkeypatch) -> None:
    from cloudglue_dagster.components.scaffolder import CloudglueScaffoldParams, scaffolded_yaml

    day = dt.date(2026, 3, 2)
    database = tmp_path / "w.duckdb"
    params = CloudglueScaffoldParams(api_key_env_var="ACME_KEY", start_date="2026-03-01", duckdb_path=str(database))
    attributes = yaml.safe_load(scaffolded_yaml(TYPE, params, "acme"))["attributes"]
    with (
        Emulator(Dataset(day, day, per_day=30, seed=4), api_key="acme-key") as emu,
        create_defs_folder_sandbox() as sandbox,
    ):
        attributes["account"]["base_url"] = emu.base_url  # the one line a test adds: the API is the emulator
        monkeypatch.setenv("ACME_KEY", "acme-key")
        (sandbox.defs_folder_path / "acme").mkdir()
        (sandbox.defs_folder_path / "acme" / "defs.yaml").write_text(
            yaml.safe_dump({"type": TYPE, "attributes": attributes})
        )
        with sandbox.build_all_defs() as defs:
            job = defs.resolve_job_def("acme_daily")
            assert job.execute_in_process(
                instance=dg.DagsterInstance.ephemeral(), partition_key=day.isoformat()
            ).success
        conn = duckdb.connect(str(database), read_only=True)
        try:
            assert set(conn.execute("SELECT id FROM acme.chat_completions").df()["id"]) == set(
                emu.ground_truth(day).ids
            )
        finally:
            conn.close()


CREATE_DAGSTER = Path(sys.executable).with_name("create-dagster")  # create-dagster, a dev dependency
REPO = Path(__file__).resolve().parents[1]


def new_project(tmp_path: Path, emu: Emulator, database: Path) -> tuple[Path, dict[str, str]]:
    """A project made as docs/operations.md says: ``create-dagster project``, then
    ``dg scaffold defs`` of one account, its API root the emulator. Returns the project and the
    environment of its ``dg`` commands.

    Without network: ``--no-uv-sync`` (no ``uv sync``), no update check, and PYTHONPATH (this
    tree, then the project's ``src``) standing for the docs' ``pip install -e .`` and
    ``pip install cloudglue-dagster`` into the project's environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDGLUE_")}
    env["DAGSTER_DG_UPDATE_CHECK_ENABLED"] = "0"  # create-dagster asks PyPI for a newer version
    env["PATH"] = f"{DG.parent}{os.pathsep}{env.get('PATH', '')}"
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env["DAGSTER_HOME"] = str(home)
    made = subprocess.run(
        [str(CREATE_DAGSTER), "project", "my-project", "--no-uv-sync"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-3000:]
    project = tmp_path / "my-project"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), str(project / "src"), env.get("PYTHONPATH")]))
    scaffold = ["scaffold", "defs", TYPE, "cloudglue", "--start-date", "2026-03-01", "--duckdb-path", str(database)]
    scaffolded = dg_in(project, env, *scaffold)
    assert scaffolded.returncode == 0, scaffolded.stdout[-2000:] + scaffolded.stderr[-3000:]
    defs_yaml = project / "src" / "my_project" / "defs" / "cloudglue" / "defs.yaml"
    text = defs_yaml.read_text()
    assert "\n  max_partitions_per_run" not in text  # a range is one run, as dg launch needs
    # The one line a test adds: the API is the emulator.
    defs_yaml.write_text(text.replace("  account:\n", f"  account:\n    base_url: {emu.base_url}\n", 1))
    return project, env


def dg_in(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DG), *args], cwd=project, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.processes
def test_a_project_made_by_create_dagster_scaffolds_checks_and_launches_a_range_of_days(
    tmp_path: Path, cloudglue_emulator_factory
) -> None:
    first, last = dt.date(2026, 3, 2), dt.date(2026, 3, 4)
    emu = cloudglue_emulator_factory(
        start=dt.date(2026, 3, 1), end=dt.date(2026, 3, 5), per_day=25, seed=8, empty_days=(), api_key="acme-key"
    )
    database = tmp_path / "warehouse.duckdb"
    project, env = new_project(tmp_path, emu, database)
    checked = dg_in(project, env, "check", "defs")
    assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-3000:]
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr

    env["CLOUDGLUE_API_KEY"] = "acme-key"
    launched = dg_in(project, env, "launch", "--assets", 'key:"cloudglue/*"', "--partition-range", f"{first}...{last}")
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]

    truth = emu.ground_truth_range(first, last)
    completions = read_table(database, "chat_completions")
    assert len(completions) == sum(t.count for t in truth.values())  # each once, no day outside the range
    assert set(completions["id"]) == set().union(*(t.ids for t in truth.values()))
    usage = read_table(database, "token_usage")
    assert int(usage["total_tokens"].sum()) == sum(t.total_tokens for t in truth.values())
    assert set(usage["date"].dt.date) == set(truth)  # every day of the range, none beside it
    messages = read_table(database, "chat_messages")
    assert set(messages["completion_id"]) == set(completions["id"])


@pytest.mark.processes
def test_dg_launch_names_start_date_for_a_day_before_it(tmp_path: Path, cloudglue_emulator_factory) -> None:
    emu = cloudglue_emulator_factory(start=dt.date(2026, 3, 1), per_day=5, api_key="acme-key")
    project, env = new_project(tmp_path, emu, tmp_path / "warehouse.duckdb")
    env["CLOUDGLUE_API_KEY"] = "acme-key"
    for target in (["--job", "cloudglue_daily"], ["--assets", 'key:"cloudglue/*"']):
        done = dg_in(project, env, "launch", *target, "--partition", "2026-02-27")
        assert done.returncode != 0
        assert "No Cloudglue partition `2026-02-27`: it is before start_date (2026-03-01)" in done.stdout + done.stderr
    assert emu.requests_served == 0


@pytest.mark.processes
def test_dg_scaffold_refuses_a_pasted_key_without_echoing_it(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(EXAMPLE, project)
    pasted = "cg-live-4f9a8b7c6d5e"
    done = dg_cli(project, "scaffold", "defs", TYPE, "oops", "--api-key-env-var", pasted)
    assert done.returncode != 0
    assert "must be the NAME of an environment variable" in done.stdout + done.stderr
    assert pasted not in done.stdout + done.stderr
    assert not (project / "cloudglue_example" / "defs" / "oops").exists()  # no half-made folder left


def key(text: str) -> dg.AssetKey:
    return dg.AssetKey.from_user_string(text)


def causes(exc: BaseException | None) -> str:
    """The messages of an exception and of everything that caused it."""
    out = []
    while exc is not None:
        out.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    return "\n".join(out)


def test_example_defs_load_in_the_sandbox(tmp_path: Path) -> None:
    with create_defs_folder_sandbox() as sandbox:
        shutil.copytree(EXAMPLE / "cloudglue_example" / "defs", sandbox.defs_folder_path, dirs_exist_ok=True)
        with sandbox.build_all_defs() as from_yaml:
            # What the example's definitions.py adds: the research account's I/O manager.
            warehouse = CloudglueDuckDBIOManager(database=str(tmp_path / "w.duckdb"))
            defs = dg.Definitions.merge(from_yaml, dg.Definitions(resources={"warehouse": warehouse}))
            keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
            assert keys == {
                f"{p}/{t}"
                for p in ("cloudglue", "cloudglue_research")
                for t in ("chat_completions", "chat_messages", "token_usage", "responses", "llm_usage")
            }
            resources = defs.resources or {}
            main, research = resources["cloudglue"], resources["cloudglue_research"]
            # The API keys are read from the variables named in YAML, when a run starts.
            assert isinstance(main.api_key, dg.EnvVar) and main.api_key.env_var_name == "CLOUDGLUE_API_KEY"
            assert research.api_key.env_var_name == "CLOUDGLUE_RESEARCH_API_KEY"
            assert resources["cloudglue_io_manager"].schema_ == "cloudglue"
            assert "cloudglue_research_io_manager" not in resources  # it uses `warehouse`, from definitions.py
            research_chat = defs.resolve_assets_def(key("cloudglue_research/chat_completions"))
            assert (
                research_chat.get_io_manager_key_for_asset_key(key("cloudglue_research/chat_completions"))
                == "warehouse"
            )
            sensors = {s.name for s in defs.sensors or []}
            assert sensors == {
                "cloudglue_freshness_sensor",
                "cloudglue_late_data_sensor",
                "cloudglue_responses_late_data_sensor",
                "cloudglue_in_progress_sensor",
                "cloudglue_research_freshness_sensor",
                "cloudglue_research_in_progress_sensor",
            }
            assert {s.name for s in defs.schedules or []} == {
                "cloudglue_daily_schedule",
                "cloudglue_research_daily_schedule",
            }
            chat = defs.resolve_assets_def(key("cloudglue/chat_completions"))
            assert chat.backfill_policy == dg.BackfillPolicy.single_run()  # what CLI ranges need


def account_yaml(name: str, emu: Emulator, database: Path, **extra) -> dict:
    return {
        "type": TYPE,
        "attributes": {
            "account": {"api_key_env_var": f"{name.upper()}_CLOUDGLUE_KEY", "base_url": emu.base_url},
            "start_date": "2026-03-01",
            "key_prefix": name,
            "io_manager": {"duckdb_path": str(database), "schema": name},
            **extra,
        },
    }


def test_two_accounts_from_yaml_load_their_own_data(tmp_path: Path, monkeypatch) -> None:
    database = tmp_path / "w.duckdb"
    day = dt.date(2026, 3, 2)
    with (
        Emulator(Dataset(day, day, per_day=30, seed=5), api_key="key-of-acme") as acme,
        Emulator(Dataset(day, day, per_day=70, seed=6), api_key="key-of-beta") as beta,
        create_defs_folder_sandbox() as sandbox,
    ):
        monkeypatch.setenv("ACME_CLOUDGLUE_KEY", "key-of-acme")
        monkeypatch.setenv("BETA_CLOUDGLUE_KEY", "key-of-beta")
        prices = {"nimbus-001": {"input_per_million": 1.0, "output_per_million": 2.0}}
        for name, emu, extra in (("acme", acme, {"prices": prices}), ("beta", beta, {})):
            folder = sandbox.defs_folder_path / name
            folder.mkdir()
            (folder / "defs.yaml").write_text(yaml.safe_dump(account_yaml(name, emu, database, **extra)))
        with sandbox.build_all_defs() as defs:
            instance = dg.DagsterInstance.ephemeral()
            for name in ("acme", "beta"):
                result = defs.resolve_job_def(f"{name}_daily").execute_in_process(
                    instance=instance, partition_key="2026-03-02"
                )
                assert result.success
        conn = duckdb.connect(str(database), read_only=True)
        try:
            for name, emu in (("acme", acme), ("beta", beta)):
                truth = emu.ground_truth(day)
                ids = set(conn.execute(f"SELECT id FROM {name}.chat_completions").df()["id"])
                assert ids == set(truth.ids)
                usage = conn.execute(f"SELECT * FROM {name}.token_usage").df()
                assert int(usage["total_tokens"].sum()) == truth.total_tokens
                priced = usage[usage["model"] == "nimbus-001"]
                if name == "acme":
                    expected = priced["prompt_tokens"] * 1.0 / 1e6 + priced["completion_tokens"] * 2.0 / 1e6
                    assert priced["total_cost"].tolist() == pytest.approx(expected.tolist())
                else:
                    assert usage["total_cost"].isna().all()
                assert not conn.execute(f"SELECT * FROM {name}.chat_messages").df().empty
        finally:
            conn.close()


def test_python_form_and_defaults(tmp_path: Path) -> None:
    component = CloudglueComponent(
        account=CloudglueAccount(
            api_key_env_var="CLOUDGLUE_API_KEY", max_concurrent_requests=2, max_response_bytes=1 << 20
        ),
        start_date="2026-01-01",
        io_manager=DuckDBStorage(duckdb_path=str(tmp_path / "w.duckdb")),
    )
    defs = component_defs(component=component)
    resource = (defs.resources or {})["cloudglue"]
    assert isinstance(resource, CloudglueResource) and resource.max_concurrent_requests == 2
    assert resource.max_response_bytes == 1 << 20 and resource.max_retries == 5  # unset: the resource's default
    assert (defs.resources or {})["cloudglue_io_manager"].schema_ == "cloudglue"
    assert (
        defs.resolve_assets_def(key("cloudglue/token_usage")).group_names_by_key[
            dg.AssetKey(["cloudglue", "token_usage"])
        ]
        == "cloudglue"
    )
    assert defs.executor is dg.in_process_executor and resource.base_url is None  # CLOUDGLUE_BASE_URL at run time


def test_in_process_false_leaves_the_executor_to_the_project(tmp_path: Path) -> None:
    component = CloudglueComponent(
        account=CloudglueAccount(api_key_env_var="CLOUDGLUE_API_KEY"), start_date="2026-01-01", in_process=False
    )
    mine = dg.Definitions(executor=dg.multiprocess_executor)
    assert dg.Definitions.merge(component_defs(component=component), mine).executor is dg.multiprocess_executor


@pytest.mark.parametrize("value", ["cg-live-4f9a8b7c6d5e", "{{ env.CLOUDGLUE_API_KEY }}", "has space"])
def test_a_key_pasted_as_the_variable_name_is_refused_without_echo(value: str) -> None:
    component = CloudglueComponent(account=CloudglueAccount(api_key_env_var=value), start_date="2026-01-01")
    with pytest.raises(Exception) as failure:
        component_defs(component=component)
    assert "api_key_env_var" in causes(failure.value)
    assert value not in causes(failure.value)


def test_yaml_errors_name_the_field() -> None:
    with create_defs_folder_sandbox() as sandbox:
        folder = sandbox.defs_folder_path / "bad"
        folder.mkdir()
        (folder / "defs.yaml").write_text(
            yaml.safe_dump(
                {"type": TYPE, "attributes": {"account": {"api_key_env_var": "K"}, "start_date": "2999-01-01"}}
            )
        )
        with pytest.raises(Exception) as failure:
            with sandbox.build_all_defs():
                pass
        assert "start_date 2999-01-01 is not in the past" in causes(failure.value)


def test_cost_columns_have_a_stable_contract_regardless_of_prices() -> None:
    """Both ways of configuring give the same token_usage columns."""
    defs = component_defs(
        component=CloudglueComponent(account=CloudglueAccount(api_key_env_var="K"), start_date="2026-01-01")
    )
    schema = defs.resolve_assets_def(key("cloudglue/token_usage")).specs_by_key[
        dg.AssetKey(["cloudglue", "token_usage"])
    ]
    names = [c.name for c in schema.metadata["dagster/column_schema"].columns]
    assert names[-3:] == ["input_cost", "output_cost", "total_cost"]


@pytest.mark.parametrize(("guard", "second_run_succeeds"), [("absent", False), ("null", True)])
def test_the_shrink_guard_attribute_reaches_the_assets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, guard: str, second_run_succeeds: bool
) -> None:
    """By default a run that would empty a stored day is refused; ``shrink_guard: null`` lets
    it. (Two emulators on one port: the same account answering 40 completions, then none.)"""
    from support.reliability import free_port

    port = free_port()
    monkeypatch.setenv("K", "k")
    attributes = {
        "account": {"api_key_env_var": "K", "base_url": f"http://127.0.0.1:{port}/v1"},
        "start_date": "2026-06-01",
        "io_manager": {"duckdb_path": str(tmp_path / "w.duckdb")},
    }
    if guard == "null":
        attributes["shrink_guard"] = None
    defs = component_defs(component=CloudglueComponent.model_validate(attributes))
    job = defs.resolve_job_def("cloudglue_daily")
    instance = dg.DagsterInstance.ephemeral()
    day = dt.date(2026, 6, 2)
    outcomes = []
    for per_day in (40, 0):
        dataset = Dataset(dt.date(2026, 6, 1), dt.date(2026, 6, 3), counts={day: per_day}, seed=1)
        with Emulator(dataset, api_key="k", port=port):
            result = job.execute_in_process(instance=instance, partition_key=day.isoformat(), raise_on_error=False)
            outcomes.append(result.success)
    assert outcomes == [True, second_run_succeeds]


def test_the_component_builds_the_responses_tables_unless_yaml_turns_them_off() -> None:
    from dagster.components.testing.utils import component_defs

    for attributes, expected in (
        ({}, True),
        ({"responses": False}, False),
        ({"in_progress_limit_hours": None}, True),
    ):
        component = CloudglueComponent.model_validate(
            {"account": {"api_key_env_var": "K"}, "start_date": "2026-01-01", **attributes}
        )
        defs = component_defs(component=component)
        keys = {k.path[-1] for k in defs.resolve_all_asset_keys()}
        assert ({"responses", "llm_usage"} <= keys) is expected, attributes
        sensors = {s.name for s in defs.sensors or []}
        in_progress = expected and attributes.get("in_progress_limit_hours", 24) is not None
        assert ("cloudglue_in_progress_sensor" in sensors) is in_progress, attributes


def test_yaml_prices_may_change_over_time() -> None:
    from dagster.components.testing.utils import component_defs

    from cloudglue_dagster.assets.options import AssetOptions

    prices = {
        "nimbus-001": [
            {"input_per_million": 0.5, "output_per_million": 1.5},
            {"input_per_million": 0.4, "output_per_million": 1.2, "effective_from": "2026-06-01"},
        ],
        "nimbus-002": {"input_per_million": 1.0, "output_per_million": 4.0},
    }
    component = CloudglueComponent.model_validate(
        {"account": {"api_key_env_var": "K"}, "start_date": "2026-01-01", "prices": prices}
    )
    assert component_defs(component=component).resolve_all_asset_keys()
    bad = CloudglueComponent.model_validate(
        {
            "account": {"api_key_env_var": "K"},
            "start_date": "2026-01-01",
            "prices": {"m": [{"input_per_million": 1, "output_per_million": 1, "effective_from": "June"}]},
        }
    )
    with pytest.raises(Exception) as failure:
        component_defs(component=bad)
    assert "effective_from must be 'YYYY-MM-DD', got 'June'" in causes(failure.value)
    assert "effective_from" in (AssetOptions.model_fields["prices"].description or "")
