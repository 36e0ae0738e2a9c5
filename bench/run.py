"""Benchmark: the project's backfill path against a sequential client and the latency bound.

Starts the emulator (a separate process) with N days x M completions a day and a fixed
per-request latency L, then measures, on the same data:

  (a) the project's backfill, through the command a user runs:
      ``dagster asset materialize --partition-range A...B`` (one run, one sweep);
  (b) the project's fetch path in-process (client + records + frame), for client CPU;
  (c) a one-page-at-a-time client (requests + json, nothing else);
  (d) dlt's ``rest_api`` source loading the same range, when dlt is installed;
  (e) the latency bound: pages x L / concurrency + the time to parse the bytes.

Prints a markdown table. Not part of the test suite: ``make bench`` (or
``python bench/run.py --help``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import math
import os
import re
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Row:
    name: str
    wall: float
    requests: int | None = None
    records: int | None = None
    cpu: float | None = None
    rss_mib: float | None = None
    notes: list[str] = field(default_factory=list)


class EmulatorProcess:
    """The emulator in its own process, so its CPU is not the client's."""

    def __init__(self, args: argparse.Namespace, key: str) -> None:
        cmd = [
            sys.executable, "-m", "cloudglue_dagster.emulator", "--port", "0", "--api-key", key,
            "--start", args.start.isoformat(), "--days", str(args.days), "--per-day", str(args.per_day),
            "--seed", str(args.seed), "--latency-ms", str(args.latency_ms),
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        match = re.search(r"(http://\S+/v1) \((\d+) completions", line)
        if not match:
            self.proc.kill()
            raise SystemExit(f"emulator did not start: {line!r} {self.proc.stderr.read() if self.proc.stderr else ''}")
        self.base_url, self.total = match.group(1), int(match.group(2))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def sequential(base_url: str, key: str, after: str, before: str, page_size: int) -> tuple[Row, int]:
    """One page at a time, the way generic REST sources page: returns the row and the page count."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    offset, pages, ids = 0, 0, set()
    started, cpu0 = time.monotonic(), time.process_time()
    while True:
        response = session.get(f"{base_url}/chat/completions",
                               params={"limit": page_size, "offset": offset, "created_after": after, "created_before": before},
                               timeout=60)
        response.raise_for_status()
        body = json.loads(response.content)
        pages += 1
        ids.update(r["id"] for r in body["data"])
        offset += len(body["data"])
        if not body["data"] or offset >= body["total"]:
            break
    return (Row("sequential client (1 page at a time)", time.monotonic() - started, pages, len(ids),
                time.process_time() - cpu0), pages)


def parse_cost(base_url: str, key: str, after: str, before: str, page_size: int, pages: int) -> float:
    """Seconds to json-decode and parse every page into records: the CPU part of the bound.

    Measured on a sample of pages (fetched once, parsed in-process) and scaled to all pages.
    """
    from cloudglue_dagster.models import parse_page

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    sample = [min(pages - 1, i * max(1, pages // 20)) for i in range(min(pages, 20))]
    bodies = [session.get(f"{base_url}/chat/completions", timeout=60,
                          params={"limit": page_size, "offset": p * page_size, "created_after": after,
                                  "created_before": before}).content for p in sample]
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
    from cloudglue_dagster.frames import chat_completions_frame
    from cloudglue_dagster.window import WindowSweep

    start = dt.datetime.combine(first, dt.time(), dt.timezone.utc)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
    gc.collect()
    started, cpu0 = time.monotonic(), time.process_time()
    sweep = WindowSweep(start, end)
    with CloudglueClient(key, base_url, max_concurrent_requests=concurrency) as client:
        frame = chat_completions_frame(sweep.completions(client))
    row = Row("project fetch path, in-process (client + records + frame)", time.monotonic() - started,
              sweep.requests, len(frame), time.process_time() - cpu0)
    row.notes.append(f"sweep {sweep.seconds:.1f}s (frame built as pages arrive), sort {row.wall - sweep.seconds:.1f}s")
    return row


def dagster_backfill(base_url: str, key: str, first: dt.date, last: dt.date, concurrency: int,
                     max_partitions: int | None, workdir: Path, selection: str, label: str) -> tuple[Row, float | None]:
    """The command a user runs, in a fresh DAGSTER_HOME and DuckDB file.

    With ``max_partitions`` the range is cut into runs of that many days, one command each, one
    after another: the runs a capped backfill launches (the CLI itself only runs single-run
    ranges; the daemon launches each run of a capped backfill in its own process).

    Peak RSS is the largest child process so far (getrusage), so run the smaller selection first.
    """
    workdir.mkdir(parents=True)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(workdir),
        "CLOUDGLUE_API_KEY": key,
        "CLOUDGLUE_BASE_URL": base_url,
        "CLOUDGLUE_START_DATE": first.isoformat(),
        "CLOUDGLUE_DUCKDB_PATH": str(workdir / "bench.duckdb"),
        "CLOUDGLUE_MAX_CONCURRENT_REQUESTS": str(concurrency),
    }
    (workdir / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    step = dt.timedelta(days=max_partitions or (last - first).days + 1)
    ranges = []
    start = first
    while start <= last:
        ranges.append((start, min(last, start + step - dt.timedelta(days=1))))
        start += step
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    log = ""
    for a, b in ranges:
        cmd = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "cloudglue_dagster.definitions",
               "--select", selection, "--partition-range", f"{a.isoformat()}...{b.isoformat()}"]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"dagster backfill failed:\n{done.stderr[-4000:]}")
        log += done.stdout + done.stderr
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    fetch = [float(s) for s in re.findall(r"requests and ([\d.]+)s; kept", log)]
    requests_made = sum(int(s) for s in re.findall(r"in (\d+) requests and", log))
    kept = sum(int(s) for s in re.findall(r"; kept (\d+) in", log))
    row = Row(f"project: `dagster asset materialize --partition-range` ({label})", wall, requests_made, kept,
              (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime), after.ru_maxrss / 1024)
    runs = len(re.findall(r"RUN_SUCCESS", log)) or len(ranges)
    row.notes.append(f"{runs} run(s)" + (f" of <= {max_partitions} days" if max_partitions else "")
                     + f"; fetch phase {sum(fetch):.1f}s")
    return row, (sum(fetch) if fetch else None)


def dlt_rest_api(base_url: str, key: str, after: str, before: str, page_size: int, workdir: Path) -> Row | None:
    try:
        import dlt
        from dlt.sources.rest_api import rest_api_source
    except ImportError:
        return None
    source = rest_api_source({
        "client": {"base_url": base_url + "/", "auth": {"type": "bearer", "token": key},
                   "paginator": {"type": "offset", "limit": page_size, "total_path": "total"}},
        "resources": [{"name": "chat_completions", "endpoint": {
            "path": "chat/completions", "data_selector": "data",
            "params": {"created_after": after, "created_before": before}}}],
    })
    pipeline = dlt.pipeline(pipeline_name="bench", destination=dlt.destinations.duckdb(str(workdir / "dlt.duckdb")),
                            pipelines_dir=str(workdir / "dlt"), dataset_name="cloudglue")
    started, cpu0 = time.monotonic(), time.process_time()
    pipeline.run(source)
    wall, cpu = time.monotonic() - started, time.process_time() - cpu0
    with pipeline.sql_client() as client:
        rows = client.execute_sql("SELECT count(*) FROM chat_completions")[0][0]
    row = Row("dlt `rest_api` source, offset paginator (to DuckDB)", wall, None, rows, cpu)
    row.notes.append(f"dlt {dlt.__version__}, one page at a time")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--per-day", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=25.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2025, 1, 1))
    parser.add_argument("--max-partitions-per-run", type=int, default=None,
                        help="cut the Dagster backfill into runs of this many days, as a capped backfill"
                             " does (default: one run); peak RSS is then that of the largest run")
    parser.add_argument("--skip", default="", help="comma list of: dagster,inprocess,sequential,dlt")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    first, last = args.start, args.start + dt.timedelta(days=args.days - 1)
    after, before = (first - dt.timedelta(days=1)).isoformat(), (last + dt.timedelta(days=1)).isoformat()
    key = secrets.token_hex(16)
    page_size = 100
    emu = EmulatorProcess(args, key)
    rows: list[Row] = []
    fetch_phase = None
    try:
        print(f"emulator: {emu.total} completions over {args.days} days, latency {args.latency_ms} ms,"
              f" concurrency {args.concurrency}", file=sys.stderr)
        minimum = math.ceil(emu.total / page_size)
        with tempfile.TemporaryDirectory(prefix="cloudglue-bench-") as tmp:
            work = Path(tmp)
            if "dagster" not in skip:
                # chat_completions alone is the same job as dlt's: one table of the range into DuckDB.
                for selection, label in (('key:"cloudglue/chat_completions"', "chat_completions only"),
                                         ('key:"cloudglue/*"', "all assets and checks")):
                    row, fetch_phase = dagster_backfill(emu.base_url, key, first, last, args.concurrency,
                                                        args.max_partitions_per_run, work / label.split()[0],
                                                        selection, label)
                    rows.append(row)
                    print(f"dagster backfill ({label}) done in {row.wall:.1f}s", file=sys.stderr)
            if "inprocess" not in skip:
                rows.append(in_process_fetch(emu.base_url, key, first, last, args.concurrency))
                print(f"in-process fetch done in {rows[-1].wall:.1f}s", file=sys.stderr)
            if "sequential" not in skip:
                seq, pages = sequential(emu.base_url, key, after, before, page_size)
                rows.append(seq)
                print(f"sequential done in {seq.wall:.1f}s", file=sys.stderr)
            else:
                pages = minimum
            parse_all = parse_cost(emu.base_url, key, after, before, page_size, pages)
            bound = pages * args.latency_ms / 1000 / args.concurrency + parse_all
            if "dlt" not in skip:
                dlt_row = dlt_rest_api(emu.base_url, key, after, before, page_size, work)
                if dlt_row:
                    rows.append(dlt_row)
    finally:
        emu.stop()

    sequential_wall = next((r.wall for r in rows if r.name.startswith("sequential")), None)
    print(f"\n{args.days} days x {args.per_day}/day ({emu.total} completions), L = {args.latency_ms:g} ms,"
          f" concurrency {args.concurrency}, page size {page_size}; minimum requests {minimum}\n")
    print("| path | wall s | requests | vs minimum | completions | CPU s | CPU s / 100k | peak RSS MiB "
          "| vs sequential | vs bound | notes |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cells = [
            r.name, f"{r.wall:.1f}",
            "" if r.requests is None else str(r.requests),
            "" if r.requests is None else f"{r.requests / minimum:.3f}x",
            "" if r.records is None else str(r.records),
            "" if r.cpu is None else f"{r.cpu:.1f}",
            "" if r.cpu is None or not r.records else f"{r.cpu / r.records * 100_000:.1f}",
            "" if r.rss_mib is None else f"{r.rss_mib:.0f}",
            "" if sequential_wall is None else f"{sequential_wall / r.wall:.1f}x faster",
            f"{r.wall / bound:.2f}x",
            "; ".join(r.notes),
        ]
        print("| " + " | ".join(cells) + " |")
    print(f"| latency bound: {pages} pages x {args.latency_ms:g} ms / {args.concurrency} + parse {parse_all:.1f}s"
          f" | {bound:.1f} | {minimum} | 1.000x | {emu.total} | | | | | 1.00x | |")
    if fetch_phase is not None:
        print(f"\nDagster fetch phase: {fetch_phase:.1f}s = {fetch_phase / bound:.2f}x the latency bound", end="")
        if sequential_wall is not None:
            print(f", {sequential_wall / fetch_phase:.1f}x faster than the sequential client", end="")
        print(".")


if __name__ == "__main__":
    main()
