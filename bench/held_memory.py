"""The memory records take while a sweep holds them, against their JSON size (``json_size``).

``python bench/held_memory.py`` starts the emulator in its own process (realistic texts, 3 days
x 3,000 completions), sweeps the window with the package's client, keeps every record (as a
sweep holds an open day) and compares what ``tracemalloc`` counts with the records'
:func:`~cloudglue_dagster.api.days.json_size`: the ratio behind ``DEFAULT_MAX_HELD_BYTES``'s memory figure.
"""

from __future__ import annotations

import gc
import socket
import subprocess
import sys
import time
import tracemalloc

from cloudglue_dagster import CloudglueClient
from cloudglue_dagster.api.days import json_size


def main() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    emulator = subprocess.Popen(
        [sys.executable, "-m", "cloudglue_dagster.emulator", "--port", str(port), "--api-key", "k",
         "--start", "2026-01-01", "--days", "3", "--per-day", "3000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with CloudglueClient("k", f"http://127.0.0.1:{port}/v1", max_retries=10) as client:
            time.sleep(1.0)
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
        emulator.terminate()
        emulator.wait(timeout=10)


if __name__ == "__main__":
    main()
