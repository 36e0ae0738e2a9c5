"""The materialization metadata keys one module writes and another reads: one home each.

Keys only one module uses stay with it; a key here is part of what the sensors and checks
read back from Dagster's event log, so renaming one is a change of the stored contract."""

from __future__ import annotations

from typing import Final

__all__ = [
    "COMPLETIONS_BY_MODEL",
    "IN_PROGRESS_COUNT",
    "IN_PROGRESS_NEWEST",
    "PARTITION_ROW_COUNT",
    "RUN_PARTITIONS",
    "WINDOW_RECEIVED",
]

PARTITION_ROW_COUNT: Final = "dagster/partition_row_count"
"""Rows of the partition (written by :mod:`.metadata`; read by the usage check and the shrink guard)."""

COMPLETIONS_BY_MODEL: Final = "completions_by_model"
"""Completions per model of a chat_completions day (written by :mod:`.metadata`; read by the usage check)."""

RUN_PARTITIONS: Final = "run_partitions"
"""Days in the run (written by :mod:`.steps.base`, on a one-day run's materialization and every run's
observation; read by the late-data sensor)."""

WINDOW_RECEIVED: Final = "window_received"
"""Completions the run's padded sweep received (written by :mod:`.steps.chat_completions`; read by the
late-data sensor)."""

IN_PROGRESS_COUNT: Final = "in_progress"
"""Responses of a day still ``in_progress`` when it was written (written by
:mod:`.response_checks`; read by the in-progress sensor)."""

IN_PROGRESS_NEWEST: Final = "in_progress_newest"
"""The newest ``created_at`` among them, a timestamp (written by :mod:`.response_checks`; read by
the in-progress sensor: past it plus the limit, the day is not read again)."""
