"""Daily UTC partitions and the per-account naming rule, shared by the assets, checks and component."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import dagster as dg
import pandas as pd

from .frames import window_rows

__all__ = ["account_name", "partition_slices"]


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
