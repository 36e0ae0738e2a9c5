"""The suite's tiers (``tests/support/tiers.py``): what ``--tier`` selects, and the fast tier's
guard failing a test that starts a child process, even one that catches the refusal.

Each test runs an inner pytest in this process (``pytester``) on a small file of tests, with
the tiers as a plugin (``-p support.tiers``): no child process is started, so these tests are
in the fast tier themselves.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

MARKERS = """
[pytest]
markers =
    processes: starts child processes
    servers: starts a server
    browser: drives a browser
    production: Dagster as a service
    serial: runs alone
"""

TESTS = """
import os
import subprocess
import sys

import pytest


def test_in_process():
    assert sum([1, 2]) == 3


@pytest.mark.processes
def test_marked_processes():
    pass


@pytest.mark.serial
def test_marked_serial():
    pass


@pytest.mark.production
@pytest.mark.servers
def test_a_deployment():
    pass


def test_starts_python_unmarked():
    subprocess.run([sys.executable, "-c", "pass"], check=True)


def test_catches_the_refusal():
    try:
        os.system("true")
    except Exception:
        pass
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    # The plugin is this session's module already, which pytest cannot rewrite again: it says so.
    pytester.makeini(MARKERS + "filterwarnings = ignore::pytest.PytestAssertRewriteWarning\n")
    pytester.makepyfile(test_suite=TESTS)
    return pytester


def outcomes(result: pytest.RunResult) -> dict[str, str]:
    """test name -> PASSED/FAILED, from ``-rA``'s short summary."""
    found = {}
    for line in result.outlines:
        for outcome in ("PASSED", "FAILED"):
            if line.startswith(f"{outcome} test_suite.py::"):
                found[line.split("::")[1].split()[0]] = outcome
    return found


def test_the_fast_tier_runs_the_unmarked_tests_and_fails_each_that_starts_a_child_process(
    suite: pytest.Pytester,
) -> None:
    result = suite.runpytest_inprocess("-p", "support.tiers", "--tier", "fast", "-rA")
    assert outcomes(result) == {
        "test_in_process": "PASSED",
        "test_starts_python_unmarked": "FAILED",
        "test_catches_the_refusal": "FAILED",  # the code under test swallowed the exception
    }
    text = result.stdout.str()
    assert "test_starts_python_unmarked started a child process" in text
    assert "subprocess.Popen(" in text and "os.system('true')" in text
    assert "Mark the test @pytest.mark.processes" in text
    result.assert_outcomes(passed=1, failed=2, deselected=3)


def test_the_parallel_and_serial_tiers_split_the_suite_and_no_tier_runs_everything(suite: pytest.Pytester) -> None:
    parallel = suite.runpytest_inprocess("-p", "support.tiers", "--tier", "parallel", "--collect-only", "-q")
    serial = suite.runpytest_inprocess("-p", "support.tiers", "--tier", "serial", "--collect-only", "-q")
    everything = suite.runpytest_inprocess("-p", "support.tiers", "--collect-only", "-q")

    def names(result: pytest.RunResult) -> list[str]:
        return [line.split("::")[1] for line in result.outlines if line.startswith("test_suite.py::")]

    assert names(serial) == ["test_marked_serial"]
    # The parallel tier: all but serial, a deployment first, then the tests starting processes.
    assert names(parallel) == [
        "test_a_deployment",
        "test_marked_processes",
        "test_in_process",
        "test_starts_python_unmarked",
        "test_catches_the_refusal",
    ]
    assert sorted(names(everything)) == sorted(names(parallel) + names(serial))


def test_a_tier_composes_with_a_marker_expression(suite: pytest.Pytester) -> None:
    result = suite.runpytest_inprocess(
        "-p", "support.tiers", "--tier", "parallel", "-m", "not production", "-k", "not unmarked and not refusal",
        "--collect-only", "-q",
    )  # fmt: skip
    assert [line.split("::")[1] for line in result.outlines if line.startswith("test_suite.py::")] == [
        "test_marked_processes",
        "test_in_process",
    ]


@pytest.mark.processes  # xdist's workers
def test_the_tests_of_an_xdist_group_run_in_one_worker(pytester: pytest.Pytester) -> None:
    """What keeps tests/test_production.py's deployment to one process under make test
    (--dist loadgroup); pytest 9.2 broke it silently with pytest-xdist 3.8 (pyproject.toml)."""
    pytester.makepyfile(
        test_grouped="""
        import pytest

        pytestmark = pytest.mark.xdist_group("deployment")

        @pytest.mark.parametrize("i", range(6))
        def test_grouped(i):
            pass
        """,
        test_other="""
        import pytest

        @pytest.mark.parametrize("i", range(6))
        def test_other(i):
            pass
        """,
    )
    result = pytester.runpytest_inprocess("-n", "3", "--dist", "loadgroup", "-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=12)
    # "[gw1] [ 50%] PASSED test_grouped.py::test_grouped[3]@deployment"
    workers = {line.split()[0] for line in result.outlines if "PASSED test_grouped.py::" in line}
    assert len(workers) == 1, result.outlines
