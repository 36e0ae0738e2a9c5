"""What ``text_storage`` costs a completion: rewriting its texts before anything is written.

``python bench/text_storage_cost.py`` fetches the emulator's realistic completions (5 days of
2,000 by default, about 1.4 KB of JSON each) over HTTP, builds ``chat_completions`` once, then,
three times for each setting, rewrites its texts (:func:`~cloudglue_dagster.tables.texts.stored_texts`)
and builds ``chat_messages`` from the result; it prints the best wall time per completion of each
stage beside the frame's own build time, and the bytes of text the table holds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import time
from collections.abc import Callable
from typing import Any

import pandas as pd

from cloudglue_dagster import CloudglueClient
from cloudglue_dagster.emulator import Dataset, Emulator
from cloudglue_dagster.tables.frames import CHAT_COMPLETIONS_COLUMNS, chat_completions_frame, chat_messages_frame
from cloudglue_dagster.tables.texts import TextPolicy, stored_texts

EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
POLICIES = {
    "full": TextPolicy(),
    "full + a regex hook": TextPolicy(rewrite=lambda text: EMAIL.sub("<email>", text)),
    "hash": TextPolicy("hash", b"0123456789abcdef0123456789abcdef"),
    "none": TextPolicy("none"),
}


def best(work: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - started)
    return min(times), result


def text_bytes(frame: pd.DataFrame) -> int:
    texts = ("prompt", "response", "filter", "payload_messages", "choices")
    return sum(int(frame[c].dropna().str.len().sum()) for c in texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--per-day", type=int, default=2000)
    args = parser.parse_args()
    first = dt.date(2026, 5, 1)
    last = first + dt.timedelta(days=args.days - 1)
    with Emulator(Dataset(first, last, per_day=args.per_day, seed=1, empty_days=()), api_key="bench-key") as emu:
        client = CloudglueClient("bench-key", emu.base_url)
        records = list(
            client.iter_chat_completions(
                created_after=first - dt.timedelta(days=1), created_before=last + dt.timedelta(days=1)
            )
        )
    n = len(records)
    built, chat = best(lambda: chat_completions_frame(records))
    print(f"{n:,} completions; chat_completions_frame: {built / n * 1e6:.1f} us per completion")
    print("| text_storage | rewrite us/completion | chat_messages us/completion | text MB in chat_completions |")
    print("|---|---|---|---|")
    for name, policy in POLICIES.items():
        rewrite, stored = best(lambda policy=policy: stored_texts(chat, CHAT_COMPLETIONS_COLUMNS, policy))
        messages, _ = best(lambda stored=stored: chat_messages_frame(stored))
        print(f"| {name} | {rewrite / n * 1e6:.1f} | {messages / n * 1e6:.1f} | {text_bytes(stored) / 1e6:.1f} |")


if __name__ == "__main__":
    main()
