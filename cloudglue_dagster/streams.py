"""What a range run hands its warehouse day by day, and what it reads back day by day.

pandas only, no Dagster. Two objects travel between the assets and an I/O manager that can
store a day at a time (:class:`~cloudglue_dagster.duckdb.CloudglueDuckDBIOManager`):

* :class:`DayStream`, an asset's output: the run's days, produced lazily (a day's rows exist
  only from the moment the sweep has them all until they are committed). The I/O manager
  commits each day in its own transaction, together with a progress mark, and tells the
  stream; days already committed by this run (an earlier attempt of the step) or by the
  failed run it re-executes are not produced again but loaded back, so their metadata and
  checks are reported as usual.
* :class:`DayFrames`, an asset's input: a range of an upstream table, loaded one day per
  read instead of all at once.

Other pandas I/O managers never see either: the assets hand them one DataFrame for the
range, as before (``supports_days``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .days import ReopenedDay, UTCDay
from .secrecy import errors_masked

__all__ = [
    "DAY_BY_DAY_INPUT",
    "DayFrames",
    "DayStream",
    "StoredDay",
    "supports_days",
]

DAY_BY_DAY_INPUT = "cloudglue/day_by_day"
"""Input metadata key: ``True`` asks an I/O manager that can for a :class:`DayFrames`."""


@dataclass(frozen=True)
class StoredDay:
    """One day's rows, on their way to the warehouse or read back from it.

    Attributes:
        day: the partition and its UTC window.
        frame: the rows (the table's contract).
        resumed_from: for a day read back, the run that committed it; None otherwise.
        metadata: what the warehouse says of the stored day, for its partition's
            materialization (the DuckDB I/O manager: the day's load ``Query``).
    """

    day: UTCDay
    frame: pd.DataFrame
    resumed_from: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


def _unmasked(error: BaseException) -> BaseException:
    return error


@dataclass
class DayStream:
    """An output that arrives one day at a time (see the module docstring).

    Attributes:
        days: every day of the run, oldest first.
        resume_from: run ids whose committed days count as done: this run (a step retry)
            and, for a re-execution of a failed run, the runs it descends from.
        produce: yields each day not in ``skip`` once complete, plus a :class:`ReopenedDay`
            when a day handed on earlier must be undone (it is produced again later).
        on_written: called after each produced day has been committed (with the
            warehouse's ``metadata`` of the day).
        on_resumed: called for each day already committed, with its rows read back.
        resume_columns: the columns ``on_resumed`` needs (None: all).
        on_failed: called when writing the stream fails, after the days committed before
            it, with the error and the warehouse's metadata of the table (None: nothing to do).
        mask_error: what the I/O manager applies to any error it raises while writing the
            stream: the step's masking of the API key (``Masker.error``), which the warehouse
            does not know; it returns the error masked in place, or a stand-in to raise.
    """

    days: Sequence[UTCDay]
    resume_from: Sequence[str]
    produce: Callable[[Collection[str]], Iterator[StoredDay | ReopenedDay]]
    on_written: Callable[[StoredDay], None]
    on_resumed: Callable[[StoredDay], None]
    resume_columns: Sequence[str] | None = None
    on_failed: Callable[[BaseException, Mapping[str, Any]], None] | None = None
    mask_error: Callable[[BaseException], BaseException] = _unmasked

    def errors_masked(self) -> AbstractContextManager[None]:
        """A block whose exceptions leave it through :attr:`mask_error`."""
        return errors_masked(self.mask_error)

    @property
    def keys(self) -> list[str]:
        return [d.key for d in self.days]


@dataclass
class DayFrames:
    """An upstream table's rows for a range of days, read one day at a time.

    Iterating yields one :class:`StoredDay` per day, oldest first; each read is its own
    query, so only one day's rows are in memory at a time (if the caller lets them go).
    """

    days: Sequence[UTCDay]
    load: Callable[[UTCDay], pd.DataFrame]

    def __iter__(self) -> Iterator[StoredDay]:
        for day in self.days:
            yield StoredDay(day, self.load(day))

    def __len__(self) -> int:
        return len(self.days)


def supports_days(io_manager: object) -> bool:
    """Whether ``io_manager`` stores :class:`DayStream` outputs and loads :class:`DayFrames`."""
    return bool(getattr(io_manager, "supports_day_streams", False))
