"""Measure the planner's assumptions on this machine: start-up, CPU per day and per completion,
memory per completion held (cloudglue_dagster.planner.DEFAULT_ASSUMPTIONS).

Each case runs the command a user runs, ``dagster asset materialize`` of all three assets with
their checks over ``--partition-range``, against the emulator at zero latency, in a fresh
DAGSTER_HOME, and prints its wall time, the run's own time (RUN_START to RUN_SUCCESS), what the
sweep received, and the run process's peak RSS. Then it fits ``run = per_day x days +
per_completion x received`` by least squares and ``rss = base + bytes x the day's completions`` from the two one-day runs.

    python bench/planner_calibration.py            # the cases below, about 2 minutes
"""

from __future__ import annotations

import datetime as dt
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
from run import materialize_cmd  # bench/ is first on sys.path: this script's folder (or _child's)

CASES = [(12, 300), (12, 1500), (36, 300), (1, 1000), (1, 8000)]
KEY = "sk-cloudglue-calibration-0123456789"


def measure(days: int, per_day: int) -> dict[str, float]:
    """One case, in a child process of its own so that its peak RSS is its own."""
    code = f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); import planner_calibration as p; p._child({days}, {per_day})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return {k: float(v) for k, v in (item.split("=") for item in out.split())}


def _child(days: int, per_day: int) -> None:
    from cloudglue_dagster.emulator import Dataset, Emulator

    first = dt.date(2026, 5, 2)
    last = first + dt.timedelta(days=days - 1)
    dataset = Dataset(dt.date(2026, 5, 1), last + dt.timedelta(days=1), per_day=per_day, seed=9)
    with Emulator(dataset, api_key=KEY) as emu, tempfile.TemporaryDirectory() as home:
        env = {
            **os.environ,
            "CLOUDGLUE_API_KEY": KEY,
            "CLOUDGLUE_BASE_URL": emu.base_url,
            "CLOUDGLUE_START_DATE": "2026-05-01",
            "CLOUDGLUE_DUCKDB_PATH": os.path.join(home, "w.duckdb"),
            "DAGSTER_HOME": home,
        }
        command = materialize_cmd('key:"cloudglue/*"', first, last)
        began = time.monotonic()
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        wall = time.monotonic() - began
    log = done.stdout + done.stderr
    stamps = dict(
        (kind, dt.datetime.strptime(t, "%Y-%m-%d %H:%M:%S"))
        for t, kind in re.findall(
            r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \+0000 - dagster - \w+ - \S+ - \S+ - \d+ - (RUN_START|RUN_SUCCESS)", log
        )
    )
    fetched = re.search(r"Fetched (\d+) completions .*; kept (\d+)", log)
    received, kept = int(fetched[1]), int(fetched[2])
    rss_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    run = (stamps["RUN_SUCCESS"] - stamps["RUN_START"]).total_seconds()
    print(
        f"days={days} per_day={per_day} wall={wall:.1f} run={run:.0f} received={received} kept={kept} rss_mib={rss_mib:.0f}"
    )


def main() -> None:
    rows = [measure(days, per_day) for days, per_day in CASES]
    for r in rows:
        print(" ".join(f"{k}={v:g}" for k, v in r.items()))
    timed = [r for r in rows if r["days"] > 1]
    a = np.array([[r["days"], r["received"]] for r in timed])
    (per_day, per_completion), *_ = np.linalg.lstsq(a, np.array([r["run"] for r in timed]), rcond=None)
    overhead = np.mean([r["wall"] - r["run"] for r in rows])
    small, big = (r for r in rows if r["days"] == 1)
    # Memory per completion of the day held (kept), the padding's records being dropped as they come.
    slope = (big["rss_mib"] - small["rss_mib"]) * 2**20 / (big["kept"] - small["kept"])
    base = small["rss_mib"] * 2**20 - slope * small["kept"]
    print(
        f"fit: run_overhead_seconds={overhead:.1f} cpu_seconds_per_day={per_day:.3f}"
        f" cpu_seconds_per_completion={per_completion:.6f} base_memory_mib={base / 2**20:.0f}"
        f" bytes_per_completion={slope:.0f}"
    )


if __name__ == "__main__":
    main()
