"""The responses table's check and metadata: plain functions of a day's rows.

The Responses step evaluates them on each day it writes, as the chat_completions step does
its own (:mod:`.checks`): one ``rows_valid`` evaluation per day, every rule in its metadata.
One rule is about time, not shape: a response still ``in_progress`` longer than the
account's ``in_progress_limit_hours`` is *stuck*: the in-progress sensor stops reading its day
again, and this rule reports it (a warning) on the day's last write.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import dagster as dg
import pandas as pd

from cloudglue_dagster.api.responses import IN_PROGRESS
from cloudglue_dagster.tables.spend import RESPONSE_TOKEN_FIELDS

from .checks import (
    ROWS_VALID,
    Outcome,
    combined_outcome,
    duplicate_ids,
    examples_text,
    inconsistent_totals,
    negative_token_rows,
    rows_check_spec,
    rows_outside,
    rows_where,
)
from .metadata_keys import IN_PROGRESS_COUNT, IN_PROGRESS_NEWEST

__all__ = [
    "RESPONSE_RULES",
    "in_progress_metadata",
    "responses_check_outcomes",
    "responses_check_specs",
    "stuck_in_progress",
]

RESPONSE_RULES: tuple[tuple[str, str, dg.AssetCheckSeverity], ...] = (
    ("ids_unique", "every response id appears once", dg.AssetCheckSeverity.ERROR),
    ("created_at_in_partition", "every created_at falls inside its partition's UTC day", dg.AssetCheckSeverity.ERROR),
    ("tokens_non_negative", "no token count is negative", dg.AssetCheckSeverity.ERROR),
    (
        "total_tokens_consistent",
        "total_tokens == input_tokens + output_tokens where all three are reported (warns only)",
        dg.AssetCheckSeverity.WARN,
    ),
    (
        "no_stuck_in_progress",
        "no response is still in_progress longer than in_progress_limit_hours after it was created (warns only)",
        dg.AssetCheckSeverity.WARN,
    ),
)
"""responses' rules: name, what holds, and the severity of a failure."""


def responses_check_specs(key: dg.AssetKey, partitions_def: dg.PartitionsDefinition) -> list[dg.AssetCheckSpec]:
    """The check on ``responses`` (``rows_valid``), evaluated by the step on each day it writes."""
    return rows_check_spec(key, partitions_def, RESPONSE_RULES)


def stuck_in_progress(responses: pd.DataFrame, now: dt.datetime, limit_hours: float | None) -> pd.DataFrame:
    """Rows still ``in_progress`` created more than ``limit_hours`` before ``now`` (none
    when ``limit_hours`` is None)."""
    if limit_hours is None or not len(responses):
        return responses.iloc[:0]
    cutoff = pd.Timestamp(now).tz_convert("UTC") - pd.Timedelta(hours=limit_hours)
    waiting = (responses["status"] == IN_PROGRESS).fillna(False).to_numpy(dtype=bool)
    return rows_where(responses, waiting & (responses["created_at"] < cutoff).to_numpy(dtype=bool))


def responses_check_outcomes(
    frame: pd.DataFrame,
    window_start: pd.Timestamp,
    window_end: pd.Timestamp,
    days: Iterable[tuple[str, pd.DataFrame]],
    *,
    now: dt.datetime,
    limit_hours: float | None,
) -> dict[str, dict[str, Outcome]]:
    """The responses check for each ``(partition key, rows of that day)``; ``frame`` and its
    window as :func:`~.checks.chat_check_outcomes`; ``now`` (UTC) ages the in-progress rows."""
    outside = rows_outside(frame, window_start, window_end)
    outcomes: dict[str, Outcome] = {}
    for key, day in days:
        dupes = duplicate_ids(day)
        negative = negative_token_rows(day, RESPONSE_TOKEN_FIELDS)
        bad = inconsistent_totals(day, RESPONSE_TOKEN_FIELDS)
        stuck = stuck_in_progress(day, now, limit_hours)
        outcomes[key] = combined_outcome(
            RESPONSE_RULES,
            {
                "ids_unique": (not dupes, {"duplicate_ids": len(dupes), "examples": examples_text(dupes)}),
                "created_at_in_partition": (outside == 0, {"rows_outside_window": outside}),
                "tokens_non_negative": (negative.empty, _ids(negative)),
                "total_tokens_consistent": (bad.empty, _ids(bad)),
                "no_stuck_in_progress": (stuck.empty, _ids(stuck)),
            },
            {"rows": len(day)},
        )
    return {ROWS_VALID: outcomes}


def _ids(rows: pd.DataFrame) -> dict[str, Any]:
    return {"rows": len(rows), "examples": examples_text(rows["id"].tolist())}


def in_progress_metadata(responses: pd.DataFrame) -> dict[str, Any]:
    """A day's statuses: responses per status, how many are ``in_progress`` and the newest
    one's ``created_at`` (what the in-progress sensor reads back to decide on a re-read)."""
    statuses = responses["status"].astype("string").fillna("(none)")
    by_status = {str(k): int(v) for k, v in sorted(statuses.value_counts().items())}
    waiting = responses.loc[(responses["status"] == IN_PROGRESS).fillna(False).to_numpy(dtype=bool), "created_at"]
    metadata: dict[str, Any] = {
        "responses_by_status": dg.MetadataValue.json(by_status),
        IN_PROGRESS_COUNT: dg.MetadataValue.int(len(waiting)),
    }
    if len(waiting):
        metadata[IN_PROGRESS_NEWEST] = dg.MetadataValue.timestamp(waiting.max().to_pydatetime())
    return metadata
