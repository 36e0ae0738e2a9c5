"""Benchmark: the CPU a range run's step spends on each day it writes, stage by stage.

What the ``chat_completions`` step does with each completed day, without Dagster or HTTP:
N days of the emulator's realistic completions (as ``bench/duckdb_writes.py`` makes them)
are built into the contract's frame (:func:`~cloudglue_dagster.tables.frames.chat_completions_frame`),
described (:func:`~cloudglue_dagster.assets.metadata.frame_metadata`), checked
(:func:`~cloudglue_dagster.assets.checks.chat_check_outcomes`) and inserted into a DuckDB file
(:func:`~cloudglue_dagster.io_managers.duckdb.write_frame`, a transaction a day); then what the
``chat_messages`` and ``token_usage`` steps build, describe and check from each day of it
(from the frames; the ``read back`` row times loading each day from the DuckDB file as the
I/O manager loads an input: the query, DuckDB's frame and the nullable dtypes). Each stage is timed
by the CPU time of this thread (``time.thread_time``), best of ``--repeat`` passes.

Inside a run the same work costs more (the fetch threads take the GIL in turns with it),
but each millisecond saved here is saved there. To compare two commits, run this file in a
checkout of each (``cd <checkout> && PYTHONPATH=. python bench/day_cpu.py``; without
``PYTHONPATH`` the virtualenv's editable install of this repository is imported whatever the
checkout), copying it and ``bench/duckdb_writes.py`` into one that lacks them. Prints a
markdown table: ms per day and seconds per ``--days``. Not part of the tests:
``python bench/day_cpu.py --help``.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from duckdb_writes import day_records

from cloudglue_dagster.assets.checks import chat_check_outcomes, messages_check_outcomes
from cloudglue_dagster.assets.metadata import frame_metadata, messages_metadata
from cloudglue_dagster.io_managers.duckdb import open_connection, write_frame
from cloudglue_dagster.io_managers.duckdb.pandas_handler import to_nullable_dtypes
from cloudglue_dagster.tables.frames import (
    CHAT_COMPLETIONS_COLUMNS,
    CHAT_MESSAGES_COLUMNS,
    TOKEN_USAGE_COLUMNS,
    chat_completions_frame,
    chat_messages_frame,
)
from cloudglue_dagster.tables.usage import token_usage_frame

PREVIEW = ("created_at", "model", "total_tokens", "prompt", "response")  # as the step previews


def best_cpu(stage: Callable[[Any], Any], inputs: list, repeat: int) -> tuple[float, list]:
    """The least CPU seconds of ``repeat`` passes of ``stage`` over ``inputs``, and its outputs."""
    best, outputs = float("inf"), []
    for _ in range(repeat):
        started = time.thread_time()
        outputs = [stage(item) for item in inputs]
        best = min(best, time.thread_time() - started)
    return best, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--per-day", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    days = day_records(args.days, args.per_day, args.seed)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    spent: dict[str, float] = {}
    spent["chat_completions: frame"], frames = best_cpu(chat_completions_frame, days, args.repeat)
    spent["chat_completions: metadata"], _ = best_cpu(
        lambda f: frame_metadata(
            f, columns=CHAT_COMPLETIONS_COLUMNS, preview_columns=PREVIEW, time_column="created_at"
        ),
        frames,
        args.repeat,
    )

    def check(frame: pd.DataFrame) -> Any:
        start = frame["created_at"].min().floor("D")
        return chat_check_outcomes(frame, start, start + pd.Timedelta(days=1), [("day", frame)])

    spent["chat_completions: checks"], _ = best_cpu(check, frames, args.repeat)
    with tempfile.TemporaryDirectory() as folder:
        conn = open_connection(str(Path(folder) / "w.duckdb"), read_only=False, config={}, lock_timeout_seconds=5)
        conn.execute("CREATE SCHEMA cloudglue")

        def insert(frame: pd.DataFrame) -> None:
            conn.begin()
            write_frame(conn, frame, schema="cloudglue", table="chat_completions", replace_table=False)
            conn.commit()

        spent["chat_completions: insert"], _ = best_cpu(insert, frames, 1)  # each pass appends: one is the run's

        def read_back(frame: pd.DataFrame) -> pd.DataFrame:
            start = frame["created_at"].min().floor("D")
            relation = conn.sql(
                "SELECT * FROM cloudglue.chat_completions WHERE created_at >= ? AND created_at < ?",
                params=[start.to_pydatetime(), (start + pd.Timedelta(days=1)).to_pydatetime()],
            )
            return to_nullable_dtypes(relation.df(), [str(t) for t in relation.types])

        spent["chat_completions: read back"], _ = best_cpu(read_back, frames, args.repeat)
        conn.close()
    spent["chat_messages: frame"], messages = best_cpu(chat_messages_frame, frames, args.repeat)
    spent["chat_messages: metadata"], _ = best_cpu(
        lambda m: {**frame_metadata(m, columns=CHAT_MESSAGES_COLUMNS, preview_columns=()), **messages_metadata(m)},
        messages,
        args.repeat,
    )
    spent["chat_messages: checks"], _ = best_cpu(
        lambda pair: messages_check_outcomes([("day", *pair)]), list(zip(messages, frames, strict=True)), args.repeat
    )
    spent["token_usage: frame and metadata"], _ = best_cpu(
        lambda f: frame_metadata(token_usage_frame(f), columns=TOKEN_USAGE_COLUMNS, preview_columns=()),
        frames,
        args.repeat,
    )
    rows = sum(len(f) for f in frames)
    print(
        f"{args.days} days, {rows} completions, commit {commit or '?'} (`python bench/day_cpu.py"
        f" --days {args.days} --per-day {args.per_day}`; CPU of this thread, best of {args.repeat})\n"
    )
    print(f"| stage | ms per day | s per {args.days} days |")
    print("|---|---|---|")
    for stage, seconds in [*spent.items(), ("all", sum(spent.values()))]:
        print(f"| {stage} | {seconds / len(frames) * 1000:.1f} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
