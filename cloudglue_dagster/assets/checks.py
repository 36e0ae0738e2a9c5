"""Partition-aware data-quality checks.

The rules are plain functions of DataFrames (tested without Dagster). The
chat_completions and chat_messages checks run inside those assets, on the
frame each writes (which the atomic I/O manager stores as is), so a year-long
backfill does not load its text back. The token_usage check loads the stored usage and compares it
with the totals chat_completions recorded for each day. Both report one
evaluation per partition, in single-day runs and range runs alike.
"""

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from cloudglue_dagster.tables.frames import TOKEN_FIELDS

from .metadata_keys import PARTITION_ROW_COUNT

__all__ = [
    "Outcome",
    "CHAT_RULES",
    "MESSAGE_RULES",
    "ROWS_VALID",
    "chat_check_outcomes",
    "chat_check_specs",
    "check_evaluations",
    "duplicate_ids",
    "duplicate_message_keys",
    "inconsistent_totals",
    "latest_materializations",
    "report_checks",
    "message_count_mismatches",
    "messages_check_outcomes",
    "messages_check_specs",
    "negative_token_rows",
    "recorded_row_counts",
    "rows_outside",
    "rows_where",
]


# -- the rules ---------------------------------------------------------------


def duplicate_ids(chat: pd.DataFrame) -> list[str]:
    """Ids that appear more than once."""
    ids = chat["id"]
    return sorted(ids[ids.duplicated()].unique().tolist())


def rows_outside(chat: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> int:
    """Rows whose ``created_at`` is not in ``[start, end)`` (compared in UTC)."""
    created = chat["created_at"]
    return int((~((created >= start) & (created < end))).sum())


def negative_token_rows(chat: pd.DataFrame, fields: Sequence[str] = TOKEN_FIELDS) -> pd.DataFrame:
    """Rows with a negative token count among ``fields`` (null counts are fine)."""
    negative = np.zeros(len(chat), dtype=bool)
    for field in fields:
        values, _ = _counts(chat[field])
        negative |= values < 0
    return rows_where(chat, negative)


def inconsistent_totals(chat: pd.DataFrame, fields: Sequence[str] = TOKEN_FIELDS) -> pd.DataFrame:
    """Rows reporting all three counts of ``fields`` (input, output, total: a completion's
    ``prompt_tokens``, ``completion_tokens``, ``total_tokens`` by default) where
    ``total != input + output``."""
    (prompt, no_prompt), (completion, no_completion), (total, no_total) = (_counts(chat[f]) for f in fields)
    reported = ~(no_prompt | no_completion | no_total)
    return rows_where(chat, reported & (total != prompt + completion))


def _counts(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """A count column as a numpy array (null as 0) and its null mask, compared as pandas
    compares them but without the masked-array machinery that cost most of a day's checks:
    integers as int64 (exact however large), anything else as float64."""
    dtype = "int64" if pd.api.types.is_integer_dtype(values.dtype) else "float64"
    return values.to_numpy(dtype=dtype, na_value=0), values.isna().to_numpy()


def rows_where(chat: pd.DataFrame, mask: np.ndarray) -> pd.DataFrame:
    """The rows of ``chat`` where ``mask`` holds."""
    # Almost every day matches nothing: skip copying the frame's text columns to say so.
    return chat[mask] if mask.any() else chat.iloc[:0]


_MESSAGE_KEY = ["completion_id", "source", "position"]


def duplicate_message_keys(messages: pd.DataFrame) -> list[str]:
    """``completion_id/source/position`` keys that appear more than once."""
    # In Python: pandas' duplicated() over three columns cost more than the rest of the check.
    seen: set[tuple[object, ...]] = set()
    repeated: set[tuple[object, ...]] = set()
    for key in zip(*(messages[column].tolist() for column in _MESSAGE_KEY)):
        (repeated if key in seen else seen).add(key)
    return sorted("/".join(str(v) for v in key) for key in repeated)


def message_count_mismatches(messages: pd.DataFrame, chat: pd.DataFrame) -> list[str]:
    """Completions of ``chat`` whose message rows differ from their ``message_count``
    (prompt rows) or ``choice_count`` (choice rows), and message rows of
    completions ``chat`` does not hold. A completion ``chat`` holds twice is judged by its
    last row."""
    got: dict[Any, list[int]] = {}
    for completion, source in zip(messages["completion_id"].tolist(), messages["source"].tolist()):
        counts = got.setdefault(completion, [0, 0])
        if source == "prompt":
            counts[0] += 1
        elif source == "choice":
            counts[1] += 1
    expected = {
        completion: (prompts, choices)
        for completion, prompts, choices in zip(
            chat["id"].tolist(), chat["message_count"].tolist(), chat["choice_count"].tolist()
        )
    }
    bad = []
    for completion in expected.keys() | got.keys():
        want, have = expected.get(completion), got.get(completion, (0, 0))
        # No row in chat, or a count it does not know (null): nothing to match, a mismatch.
        if want is None or any(pd.isna(w) or w != h for w, h in zip(want, have)):
            bad.append(completion)
    return sorted(str(completion) for completion in bad)


# -- Dagster wiring ----------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    passed: bool
    metadata: Mapping[str, Any]
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR


def examples_text(values: Sequence[Any], limit: int = 10) -> str:
    shown = ", ".join(str(v) for v in values[:limit])
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def latest_materializations(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, keys: Sequence[str]
) -> dict[str, Any]:
    """The latest materialization record of each partition (None when it has none), in two
    queries whatever the number of partitions."""
    latest_ids = instance.get_latest_storage_id_by_partition(
        asset_key, dg.DagsterEventType.ASSET_MATERIALIZATION, set(keys)
    )
    by_id: dict[int, Any] = {}
    if latest_ids:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key, storage_ids=list(latest_ids.values())), limit=len(latest_ids)
        ).records
        by_id = {record.storage_id: record for record in records}
    return {key: by_id.get(latest_ids[key]) if key in latest_ids else None for key in keys}


