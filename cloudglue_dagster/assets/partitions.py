"""Daily UTC partitions and the per-account naming rule, shared by the assets, checks and component."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence

import dagster as dg
import pandas as pd

from cloudglue_dagster.internals import PartitionLoadingContext
from cloudglue_dagster.tables.frames import window_rows

__all__ = ["CloudglueDailyPartitionsDefinition", "account_name", "partition_slices", "unknown_partition_message"]


class CloudglueDailyPartitionsDefinition(dg.DailyPartitionsDefinition):
    """The assets' daily UTC partitions: Dagster's, with an unknown key's error naming ``start_date``.

    Dagster's own error says only "Could not find a partition with key `2025-12-01`"; this one
    says why (before ``start_date``, or a day not over yet), and which keys there are.

    Only the error differs. The fields, equality, hash and ``repr`` are the parent's (so the
    partitions' identity, which Dagster derives from ``repr``, is unchanged), and Dagster
    serializes every time-window subclass as a plain ``TimeWindowPartitionsDefinition``
    (``PartitionsSnap``, ``to_serializable_subset``), as it already does for
    ``DailyPartitionsDefinition``: nothing stored names this class. Processes that only hold a
    snapshot (the webserver, the daemon) see the plain definition and Dagster's message; the
    step checks its range again (``steps/base.run_days``) for runs that reach it.
    """

    def validate_partition_key(self, partition_key: str, context: PartitionLoadingContext) -> None:
        try:
            super().validate_partition_key(partition_key, context)
        except dg.DagsterUnknownPartitionError:
            with dg.partition_loading_context(new_ctx=context):
                message = unknown_partition_message(self, partition_key)
            # The same type, so whatever catches Dagster's error catches this one.
            raise dg.DagsterUnknownPartitionError(message) from None


def unknown_partition_message(partitions_def: dg.TimeWindowPartitionsDefinition, partition_key: str) -> str:
    """Why ``partition_key`` is not one of the daily partitions, and which keys there are."""
    first = partitions_def.get_first_partition_key()
    last = partitions_def.get_last_partition_key()
    start = partitions_def.start.date().isoformat()
    try:
        day = dt.date.fromisoformat(partition_key)
    except ValueError:
        day = None
    if day is None:
        why = "it is not a UTC day written YYYY-MM-DD"
    elif day.isoformat() < start:
        why = f"it is before start_date ({start}), the first partition"
    else:
        why = "that UTC day has not ended yet: a day becomes a partition once it is over"
    valid = f"{first}...{last}" if first and last else "none yet"
    hint = (
        f" To load days before {start}, set an earlier start_date (the factory's or the component's"
        " start_date; CLOUDGLUE_START_DATE for cloudglue_dagster.definitions)."
        if day is not None and day.isoformat() < start
        else ""
    )
    return (
        f"No Cloudglue partition `{partition_key}`: {why}. The partitions are the UTC days from"
        f" start_date to yesterday: {valid}.{hint}"
    )


def account_name(key_prefix: str | Sequence[str]) -> str:
    """The key prefix joined with ``_`` (``cloudglue/acme`` -> ``cloudglue_acme``): the default of
    every per-account name (job, schedule, sensors, pool, DuckDB schema)."""
    return "_".join([key_prefix] if isinstance(key_prefix, str) else key_prefix)


def partition_slices(
    frame: pd.DataFrame, column: str, partitions_def: dg.TimeWindowPartitionsDefinition, keys: Sequence[str]
) -> Iterator[tuple[str, pd.DataFrame]]:
    """Each partition key with the rows of ``frame`` whose ``column`` falls in its time window.

    ``frame`` must be sorted by ``column``. A tz-aware column is compared in
    UTC; a naive one is taken to be UTC already.
    """
    for key in keys:
        window = partitions_def.time_window_for_partition_key(key)
        yield key, window_rows(frame, column, window.start, window.end)
