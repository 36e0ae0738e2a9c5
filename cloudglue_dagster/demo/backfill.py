"""The demo's backfill: the Dagster CLI in a child process, its progress from the CLI's log lines, the result."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO

from .processes import spawn_process, stop_process
from .settings import ASSET_SELECTION, DEFINITIONS_MODULE, DemoError, Settings, last_lines, say, shown_path

__all__ = ["BackfillResult", "backfill_command", "run_backfill"]

# -- the backfill, with progress ---------------------------------------------------------------


_LOG_RE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} - dagster - (?P<level>[A-Z]+) - \S+ - (?P<run>[0-9a-f-]{36})"
    r" - (?:\d+ - )?(?:(?P<step>[a-z0-9_]+(?:\[[^\]]*\])?) - )?(?:(?P<event>[A-Z][A-Z_]+) - )?(?P<msg>.*)$"
)
_RETRY_RE = re.compile(r"retry in ([0-9.]+) seconds")
# "module.ExceptionType: message" lines of a traceback (Dagster prints the chained causes too).
_EXCEPTION_RE = re.compile(r"^(?P<type>(?:[\w]+\.)*\w*(?:Error|Exception|Failure|Exit))(?:: (?P<msg>.*))?$")
_MATERIALIZED_RE = re.compile(r"^Materialized value (?P<asset>.+?)\.?$")
_CHECK_RE = re.compile(r"^Asset check '(?P<check>[^']+)' on '(?P<asset>[^']+)' (?P<outcome>passed|failed)")


@dataclass
class BackfillResult:
    """What the backfill's log said."""

    run_id: str | None = None
    materializations: Counter[str] = field(default_factory=Counter)
    checks_passed: Counter[str] = field(default_factory=Counter)
    checks_failed: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)  # exceptions of failed steps, as logged
    seconds: float = 0.0

    @property
    def passed(self) -> int:
        return sum(self.checks_passed.values())

    @property
    def failed(self) -> int:
        return sum(self.checks_failed.values())


def _step_label(step: str) -> str:
    if step.endswith("_checks"):
        return f"checks of {step[: -len('_checks')].replace('__', '/')}"
    return step.replace("__", "/")


def _materialized(per_asset: Counter[str]) -> str:
    """``14 partitions materialized`` for one asset; ``14 partitions materialized in each of 3
    tables`` for a step materializing several alike (the Cloudglue tables' one step)."""
    counts = set(per_asset.values())
    if len(per_asset) > 1 and len(counts) == 1:
        return f"{counts.pop()} partitions materialized in each of {len(per_asset)} tables"
    return f"{sum(per_asset.values())} partitions materialized"


class _Progress:
    """Turns the Dagster CLI's event log into a few progress lines."""

    def __init__(self, result: BackfillResult, out: IO[str]) -> None:
        self.result = result
        self.out = out
        self.started: dict[str, float] = {}
        self.checks: dict[str, Counter[str]] = {}
        self.tables: dict[str, Counter[str]] = {}  # per step: materializations per asset
        self.causes: list[str] | None = None  # collecting the error lines of a failed step

    def feed(self, line: str) -> None:
        m = _LOG_RE.match(line.rstrip("\n"))
        if not m:
            self._traceback_line(line.strip())
            return
        self.causes = None
        event, step, msg = m.group("event"), m.group("step"), m.group("msg")
        r = self.result
        if event == "RUN_START":
            r.run_id = m.group("run")
            say(f"  run {r.run_id} started", out=self.out)
        elif event == "STEP_START" and step:
            self.started[step] = time.monotonic()
            say(f"  {_step_label(step)}: started", out=self.out)
        elif event == "ASSET_MATERIALIZATION" and step:
            r.materializations[step] += 1
            asset = _MATERIALIZED_RE.match(msg)
            self.tables.setdefault(step, Counter())[asset.group("asset") if asset else ""] += 1
        elif event == "ASSET_CHECK_EVALUATION" and step:
            c = _CHECK_RE.match(msg)
            if c:
                counter = r.checks_passed if c.group("outcome") == "passed" else r.checks_failed
                counter[c.group("check")] += 1
                self.checks.setdefault(step, Counter())[c.group("outcome")] += 1
                if c.group("outcome") == "failed":
                    say(f"  {_step_label(step)}: {msg}", out=self.out)
        elif event == "STEP_SUCCESS" and step:
            took = time.monotonic() - self.started.get(step, time.monotonic())
            parts = []
            if r.materializations[step]:
                parts.append(_materialized(self.tables.get(step, Counter())))
            if step in self.checks:
                n = self.checks[step]
                parts.append(f"{n['passed']} check evaluations passed, {n['failed']} failed")
            detail = "; ".join(parts) or "nothing to report"
            say(f"  {_step_label(step)}: done, {detail} ({took:.1f} s)", out=self.out)
        elif event == "STEP_UP_FOR_RETRY" and step:
            delay = _RETRY_RE.search(msg)
            when = f" in {float(delay.group(1)):.0f} s" if delay else ""
            say(f"  {_step_label(step)}: failed; Dagster retries the step{when} (its retry policy)", out=self.out)
            self.causes = []
        elif event == "STEP_FAILURE" and step:
            say(f"  {_step_label(step)}: FAILED", out=self.out)
            self.causes = []
        elif event == "RUN_FAILURE" or (event is None and m.group("level") == "ERROR"):
            say(f"  {_step_label(step) + ': ' if step else ''}{msg}", out=self.out)
        elif event is None and step and m.group("level") == "INFO" and msg:
            say(f"  {_step_label(step)}: {msg}", out=self.out)  # the assets' own log lines
        elif event == "RUN_SUCCESS":
            say("  run succeeded", out=self.out)

    def _traceback_line(self, line: str) -> None:
        """Show the exceptions of a failed step's traceback (Dagster's own wrappers left out)."""
        if self.causes is None or len(self.causes) >= 3:
            return
        m = _EXCEPTION_RE.match(line)
        if not m or m.group("type").startswith("dagster.") or line in self.causes:
            return
        self.causes.append(line)
        if line not in self.result.errors:
            self.result.errors.append(line)
        shown = line if len(line) <= 300 else line[:297] + "..."
        say(f"      {shown}", out=self.out)