def recorded_row_counts(instance: dg.DagsterInstance, asset_key: dg.AssetKey, keys: Sequence[str]) -> dict[str, int]:
    """``dagster/partition_row_count`` of each partition's latest materialization, for the
    partitions that recorded one."""
    counts: dict[str, int] = {}
    for key, record in latest_materializations(instance, asset_key, keys).items():
        materialization = record.asset_materialization if record is not None else None
        value = materialization.metadata.get(PARTITION_ROW_COUNT) if materialization else None
        if value is not None and isinstance(value.value, int):
            counts[key] = value.value
    return counts


def check_evaluations(
    instance: dg.DagsterInstance,
    asset_key: dg.AssetKey,
    outcomes: Mapping[str, Mapping[str, Outcome]],
) -> Iterator[dg.AssetCheckEvaluation]:
    """One evaluation per (check, partition), tied to the partition's latest materialization."""
    from cloudglue_dagster.internals import AssetCheckEvaluationTargetMaterializationData

    partitions = sorted({p for by_partition in outcomes.values() for p in by_partition})
    if not partitions:
        return
    latest = latest_materializations(instance, asset_key, partitions)
    for check_name, by_partition in outcomes.items():
        for partition, outcome in by_partition.items():
            record = latest.get(partition)
            yield dg.AssetCheckEvaluation(
                asset_key=asset_key,
                check_name=check_name,
                passed=outcome.passed,
                metadata=dict(outcome.metadata),
                severity=outcome.severity,
                target_materialization_data=None
                if record is None
                else AssetCheckEvaluationTargetMaterializationData(
                    storage_id=record.storage_id, run_id=record.event_log_entry.run_id, timestamp=record.timestamp
                ),
                blocking=False,
                partition=partition,
            )


def report_checks(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext,
    asset_key: dg.AssetKey,
    outcomes: Mapping[str, Mapping[str, Outcome]],
) -> Iterator[dg.AssetCheckEvaluation | dg.Output[None]]:
    """Per-partition evaluations, then the (empty) check outputs Dagster expects of the op.

    Dagster's ``AssetCheckResult`` would report a range run as one unpartitioned
    result; yielding evaluations ourselves keeps one result per day.
    """
    op_context = context.op_execution_context
    yield from check_evaluations(op_context.instance, asset_key, outcomes)
    for output_name in op_context.assets_def.check_specs_by_output_name:
        yield dg.Output(None, output_name=output_name)


ROWS_VALID = "rows_valid"
"""The one check of chat_completions and of chat_messages: every rule of the table, per day.

One evaluation per asset and partition reports every rule in its metadata (``failed_rules``,
then each rule's counts and examples): a check evaluation is a write to the event log (about
10-30 ms each), and one per rule cost a range run more than its fetch."""

CHAT_RULES: tuple[tuple[str, str, dg.AssetCheckSeverity], ...] = (
    ("ids_unique", "every completion id appears once", dg.AssetCheckSeverity.ERROR),
    ("created_at_in_partition", "every created_at falls inside its partition's UTC day", dg.AssetCheckSeverity.ERROR),
    ("tokens_non_negative", "no token count is negative", dg.AssetCheckSeverity.ERROR),
    (
        "total_tokens_consistent",
        "total_tokens == prompt_tokens + completion_tokens where all three are reported (warns only)",
        dg.AssetCheckSeverity.WARN,
    ),
)
"""chat_completions' rules: name, what holds, and the severity of a failure."""

MESSAGE_RULES: tuple[tuple[str, str, dg.AssetCheckSeverity], ...] = (
    ("message_keys_unique", "(completion_id, source, position) appears once", dg.AssetCheckSeverity.ERROR),
    (
        "counts_match_chat_completions",
        "each completion has message_count prompt rows and choice_count choice rows, as stored in chat_completions",
        dg.AssetCheckSeverity.ERROR,
    ),
)
"""chat_messages' rules."""


