"""Benchmark: what a step retry costs after the API goes away late in a long range run.

Starts the emulator in its own process (N days x M completions, latency L per request) and a
byte-for-byte forwarding proxy in front of it that can answer 503 for a while. Then, on a real
Dagster instance in a temp directory, with the multi-process executor (``dg.execute_job``):

1. a fresh run of the whole range, ``chat_completions`` only: its request count is a full
   sweep's;
2. another fresh run of the range where, after ``--outage-at`` (default 0.8) of that many
   requests, the proxy answers 503 for ``--outage-seconds``: longer than the client's own
   retries (1 here), so the step fails with ``RetriesExhaustedError`` and Dagster retries it
   (the assets' step retry, ``--retry-delay`` seconds later). Counts the requests the retry
   made, and checks the table holds exactly the first run's ids, day by day.

Prints a markdown table. Not part of the tests: ``python bench/resume.py --days 180``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import secrets
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import duckdb
from dagster._core.definitions.reconstruct import ReconstructableJob

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import EmulatorProcess  # noqa: E402

JOB_SOURCE = """
import os
import dagster as dg
from cloudglue_dagster import CloudglueDuckDBIOManager, CloudglueResource, build_cloudglue_assets

def job():
    built = build_cloudglue_assets(
        start_date=os.environ["RESUME_START"], freshness_deadline_hour=None, late_data_lookback_days=None,
        retry_policy=dg.RetryPolicy(max_retries=2, delay=float(os.environ["RESUME_RETRY_DELAY"])),
    )
    defs = dg.Definitions(
        assets=list(built.assets),
        jobs=[dg.define_asset_job("chat_only", selection=[built.keys["chat_completions"]])],
        resources={
            "cloudglue": CloudglueResource(api_key=os.environ["RESUME_KEY"], base_url=os.environ["RESUME_URL"],
                                           max_retries=1, max_concurrent_requests=int(os.environ["RESUME_CONCURRENCY"])),
            "io_manager": CloudglueDuckDBIOManager(database=os.environ["RESUME_DUCKDB"], schema="cloudglue"),
        },
    )
    return defs.resolve_job_def("chat_only")
"""


class OutageProxy:
    """Forwards every GET unchanged; answers 503 while an outage lasts."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.removesuffix("/v1")
        self.requests = 0
        self.outage_after: int | None = None
        self.outage_seconds = 0.0
        self.down_until = 0.0
        self.recovered_at: int | None = None
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                with proxy._lock:
                    proxy.requests += 1
                    n = proxy.requests
                    if proxy.outage_after is not None and n == proxy.outage_after:
                        proxy.down_until = time.monotonic() + proxy.outage_seconds
                    down = time.monotonic() < proxy.down_until
                    if not down and proxy.down_until and proxy.recovered_at is None:
                        proxy.recovered_at = n
                if down:
                    status, body = 503, b'{"error": "service unavailable"}'
                else:
                    request = urllib.request.Request(
                        proxy.upstream + self.path, headers={"Authorization": self.headers.get("Authorization", "")}
                    )
                    try:
                        with urllib.request.urlopen(request, timeout=60) as response:
                            status, body = response.status, response.read()
                    except urllib.error.HTTPError as error:
                        status, body = error.code, error.read()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"


def ids_by_day(database: Path) -> dict[dt.date, set[str]]:
    with duckdb.connect(str(database), read_only=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        rows = conn.execute(f'SELECT id, created_at FROM "{database.stem}".cloudglue.chat_completions').fetchall()
    out: dict[dt.date, set[str]] = {}
    for cid, at in rows:
        out.setdefault(at.date(), set()).add(cid)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--days", type=int, default=180)
    p.add_argument("--per-day", type=int, default=1000)
    p.add_argument("--latency-ms", type=float, default=25)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--outage-at", type=float, default=0.8, help="fraction of a full sweep's requests")
    p.add_argument("--outage-seconds", type=float, default=8)
    p.add_argument("--retry-delay", type=float, default=10, help="seconds before the step retry")
    args = p.parse_args()
    last = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=2)
    args.start = last - dt.timedelta(days=args.days)  # a day of data on each side of the range
    first = args.start + dt.timedelta(days=1)
    args.days += 2
    key = "sk-bench-" + secrets.token_hex(8)
    emulator = EmulatorProcess(
        start=args.start, days=args.days, per_day=args.per_day, seed=args.seed, latency_ms=args.latency_ms, key=key
    )
    work = Path(tempfile.mkdtemp(prefix="cloudglue-resume-"))
    try:
        proxy = OutageProxy(emulator.base_url)
        (work / "job.py").write_text(JOB_SOURCE)
        (work / "home").mkdir()
        os.environ.update(
            RESUME_START=args.start.isoformat(),
            RESUME_RETRY_DELAY=str(args.retry_delay),
            RESUME_KEY=key,
            RESUME_URL=proxy.base_url,
            RESUME_CONCURRENCY=str(args.concurrency),
            DAGSTER_HOME=str(work / "home"),
        )
        tags = {
            "dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": last.isoformat(),
        }
        with dg.instance_for_test(temp_dir=str(work / "home")) as instance:

            def run(database: Path) -> tuple[dg.ExecuteJobResult, float]:
                os.environ["RESUME_DUCKDB"] = str(database)
                began = time.monotonic()
                job = ReconstructableJob.for_file(str(work / "job.py"), "job")
                with dg.execute_job(job, instance=instance, tags=tags, raise_on_error=False) as result:
                    return result, time.monotonic() - began

            full_result, full_wall = run(work / "full.duckdb")
            assert full_result.success, "the honest run failed"
            full = proxy.requests
            proxy.requests, proxy.outage_after, proxy.outage_seconds = (
                0,
                int(full * args.outage_at),
                args.outage_seconds,
            )
            result, wall = run(work / "outage.duckdb")
            kinds = [e.event_type_value for e in result.all_events]
            retried = proxy.requests - (proxy.recovered_at or proxy.requests) + 1
            exact = ids_by_day(work / "full.duckdb") == ids_by_day(work / "outage.duckdb")
        days = (last - first).days + 1
        print(
            f"\n{days} days x {args.per_day} a day ({emulator.total:,} completions served), L = {args.latency_ms:g} ms,"
            f" concurrency {args.concurrency}; outage of {args.outage_seconds:g} s after {args.outage_at:.0%} of a"
            " full sweep's requests\n"
        )
        print("| run | requests | wall | result |")
        print("|---|---|---|---|")
        print(
            f"| fresh run, no outage | {full:,} (a full sweep) | {full_wall:.1f} s | {'success' if full_result.success else 'FAILURE'} |"
        )
        print(
            f"| fresh run, outage: first attempt up to the outage | {proxy.outage_after:,} | | step retries: {kinds.count('STEP_UP_FOR_RETRY')} |"
        )
        print(
            f"| its step retry | {retried:,} = {retried / full:.0%} of a full sweep | {wall:.1f} s (whole run, {args.retry_delay:g} s retry delay included) |"
            f" {'success' if result.success else 'FAILURE'}, tables {'exact' if exact else 'DIFFER'} |"
        )
        print(f"\nCommand: python bench/resume.py --days {days} --per-day {args.per_day}")
    finally:
        emulator.stop()


if __name__ == "__main__":
    main()
