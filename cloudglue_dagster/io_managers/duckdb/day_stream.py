"""Writing a :class:`~cloudglue_dagster.tables.streams.DayStream` into a :class:`~.day_store.DayStore`.

Days already committed by the runs the stream resumes are read back, not produced again; the
others are committed as the step produces them, every table of a day at once; a reopened day
is put back as it was; a settled sweep's previous rows are dropped. The log tells the
progress of a long range and, if the write fails, exactly which days were committed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Sequence

import dagster as dg
import pandas as pd

from cloudglue_dagster.api.days import ReopenedDay, UTCDay
from cloudglue_dagster.tables.streams import DayRows, DayStream, Settled, committed_summary

from .day_store import DayStore
from .errors import DuckDBCorruptFileError

__all__ = ["PROGRESS_EVERY_SECONDS", "write_stream"]

PROGRESS_EVERY_SECONDS = 30.0
"""How often, at most, a range run's step logs how many of its days it has committed so far:
at the first commit this long after the last line (or after the step began writing).
Dagster records a step's materializations only when the step ends, so on a long backfill
these lines are what shows its progress."""


class _StoreView:
    """The :class:`~cloudglue_dagster.tables.streams.Warehouse` a stream's producer asks."""

    def __init__(self, store: DayStore, context: dg.OutputContext) -> None:
        self.store, self.context = store, context

    def stored_rows(self, table: str, days: Sequence[UTCDay]) -> dict[str, int] | None:
        return self.store.stored_rows(self.context, table, days)

    def read(self, table: str, day: UTCDay, columns: Sequence[str] | None) -> pd.DataFrame:
        return self.store.read(self.context, table, day, columns)


class _CommitLog:
    """The log lines of a range's commits: how many so far, every
    :data:`PROGRESS_EVERY_SECONDS`, and, if the write fails, which days are kept."""

    def __init__(self, context: dg.OutputContext, to_write: int, tables: Sequence[str]) -> None:
        self.context, self.to_write, self.tables = context, to_write, list(tables)
        self.days: dict[str, None] = {}  # committed by this attempt, in commit order
        self.restored: set[str] = set()
        self._next = time.monotonic() + PROGRESS_EVERY_SECONDS

    def committed(self, key: str) -> None:
        self.days[key] = None
        self.restored.discard(key)
        if self.to_write > 1 and time.monotonic() >= self._next:
            self._next = time.monotonic() + PROGRESS_EVERY_SECONDS
            self.context.log.info(
                f"Committed {len(self.days)} of {self.to_write} day(s) so far (the last committed: {key}). Each is"
                f" in every table ({', '.join(self.tables)}) from its commit; Dagster records the materializations when"
                " this step ends."
            )

    def reopened(self, key: str) -> None:
        if self.days.pop(key, None) is not None:
            self.restored.add(key)

    def failed(self, *, damaged: bool = False) -> None:
        if self.days and damaged:
            kept = (
                f"This attempt committed {len(self.days)} of {self.to_write} day(s) into a file since found"
                " damaged: none of its rows can be vouched for (see the error for what to do)."
            )
        else:
            kept = committed_summary(self.days, self.to_write, self.tables)
            if self.days:
                kept += (
                    " A retry of this step, or a re-execution of this run from failure, fetches and writes"
                    " only the other days; a new run of the range replaces them all."
                )
        if self.restored:
            kept += f" {len(self.restored)} day(s) it had written were put back as they were ({', '.join(sorted(self.restored))})."
        if not damaged:
            kept += " Every other day keeps its previous rows in every table."
        self.context.log.warning(kept)


def _resume(store: DayStore, context: dg.OutputContext, stream: DayStream, done: dict[str, str]) -> None:
    """Read back the days ``done`` (day -> the run that committed them) and tell the stream."""
    runs = sorted(set(done.values()))
    context.log.info(
        f"Resuming: {len(done)} of {len(stream.days)} day(s) were committed by run(s) {', '.join(runs)}"
        " and are kept; only the other days are fetched and written"
    )
    counts: dict[str, dict[str, int]] = {}
    for day in stream.days:
        if day.key not in done:
            continue
        frames = {table: store.read(context, table, day, columns) for table, columns in stream.resume_columns.items()}
        counts[day.key] = {table: len(frame) for table, frame in frames.items()}
        stream.on_resumed(DayRows(day, frames, resumed_from=done[day.key], metadata=store.describe(day)))
        del frames
    store.adopt(context, {k: counts[k] for k, run in done.items() if run != context.run_id})


def write_stream(store: DayStore, context: dg.OutputContext, stream: DayStream) -> None:
    """Commit ``stream`` day by day (module docstring), telling it of each day with its query."""
    done = store.committed(context, stream.resume_from, set(stream.keys))
    if done:
        _resume(store, context, stream, done)
    # Not held through the sweep: other runs may write the file until this one has a day.
    store.close()
    log = _CommitLog(context, len(stream.days) - len(done), stream.written)
    item: object = None
    try:
        for item in stream.produce(set(done), _StoreView(store, context)):
            _apply(store, context, stream, log, item)
    except BaseException as exc:
        # Neither a log line nor the report of the days kept may take the place of the error
        # that ends the step.
        with contextlib.suppress(Exception):
            if getattr(exc, "committed", False) and isinstance(item, DayRows):
                # DuckDB made the day durable before what failed after it (a checkpoint).
                log.committed(item.day.key)
                stream.on_written(dataclasses.replace(item, metadata=store.describe(item.day)))
        with contextlib.suppress(Exception):
            log.failed(damaged=isinstance(exc, DuckDBCorruptFileError))
        if stream.on_failed is not None:
            with contextlib.suppress(Exception):
                stream.on_failed(exc, store.table_metadata())
        raise
    finally:
        store.close()


def _apply(store: DayStore, context: dg.OutputContext, stream: DayStream, log: _CommitLog, item: object) -> None:
    if isinstance(item, ReopenedDay):
        store.restore(context, item.day)
        log.reopened(item.day.key)
    elif isinstance(item, Settled):
        store.settle(context, item.keys)
    elif isinstance(item, DayRows):
        store.write(context, item)
        log.committed(item.day.key)
        stream.on_written(dataclasses.replace(item, metadata=store.describe(item.day)))
    else:
        raise TypeError(f"a DayStream produced {type(item).__name__}")
