"""Benchmark: writing day after day into DuckDB under the write settings, in isolation.

What a day-by-day range run does to the DuckDB file, without Dagster or HTTP: N days of the
emulator's realistic completions (``--per-day``) are decoded and built into frames as the
assets build them, then written one transaction a day (delete nothing, insert, commit)
through :func:`cloudglue_dagster.io_managers.duckdb.open_connection` and
:func:`cloudglue_dagster.io_managers.duckdb.write_frame`, the connection closed and reopened every
``HOLD_SECONDS`` as the day store does (a close checkpoints), or every ``--days-per-connection``
days (1: the pattern of a daily schedule, one run and one checkpoint per day). Each
``--config`` is one ``connection_config`` (JSON) and one row: ``{}`` is this package's
defaults; DuckDB's own are ``{"checkpoint_threshold": "16MB", "force_compression": "auto",
"max_vacuum_tasks": 100}``.

Prints a markdown table: seconds inserting, committing, closing (checkpoints), in all, per
day, the file's size and its table's row groups. Not part of the tests:
``python bench/duckdb_writes.py --help``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import time
from pathlib import Path

import duckdb
import pandas as pd

from cloudglue_dagster.api.decoding import decode_page
from cloudglue_dagster.emulator.data import Dataset
from cloudglue_dagster.io_managers.duckdb import open_connection, write_frame
from cloudglue_dagster.io_managers.duckdb.day_store import HOLD_SECONDS
from cloudglue_dagster.tables.frames import chat_completions_frame

DUCKDB_DEFAULTS = '{"checkpoint_threshold": "16MB", "force_compression": "auto", "max_vacuum_tasks": 100}'


def day_records(days: int, per_day: int, seed: int) -> list[list]:
    """The decoded completions of ``days`` days from 2025-01-01, a list per day."""
    start = dt.date(2025, 1, 1)
    data = Dataset(start, start + dt.timedelta(days=days - 1), per_day=per_day, seed=seed, text="realistic")
    out = []
    for day in data.days:
        lo = int(dt.datetime.combine(day, dt.time(), dt.timezone.utc).timestamp() * 1000)
        total, records = data.select(lo, lo + 86_400_000, 0, max(1, data.count(day)))
        body = (
            b'{"object":"list","data":['
            + b",".join(records)
            + b'],"total":%d,"limit":%d,"offset":0}'
            % (
                total,
                max(1, total),
            )
        )
        page = decode_page(body)
        assert page is not None, "the emulator's page did not decode"
        out.append(list(page.data))
    return out


def day_frames(days: int, per_day: int, seed: int) -> list[pd.DataFrame]:
    """The frames of ``days`` days from 2025-01-01, as the chat_completions step builds them."""
    return [chat_completions_frame(records) for records in day_records(days, per_day, seed)]


def write_days(
    frames: list[pd.DataFrame], config: dict, folder: Path, days_per_connection: int | None
) -> dict[str, float]:
    """Write ``frames`` a day per transaction, the connection closed every ``HOLD_SECONDS``
    (or every ``days_per_connection`` days); the seconds of each phase, the file's MiB and
    the table's row groups."""
    path = folder / f"w{abs(hash(json.dumps(config, sort_keys=True)))}.duckdb"
    spent = {"insert": 0.0, "commit": 0.0, "close": 0.0}
    conn, opened = None, 0.0
    started = time.perf_counter()
    for day, frame in enumerate(frames, start=1):
        if conn is None:
            conn, opened = (
                open_connection(str(path), read_only=False, config=config, lock_timeout_seconds=5),
                time.monotonic(),
            )
            conn.execute("CREATE SCHEMA IF NOT EXISTS cloudglue")
        a = time.perf_counter()
        conn.begin()
        write_frame(conn, frame, schema="cloudglue", table="chat_completions", replace_table=False)
        b = time.perf_counter()
        conn.commit()
        c = time.perf_counter()
        spent["insert"] += b - a
        spent["commit"] += c - b
        due = day % days_per_connection == 0 if days_per_connection else time.monotonic() - opened > HOLD_SECONDS
        if due:
            conn.close()
            conn = None
            spent["close"] += time.perf_counter() - c
    if conn is not None:
        c = time.perf_counter()
        conn.close()
        spent["close"] += time.perf_counter() - c
    spent["total"] = time.perf_counter() - started
    spent["mib"] = sum(p.stat().st_size for p in folder.glob(path.name + "*")) / 2**20
    with duckdb.connect(str(path), read_only=True) as conn:
        ((groups,),) = conn.execute(
            "SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('cloudglue.chat_completions')"
        ).fetchall()
    spent["row_groups"] = groups
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=150)
    parser.add_argument("--per-day", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--days-per-connection",
        type=int,
        help=f"close (checkpoint) every N days; default: every {HOLD_SECONDS:g} s, as the day store does",
    )
    parser.add_argument(
        "--config",
        action="append",
        help=f"a connection_config as JSON (repeatable); default: {{}} and {DUCKDB_DEFAULTS}",
    )
    args = parser.parse_args()
    configs = args.config or ["{}", DUCKDB_DEFAULTS]
    frames = day_frames(args.days, args.per_day, args.seed)
    rows = sum(len(f) for f in frames)
    every = f" --days-per-connection {args.days_per_connection}" if args.days_per_connection else ""
    print(
        f"{args.days} days, {rows} completions (`python bench/duckdb_writes.py --days {args.days}"
        f" --per-day {args.per_day}{every}`)\n"
    )
    print(
        "| connection_config | insert s | commit s | close (checkpoints) s | total s | ms per day | file MiB"
        " | row groups |"
    )
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for text in configs:
            s = write_days(frames, json.loads(text), Path(folder), args.days_per_connection)
            print(
                f"| `{text}` | {s['insert']:.1f} | {s['commit']:.1f} | {s['close']:.1f} | {s['total']:.1f}"
                f" | {s['total'] / len(frames) * 1000:.0f} | {s['mib']:.0f} | {s['row_groups']:.0f} |"
            )


if __name__ == "__main__":
    main()
