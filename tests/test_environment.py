"""The ``CLOUDGLUE_*`` variables: one list, the docs held against it, and misspellings named."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
from pathlib import Path

import dagster as dg
import pytest
from support.pipeline import TEST_KEY
from support.reliability import cli_env, materialize_cmd

import cloudglue_dagster.definitions
from cloudglue_dagster import CloudglueResource, environment
from cloudglue_dagster.emulator import Dataset, Emulator
from cloudglue_dagster.environment import VARIABLES, misspelt_variables

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("CLOUDGLUE_BASEURL", "CLOUDGLUE_BASE_URL"),
        ("CLOUDGLUE_DUCKDB_PAHT", "CLOUDGLUE_DUCKDB_PATH"),
        ("cloudglue_api_key", "CLOUDGLUE_API_KEY"),
        ("CLOUDGLUE_START", "CLOUDGLUE_START_DATE"),
        ("CLOUDGLUE_MAX_PARTITION_PER_RUN", "CLOUDGLUE_MAX_PARTITIONS_PER_RUN"),
    ],
)
def test_a_misspelt_variable_is_named_with_the_one_it_resembles(name: str, meant: str) -> None:
    assert misspelt_variables({name: "x"}) == [(name, meant)]


@pytest.mark.parametrize(
    "name", ["CLOUDGLUE_BASE_URL", "CLOUDGLUE_RESEARCH_API_KEY", "CLOUDGLUE_EMULATOR_LOG", "BASE_URL", "HOME"]
)
def test_known_names_and_other_variables_of_the_family_stay_quiet(name: str) -> None:
    assert misspelt_variables({name: "x"}) == []


def test_a_variable_given_to_the_resource_as_an_env_var_is_not_a_misspelling(monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's own name for the key (CLOUDGLUE_KEY resembles CLOUDGLUE_API_KEY) is read, not misspelt."""
    # As in a process that has read no variable yet: what earlier tests of this process gave the
    # resource (test_secrets' CLOUDGLUE_BAD_KEY, closer to CLOUDGLUE_KEY) is known for good.
    monkeypatch.setattr(environment, "_read_here", set())
    assert misspelt_variables({"CLOUDGLUE_KEY": "x"}) == [("CLOUDGLUE_KEY", "CLOUDGLUE_API_KEY")]
    CloudglueResource(api_key=dg.EnvVar("CLOUDGLUE_KEY"))
    assert misspelt_variables({"CLOUDGLUE_KEY": "x"}) == []


def test_the_configuration_table_lists_every_variable_with_its_default() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    section = text.split("### Environment variables", 1)[1].split("\n### ", 1)[0]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| `")]
    assert [(r[0].strip("| `"), r[2]) for r in rows] == [(v.name, v.default) for v in VARIABLES]


def test_the_bundled_definitions_read_only_listed_variables_and_name_them_all() -> None:
    source = Path(cloudglue_dagster.definitions.__file__).read_text()
    named = set(re.findall(r"CLOUDGLUE_[A-Z_]+", source))
    assert named == {v.name for v in VARIABLES}
    assert 'os.environ.get("CLOUDGLUE' not in source  # read through the names in environment.py


@pytest.mark.processes
def test_a_misspelt_variable_is_named_when_the_definitions_load_and_in_the_run_log(tmp_path: Path) -> None:
    """CLOUDGLUE_DUCKDB_PAHT once wrote silently into ./cloudglue.duckdb."""
    day = dt.date(2026, 3, 2)
    with Emulator(Dataset(day, day, counts={day: 5}), api_key=TEST_KEY) as emu:
        env = cli_env(
            key=TEST_KEY, base_url=emu.base_url, start="2026-03-01", database=tmp_path / "w.duckdb", home=tmp_path
        )
        env["CLOUDGLUE_DUCKDB_PAHT"] = str(tmp_path / "typo.duckdb")
        done = subprocess.run(
            materialize_cmd("--partition", day.isoformat()), env=env, cwd=tmp_path, capture_output=True, text=True
        )
        base_url = emu.base_url
    assert done.returncode == 0, done.stderr[-3000:]
    said = "Environment variable CLOUDGLUE_DUCKDB_PAHT is set but cloudglue_dagster does not read it: did you mean CLOUDGLUE_DUCKDB_PATH?"
    assert "CloudglueEnvironmentWarning: " + said in done.stderr  # at load
    assert re.search(r"WARNING - resource:cloudglue - .* - " + re.escape(said), done.stderr)  # in the run's log
    assert f"Cloudglue API: {base_url} (from CLOUDGLUE_BASE_URL)" in done.stderr


@pytest.mark.parametrize(
    ("text", "built"), [("false", False), ("0", False), ("no", False), ("TRUE", True), ("1", True)]
)
def test_cloudglue_responses_switches_the_bundled_definitions_responses_tables(
    text: str, built: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cloudglue_dagster.definitions import build_definitions

    monkeypatch.setenv("CLOUDGLUE_RESPONSES", text)
    keys = {key.path[-1] for key in build_definitions().resolve_all_asset_keys()}
    assert ({"responses", "llm_usage"} <= keys) is built
    assert "chat_completions" in keys


def test_a_cloudglue_responses_that_is_not_a_boolean_fails_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from cloudglue_dagster.definitions import build_definitions
    from cloudglue_dagster.errors import CloudglueConfigError

    monkeypatch.setenv("CLOUDGLUE_RESPONSES", "maybe")
    with pytest.raises(CloudglueConfigError, match="CLOUDGLUE_RESPONSES must be true or false, got 'maybe'"):
        build_definitions()