def _error_check_failures(dagster_home: str | None, run_id: str | None) -> Counter[str]:
    """The run's failed check evaluations of ERROR severity, by check name, read from its
    event log (the CLI's log line does not carry the severity; WARN failures are reported in
    the progress, not a failure of the demo)."""
    failures: Counter[str] = Counter()
    if not dagster_home or not run_id:
        return failures
    import dagster as dg

    with dg.DagsterInstance.from_config(dagster_home) as instance:
        records = instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION, limit=100_000
        )
        for record in records.records:
            evaluation = record.event_log_entry.get_dagster_event().asset_check_evaluation_data
            if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
                failures[f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"] += 1
    return failures


def backfill_command(settings: Settings) -> list[str]:
    """The Dagster CLI command of the backfill (shown to the user, then run)."""
    return [
        "dagster", "asset", "materialize", "-m", DEFINITIONS_MODULE,
        "--select", ASSET_SELECTION, "--partition-range", settings.partition_range,
    ]  # fmt: skip


def run_backfill(settings: Settings, env: Mapping[str, str], *, out: IO[str] | None = None) -> BackfillResult:
    """Run the backfill with the Dagster CLI; its full log goes to ``<home>/demo-backfill.log``."""
    out = out or sys.stdout
    shown = backfill_command(settings)
    say(f"  $ {shlex.join(shown)}", out=out)
    cmd = [sys.executable, "-m", "dagster", *shown[1:]]
    log_path = settings.home / "demo-backfill.log"
    result = BackfillResult()
    progress = _Progress(result, out)
    recent: deque[str] = deque(maxlen=400)
    began = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log:
        proc = spawn_process(cmd, env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                      encoding="utf-8", errors="replace")  # fmt: skip
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                recent.append(line)
                progress.feed(line)
            code = proc.wait()
        finally:
            stop_process(proc, signal.SIGINT)  # only when interrupted: otherwise it has exited already
    result.seconds = time.monotonic() - began
    if code != 0:
        if result.errors:
            detail = "\n".join("    " + e for e in result.errors[-5:])
            raise DemoError(
                f"the Dagster backfill failed (exit status {code}):\n{detail}\nFull log: {shown_path(log_path)}"
            )
        raise DemoError(
            f"the Dagster backfill failed (exit status {code}). Last lines of its log"
            f" ({shown_path(log_path)}):\n{last_lines(list(recent))}"
        )
    failed = _error_check_failures(env.get("DAGSTER_HOME"), result.run_id) if result.checks_failed else {}
    if failed:
        listed = ", ".join(f"{name} ({n} partitions)" for name, n in sorted(failed.items()))
        raise DemoError(f"asset checks failed: {listed}; see {shown_path(log_path)} or `make ui`")
    return result
