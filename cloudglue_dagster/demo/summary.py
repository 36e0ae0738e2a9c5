"""The demo's summary: the three tables read back from DuckDB, verified against the emulator, printed."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .settings import SCHEMA, DemoError, Settings, demo_dataset, demo_responses, shown_path

if TYPE_CHECKING:  # imported where used: keeps `--help` fast
    import duckdb

__all__ = ["DayRow", "Summary", "format_summary", "read_summary", "verify"]

# -- the summary, read back from DuckDB ---------------------------------------------------------


@dataclass(frozen=True)
class DayRow:
    """One UTC day of the summary."""

    day: dt.date
    completions: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    by_model: tuple[tuple[str, int, int], ...]  # (model, completions, total_tokens), by model


@dataclass(frozen=True)
class Summary:
    database: Path
    rows: tuple[DayRow, ...]

    @property
    def models(self) -> list[str]:
        return sorted({m for row in self.rows for m, _, _ in row.by_model})

    @property
    def completions(self) -> int:
        return sum(r.completions for r in self.rows)

    @property
    def total_tokens(self) -> int:
        return sum(r.total_tokens for r in self.rows)


def _connect_read_only(path: Path, wait_seconds: float = 30.0) -> duckdb.DuckDBPyConnection:
    import duckdb

    from cloudglue_dagster.io_managers.duckdb.connections import is_lock_error

    if not path.exists():
        raise DemoError(f"the DuckDB file {shown_path(path)} does not exist: the backfill wrote nothing")
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            conn = duckdb.connect(str(path), read_only=True)
            conn.execute("SET TimeZone = 'UTC'")
            return conn
        except duckdb.IOException as exc:
            if not is_lock_error(exc) or time.monotonic() >= deadline:
                raise DemoError(
                    f"cannot read the DuckDB file {shown_path(path)}: {exc}. If another process holds it"
                    " (a DuckDB shell, a notebook), close it and run again."
                ) from exc
            time.sleep(0.5)


def read_summary(settings: Settings) -> Summary:
    """token_usage of the demo's days, read back from DuckDB (read-only), per UTC day."""
    import duckdb

    lo = settings.start.isoformat()
    hi = (settings.end + dt.timedelta(days=1)).isoformat()
    conn = _connect_read_only(settings.duckdb)
    try:
        usage = conn.execute(
            f"""
            SELECT CAST(date AS DATE) AS day, model, completions,
                   coalesce(prompt_tokens, 0), coalesce(completion_tokens, 0), coalesce(total_tokens, 0)
            FROM {SCHEMA}.token_usage
            WHERE date >= TIMESTAMP '{lo}' AND date < TIMESTAMP '{hi}'
            ORDER BY day, model
            """
        ).fetchall()
    except duckdb.CatalogException as exc:
        raise DemoError(
            f"the DuckDB file {shown_path(settings.duckdb)} has no {SCHEMA}.token_usage table: {exc}"
        ) from exc
    finally:
        conn.close()
    by_day: dict[dt.date, list[tuple[str, int, int, int, int]]] = {}
    for day, model, n, prompt, completion, total in usage:
        by_day.setdefault(day, []).append((model, int(n), int(prompt), int(completion), int(total)))
    rows = []
    for i in range(settings.days):
        day = settings.start + dt.timedelta(days=i)
        models = by_day.get(day, [])
        rows.append(
            DayRow(
                day=day,
                completions=sum(m[1] for m in models),
                prompt_tokens=sum(m[2] for m in models),
                completion_tokens=sum(m[3] for m in models),
                total_tokens=sum(m[4] for m in models),
                by_model=tuple((m[0], m[1], m[4]) for m in models),
            )
        )
    return Summary(settings.duckdb, tuple(rows))


def verify(settings: Settings, summary: Summary) -> list[str]:
    """Differences between the stored tables and the emulator's ground truth (empty: none):
    every table's rows, ``responses`` and ``llm_usage`` included."""
    truth = demo_dataset(settings).ground_truth_range(settings.start, settings.end)
    lo = settings.start.isoformat()
    hi = (settings.end + dt.timedelta(days=1)).isoformat()
    conn = _connect_read_only(settings.duckdb)
    try:
        ids: dict[dt.date, list[str]] = {}
        for day, cid in conn.execute(
            f"""
            SELECT CAST(created_at AS DATE), id FROM {SCHEMA}.chat_completions
            WHERE created_at >= TIMESTAMPTZ '{lo} 00:00:00+00' AND created_at < TIMESTAMPTZ '{hi} 00:00:00+00'
            """
        ).fetchall():
            ids.setdefault(day, []).append(cid)
        answered = _messaged_completions(conn, lo, hi)
        problems = _responses_problems(settings, conn, lo, hi)
    finally:
        conn.close()
    for row in summary.rows:
        want = truth[row.day]
        got_ids = ids.get(row.day, [])
        if len(got_ids) != want.count or set(got_ids) != set(want.ids):
            problems.append(
                f"{row.day}: chat_completions holds {len(got_ids)} rows ({len(set(got_ids))} distinct ids),"
                f" the emulator served {want.count}"
            )
        if answered.get(row.day, set()) != set(want.ids):
            problems.append(
                f"{row.day}: chat_messages holds a prompt and an answer for {len(answered.get(row.day, ()))}"
                f" completions, the emulator served {want.count}"
            )
        got = (row.completions, row.prompt_tokens, row.completion_tokens, row.total_tokens)
        expected = (want.count, want.prompt_tokens, want.completion_tokens, want.total_tokens)
        if got != expected:
            problems.append(
                f"{row.day}: token_usage (completions, prompt, completion, total) = {got}, expected {expected}"
            )
        models = {m: n for m, n, _ in row.by_model}
        if models != {m: n for m, n in want.by_model.items() if n}:
            problems.append(f"{row.day}: completions by model {models}, expected {want.by_model}")
    return problems


