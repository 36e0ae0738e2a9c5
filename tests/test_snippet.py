"""The README's "Add it to your code location" snippet, read from the README (so the two cannot
drift), pasted into a new folder and run as a user runs it: the Dagster CLI of a fresh
virtualenv holding only the built wheel, against the emulator named by ``CLOUDGLUE_BASE_URL``."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.pipeline import TEST_KEY, assert_tables_unchanged, read_table, stored_tables
from support.reliability import DAGSTER_SELECT, free_port
from support.wheel import FreshVenv

from cloudglue_dagster.emulator import Dataset, Emulator

pytestmark = pytest.mark.processes  # the dagster CLI of a fresh virtualenv

README = Path(__file__).resolve().parent.parent / "README.md"
FIRST, LAST = dt.date(2026, 6, 1), dt.date(2026, 6, 5)
DAYS = [FIRST + dt.timedelta(days=i) for i in range((LAST - FIRST).days + 1)]
RANGE = f"{FIRST.isoformat()}...{LAST.isoformat()}"
DATASET = Dataset(FIRST - dt.timedelta(days=1), LAST + dt.timedelta(days=1), per_day=40, seed=27)


def readme_snippet() -> str:
    """The Python block under the README's "Add it to your code location" heading."""
    section = README.read_text().split("## Add it to your code location", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, "the README's code-location section has no python block"
    return found.group(1)


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(DATASET, api_key=TEST_KEY) as server:
        yield server


def project(tmp_path: Path, code: str) -> Path:
    """A user's new folder with ``definitions.py`` and a DAGSTER_HOME of its own."""
    folder = tmp_path / "my_project"
    (folder / "home").mkdir(parents=True)
    (folder / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    (folder / "definitions.py").write_text(code)
    return folder


def materialize(
    venv: FreshVenv, folder: Path, module: str, partitions: list[str], timeout: float = 300, **env: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [str(venv.bin / "dagster"), "asset", "materialize", "-m", module, *DAGSTER_SELECT, *partitions],
        cwd=folder,
        env=venv.env(CLOUDGLUE_API_KEY=TEST_KEY, DAGSTER_HOME=str(folder / "home"), **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return done, time.monotonic() - started


def assert_exact(database: Path) -> None:
    """Every table holds exactly what the emulator served for each day of the range."""
    truth = DATASET.ground_truth_range(FIRST, LAST)
    chat = read_table(database, "chat_completions")
    usage = read_table(database, "token_usage")
    messages = read_table(database, "chat_messages")
    for day in DAYS:
        ids = chat.loc[chat["created_at"].dt.date == day, "id"]
        assert sorted(ids) == sorted(truth[day].ids), day
        day_usage = usage[usage["date"].dt.date == day]
        assert int(day_usage["completions"].sum()) == truth[day].count
        assert int(day_usage["total_tokens"].sum()) == truth[day].total_tokens
        answered = messages[(messages["date"].dt.date == day) & (messages["source"] == "choice")]
        assert set(answered["completion_id"]) == set(truth[day].ids), day


def test_the_readme_snippet_as_pasted_backfills_five_days_exactly_from_the_wheel(
    wheel_venv: FreshVenv, emu: Emulator, tmp_path: Path
) -> None:
    """No base_url in the snippet: CLOUDGLUE_BASE_URL points it at the emulator. The bundled
    definitions run the same range in the same virtualenv, for the time the docs compare."""
    folder = project(tmp_path, readme_snippet())
    done, took = materialize(
        wheel_venv,
        folder,
        "definitions",
        ["--partition-range", RANGE],
        CLOUDGLUE_BASE_URL=emu.base_url,
        CLOUDGLUE_DUCKDB_PAHT=str(folder / "typo.duckdb"),  # misspelt: named, not followed
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert_exact(folder / "warehouse.duckdb")
    assert f"Cloudglue API: {emu.base_url} (from CLOUDGLUE_BASE_URL)" in done.stderr
    assert (
        "CLOUDGLUE_DUCKDB_PAHT is set but cloudglue_dagster does not read it: did you mean CLOUDGLUE_DUCKDB_PATH?"
        in done.stderr
    )
    assert not (folder / "typo.duckdb").exists()
    assert "Executing steps in process" in done.stderr  # the factory's executor

    bundled, bundled_took = materialize(
        wheel_venv,
        folder,
        "cloudglue_dagster.definitions",
        ["--partition-range", RANGE],
        CLOUDGLUE_BASE_URL=emu.base_url,
        CLOUDGLUE_START_DATE="2026-01-01",
        CLOUDGLUE_DUCKDB_PATH=str(folder / "bundled.duckdb"),
    )
    assert bundled.returncode == 0, bundled.stderr[-4000:]
    assert_exact(folder / "bundled.duckdb")
    print(f"\n5 days from the wheel: the README snippet {took:.1f} s, the bundled definitions {bundled_took:.1f} s")


def test_the_snippet_takes_its_base_url_from_an_env_var_named_in_the_error_when_unusable(
    wheel_venv: FreshVenv, emu: Emulator, tmp_path: Path
) -> None:
    code = readme_snippet().replace(
        'CloudglueResource(api_key=dg.EnvVar("CLOUDGLUE_API_KEY"))',
        'CloudglueResource(api_key=dg.EnvVar("CLOUDGLUE_API_KEY"), base_url=dg.EnvVar("ACME_API_ROOT"))',
    )
    assert "ACME_API_ROOT" in code
    folder = project(tmp_path, code)
    day = ["--partition", FIRST.isoformat()]
    done, _ = materialize(wheel_venv, folder, "definitions", day, ACME_API_ROOT=emu.base_url)
    assert done.returncode == 0, done.stderr[-4000:]
    assert f"Cloudglue API: {emu.base_url} (from base_url)" in done.stderr

    refused, _ = materialize(wheel_venv, folder, "definitions", day, ACME_API_ROOT="api.cloudglue.dev/v1")
    assert refused.returncode != 0
    assert "environment variable ACME_API_ROOT (for base_url): base_url must look like" in refused.stderr


def test_the_snippet_against_a_dead_base_url_fails_within_a_minute_naming_host_and_port(
    wheel_venv: FreshVenv, emu: Emulator, tmp_path: Path
) -> None:
    """A typo in CLOUDGLUE_BASE_URL after an honest load: it used to retry for over six minutes
    without naming the host. Now the run fails at once, and every stored row stays."""
    folder = project(tmp_path, readme_snippet())
    day = ["--partition", FIRST.isoformat()]
    honest, _ = materialize(wheel_venv, folder, "definitions", day, CLOUDGLUE_BASE_URL=emu.base_url)
    assert honest.returncode == 0, honest.stderr[-4000:]
    before = stored_tables(folder / "warehouse.duckdb")
    assert len(before["chat_completions"]) == DATASET.ground_truth_range(FIRST, FIRST)[FIRST].count

    port = free_port()
    done, took = materialize(
        wheel_venv, folder, "definitions", day, timeout=120, CLOUDGLUE_BASE_URL=f"http://127.0.0.1:{port}/v1"
    )
    assert done.returncode != 0
    assert f"Cannot reach the Cloudglue API at 127.0.0.1:{port}: connection refused" in done.stderr
    assert "STEP_UP_FOR_RETRY" not in done.stderr and TEST_KEY not in done.stderr
    assert took < 60, took
    assert_tables_unchanged(before, folder / "warehouse.duckdb")
    print(f"\na dead base URL from the wheel failed in {took:.1f} s")
