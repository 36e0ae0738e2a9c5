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

from cloudglue_dagster import CloudglueComponent, CloudglueDuckDBIOManager, CloudglueResource
from cloudglue_dagster.component import CloudglueAccount, DuckDBStorage
from cloudglue_dagster.emulator import Dataset, Emulator

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "components"
TYPE = "cloudglue_dagster.CloudglueComponent"


def test_registered_for_dg() -> None:
    from dagster.components.core.package_entry import discover_entry_point_package_objects

    found = {(k.namespace, k.name): v for k, v in discover_entry_point_package_objects().items()}
    assert found[("cloudglue_dagster", "CloudglueComponent")] is CloudglueComponent


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
    from cloudglue_dagster.scaffolder import CloudglueScaffoldParams, scaffolded_yaml

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
                for t in ("chat_completions", "chat_messages", "token_usage")
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
                "cloudglue_research_freshness_sensor",
            }
            assert {s.name for s in defs.schedules or []} == {
                "cloudglue_daily_schedule",
                "cloudglue_research_daily_schedule",
            }
            chat = defs.resolve_assets_def(key("cloudglue/chat_completions"))
            assert chat.backfill_policy == dg.BackfillPolicy.multi_run(31)


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
