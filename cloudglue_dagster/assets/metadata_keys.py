"""The materialization metadata keys one module writes and another reads: one home each.

Keys only one module uses stay with it; a key here is part of what the sensors and checks
read back from Dagster's event log, so renaming one is a change of the stored contract."""

from __future__ import annotations

from typing import Final

__all__ = [
    "BY_MODEL_PREFIX",
    "COLUMN_LINEAGE",
    "COMPLETIONS_BY_MODEL",
    "IN_PROGRESS_COUNT",
    "IN_PROGRESS_NEWEST",
    "PARTITION_ROW_COUNT",
    "RUN_PARTITIONS",
    "WINDOW_RECEIVED",
    "by_model_key",
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

COLUMN_LINEAGE: Final = "dagster/column_lineage"
"""Dagster's column-level lineage of a derived table (written by :mod:`.metadata`)."""

BY_MODEL_PREFIX: Final = "by_model/"
"""The per-model figures of a usage table: ``by_model/<model>/<figure>``, a number each
(figure: ``requests``, ``input_tokens``, ``output_tokens``, ``total_tokens``, ``cost_usd``;
``llm_usage`` puts its source first: ``by_model/<source>/<model>/<figure>``)."""


def by_model_key(model: str, figure: str) -> str:
    """The metadata key of one model's figure (:data:`BY_MODEL_PREFIX`)."""
    return f"{BY_MODEL_PREFIX}{model}/{figure}"
