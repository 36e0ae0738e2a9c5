"""The work and memory a response of the Responses API costs a run: the planner's per-response figures.

``python bench/responses_cost.py`` makes 100,000 synthetic list items (about 300 bytes of JSON
each, as the API's items: no output text), in pages of 100, then, three times, decodes the
pages (:func:`~cloudglue_dagster.api.responses.decode_responses_page`), builds the table
(:func:`~cloudglue_dagster.tables.spend.responses_frame`) and writes it to an in-memory DuckDB
table; it prints the best wall time per response of each stage, and the peak ``tracemalloc``
memory per response of holding the records and their frame at once (what a run holding a day
of responses holds). The planner's ``cpu_seconds_per_response`` and ``bytes_per_response``
(:class:`cloudglue_dagster.planner.Assumptions`) are these figures, rounded up.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import tracemalloc

import duckdb

from cloudglue_dagster.api.responses import Response, decode_responses_page
from cloudglue_dagster.tables.spend import responses_frame

RECORDS = 100_000
PAGE = 100
STATUSES = ("completed", "completed", "completed", "failed", "in_progress")


def pages() -> list[bytes]:
    """``RECORDS`` items, as the API pages them."""
    start = 1_778_000_000_000  # epoch ms, May 2026
    out = []
    for offset in range(0, RECORDS, PAGE):
        items = [
            {
                "id": f"resp_{i:012d}",
                "object": "response",
                "status": STATUSES[i % len(STATUSES)],
                "created_at": start + i * 750,
                "model": ("nimbus-001", "nimbus-002", "gpt-4o")[i % 3],
                "instructions": f"Answer from the videos of collection {i % 97}; cite timestamps. #{i}",
                "usage": {"input_tokens": 900 + i % 500, "output_tokens": 120 + i % 80, "total_tokens": 1020 + i % 580},
            }
            for i in range(offset, offset + PAGE)
        ]
        out.append(
            json.dumps({"object": "list", "data": items, "total": RECORDS, "limit": PAGE, "offset": offset}).encode()
        )
    return out


def decode(bodies: list[bytes]) -> list[Response]:
    records: list[Response] = []
    for body in bodies:
        page = decode_responses_page(body)
        assert page is not None
        records.extend(page.data)
    return records


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    bodies = pages()
    print(f"{RECORDS:,} responses, {sum(map(len, bodies)) / RECORDS:.0f} bytes of JSON each")
    best = {"decode": float("inf"), "frame": float("inf"), "write": float("inf")}
    for _ in range(3):
        began = time.perf_counter()
        records = decode(bodies)
        decoded = time.perf_counter()
        frame = responses_frame(records)
        framed = time.perf_counter()
        with duckdb.connect() as db:
            db.register("frame", frame)
            db.execute("CREATE TABLE responses AS SELECT * FROM frame")
        written = time.perf_counter()
        for stage, seconds in (("decode", decoded - began), ("frame", framed - decoded), ("write", written - framed)):
            best[stage] = min(best[stage], seconds)
        del records, frame
    for stage, seconds in best.items():
        print(f"{stage}: {seconds / RECORDS * 1e6:.2f} us per response")
    print(f"decode + frame + write: {sum(best.values()) / RECORDS * 1e6:.2f} us per response")
    gc.collect()
    tracemalloc.start()
    records = decode(bodies)
    frame = responses_frame(records)
    gc.collect()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"records and frame held: peak {peak / RECORDS:,.0f} bytes per response ({len(frame):,} rows)")


if __name__ == "__main__":
    main()
