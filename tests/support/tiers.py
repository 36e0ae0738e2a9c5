"""The suite's tiers (``pytest --tier fast|parallel|serial``) and the guard that keeps the fast one honest.

* ``--tier fast`` (``make test-fast``): every test not marked ``processes``, ``servers``,
  ``browser``, ``production`` or ``serial``. While each of them runs (its fixtures of every scope
  included), starting a child process fails it, naming the call: a test that starts one
  belongs under ``processes`` (pyproject.toml), not in the edit loop.
* ``--tier parallel`` (``make test``'s first pass, under ``pytest -n``): every test but the
  ``serial`` ones.
* ``--tier serial`` (``make test``'s second pass, alone): only the ``serial`` ones, the tests
  that measure time or memory and so must not share the machine with other tests.
* no ``--tier``: every test selected, as plain pytest does.

The selection composes with paths, ``-k`` and ``-m``: a tier only deselects. The module is a
pytest plugin: ``tests/conftest.py`` takes its hooks (``pytest -p support.tiers`` works too).
"""

from __future__ import annotations

import contextlib
import multiprocessing.process
import os
import subprocess
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest

TIERS = ("fast", "parallel", "serial")
#: What the fast tier leaves out: the markers of the tests that start processes, servers or a
#: browser, and of the tests that must run alone.
SLOW_MARKERS = ("processes", "servers", "browser", "production", "serial")
SERIAL_MARKER = "serial"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--tier",
        choices=TIERS,
        default=None,
        help="fast: no test that starts a process, a server or a browser, none of the serial ones, and a test "
        "that starts a child process fails (make test-fast); parallel: all but the serial tests (make test, "
        "under -n); serial: only those (make test, after the parallel pass, alone). Default: every test.",
    )


def tier(config: pytest.Config) -> str | None:
    return config.getoption("--tier")


def keeps(tier_name: str | None, item: pytest.Item) -> bool:
    """Whether ``tier_name`` runs ``item``."""
    marked = {mark.name for mark in item.iter_markers()}
    if tier_name == "fast":
        return not marked & set(SLOW_MARKERS)
    if tier_name == "parallel":
        return SERIAL_MARKER not in marked
    if tier_name == "serial":
        return SERIAL_MARKER in marked
    return True


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Removes from ``items`` (in place) the tests the ``--tier`` given does not run, and in the
    parallel tier puts the long ones first: a deployment, a browser, then the tests that start
    processes, the in-process ones last, so the workers end together instead of one of them
    starting a two-minute test when the others are done (the order of the rest is kept)."""
    tier_name = tier(config)
    if tier_name is None:
        return
    kept = [item for item in items if keeps(tier_name, item)]
    dropped = [item for item in items if not keeps(tier_name, item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    if tier_name == "parallel":
        kept.sort(key=_longest_first)
    items[:] = kept


def _longest_first(item: pytest.Item) -> int:
    marked = {mark.name for mark in item.iter_markers()}
    if marked & {"production", "servers", "browser"}:
        return 0
    return 1 if "processes" in marked else 2


class ChildProcessStarted(RuntimeError):
    """Raised in place of starting a child process in the fast tier."""


class ChildProcessGuard:
    """Refuses every way this interpreter starts a child process (``subprocess``, ``os.system``,
    ``os.fork``/``posix_spawn``, ``multiprocessing``, and so Dagster's multiprocess executor),
    and remembers each attempt: the code under test may catch the exception, the report of the
    test still fails (:meth:`attempts`)."""

    _OS_CALLS = ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system")

    def __init__(self) -> None:
        self._attempts: list[str] = []

    def _refuse(self, name: str) -> Callable[..., Any]:
        def refused(*args: Any, **kwargs: Any) -> Any:
            shown = _describe(name, args)
            self._attempts.append(shown)
            raise ChildProcessStarted(f"the fast tier starts no child process: {shown}")

        return refused

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """A context in which the calls are refused."""
        with pytest.MonkeyPatch.context() as patch:
            refuse_popen = self._refuse("subprocess.Popen")
            # Popen's last step before the child exists; __init__ has set every attribute by then, so
            # the refused object is collected without noise.
            patch.setattr(subprocess.Popen, "_execute_child", lambda popen, args, *rest: refuse_popen(args))
            patch.setattr(multiprocessing.process.BaseProcess, "start", self._refuse("multiprocessing Process.start"))
            for call in self._OS_CALLS:
                if hasattr(os, call):
                    patch.setattr(os, call, self._refuse(f"os.{call}"))
            yield

    def attempts(self) -> list[str]:
        """The calls refused since the last call, and forgets them."""
        taken, self._attempts = self._attempts, []
        return taken


_guard = ChildProcessGuard()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    # In the fast tier every phase of a test (fixtures of any scope included) runs with the guard.
    if tier(item.config) != "fast":
        return (yield)
    with _guard.active():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    attempts = _guard.attempts()
    if attempts:  # even when the code under test caught the refusal
        report.outcome = "failed"
        report.longrepr = failure_text(item.nodeid, attempts)
    return report


def _describe(name: str, args: tuple[Any, ...]) -> str:
    if name == "subprocess.Popen" and args:
        command = args[0]
        shown = " ".join(map(str, command)) if isinstance(command, (list, tuple)) else str(command)
        return f"{name}({shown[:200]!r})"
    if name == "os.system" and args:
        return f"{name}({str(args[0])[:200]!r})"
    return f"{name}()"


def failure_text(nodeid: str, attempts: list[str]) -> str:
    calls = "\n  ".join(attempts)
    return (
        f"{nodeid} started a child process, which the fast tier (make test-fast, pytest --tier fast) does not run:\n"
        f"  {calls}\n"
        "Mark the test @pytest.mark.processes (or the module: pytestmark = pytest.mark.processes); "
        "make test runs it."
    )
