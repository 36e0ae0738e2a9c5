"""The package's surface: every public name resolves, and loading the pytest plugin (which every
pytest session of an environment with the package installed does) stays cheap. What ships: the
wheel holds every tracked file of the package and the license metadata, the sdist the license,
the changelog and the tests, and a fresh virtualenv with only the wheel runs the package."""

from __future__ import annotations

import ast
import email.parser
import importlib
import importlib.metadata
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from support.wheel import Dists, FreshVenv, source_root

import cloudglue_dagster

PACKAGE = "cloudglue_dagster"


def test_every_public_name_resolves_to_its_module() -> None:
    for name in cloudglue_dagster.__all__:
        value = getattr(cloudglue_dagster, name)
        home = sys.modules[f"cloudglue_dagster.{cloudglue_dagster._HOME[name]}"]
        assert getattr(home, name) is value
    assert set(cloudglue_dagster.__all__) <= set(dir(cloudglue_dagster))


def test_dagsters_internal_names_are_imported_in_one_module_only() -> None:
    """``cloudglue_dagster.internals`` says why each has no public equivalent; every other module
    uses Dagster's public API."""
    package = Path(cloudglue_dagster.__file__).parent
    internal = re.compile(r"^\s*(?:from|import) (?:dagster\._|dagster_shared\b)", flags=re.M)
    importing = sorted(
        str(path.relative_to(package)) for path in package.rglob("*.py") if internal.search(path.read_text())
    )
    assert importing == ["internals.py"]


