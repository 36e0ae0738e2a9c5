"""The built distributions, a fresh virtualenv holding the wheel, and the check of which
``cloudglue_dagster`` the suite tests.

Two ways to run the suite (docs/development.md, "Tests"):

* **wheel mode** (``make test``, so CI): ``.ci/test-wheel`` runs pytest from a copy of the tree
  without ``cloudglue_dagster/``, on a ``.venv`` holding the built wheel (not editable), and
  sets :data:`WHEEL_ENV`, :data:`SDIST_ENV` (the files ``make dist`` built) and
  :data:`SOURCE_ENV` (the checkout). A file missing from the wheel then fails the tests that
  need it.
* **source mode** (``.venv/bin/python -m pytest`` after ``make install``): the editable install.

Fixtures (in ``tests/conftest.py``): ``built_dists`` (:class:`Dists`, once per run) and
``wheel_venv`` (:class:`FreshVenv`, once per run: a new virtualenv with ``pip install
<wheel>``, the runtime dependencies and no extra, about 35 s), each shared by every xdist
worker (``support.shared``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

WHEEL_ENV = "CLOUDGLUE_TEST_WHEEL"
SDIST_ENV = "CLOUDGLUE_TEST_SDIST"
SOURCE_ENV = "CLOUDGLUE_TEST_SOURCE"
DIST_NAME = "cloudglue-dagster"
PACKAGE = "cloudglue_dagster"


def wheel_mode() -> bool:
    return bool(os.environ.get(WHEEL_ENV))


def source_root() -> Path:
    """The checkout: the tree the wheel was built from (in wheel mode the tests run from a copy)."""
    return Path(os.environ.get(SOURCE_ENV) or Path(__file__).resolve().parents[2])


@dataclass(frozen=True)
class Dists:
    wheel: Path
    sdist: Path


def build_dists(out: Path) -> Dists:
    """Builds the sdist, then the wheel from it (``python -m build``, as ``make dist`` does), into
    ``out``. Without build isolation (about 1.3 s instead of 4.5 s, and no index) when this
    environment's setuptools can build the project (the dev extra installs it)."""
    command = [sys.executable, "-m", "build", "--quiet", "--outdir", str(out)]
    if _setuptools_builds():
        command.append("--no-isolation")
    done = subprocess.run([*command, str(source_root())], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"python -m build failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return dists_in(out)


def dists_in(folder: Path) -> Dists:
    """The one wheel and the one sdist in ``folder``."""
    return Dists(_one(folder, "*.whl"), _one(folder, "*.tar.gz"))


def given_dists() -> Dists | None:
    """In wheel mode, the files ``make test`` built and installed; else None."""
    if not wheel_mode():
        return None
    return Dists(Path(os.environ[WHEEL_ENV]), Path(os.environ[SDIST_ENV]))


@dataclass(frozen=True)
class FreshVenv:
    """A virtualenv created for the session, holding the wheel and what it depends on."""

    root: Path

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"

    def env(self, **extra: str) -> dict[str, str]:
        """This process's environment without what would reach outside the virtualenv
        (PYTHONPATH, the suite's own variables), its ``bin`` first on PATH."""
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSAFEPATH", "VIRTUAL_ENV")
            and k not in (WHEEL_ENV, SDIST_ENV, SOURCE_ENV)
        }
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(self.root)
        return {**env, **extra}

    def run(
        self, *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """``python *args`` in the virtualenv, from ``cwd`` (pick a directory without a
        ``cloudglue_dagster/``: ``-m`` and ``-c`` put the working directory first on sys.path)."""
        return subprocess.run(
            [str(self.python), *args],
            cwd=cwd,
            env=env if env is not None else self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )


def create_venv(root: Path, wheel: Path, extras: str = "") -> FreshVenv:
    """``python -m venv root`` and ``pip install <wheel>[extras]`` (its dependencies from the index,
    or pip's cache on a machine that ran ``make install``)."""
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(root)], check=True, capture_output=True, timeout=300)
    venv = FreshVenv(root)
    requirement = f"{wheel}[{extras}]" if extras else str(wheel)
    done = subprocess.run(
        [str(venv.python), "-m", "pip", "install", "--quiet", "--no-compile", requirement],
        env=venv.env(PIP_DISABLE_PIP_VERSION_CHECK="1"),
        cwd=root,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pip install {requirement} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return venv


def package_problem() -> str | None:
    """Why the suite would not test the ``cloudglue_dagster`` it means to, or None.

    Always: a process the tests start from elsewhere imports the same package as this one (a
    ``.venv`` left holding the wheel by ``make test`` while pytest runs in the tree would import
    the source here and the wheel in every subprocess). In wheel mode also: the package comes
    from site-packages, installed from the wheel given, and the working directory holds no
    ``cloudglue_dagster/`` (``python -m``, ``dagster -m`` and ``dagster dev -w`` import from it).
    """
    here = _package_dir()
    elsewhere = _package_dir_in_a_subprocess()
    if elsewhere != here:
        return (
            f"This pytest imports {PACKAGE} from {here}, but a process it starts elsewhere imports "
            f"it from {elsewhere}.\nIf .venv holds the built wheel (make test leaves it so), `make "
            f"install` puts the editable install back; or run `make test`, which tests the wheel."
        )
    if not wheel_mode():
        return None
    purelib = Path(sysconfig.get_paths()["purelib"]).resolve()
    if not here.is_relative_to(purelib) or here == (source_root() / PACKAGE).resolve():
        return f"Wheel mode imports {PACKAGE} from {here}, not from the wheel installed in {purelib}."
    installed = json.loads(metadata.distribution(DIST_NAME).read_text("direct_url.json") or "{}")
    wheel = Path(os.environ[WHEEL_ENV]).resolve().as_uri()
    if installed.get("url") != wheel or installed.get("dir_info", {}).get("editable"):
        return f"Wheel mode: the installed {DIST_NAME} comes from {installed}, not from {wheel}."
    if (Path.cwd() / PACKAGE).exists():
        return f"Wheel mode runs from {Path.cwd()}, which holds {PACKAGE}/: run it from a copy without it (.ci/test-wheel)."
    return None


def _package_dir() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).resolve().parent


def _package_dir_in_a_subprocess() -> Path:
    """Where ``python -c 'import cloudglue_dagster'`` finds it from the filesystem's root."""
    code = f"import {PACKAGE}, pathlib; print(pathlib.Path({PACKAGE}.__file__).resolve().parent)"
    done = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, timeout=60)
    return Path(done.stdout.strip()) if done.returncode == 0 else Path(f"<not importable: {done.stderr[-500:]}>")


def _setuptools_builds() -> bool:
    try:
        major = int(metadata.version("setuptools").split(".")[0])
    except metadata.PackageNotFoundError:
        return False
    return major >= 77


def _one(folder: Path, pattern: str) -> Path:
    (found,) = folder.glob(pattern)
    return found
