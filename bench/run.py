"""Benchmark: the project's backfill path against a sequential client, dlt and the latency bound.

For each range of N days (``--ranges 31,180,365``, the default; ``--days N`` is one range) and
each per-request latency L (``--latency-ms 25,250,0``, the default: the emulator's usual one, a
realistic API's, and none, where the run is its own work alone), it starts the emulator (a
separate process, realistic texts) with N days x M completions a day answering each request
after L, then measures, on the same data (at the first latency only for (b), (c) and (d),
which at another are arithmetic):

  (a) the project's backfill, through the command a user runs, in a fresh DAGSTER_HOME and
      DuckDB file, for ``chat_completions`` only and for all three assets with their checks:
      ``dagster asset materialize -m cloudglue_dagster.definitions --select S
      --partition-range A...B`` (one run; ``--max-partitions-per-run K`` runs the range as the
      runs of K days a capped backfill launches, one command each, one after another);
  (b) the project's fetch path in-process (client + records + frame), for client CPU;
  (c) a one-page-at-a-time client (requests + json, nothing else);
  (d) dlt's ``rest_api`` source loading the same range into DuckDB, when dlt is available;
  (e) the latency bound: pages x L / concurrency (+ the time to parse the bytes, in the
      per-range table);
  (f) Dagster's floor for a run of the same shape (``bench/floor.py``: the same multi-asset,
      checks and events, storing nothing), for the same days and each selection of (a). The
      real limit is floor + bound (without the parse time): each backfill row gives its
      wall / (floor + bound).

Prints one markdown table per range (as soon as the range is done), then a summary table with
one row per range. Every row names the command that produced it.

Peak RSS of a command: the command process's own peak resident set (``VmHWM``, polled), which
is the run's: ``dagster asset materialize`` executes the run in its own process. With
``--max-partitions-per-run`` it is the largest of the runs. Emulator CPU (from its
``/proc/<pid>/stat``) is noted per backfill, to show whether it was the bottleneck.

dlt is not a dependency of this project (nor of its virtualenv). To measure it, install it in a
separate virtualenv, e.g.::

    python3 -m venv ../bench-venv                                # beside the checkout
    ../bench-venv/bin/python -m pip install 'dlt[duckdb]'       # dlt 1.31.0 when this was written

The dlt part then runs in that interpreter (``bench/run.py --dlt-worker``, which needs only dlt
and requests): ``--dlt-python PATH``, else ``$BENCH_DLT_PYTHON``, else this interpreter if it can
import dlt, else ``bench-venv/bin/python`` in the folder that holds the checkout, if it exists;
without any, the dlt rows are left out.

Not part of the test suite: ``make bench`` (or ``python bench/run.py --help``). A full default
run (three ranges at three latencies, every path, dlt included) takes some 35 minutes on a 2-core
machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import importlib.util
import json
import math
import os
import re
import secrets
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RANGES = (31, 180, 365)
DEFAULT_LATENCIES = (25.0, 250.0, 0.0)
"""Per-request latencies, ms: the emulator's usual bench latency, a realistic API's, and none
(the run's own work alone: a run at L within a little of its run at 0 hides the latency)."""
PAGE_SIZE = 100
SELECTIONS = (
    ('key:"cloudglue/chat_completions"', "chat_completions only"),
    ('key:"cloudglue/*"', "all assets and checks"),
)
FLOOR_SELECTIONS = {"chat_completions only": "chat", "all assets and checks": "all"}
"""Each backfill's label -> the selection of bench/floor.py with the same shape."""


@dataclass
class Row:
    name: str
    wall: float
    command: str
    requests: int | None = None
    records: int | None = None
    cpu: float | None = None
    rss_mib: float | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class RangeResult:
    """What one range measured (``None``: not measured)."""

    days: int
    first: dt.date
    last: dt.date
    total: int
    pages: int
    latency_ms: float
    concurrency: int
    command: str
    rows: list[Row] = field(default_factory=list)
    backfills: dict[str, Row] = field(default_factory=dict)  # label -> row
    fetch_phase: dict[str, float] = field(default_factory=dict)  # label -> seconds
    duckdb_mib: dict[str, float] = field(default_factory=dict)  # label -> file size
    dlt: Row | None = None
    parse_seconds: float = 0.0
    floors: dict[str, Row] = field(default_factory=dict)  # label -> Dagster's floor for that selection

    @property
    def bound(self) -> float:
        """The latency bound, seconds: pages x L / concurrency."""
        return self.pages * self.latency_ms / 1000 / self.concurrency

    def limit(self, label: str) -> float | None:
        """The real limit for the backfill ``label``: its floor + the bound (None: no floor)."""
        floor = self.floors.get(label)
        return None if floor is None else floor.wall + self.bound


def run_measured(cmd: list[str], env: dict[str, str] | None, log: Path) -> tuple[int, float, float, float]:
    """Run ``cmd`` with stdout and stderr into ``log``.

    Returns ``(exit status, wall seconds, CPU seconds, peak RSS MiB)``. CPU from ``os.wait4``
    (the process and the descendants it waited for). Peak RSS is the process's own ``VmHWM``
    (``/proc/<pid>/status``), read every 0.1 s until it exits: it starts afresh at exec, where
    ``ru_maxrss`` also counts the pages the child shared with this (large) process between
    fork and exec, which made every command read this process's size. Elsewhere than Linux
    it falls back to ``ru_maxrss``.
    """
    with open(log, "w") as out:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        peak = _PeakRSS(proc.pid)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    hwm = peak.stop()
    return proc.returncode, wall, usage.ru_utime + usage.ru_stime, hwm if hwm else usage.ru_maxrss / 1024


class _PeakRSS:
    """The largest ``VmHWM`` read of a running process, in MiB (0 where /proc is missing)."""

    def __init__(self, pid: int) -> None:
        self.path, self.mib = Path(f"/proc/{pid}/status"), 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._done.wait(0.1):
            try:
                text = self.path.read_text()
            except OSError:
                return
            match = re.search(r"^VmHWM:\s+(\d+) kB", text, re.M)
            if match:
                self.mib = max(self.mib, int(match.group(1)) / 1024)

    def stop(self) -> float:
        self._done.set()
        self._thread.join()
        return self.mib


def proc_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) of a running process so far, from /proc (None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class EmulatorProcess:
    """``python -m cloudglue_dagster.emulator`` in its own process, so its CPU is not the client's.

    The one launcher of the benchmarks (``run.py``, ``events.py``, ``resume.py``,
    ``held_memory.py``): N days from ``start`` x ``per_day`` completions, each request answered
    after ``latency_ms``; ``env`` for the process (None: this one's)."""

    def __init__(
        self,
        *,
        start: dt.date,
        days: int,
        per_day: int,
        seed: int,
        latency_ms: float,
        key: str,
        text: str = "realistic",
        env: dict[str, str] | None = None,
    ) -> None:
        cmd = [sys.executable, "-m", "cloudglue_dagster.emulator", "--port", "0", "--api-key", key]
        cmd += ["--start", start.isoformat(), "--days", str(days), "--per-day", str(per_day), "--seed", str(seed)]
        cmd += ["--latency-ms", str(latency_ms), "--text", text]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        match = re.search(r"(http://\S+/v1) \((\d+) completions", line)
        if not match:
            self.stop()
            raise SystemExit(f"emulator did not start: {line!r} {self.proc.stderr.read() if self.proc.stderr else ''}")
        self.base_url, self.total = match.group(1), int(match.group(2))

    def cpu(self) -> float | None:
        return proc_cpu(self.proc.pid)

    def stop(self) -> None:
        """Stop the process (again: a no-op)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def sequential(base_url: str, key: str, after: str, before: str) -> tuple[Row, int]:
    """One page at a time, the way generic REST sources page: returns the row and the page count."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    offset, pages, ids = 0, 0, set()
    started, cpu0 = time.monotonic(), time.process_time()
    while True:
        response = session.get(
            f"{base_url}/chat/completions",
            params={"limit": PAGE_SIZE, "offset": offset, "created_after": after, "created_before": before},
            timeout=60,
        )
        response.raise_for_status()
        body = json.loads(response.content)
        pages += 1
        ids.update(r["id"] for r in body["data"])
        offset += len(body["data"])
        if not body["data"] or offset >= body["total"]:
            break
    row = Row(
        "sequential client (1 page at a time)",
        time.monotonic() - started,
        "bench/run.py: requests.Session().get + json.loads, offset += len(data)",
        pages,
        len(ids),
        time.process_time() - cpu0,
    )
    return row, pages


def parse_cost(base_url: str, key: str, after: str, before: str, pages: int) -> float:
    """Seconds to json-decode and parse every page into records: the CPU part of the bound.

    Measured on a sample of pages (fetched once, parsed in-process) and scaled to all pages.
    """
    from cloudglue_dagster.api.parsing import parse_page

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    sample = [min(pages - 1, i * max(1, pages // 20)) for i in range(min(pages, 20))]
    bodies = [
        session.get(
            f"{base_url}/chat/completions",
            timeout=60,
            params={"limit": PAGE_SIZE, "offset": p * PAGE_SIZE, "created_after": after, "created_before": before},
        ).content
        for p in sample
    ]
    # Best of three passes with the collector paused: the bound is the least the
    # parsing can cost, whatever else this process holds in memory by now.
    gc.collect()
    gc.disable()
    try:
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            for body in bodies:
                parse_page(json.loads(body))
            best = min(best, time.perf_counter() - started)
    finally:
        gc.enable()
    return best / len(bodies) * pages


def in_process_fetch(base_url: str, key: str, first: dt.date, last: dt.date, concurrency: int) -> Row:
    """The project's fetch path without Dagster: client sweep + records + contract frame."""
    from cloudglue_dagster import CloudglueClient
    from cloudglue_dagster.api.window import WindowSweep
    from cloudglue_dagster.tables.frames import chat_completions_frame

    start = dt.datetime.combine(first, dt.time(), dt.timezone.utc)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
    gc.collect()
    started, cpu0 = time.monotonic(), time.process_time()
    sweep = WindowSweep(start, end)
    with CloudglueClient(key, base_url, max_concurrent_requests=concurrency) as client:
        frame = chat_completions_frame(sweep.completions(client))
    row = Row(
        "project fetch path, in-process (client + records + frame)",
        time.monotonic() - started,
        f"bench/run.py: chat_completions_frame(WindowSweep(...).completions(CloudglueClient("
        f"max_concurrent_requests={concurrency})))",
        sweep.requests,
        len(frame),
        time.process_time() - cpu0,
    )
    row.notes.append(f"sweep {sweep.seconds:.1f}s (frame built as pages arrive), sort {row.wall - sweep.seconds:.1f}s")
    return row


def materialize_cmd(
    select: str, first: dt.date, last: dt.date, target: tuple[str, ...] = ("-m", "cloudglue_dagster.definitions")
) -> list[str]:
    """The command a user runs, in this interpreter: ``dagster asset materialize`` of ``target``
    (the bundled definitions unless given), ``select``, the days ``first`` to ``last`` as one
    ``--partition-range``. The one builder of the benchmarks (``run.py``, ``events.py``,
    ``planner_calibration.py``); :func:`shown` prints it as a user types it."""
    dagster = [sys.executable, "-m", "dagster"]
    return [*dagster, "asset", "materialize", *target, "--select", select, "--partition-range", f"{first}...{last}"]


def shown(cmd: list[str]) -> str:
    """A :func:`materialize_cmd` as a user types it (``dagster asset materialize ...``)."""
    return shlex.join(["dagster", *cmd[3:]])


def dagster_backfill(
    emu: EmulatorProcess,
    key: str,
    first: dt.date,
    last: dt.date,
    concurrency: int,
    max_partitions: int | None,
    workdir: Path,
    selection: str,
    label: str,
) -> tuple[Row, float | None, float]:
    """The command a user runs, in a fresh DAGSTER_HOME and DuckDB file.

    With ``max_partitions`` the range is cut into runs of that many days, one command each, one
    after another: the runs a capped backfill launches (the CLI itself only runs single-run
    ranges; the daemon launches each run of a capped backfill in its own process).

    Returns the row, the fetch phase in seconds (from the run's log) and the DuckDB file's MiB.
    """
    workdir.mkdir(parents=True)
    database = workdir / "bench.duckdb"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(workdir),
        "CLOUDGLUE_API_KEY": key,
        "CLOUDGLUE_BASE_URL": emu.base_url,
        "CLOUDGLUE_START_DATE": first.isoformat(),
        "CLOUDGLUE_DUCKDB_PATH": str(database),
        "CLOUDGLUE_MAX_CONCURRENT_REQUESTS": str(concurrency),
        # The chat completions' tables alone, as bench/floor.py's selections are shaped and as
        # docs/performance.md's figures were measured; bench/responses_cost.py and
        # docs/performance.md ("The Responses API's share") measure what responses add.
        "CLOUDGLUE_RESPONSES": os.environ.get("CLOUDGLUE_RESPONSES", "false"),
    }
    (workdir / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    step = dt.timedelta(days=max_partitions or (last - first).days + 1)
    ranges = []
    start = first
    while start <= last:
        ranges.append((start, min(last, start + step - dt.timedelta(days=1))))
        start += step
    wall = cpu = rss = 0.0
    log = ""
    emu_cpu0 = emu.cpu()
    commands = []
    for i, (a, b) in enumerate(ranges):
        cmd = materialize_cmd(selection, a, b)
        commands.append(cmd)
        status, seconds, used, peak = run_measured(cmd, env, workdir / f"run-{i}.log")
        text = (workdir / f"run-{i}.log").read_text(errors="replace")
        if status != 0:
            raise SystemExit(f"dagster backfill failed ({shlex.join(cmd[1:])}):\n{text[-4000:]}")
        wall, cpu, rss = wall + seconds, cpu + used, max(rss, peak)
        log += text
    emu_cpu1 = emu.cpu()
    fetch = [float(s) for s in re.findall(r"requests and ([\d.]+)s; kept", log)]
    requests_made = sum(int(s) for s in re.findall(r"in (\d+) requests and", log))
    kept = sum(int(s) for s in re.findall(r"; kept (\d+)", log))
    first_shown = shown(commands[0])
    command = (
        first_shown
        if len(commands) == 1
        else f"{len(commands)} commands, one per {max_partitions} days: {first_shown} ..."
    )
    row = Row(
        f"project: `dagster asset materialize --partition-range` ({label})",
        wall,
        command,
        requests_made,
        kept,
        cpu,
        rss,
    )
    runs = len(re.findall(r"RUN_SUCCESS", log)) or len(ranges)
    row.notes.append(
        f"{runs} run(s)"
        + (f" of <= {max_partitions} days" if max_partitions else "")
        + (f"; fetch phase {sum(fetch):.1f}s" if fetch else "")
    )
    if emu_cpu0 is not None and emu_cpu1 is not None:
        row.notes.append(f"emulator CPU {emu_cpu1 - emu_cpu0:.1f}s ({(emu_cpu1 - emu_cpu0) / wall:.0%} of the wall)")
    size = sum(p.stat().st_size for p in workdir.glob("bench.duckdb*") if p.is_file()) / 2**20
    row.notes.append(f"DuckDB file {size:.0f} MiB")
    return row, (sum(fetch) if fetch else None), size


def dagster_floor(first: dt.date, days: int, label: str) -> Row:
    """Dagster's floor (bench/floor.py) for the backfill ``label``'s selection and days."""
    # bench/floor.py, beside this file (sys.path[0] when run as a script)
    from floor import SELECTIONS as FLOOR_KEYS
    from floor import measure

    select = FLOOR_SELECTIONS[label]
    floor = measure(select, first, days)
    last = first + dt.timedelta(days=days - 1)
    events = floor.events
    row = Row(
        f"Dagster's floor, same shape, stores nothing ({label})",
        floor.wall,
        shown(materialize_cmd(FLOOR_KEYS[select], first, last, target=("-f", "bench/floor.py"))),
    )
    row.notes.append(
        f"{sum(events.values())} events: {events['ASSET_MATERIALIZATION']} materializations,"
        f" {events['ASSET_CHECK_EVALUATION']} check evaluations; RUN_START to RUN_SUCCESS"
        f" {floor.run_end - floor.run_start:.1f}s"
    )
    return row


# ------------------------------------------------------------------------------------- dlt
def dlt_python(explicit: str | None) -> str | None:
    """The interpreter to run dlt with (see the module docstring), or None."""
    if explicit:
        return explicit
    if os.environ.get("BENCH_DLT_PYTHON"):
        return os.environ["BENCH_DLT_PYTHON"]
    if importlib.util.find_spec("dlt") is not None:
        return sys.executable
    beside = ROOT.parent / "bench-venv" / "bin" / "python"
    return str(beside) if beside.exists() else None


def dlt_worker(spec: dict) -> None:
    """``--dlt-worker``: load the range with dlt's rest_api source, print one JSON line of figures."""
    import dlt
    from dlt.sources.rest_api import rest_api_source

    source = rest_api_source(
        {
            "client": {
                "base_url": spec["base_url"] + "/",
                "auth": {"type": "bearer", "token": spec["key"]},
                "paginator": {"type": "offset", "limit": spec["page_size"], "total_path": "total"},
            },
            "resources": [
                {
                    "name": "chat_completions",
                    "endpoint": {
                        "path": "chat/completions",
                        "data_selector": "data",
                        "params": {"created_after": spec["after"], "created_before": spec["before"]},
                    },
                }
            ],
        }
    )
    workdir = Path(spec["workdir"])
    pipeline = dlt.pipeline(
        pipeline_name="bench",
        destination=dlt.destinations.duckdb(str(workdir / "dlt.duckdb")),
        pipelines_dir=str(workdir / "dlt"),
        dataset_name="cloudglue",
    )
    started, cpu0 = time.monotonic(), time.process_time()
    pipeline.run(source)
    wall, cpu = time.monotonic() - started, time.process_time() - cpu0
    with pipeline.sql_client() as client:
        rows = client.execute_sql("SELECT count(*) FROM chat_completions")[0][0]
    print(json.dumps({"wall": wall, "cpu": cpu, "rows": rows, "version": dlt.__version__}))


def dlt_rest_api(python: str, base_url: str, key: str, after: str, before: str, workdir: Path) -> Row:
    workdir.mkdir(parents=True)
    spec = {
        "base_url": base_url,
        "key": key,
        "after": after,
        "before": before,
        "page_size": PAGE_SIZE,
        "workdir": str(workdir),
    }
    cmd = [python, str(Path(__file__).resolve()), "--dlt-worker", json.dumps(spec)]
    # The key is a throwaway token of this run's emulator; the environment is not the project's.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDGLUE_")}
    status, wall, _, rss = run_measured(cmd, env, workdir / "dlt.log")
    text = (workdir / "dlt.log").read_text(errors="replace")
    if status != 0:
        raise SystemExit(f"dlt failed:\n{text[-4000:]}")
    figures = json.loads(text.strip().splitlines()[-1])
    row = Row(
        "dlt `rest_api` source, offset paginator (to DuckDB)",
        figures["wall"],
        f"{python} bench/run.py --dlt-worker: dlt.pipeline(destination=duckdb).run(rest_api_source(...))",
        None,
        figures["rows"],
        figures["cpu"],
        rss,
    )
    row.notes.append(f"dlt {figures['version']}, one page at a time; process wall {wall:.1f}s with imports")
    return row


# ------------------------------------------------------------------------------------- ranges
def range_command(args: argparse.Namespace, days: int, latency_ms: float, skip: set[str]) -> str:
    """The invocation that measures this range at this latency alone, with the same settings."""
    cmd = [
        "python",
        "bench/run.py",
        "--ranges",
        str(days),
        "--per-day",
        str(args.per_day),
        "--latency-ms",
        f"{latency_ms:g}",
        "--concurrency",
        str(args.concurrency),
        "--seed",
        str(args.seed),
        "--start",
        args.start.isoformat(),
    ]
    if args.text != "realistic":
        cmd += ["--text", args.text]
    if args.max_partitions_per_run:
        cmd += ["--max-partitions-per-run", str(args.max_partitions_per_run)]
    if skip:
        cmd += ["--skip", ",".join(sorted(skip))]
    if args.dlt_python:
        cmd += ["--dlt-python", args.dlt_python]
    return shlex.join(cmd)


def measure_range(
    args: argparse.Namespace, days: int, latency_ms: float, skip: set[str], dlt_exe: str | None
) -> RangeResult:
    first, last = args.start, args.start + dt.timedelta(days=days - 1)
    after, before = (first - dt.timedelta(days=1)).isoformat(), (last + dt.timedelta(days=1)).isoformat()
    key = secrets.token_hex(16)
    emu = EmulatorProcess(
        start=args.start,
        days=days,
        per_day=args.per_day,
        seed=args.seed,
        latency_ms=latency_ms,
        key=key,
        text=args.text,
    )
    result = RangeResult(
        days,
        first,
        last,
        emu.total,
        math.ceil(emu.total / PAGE_SIZE),
        latency_ms,
        args.concurrency,
        range_command(args, days, latency_ms, skip),
    )
    try:
        print(
            f"[{days} days] emulator: {emu.total} completions, latency {latency_ms:g} ms,"
            f" concurrency {args.concurrency}",
            file=sys.stderr,
        )
        with tempfile.TemporaryDirectory(prefix="cloudglue-bench-") as tmp:
            work = Path(tmp)
            if "dagster" not in skip:
                # chat_completions alone is the same job as dlt's: one table of the range into DuckDB.
                for selection, label in SELECTIONS:
                    row, fetch, size = dagster_backfill(
                        emu,
                        key,
                        first,
                        last,
                        args.concurrency,
                        args.max_partitions_per_run,
                        work / label.split()[0],
                        selection,
                        label,
                    )
                    result.rows.append(row)
                    result.backfills[label] = row
                    result.duckdb_mib[label] = size
                    if fetch is not None:
                        result.fetch_phase[label] = fetch
                    print(f"[{days} days] dagster backfill ({label}) done in {row.wall:.1f}s", file=sys.stderr)
                if "floor" not in skip:
                    # After the backfills, not during: one measurement at a time.
                    for _, label in SELECTIONS:
                        floor = dagster_floor(first, days, label)
                        result.floors[label] = floor
                        result.rows.append(floor)
                        print(f"[{days} days] Dagster's floor ({label}) done in {floor.wall:.1f}s", file=sys.stderr)
            if "inprocess" not in skip:
                result.rows.append(in_process_fetch(emu.base_url, key, first, last, args.concurrency))
                print(f"[{days} days] in-process fetch done in {result.rows[-1].wall:.1f}s", file=sys.stderr)
            if "sequential" not in skip:
                seq, result.pages = sequential(emu.base_url, key, after, before)
                result.rows.append(seq)
                print(f"[{days} days] sequential done in {seq.wall:.1f}s", file=sys.stderr)
            result.parse_seconds = parse_cost(emu.base_url, key, after, before, result.pages)
            if "dlt" not in skip and dlt_exe:
                result.dlt = dlt_rest_api(dlt_exe, emu.base_url, key, after, before, work / "dlt")
                result.rows.append(result.dlt)
                print(f"[{days} days] dlt done in {result.dlt.wall:.1f}s", file=sys.stderr)
    finally:
        emu.stop()
    return result


def _vs_zero(r: RangeResult, zero: RangeResult | None, labels: tuple[str, str]) -> str:
    """Each backfill's wall over the same backfill's at L = 0 (``cc / all``), if measured."""
    if zero is None or zero is r:
        return ""
    cells = []
    for label in labels:
        here, there = r.backfills.get(label), zero.backfills.get(label)
        cells.append("-" if here is None or there is None else f"{here.wall / there.wall:.2f}x")
    return " / ".join(cells)


def _ratio(wall: float | None, bound: float) -> str:
    """``wall / bound`` as ``1.23x``; empty without a wall, ``-`` for a bound of 0 (L = 0)."""
    if wall is None:
        return ""
    return f"{wall / bound:.2f}x" if bound > 0 else "-"


def _cells(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def print_range(r: RangeResult, per_day: int) -> None:
    minimum = math.ceil(r.total / PAGE_SIZE)
    bound = r.bound + r.parse_seconds
    sequential_wall = next((x.wall for x in r.rows if x.name.startswith("sequential")), None)
    print(
        f"\n### {r.days} days ({r.first}..{r.last}) x {per_day}/day: {r.total} completions,"
        f" L = {r.latency_ms:g} ms, concurrency {r.concurrency}, page size {PAGE_SIZE}; minimum requests {minimum}\n"
    )
    print(f"Measured with `{r.command}`; each row's command is in its last column.\n")
    print(
        "| path | wall s | requests | vs minimum | completions | CPU s | CPU s / 100k | peak RSS MiB "
        "| vs sequential | vs bound | vs floor + bound | notes | command |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    limits = {id(row): r.limit(label) for label, row in r.backfills.items()}
    for x in r.rows:
        limit = limits.get(id(x))
        print(
            _cells(
                [
                    x.name,
                    f"{x.wall:.1f}",
                    "" if x.requests is None else str(x.requests),
                    "" if x.requests is None else f"{x.requests / minimum:.3f}x",
                    "" if x.records is None else str(x.records),
                    "" if x.cpu is None else f"{x.cpu:.1f}",
                    "" if x.cpu is None or not x.records else f"{x.cpu / x.records * 100_000:.1f}",
                    "" if x.rss_mib is None else f"{x.rss_mib:.0f}",
                    "" if sequential_wall is None else f"{sequential_wall / x.wall:.1f}x faster",
                    _ratio(x.wall, bound),
                    "" if limit is None else f"{x.wall / limit:.2f}x",
                    "; ".join(x.notes),
                    f"`{x.command}`",
                ]
            )
        )
    print(
        _cells(
            [
                f"latency bound: {r.pages} pages x {r.latency_ms:g} ms / {r.concurrency} + parse {r.parse_seconds:.1f}s",
                f"{bound:.1f}",
                str(minimum),
                "1.000x",
                str(r.total),
                "",
                "",
                "",
                "",
                "1.00x",
                "",
                "parse: a sample of 20 pages, json + parse_page, best of 3, scaled",
                "(arithmetic)",
            ]
        )
    )
    for label, backfill in r.backfills.items():
        limit = r.limit(label)
        if limit is not None:
            print(
                f"\nReal limit ({label}): Dagster's floor {r.floors[label].wall:.1f}s + bound {r.bound:.1f}s"
                f" (pages x L / concurrency) = {limit:.1f}s; the run took {backfill.wall:.1f}s ="
                f" {backfill.wall / limit:.2f}x.",
                end="",
            )
    for label, fetch in r.fetch_phase.items():
        note = f", {sequential_wall / fetch:.1f}x faster than the sequential client" if sequential_wall else ""
        print(
            f"\nDagster fetch phase ({label}): {fetch:.1f}s = {_ratio(fetch, r.bound)} pages x L / concurrency"
            f" ({_ratio(fetch, bound)} with the parse time){note}.",
            end="",
        )
    print()


def print_summary(results: list[RangeResult]) -> None:
    cc, everything = (label for _, label in SELECTIONS)
    print("\n### Summary\n")
    print(
        "Bound = pages x L / concurrency (no parse time); ratio = wall / bound. Floor: Dagster's own"
        " cost for a run of the same shape (bench/floor.py); the real limit is floor + bound. At"
        " L = 0 the run is its own work alone: a run within a little of it hides the latency. Peak"
        " RSS: the run's process, its VmHWM. Walls in seconds.\n"
    )
    print(
        "| range | L ms | completions | pages | `chat_completions` only | all assets + checks | bound | cc / bound "
        "| all / bound | fetch phase (cc) / bound | dlt `rest_api` | dlt / cc | peak RSS MiB (cc / all / dlt) "
        "| DuckDB MiB (cc / all) | floor (cc / all) | cc / (floor + bound) | all / (floor + bound)"
        " | vs the same at L = 0 (cc / all) | command |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    at_zero = {r.days: r for r in results if r.latency_ms == 0}
    for r in results:
        a, b = r.backfills.get(cc), r.backfills.get(everything)
        fetch = r.fetch_phase.get(cc)

        def num(x: float | None, fmt: str = "{:.1f}") -> str:
            return "" if x is None else fmt.format(x)

        print(
            _cells(
                [
                    f"{r.days} days ({r.first}..{r.last})",
                    f"{r.latency_ms:g}",
                    str(r.total),
                    str(r.pages),
                    num(a and a.wall),
                    num(b and b.wall),
                    f"{r.bound:.1f}",
                    _ratio(a and a.wall, r.bound),
                    _ratio(b and b.wall, r.bound),
                    "" if fetch is None else f"{fetch:.1f} = {_ratio(fetch, r.bound)}",
                    num(r.dlt and r.dlt.wall) if r.dlt else "not measured",
                    num(r.dlt.wall / a.wall, "{:.1f}x") if r.dlt and a else "",
                    " / ".join(num(x and x.rss_mib, "{:.0f}") or "-" for x in (a, b, r.dlt)),
                    " / ".join(num(r.duckdb_mib.get(label), "{:.0f}") or "-" for label in (cc, everything)),
                    " / ".join(num(r.floors[label].wall) if label in r.floors else "-" for label in (cc, everything)),
                    num(a and r.limit(cc) and a.wall / r.limit(cc), "{:.2f}x"),
                    num(b and r.limit(everything) and b.wall / r.limit(everything), "{:.2f}x"),
                    _vs_zero(r, at_zero.get(r.days), (cc, everything)),
                    f"`{r.command}`",
                ]
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    span = parser.add_mutually_exclusive_group()
    span.add_argument(
        "--ranges",
        type=lambda s: [int(x) for x in s.split(",") if x.strip()],
        help=f"comma list of range lengths in days, each measured in turn"
        f" (default {','.join(map(str, DEFAULT_RANGES))})",
    )
    span.add_argument("--days", type=int, help="one range of this many days (same as --ranges N)")
    parser.add_argument("--per-day", type=int, default=1000)
    parser.add_argument(
        "--latency-ms",
        type=lambda s: [float(x) for x in s.split(",") if x.strip()],
        default=list(DEFAULT_LATENCIES),
        help="comma list of per-request latencies in ms, each range measured at each (default"
        f" {','.join(f'{x:g}' for x in DEFAULT_LATENCIES)}); the paths that fetch one page at a time"
        " (sequential, dlt) and the in-process fetch only at the first",
    )
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--start", type=dt.date.fromisoformat, default=dt.date(2025, 1, 1), help="first day of every range"
    )
    parser.add_argument(
        "--text",
        choices=("realistic", "compact"),
        default="realistic",
        help="the emulator's texts (default realistic: as costly as real data)",
    )
    parser.add_argument(
        "--max-partitions-per-run",
        type=int,
        default=None,
        help="cut the Dagster backfill into runs of this many days, as a capped backfill"
        " does (default: one run); peak RSS is then that of the largest run",
    )
    parser.add_argument("--skip", default="", help="comma list of: dagster,floor,inprocess,sequential,dlt")
    parser.add_argument("--dlt-python", default=None, help="interpreter with dlt installed (see above)")
    parser.add_argument("--dlt-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dlt_worker is not None:
        dlt_worker(json.loads(args.dlt_worker))
        return
    ranges = args.ranges or ([args.days] if args.days else list(DEFAULT_RANGES))
    if not ranges or min(ranges) < 1:
        parser.error("ranges must be positive numbers of days")
    skip = set(filter(None, args.skip.split(",")))
    unknown = skip - {"dagster", "floor", "inprocess", "sequential", "dlt"}
    if unknown:
        parser.error(f"unknown --skip value(s): {','.join(sorted(unknown))}")
    dlt_exe = None if "dlt" in skip else dlt_python(args.dlt_python)
    if "dlt" not in skip and dlt_exe is None:
        print("dlt: not installed (see --help for a separate virtualenv); its rows are left out", file=sys.stderr)
    if not args.latency_ms or min(args.latency_ms) < 0:
        parser.error("latencies must be numbers of milliseconds >= 0")
    results = []
    for days in ranges:
        for i, latency in enumerate(args.latency_ms):
            # At the other latencies those paths are arithmetic: one page at a time costs
            # pages x L, the in-process fetch about the bound.
            also = set() if i == 0 else {"dlt", "sequential", "inprocess"}
            result = measure_range(args, days, latency, skip | also, dlt_exe)
            print_range(result, args.per_day)
            sys.stdout.flush()
            results.append(result)
    print_summary(results)


if __name__ == "__main__":
    main()
