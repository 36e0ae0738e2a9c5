"""Which run committed which day of which table: the ``_cloudglue_progress`` table.

A day's mark is written in the transaction that commits the day, one per table, so a failed
run's retry, or a re-execution of it, knows which days it need not fetch again.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import duckdb

from .sql import catalog_name, create_once, qualified_table

__all__ = ["PROGRESS_TABLE", "committed_by", "mark", "unmark"]

PROGRESS_TABLE = "_cloudglue_progress"
"""The table, in each asset's schema, that records which run committed which day."""


def _progress(conn: duckdb.DuckDBPyConnection, schema: str, create: bool) -> str | None:
    """The progress table's qualified name; None when it does not exist (and ``create`` is False)."""
    catalog = catalog_name(conn)
    name = qualified_table(conn, schema, PROGRESS_TABLE)
    if create:
        create_once(
            conn,
            f"CREATE TABLE IF NOT EXISTS {name} (run_id VARCHAR NOT NULL, asset_key VARCHAR NOT NULL,"
            " partition_key VARCHAR NOT NULL, row_count BIGINT NOT NULL, committed_at TIMESTAMPTZ NOT NULL)",
        )
        return name
    exists = conn.execute(
        "SELECT 1 FROM information_schema.tables WHERE table_catalog = ? AND table_schema = ? AND table_name = ?",
        [catalog, schema, PROGRESS_TABLE],
    ).fetchall()
    return name if exists else None


def mark(
    conn: duckdb.DuckDBPyConnection, schema: str, run_id: str, asset: str, keys: Sequence[tuple[str, int]]
) -> None:
    """Record that ``run_id`` committed ``keys`` of ``asset`` (each with its row count).

    An insert, with no delete first: a run marks a day only when it has no mark of that run
    (a written day is skipped by the run's retries, and a reopened day is unmarked before it is
    written again), and a second mark would be harmless (:func:`committed_by` reads keys;
    :func:`unmark` drops every mark of the day). A statement less per day."""
    table = _progress(conn, schema, create=True)
    for key, rows in keys:
        conn.execute(f"INSERT INTO {table} VALUES (?, ?, ?, ?, now())", [run_id, asset, key, rows])


def unmark(conn: duckdb.DuckDBPyConnection, schema: str, run_id: str, asset: str, key: str) -> None:
    """Forget that ``run_id`` committed ``key`` of ``asset``."""
    table = _progress(conn, schema, create=False)
    if table is not None:
        conn.execute(
            f"DELETE FROM {table} WHERE run_id = ? AND asset_key = ? AND partition_key = ?", [run_id, asset, key]
        )


def committed_by(
    conn: duckdb.DuckDBPyConnection, schema: str, run_ids: Sequence[str], asset: str, keys: Collection[str]
) -> dict[str, set[str]]:
    """run id -> the days of ``keys`` it committed of ``asset``, for the runs ``run_ids``."""
    table = _progress(conn, schema, create=False)
    if table is None:
        return {}
    rows = conn.execute(
        f"SELECT run_id, partition_key FROM {table} WHERE asset_key = ? AND list_contains(?, run_id)",
        [asset, list(run_ids)],
    ).fetchall()
    found: dict[str, set[str]] = {}
    for run_id, key in rows:
        if key in keys:
            found.setdefault(run_id, set()).add(key)
    return found
