"""What a run hands its warehouse day by day: every table of a day together.

pandas only, no Dagster. One step builds all the tables of a day at once (chat_completions
from the API's records, the others from those rows) and hands them over as one
:class:`DayRows`. A warehouse that can store days (``supports_days``: the DuckDB I/O
manager) receives the run as a :class:`DayStream` and commits each day, in every table, in
one transaction, so a day is never split across the tables:

* :class:`DayRows`: write the day (all its tables). A *provisional* day was complete
  before its sweep ended (the listing had moved past it): the warehouse keeps the day's
  previous rows until the sweep is :class:`Settled`, or puts them back when the day is
  reopened;
* :class:`~cloudglue_dagster.api.days.ReopenedDay`: a provisional day turned out incomplete (a
  record of it came later): put its previous rows back, in every table, at once; the day
  comes again later;
* :class:`Settled`: the sweep that produced these provisional days ended and was verified:
  their previous rows can go.

Days that this run (an earlier attempt of the step) or the failed run it re-executes
committed are not produced again but read back (``resume_from``), so their metadata and
checks are reported as usual. Any other pandas I/O manager never sees a stream: the step
collects the range and hands it one DataFrame per table (``supports_days``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd

from cloudglue_dagster.api.days import ReopenedDay, UTCDay
from cloudglue_dagster.api.secrecy import errors_masked

__all__ = [
    "DayRows",
    "DayStream",
    "Settled",
    "TableTarget",
    "TableWritten",
    "Warehouse",
    "committed_summary",
    "supports_days",
]


@dataclass(frozen=True)
class TableTarget:
    """One table a run reads or writes, as a warehouse places it.

    Attributes:
        name: the table's name in the contract (``chat_completions``, ``token_usage``...).
        key_path: its asset key's path (the warehouse's table is named after the last part).
        metadata: the asset's definition metadata (``partition_expr``, ``schema``...).
    """

    name: str
    key_path: tuple[str, ...]
    metadata: Mapping[str, Any]


@dataclass(frozen=True)
class DayRows:
    """One day's rows of every table the run writes, or read back from the warehouse.

    Attributes:
        day: the partition and its UTC window.
        frames: table name -> the day's rows (each table's contract).
        provisional: complete before its sweep ended: keep the previous rows until
            :class:`Settled` (see the module docstring).
        resumed_from: for a day read back, the run that committed it; None otherwise.
        metadata: table name -> what the warehouse says of the stored day, for that
            partition's materialization (the DuckDB I/O manager: the day's load ``Query``).
    """

    day: UTCDay
    frames: Mapping[str, pd.DataFrame]
    provisional: bool = False
    resumed_from: str | None = None
    metadata: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Settled:
    """The sweep that produced the provisional days ``keys`` ended verified."""

    keys: tuple[str, ...]


@dataclass(frozen=True)
class TableWritten:
    """The value of a table's output when the table was written with another output's
    :class:`DayStream` (an I/O manager that stores days writes every table of a day at once)."""

    table: str


class Warehouse(Protocol):
    """What a step may ask the warehouse while it produces its days."""

    def stored_rows(self, table: str, days: Sequence[UTCDay]) -> dict[str, int] | None:
        """Rows ``table`` holds for each of ``days`` (0 for a day without rows); None when
        the warehouse cannot tell."""
        ...

    def read(self, table: str, day: UTCDay, columns: Sequence[str] | None) -> pd.DataFrame:
        """The rows ``table`` holds for ``day`` (only ``columns``, when given)."""
        ...


Item = DayRows | ReopenedDay | Settled


@dataclass
class DayStream:
    """An output that arrives one day at a time, every table of a day together.

    Attributes:
        days: every day of the run, oldest first.
        tables: the tables the run reads or writes (``written`` names the written ones).
        written: the tables each :class:`DayRows` holds, in write order.
        resume_from: run ids whose committed days count as done: this run (a step retry)
            and, for a re-execution of a failed run, the run it re-executes.
        produce: yields the days not in ``skip`` (module docstring), asking the
            :class:`Warehouse` what it holds when it needs to.
        on_written: called after each day has been committed (with the warehouse's metadata).
        on_resumed: called for each day already committed, with its rows read back
            (``resume_columns`` of each table of ``resume_columns``).
        resume_columns: table -> the columns ``on_resumed`` needs (None: all).
        on_failed: called when writing the stream fails, after the days committed before
            it, with the error and the warehouse's metadata of each table.
        mask_error: what the warehouse applies to any error it raises while writing the
            stream: the step's masking of the API key (``Masker.error``), which the warehouse
            does not know; it returns the error masked in place, or a stand-in to raise.
    """

    days: Sequence[UTCDay]
    tables: Mapping[str, TableTarget]
    written: Sequence[str]
    resume_from: Sequence[str]
    produce: Callable[[Collection[str], Warehouse], Iterator[Item]]
    on_written: Callable[[DayRows], None]
    on_resumed: Callable[[DayRows], None]
    resume_columns: Mapping[str, Sequence[str] | None]
    on_failed: Callable[[BaseException, Mapping[str, Mapping[str, Any]]], None] | None = None
    mask_error: Callable[[BaseException], BaseException] = lambda error: error

    @property
    def keys(self) -> list[str]:
        return [d.key for d in self.days]

    def errors_masked(self) -> AbstractContextManager[None]:
        """A block whose exceptions leave it through :attr:`mask_error`."""
        return errors_masked(self.mask_error)


def supports_days(io_manager: object) -> bool:
    """Whether ``io_manager`` stores :class:`DayStream` outputs."""
    return bool(getattr(io_manager, "supports_day_streams", False))


def committed_summary(days: Collection[str], of: int, tables: Sequence[str]) -> str:
    """What a failed attempt committed, in the words both its error and its log use (so that
    they agree): ``days`` (keys) of the ``of`` days it had to write, in ``tables``."""
    if not days:
        return f"This attempt committed none of its {of} day(s) before it failed."
    first, last = min(days), max(days)
    span = first if first == last else f"{first}..{last}"
    return (
        f"This attempt committed {len(days)} of {of} day(s) ({span}) before it failed; each is whole in"
        f" every table ({', '.join(tables)}) and kept."
    )
