"""The fixtures of the suite (helpers live in ``tests/support/``), the check, before any test,
that the suite tests the ``cloudglue_dagster`` it means to (``support.wheel.package_problem``),
and the tiers: ``--tier fast|parallel|serial`` (``support.tiers``: make test-fast, make test)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import shared, wheel
from support.pipeline import Pipeline
from support.tiers import (  # noqa: F401  the tiers' hooks (--tier fast|parallel|serial)
    pytest_addoption,
    pytest_collection_modifyitems,
    pytest_runtest_makereport,
    pytest_runtest_protocol,
)

from cloudglue_dagster.emulator import Emulator


def pytest_sessionstart(session: pytest.Session) -> None:
    problem = wheel.package_problem()
    if problem:
        pytest.exit(problem, returncode=pytest.ExitCode.USAGE_ERROR)


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