@pytest.mark.processes
def test_the_pytest_plugin_imports_no_dagster_pandas_or_duckdb() -> None:
    code = (
        "import sys, cloudglue_dagster.emulator.pytest_plugin\n"
        "print(sorted(m for m in ('dagster', 'pandas', 'duckdb', 'requests') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def tracked(*paths: str) -> set[str]:
    """The checkout's files under ``paths``: git's list (tracked, and new files not ignored), else
    what is on disk (an unpacked sdist)."""
    root = source_root()
    done = subprocess.run(
        ["git", "-C", str(root), "ls-files", "--cached", "--others", "--exclude-standard", "--", *paths],
        capture_output=True,
        text=True,
    )
    if done.returncode == 0 and done.stdout.strip():
        return {name for name in done.stdout.splitlines() if (root / name).exists()}
    return {
        str(p.relative_to(root))
        for path in paths
        for p in (root / path).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def project() -> dict[str, str]:
    """pyproject.toml's name and version (tomllib is Python 3.11+)."""
    text = (source_root() / "pyproject.toml").read_text()
    return dict(re.findall(r'^(name|version) = "([^"]+)"', text, flags=re.M))


@pytest.mark.processes
def test_the_wheel_holds_every_file_of_the_package_and_nothing_else(built_dists: Dists) -> None:
    names = zipfile.ZipFile(built_dists.wheel).namelist()
    shipped = {name for name in names if name.startswith(f"{PACKAGE}/")}
    expected = tracked(PACKAGE)
    assert f"{PACKAGE}/py.typed" in expected
    missing, foreign = sorted(expected - shipped), sorted(shipped - expected)
    assert not missing, f"files of the package missing from the wheel: {missing}"
    assert not foreign, f"files in the wheel that are not the package's: {foreign}"
    assert {name.split("/")[0] for name in names} == {PACKAGE, f"{PACKAGE}-{project()['version']}.dist-info"}


@pytest.mark.processes
def test_the_wheel_metadata_names_the_license_version_and_entry_points(built_dists: Dists) -> None:
    wheel = zipfile.ZipFile(built_dists.wheel)
    info = f"{PACKAGE}-{project()['version']}.dist-info"
    meta = email.parser.HeaderParser().parsestr(wheel.read(f"{info}/METADATA").decode())
    assert meta["Name"] == "cloudglue-dagster" and meta["Version"] == project()["version"]
    assert meta["License-Expression"] == "Apache-2.0" and meta["License"] is None
    assert meta.get_all("License-File") == ["LICENSE"]
    assert wheel.read(f"{info}/licenses/LICENSE") == (source_root() / "LICENSE").read_bytes()
    assert meta["Requires-Python"] == ">=3.10"
    entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    assert "cloudglue_emulator = cloudglue_dagster.emulator.pytest_plugin" in entry_points
    assert "cloudglue_dagster = cloudglue_dagster" in entry_points  # dg's registry module


# Imported only where an extra or pytest provides them: the deltalake extra's warehouse (and its
# deprecated path), the emulator's pytest plugin (loaded by pytest itself).
EXTRA_IMPORTS = {
    "io_managers/deltalake.py": "deltalake",
    "deltalake.py": "deltalake",
    "emulator/pytest_plugin.py": "pytest",
}
# Needed at run time although never imported: the UI and `dagster dev` (make ui, the demo).
NOT_IMPORTED = {"dagster-webserver"}


def imported_distributions(skip: set[str]) -> set[str]:
    """The distributions the package's modules import (outside ``skip``), by their names."""
    package = Path(cloudglue_dagster.__file__).parent
    modules: set[str] = set()
    for path in package.rglob("*.py"):
        if str(path.relative_to(package)) in skip:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    modules -= set(sys.stdlib_module_names) | {PACKAGE}
    owners = importlib.metadata.packages_distributions()
    return {canonical(dist) for module in modules for dist in owners[module]}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.processes
def test_the_runtime_dependencies_are_what_the_package_imports(built_dists: Dists) -> None:
    """Every distribution the package imports is declared (duckdb, pydantic...), and nothing it
    does not import is (dagster-duckdb-pandas is the tests')."""
    wheel = zipfile.ZipFile(built_dists.wheel)
    meta = email.parser.HeaderParser().parsestr(
        wheel.read(f"{PACKAGE}-{project()['version']}.dist-info/METADATA").decode()
    )
    runtime = {
        canonical(re.match(r"[\w.-]+", line)[0]) for line in meta.get_all("Requires-Dist") if "extra ==" not in line
    }
    assert imported_distributions(skip=set(EXTRA_IMPORTS)) == runtime - NOT_IMPORTED
    deltalake = {
        canonical(re.match(r"[\w.-]+", line)[0])
        for line in meta.get_all("Requires-Dist")
        if 'extra == "deltalake"' in line
    }
    assert "dagster-deltalake-pandas" in deltalake  # brings dagster-deltalake, deltalake and pyarrow


@pytest.mark.processes
def test_the_sdist_holds_the_license_changelog_readme_docs_and_tests(built_dists: Dists) -> None:
    with tarfile.open(built_dists.sdist) as sdist:
        top = f"{PACKAGE}-{project()['version']}/"
        names = {m.name.removeprefix(top) for m in sdist.getmembers() if m.isfile()}
    needed = {"LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml", "workspace.yaml"}
    needed |= tracked(PACKAGE, "tests", "docs", "examples")
    missing = sorted(needed - names)
    assert not missing, f"files missing from the sdist: {missing}"
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


@pytest.mark.processes
def test_twine_finds_both_distributions_fit_to_upload(built_dists: Dists) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(built_dists.wheel), str(built_dists.sdist)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.processes
def test_the_changelog_has_a_section_for_this_version(built_dists: Dists) -> None:
    """The version being built is either released (its own section) or being prepared (the
    changelog says so next to [Unreleased])."""
    text = (source_root() / "CHANGELOG.md").read_text()
    version = re.escape(project()["version"])
    assert re.search(rf"^## \[{version}\]", text, flags=re.M) or re.search(
        rf"^## \[Unreleased\].*\n+[^#]*\b{version}\b", text, flags=re.M
    ), f"CHANGELOG.md says nothing of {project()['version']}"


@pytest.mark.processes
@pytest.mark.timeout(900)  # the first test to use wheel_venv creates it (~35 s with pip's cache)
def test_a_fresh_virtualenv_with_only_the_wheel_imports_and_builds_the_assets(
    wheel_venv: FreshVenv, tmp_path: Path
) -> None:
    """The runtime dependencies suffice (no dev extra): every public name, the definitions of the
    factory, and the commands run as modules."""
    code = (
        "import importlib.metadata, pathlib, sys, cloudglue_dagster as c\n"
        "[getattr(c, n) for n in c.__all__]\n"
        "assets = c.build_cloudglue_assets(start_date='2026-01-01')\n"
        "assert assets.definitions().jobs and set(assets.keys) >= {'chat_completions', 'token_usage'}\n"
        "print(pathlib.Path(c.__file__).resolve().is_relative_to(pathlib.Path(sys.prefix).resolve()))\n"
        "print(importlib.metadata.version('cloudglue-dagster'))\n"
    )
    done = wheel_venv.run("-c", code, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert done.stdout.split() == ["True", project()["version"]]
    for module in ("cloudglue_dagster.emulator", "cloudglue_dagster.demo", "cloudglue_dagster"):
        helped = wheel_venv.run("-m", module, "--help", cwd=tmp_path, timeout=120)
        assert helped.returncode == 0, (module, helped.stdout[-2000:] + helped.stderr[-3000:])


@pytest.mark.parametrize(
    ("old", "new", "name"),
    [
        ("cloudglue_dagster.duckdb", "cloudglue_dagster.io_managers.duckdb", "CloudglueDuckDBIOManager"),
        ("cloudglue_dagster.deltalake", "cloudglue_dagster.io_managers.deltalake", "CloudglueDeltaLakeIOManager"),
    ],
)
@pytest.mark.processes
def test_the_old_warehouse_paths_still_import_with_a_deprecation_warning(old: str, new: str, name: str) -> None:
    code = (
        "import importlib, warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        f"    old = importlib.import_module({old!r})\n"
        f"new = importlib.import_module({new!r})\n"
        f"assert getattr(old, {name!r}) is getattr(new, {name!r})\n"
        "print([str(w.message) for w in caught if w.category is DeprecationWarning])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert f"{old} moved to {new}" in out and "goes in 0.3.0" in out


@pytest.mark.parametrize("module", ["cloudglue_dagster", "cloudglue_dagster.api.client"])
def test_the_old_name_of_the_http_retry_policy_still_works_with_a_deprecation_warning(module: str) -> None:
    """``RetryPolicy`` (until 0.2.0) read like ``dg.RetryPolicy``: it is ``HTTPRetryPolicy`` now,
    the old name kept until 0.3.0; each use warns, pointing at the line that used it."""
    imported = importlib.import_module(module)
    with pytest.warns(
        DeprecationWarning, match=rf"{module}\.RetryPolicy is deprecated: use {module}\.HTTPRetryPolicy"
    ) as caught:
        old = imported.RetryPolicy
    assert old is cloudglue_dagster.HTTPRetryPolicy and "0.3.0" in str(caught[0].message)
    assert caught[0].filename == __file__
    with pytest.warns(DeprecationWarning):
        exec(f"from {module} import RetryPolicy", {})  # the form most code uses
    assert "RetryPolicy" not in getattr(imported, "__all__", ()) and "HTTPRetryPolicy" in imported.__all__
