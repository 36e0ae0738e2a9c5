"""The memory records take while a sweep holds them, against their JSON size (``json_size``).

``python bench/held_memory.py`` starts the emulator in its own process (realistic texts, 3 days
x 3,000 completions), sweeps the window with the package's client, keeps every record (as a
sweep holds an open day) and compares what ``tracemalloc`` counts with the records'
:func:`~cloudglue_dagster.api.days.json_size`: the ratio behind ``DEFAULT_MAX_HELD_BYTES``'s memory figure.
"""

from __future__ import annotations

import datetime as dt
import gc
import tracemalloc

from run import EmulatorProcess  # bench/ is first on sys.path: this script's folder

from cloudglue_dagster import CloudglueClient
from cloudglue_dagster.api.days import json_size


def main() -> None:
    emulator = EmulatorProcess(start=dt.date(2026, 1, 1), days=3, per_day=3000, seed=0, latency_ms=0, key="k")
    try:
        with CloudglueClient("k", emulator.base_url, max_retries=10) as client:
            list(client.iter_chat_completions("2026-01-01", "2026-01-01"))  # imports and pools warm
            gc.collect()
            tracemalloc.start()
            held = list(client.iter_chat_completions("2026-01-01", "2026-01-03"))
            gc.collect()
            traced, _ = tracemalloc.get_traced_memory()
        size = sum(json_size(c) for c in held)
        print(
            f"{len(held):,} records: json_size {size / 1e6:.1f} MB, held in {traced / 1e6:.1f} MB: {traced / size:.2f}x"
        )
    finally:
        emulator.stop()


if __name__ == "__main__":
    main()
