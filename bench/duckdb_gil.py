"""Benchmark: a DuckDB statement on one thread while another thread runs Python.

Why the day store writes on the step's own thread, not on a writer thread of its own: DuckDB's
Python client takes the GIL back between the tasks of a statement (to check for Ctrl-C), so
next to a thread busy in Python each of those waits for the interpreter's switch interval.
Runs one single-threaded DuckDB statement three ways and prints the seconds:

* alone;
* on a second thread while the main thread spins in Python (decoding pages does that);
* the same with ``sys.setswitchinterval(0.0005)``.

Not part of the tests: ``python bench/duckdb_gil.py [--rows N]``.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

import duckdb


def statement(rows: int) -> float:
    conn = duckdb.connect()
    conn.execute("SET threads = 1")
    started = time.perf_counter()
    conn.execute(f"CREATE TABLE t AS SELECT sum(hash(i)) AS s FROM range({rows}) r(i)")
    return time.perf_counter() - started


def beside_python(rows: int) -> float:
    result: list[float] = []
    thread = threading.Thread(target=lambda: result.append(statement(rows)))
    thread.start()
    spins = 0
    while thread.is_alive():
        spins += 1
    return result[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000_000)
    args = parser.parse_args()
    print(f"DuckDB {duckdb.__version__}, Python {sys.version.split()[0]}, {args.rows:,} rows")
    print(f"alone: {statement(args.rows):.2f} s")
    print(f"beside a thread running Python: {beside_python(args.rows):.2f} s")
    sys.setswitchinterval(0.0005)
    print(f"the same, switch interval 0.5 ms: {beside_python(args.rows):.2f} s")


if __name__ == "__main__":
    main()