def _responses_problems(settings: Settings, conn: Any, lo: str, hi: str) -> list[str]:
    """Each day's responses (ids and statuses) and llm_usage's responses rows against the
    emulator's responses (empty: they match)."""
    truth = demo_responses(settings).ground_truth_range(settings.start, settings.end)
    statuses: dict[dt.date, dict[str, str]] = {}
    for day, rid, status in conn.execute(
        f"""
        SELECT CAST(created_at AS DATE), id, status FROM {SCHEMA}.responses
        WHERE created_at >= TIMESTAMPTZ '{lo} 00:00:00+00' AND created_at < TIMESTAMPTZ '{hi} 00:00:00+00'
        """
    ).fetchall():
        statuses.setdefault(day, {})[rid] = status
    spend = dict(
        conn.execute(
            f"""
            SELECT CAST(date AS DATE), sum(requests) FROM {SCHEMA}.llm_usage
            WHERE source = 'responses' AND date >= TIMESTAMP '{lo}' AND date < TIMESTAMP '{hi}' GROUP BY ALL
            """
        ).fetchall()
    )
    problems = []
    for day, want in truth.items():
        if statuses.get(day, {}) != dict(want.statuses):
            problems.append(
                f"{day}: responses holds {len(statuses.get(day, {}))} rows, the emulator served {want.count}"
            )
        if int(spend.get(day) or 0) != want.count:
            problems.append(
                f"{day}: llm_usage counts {spend.get(day) or 0} responses, the emulator served {want.count}"
            )
    return problems


def _messaged_completions(conn: Any, lo: str, hi: str) -> dict[dt.date, set[str]]:
    """Per day, the completions chat_messages holds both a prompt message and a choice of."""
    found: dict[dt.date, set[str]] = {}
    for day, cid in conn.execute(
        f"""
        SELECT CAST(date AS DATE), completion_id FROM {SCHEMA}.chat_messages
        WHERE date >= TIMESTAMP '{lo}' AND date < TIMESTAMP '{hi}'
        GROUP BY ALL HAVING count(*) FILTER (source = 'prompt') > 0 AND count(*) FILTER (source = 'choice') > 0
        """
    ).fetchall():
        found.setdefault(day, set()).add(cid)
    return found


def _compact(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.2f}M"
    if n >= 10_000:
        return f"{n / 1000:.0f}k"
    if n >= 1000:
        return f"{n / 1000:.1f}k"
    return str(n)


def format_summary(summary: Summary) -> str:
    """The per-day table: date, completions, total tokens, then completions / tokens of each model."""
    models = summary.models
    cells = {m: max(len(m), 13) for m in models}
    header = f"{'day (UTC)':<10}  {'completions':>11}  {'total tokens':>12}"
    header += "".join(f"  {m:>{cells[m]}}" for m in models)
    lines = [header, "-" * len(header)]

    def model_cells(by_model: Mapping[str, tuple[int, int]]) -> str:
        out = ""
        for m in models:
            n, tokens = by_model.get(m, (0, 0))
            text = f"{n:,} / {_compact(tokens)}" if n else "-"
            out += f"  {text:>{cells[m]}}"
        return out

    for row in summary.rows:
        line = f"{row.day.isoformat():<10}  {row.completions:>11,}  {row.total_tokens:>12,}"
        line += model_cells({m: (n, t) for m, n, t in row.by_model})
        if not row.completions:
            line += "   (empty day)"
        lines.append(line)
    lines.append("-" * len(header))
    totals: dict[str, tuple[int, int]] = {}
    for row in summary.rows:
        for m, n, t in row.by_model:
            a, b = totals.get(m, (0, 0))
            totals[m] = (a + n, b + t)
    lines.append(f"{'total':<10}  {summary.completions:>11,}  {summary.total_tokens:>12,}" + model_cells(totals))
    lines.append("(per model: completions / total tokens)")
    return "\n".join(lines)
