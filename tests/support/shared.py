"""A directory made once per pytest run, however many processes run the tests (``pytest -n``).

A session fixture runs once per xdist worker; :func:`once_per_run` lets the first worker that
asks make the directory (the built wheel, a virtualenv: seconds to a minute each) while the
others wait on a lock, then all use it. Without xdist it is a plain ``tmp_path_factory.mktemp``.
The pattern of the pytest-xdist docs ("Making session-scoped fixtures execute only once"), with
``fcntl.flock`` instead of the filelock package.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

_DONE = ".made"


def xdist_worker() -> str | None:
    """This process's xdist worker id (``gw0``...), or None when pytest runs without ``-n``."""
    return os.environ.get("PYTEST_XDIST_WORKER")


def once_per_run(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], object]) -> Path:
    """``name``'s directory, filled by ``make(directory)`` once per run: under xdist in the run's
    temp root (every worker's basetemp is a child of it), else in this session's temp dir. A
    ``make`` that raises leaves nothing behind, so the next worker to ask tries again."""
    if xdist_worker() is None:
        folder = tmp_path_factory.mktemp(name)
        make(folder)
        return folder
    root = tmp_path_factory.getbasetemp().parent
    folder = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        if (folder / _DONE).exists():
            return folder
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        try:
            make(folder)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        (folder / _DONE).touch()
    return folder
