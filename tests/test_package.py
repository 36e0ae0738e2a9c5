"""The package's surface: every public name resolves, and loading the pytest plugin (which every
pytest session of an environment with the package installed does) stays cheap."""

from __future__ import annotations

import subprocess
import sys

import cloudglue_dagster


def test_every_public_name_resolves_to_its_module() -> None:
    for name in cloudglue_dagster.__all__:
        value = getattr(cloudglue_dagster, name)
        home = sys.modules[f"cloudglue_dagster.{cloudglue_dagster._HOME[name]}"]
        assert getattr(home, name) is value
    assert set(cloudglue_dagster.__all__) <= set(dir(cloudglue_dagster))


def test_the_pytest_plugin_imports_no_dagster_pandas_or_duckdb() -> None:
    code = (
        "import sys, cloudglue_dagster.emulator.pytest_plugin\n"
        "print(sorted(m for m in ('dagster', 'pandas', 'duckdb', 'requests') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
