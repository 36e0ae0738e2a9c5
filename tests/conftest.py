"""The fixtures of the suite (helpers live in ``tests/support/``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.pipeline import Pipeline

from cloudglue_dagster.emulator import Emulator


@pytest.fixture
def pipeline_factory(tmp_path: Path):
    def make(emu: Emulator, start_date: str, **factory: Any) -> Pipeline:
        return Pipeline(emu, tmp_path / "warehouse.duckdb", start_date, **factory)

    return make