def rows_check_spec(
    asset_key: dg.AssetKey, partitions_def: dg.PartitionsDefinition, rules: Sequence[tuple[str, str, Any]]
) -> list[dg.AssetCheckSpec]:
    description = "Per UTC day, every rule holds: " + "; ".join(f"{name}: {what}" for name, what, _ in rules) + "."
    return [dg.AssetCheckSpec(name=ROWS_VALID, asset=asset_key, partitions_def=partitions_def, description=description)]


def combined_outcome(
    rules: Sequence[tuple[str, str, dg.AssetCheckSeverity]],
    results: Mapping[str, tuple[bool, Mapping[str, Any]]],
    counts: Mapping[str, int],
) -> Outcome:
    """One outcome from each rule's ``(passed, metadata)``: failed if any rule failed, with
    the severity of the worst failed rule; ``counts`` first, then each rule's metadata
    prefixed with its name."""
    failed = [(name, severity) for name, _, severity in rules if not results[name][0]]
    metadata: dict[str, Any] = {**counts, "failed_rules": ", ".join(name for name, _ in failed) or "(none)"}
    for name, _, _ in rules:
        passed, details = results[name]
        metadata[name] = "passed" if passed else "FAILED"
        metadata.update({f"{name}.{k}": v for k, v in details.items()})
    worst = (
        dg.AssetCheckSeverity.ERROR
        if any(s == dg.AssetCheckSeverity.ERROR for _, s in failed)
        else dg.AssetCheckSeverity.WARN
        if failed
        else dg.AssetCheckSeverity.ERROR
    )
    return Outcome(not failed, metadata, severity=worst)


def chat_check_specs(chat_key: dg.AssetKey, partitions_def: dg.PartitionsDefinition) -> list[dg.AssetCheckSpec]:
    """The check on ``chat_completions`` (:data:`ROWS_VALID`): evaluated by the asset on each day it writes."""
    return rows_check_spec(chat_key, partitions_def, CHAT_RULES)


def chat_check_outcomes(
    frame: pd.DataFrame, window_start: pd.Timestamp, window_end: pd.Timestamp, days: Iterable[tuple[str, pd.DataFrame]]
) -> dict[str, dict[str, Outcome]]:
    """The chat_completions check for each ``(partition key, rows of that day)``.

    ``frame`` holds the rows being checked and ``[window_start, window_end)`` their window (a
    day, or a run's range): a row outside it belongs to no partition, so it fails
    ``created_at_in_partition`` for every partition given.
    """
    outside = rows_outside(frame, window_start, window_end)
    outcomes: dict[str, Outcome] = {}
    for key, day in days:
        dupes = duplicate_ids(day)
        negative = negative_token_rows(day)
        bad = inconsistent_totals(day)
        outcomes[key] = combined_outcome(
            CHAT_RULES,
            {
                "ids_unique": (not dupes, {"duplicate_ids": len(dupes), "examples": examples_text(dupes)}),
                "created_at_in_partition": (outside == 0, {"rows_outside_window": outside}),
                "tokens_non_negative": (
                    negative.empty,
                    {"rows": len(negative), "examples": examples_text(negative["id"].tolist())},
                ),
                "total_tokens_consistent": (
                    bad.empty,
                    {"rows": len(bad), "examples": examples_text(bad["id"].tolist())},
                ),
            },
            {"rows": len(day)},
        )
    return {ROWS_VALID: outcomes}


def messages_check_specs(messages_key: dg.AssetKey, partitions_def: dg.PartitionsDefinition) -> list[dg.AssetCheckSpec]:
    """The check on ``chat_messages`` (:data:`ROWS_VALID`): evaluated by the asset on each day it writes."""
    return rows_check_spec(messages_key, partitions_def, MESSAGE_RULES)


def messages_check_outcomes(
    days: Iterable[tuple[str, pd.DataFrame, pd.DataFrame]],
) -> dict[str, dict[str, Outcome]]:
    """The chat_messages check for each ``(partition key, message rows, chat_completions rows)`` of a day."""
    outcomes: dict[str, Outcome] = {}
    for key, messages, chat in days:
        dupes = duplicate_message_keys(messages)
        mismatched = message_count_mismatches(messages, chat)
        outcomes[key] = combined_outcome(
            MESSAGE_RULES,
            {
                "message_keys_unique": (not dupes, {"duplicate_keys": len(dupes), "examples": examples_text(dupes)}),
                "counts_match_chat_completions": (
                    not mismatched,
                    {"mismatched_completions": len(mismatched), "examples": examples_text(mismatched)},
                ),
            },
            {"rows": len(messages), "completions": len(chat)},
        )
    return {ROWS_VALID: outcomes}
