"""The README, CHANGELOG.md and docs/*.md hold together: every relative link reaches a file, and
every ``#anchor`` a heading of its page (GitHub's anchor rule); the README stays a landing page."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import cloudglue_dagster

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"(?ms)^```.*?^```", "", page.read_text())
    titles = re.findall(r"^#{1,6} (.+)$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", t.strip().lower()).replace(" ", "-") for t in titles}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_reaches_a_file_and_a_heading(page: Path) -> None:
    broken = []
    for target in LINK.findall(re.sub(r"(?ms)^```.*?^```", "", page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no such heading")
    assert broken == []


def test_the_readme_is_a_landing_page_that_links_every_docs_page() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    for page in (ROOT / "docs").glob("*.md"):
        assert f"(docs/{page.name})" in text, page.name


def test_the_layout_table_names_every_module_of_the_package_and_no_other() -> None:
    """docs/development.md's "Where things live" is how a newcomer finds the file to change."""
    text = (ROOT / "docs" / "development.md").read_text()
    section = text[text.index("### Where things live") :]
    rows = "\n".join(line.split("|")[2] for line in section.splitlines() if line.startswith("| ") and "`" in line)
    named: set[str] = set()
    folder = r"`((?:\w+/)+)` \(([^)]*)\)"  # `assets/steps/` (`step.py`, ...)
    for path, inside in re.findall(folder, rows):
        named |= {f"{path}{m}" for m in re.findall(r"`(\w+\.py)`", inside)}
    named |= set(re.findall(r"`((?:\w+/)*\w+\.py)`", re.sub(folder, "", rows)))
    package = Path(cloudglue_dagster.__file__).parent  # the package under test: the wheel's in make test
    modules = {
        str(p.relative_to(package))
        for p in package.rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py") and "__pycache__" not in p.parts
    }
    assert sorted(modules - named) == [], "modules the table does not list"
    assert sorted(named - modules) == [], "modules the table lists that do not exist"


def test_the_package_top_level_stays_small_and_its_folders_are_the_layers() -> None:
    """The tree shows the plan: a new module goes into its layer's folder, not beside the public API."""
    package = Path(cloudglue_dagster.__file__).parent
    top = sorted(p.name for p in package.glob("*.py"))
    assert len(top) <= 12, top
    folders = {p.name for p in package.iterdir() if (p / "__init__.py").is_file()}
    assert folders == {"api", "tables", "assets", "io_managers", "components", "planner", "emulator", "demo"}


@pytest.mark.processes
@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        ("api", ["dagster", "pandas", "duckdb"]),
        ("tables", ["dagster", "duckdb"]),
        ("planner.plan", ["dagster", "pandas"]),
    ],
)
def test_each_lower_layer_imports_none_of_the_layers_below_it(layer: str, forbidden: list[str]) -> None:
    """api/ is the client without Dagster or pandas; tables/ is pandas without Dagster: imported alone, they
    load nothing heavier (a subprocess, so this session's imports do not count)."""
    package = Path(cloudglue_dagster.__file__).parent
    path = package.joinpath(*layer.split("."))
    modules = (
        [f"cloudglue_dagster.{layer}.{p.stem}" for p in sorted(path.glob("*.py")) if p.stem != "__init__"]
        if path.is_dir()
        else [f"cloudglue_dagster.{layer}"]
    )
    code = f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\nprint(sorted(set(sys.modules) & set({forbidden!r})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"{layer} imports {out.strip()}"
