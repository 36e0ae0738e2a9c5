"""The fixtures of the suite (helpers live in ``tests/support/``), the check, before any test,
that the suite tests the ``cloudglue_dagster`` it means to (``support.wheel.package_problem``),
and the tiers: ``--tier fast|parallel|serial`` (``support.tiers``: make test-fast, make test)."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import shared, tiers, wheel
from support.pipeline import Pipeline

from cloudglue_dagster.emulator import Emulator

_guard = tiers.ChildProcessGuard()


def pytest_addoption(parser: pytest.Parser) -> None:
    tiers.add_option(parser)


def pytest_sessionstart(session: pytest.Session) -> None:
    problem = wheel.package_problem()
    if problem:
        pytest.exit(problem, returncode=pytest.ExitCode.USAGE_ERROR)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tiers.select(config, items)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    # In the fast tier every phase of a test (fixtures of any scope included) runs with the guard.
    if tiers.tier(item.config) != "fast":
        return (yield)
    with _guard.active():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    attempts = _guard.attempts()
    if attempts:  # even when the code under test caught the refusal
        report.outcome = "failed"
        report.longrepr = tiers.failure_text(item.nodeid, attempts)
    return report


@pytest.fixture
def pipeline_factory(tmp_path: Path):
    def make(emu: Emulator, start_date: str, **factory: Any) -> Pipeline:
        return Pipeline(emu, tmp_path / "warehouse.duckdb", start_date, **factory)

    return make


@pytest.fixture(scope="session")
def built_dists(tmp_path_factory: pytest.TempPathFactory) -> wheel.Dists:
    """The wheel and sdist under test: in wheel mode (make test) the ones installed in .venv,
    otherwise built from this tree into a temporary directory once per run, whatever the
    number of xdist workers (about 1.5 s)."""
    given = wheel.given_dists()
    if given:
        return given
    return wheel.dists_in(shared.once_per_run(tmp_path_factory, "dist", wheel.build_dists))


@pytest.fixture(scope="session")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory, built_dists: wheel.Dists) -> Iterator[wheel.FreshVenv]:
    """A new virtualenv holding the wheel and its runtime dependencies only (no extra), as a
    user's ``pip install cloudglue-dagster`` would: ``wheel_venv.run("-c", code, cwd=tmp_path)``
    runs its Python from a directory of yours, ``wheel_venv.bin / "dagster"`` is its CLI and
    ``wheel_venv.env()`` the environment to start it with. Created once per run (~25-35 s),
    by the first xdist worker to need it; the others wait for it."""

    def create(folder: Path) -> None:
        wheel.create_venv(folder / "venv", built_dists.wheel)

    yield wheel.FreshVenv(shared.once_per_run(tmp_path_factory, "wheel-venv", create) / "venv")
