"""Partition-aware data-quality checks on the stored tables.

The rules are plain functions of DataFrames (tested without Dagster); the
Dagster wiring below loads the stored partitions through the I/O manager and
reports one evaluation per partition, in single-day runs and in range runs
alike (Dagster's ``AssetCheckResult`` would report a whole range as one).
"""


from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pandas as pd

from .frames import CHAT_COMPLETIONS_COLUMNS, TOKEN_USAGE_COLUMNS, conform, token_usage_frame

__all__ = [
    "build_cloudglue_checks",
    "duplicate_ids",
    "inconsistent_totals",
    "negative_token_rows",
    "rows_outside",
    "usage_mismatches",
]

_TOKEN_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")
_USAGE_VALUES = ("completions", *_TOKEN_FIELDS, "completions_without_usage")

Slices = Callable[[pd.DataFrame, str, dg.TimeWindowPartitionsDefinition, Sequence[str]], Iterator[tuple[str, pd.DataFrame]]]


# -- the rules ---------------------------------------------------------------


def duplicate_ids(chat: pd.DataFrame) -> list[str]:
    """Ids that appear more than once."""
    ids = chat["id"]
    return sorted(ids[ids.duplicated()].unique().tolist())


def rows_outside(chat: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> int:
    """Rows whose ``created_at`` is not in ``[start, end)`` (compared in UTC)."""
    created = chat["created_at"]
    return int((~((created >= start) & (created < end))).sum())


def negative_token_rows(chat: pd.DataFrame) -> pd.DataFrame:
    """Rows with a negative token count (null counts are fine)."""
    negative = pd.Series(False, index=chat.index)
    for field in _TOKEN_FIELDS:
        negative |= chat[field].lt(0).fillna(False).astype(bool)
    return chat[negative]


def inconsistent_totals(chat: pd.DataFrame) -> pd.DataFrame:
    """Rows reporting all three counts where ``total != prompt + completion``."""
    complete = chat[list(_TOKEN_FIELDS)].notna().all(axis=1)
    rows = chat[complete]
    return rows[rows["total_tokens"] != rows["prompt_tokens"] + rows["completion_tokens"]]


def usage_mismatches(usage: pd.DataFrame, chat: pd.DataFrame) -> list[dict[str, Any]]:
    """Differences between stored ``token_usage`` and the usage recomputed from
    stored ``chat_completions`` for the same days: one entry per (date, model,
    column) that differs, with both values (null equals null)."""
    expected = token_usage_frame(chat).set_index(["date", "model"])
    actual = usage.set_index(["date", "model"])
    out: list[dict[str, Any]] = []
    for key in expected.index.union(actual.index):
        for column in _USAGE_VALUES:
            want = expected[column].get(key, pd.NA) if key in expected.index else pd.NA
            got = actual[column].get(key, pd.NA) if key in actual.index else pd.NA
            if (want is pd.NA) != (got is pd.NA) or (want is not pd.NA and int(want) != int(got)):
                out.append(
                    {
                        "date": key[0].date().isoformat(),
                        "model": key[1],
                        "column": column,
                        "expected": None if want is pd.NA else int(want),
                        "stored": None if got is pd.NA else int(got),
                    }
                )
    return out


# -- Dagster wiring ----------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    passed: bool
    metadata: Mapping[str, Any]
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR


def _examples(values: Sequence[Any], limit: int = 10) -> str:
    shown = ", ".join(str(v) for v in values[:limit])
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def _latest_materializations(
    context: dg.AssetCheckExecutionContext, asset_key: dg.AssetKey, keys: Sequence[str]
) -> dict[str, Any]:
    """The latest materialization of each partition, so the UI ties each evaluation to it."""
    from dagster._core.definitions.asset_checks.asset_check_evaluation import (
        AssetCheckEvaluationTargetMaterializationData,
    )

    out: dict[str, Any] = {}
    for key in keys:
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[key]), limit=1
        ).records
        if records:
            record = records[0]
            out[key] = AssetCheckEvaluationTargetMaterializationData(
                storage_id=record.storage_id, run_id=record.event_log_entry.run_id, timestamp=record.timestamp
            )
    return out


def _report(
    context: dg.AssetCheckExecutionContext,
    asset_key: dg.AssetKey,
    outcomes: Mapping[str, Mapping[str, _Outcome]],
) -> Iterator[dg.AssetCheckEvaluation | dg.Output]:
    """One evaluation per (check, partition), then the check outputs Dagster expects."""
    op_context = context.op_execution_context
    targets = _latest_materializations(context, asset_key, op_context.partition_keys)
    for check_name, by_partition in outcomes.items():
        for partition, outcome in by_partition.items():
            yield dg.AssetCheckEvaluation(
                asset_key=asset_key,
                check_name=check_name,
                passed=outcome.passed,
                metadata=dict(outcome.metadata),
                severity=outcome.severity,
                target_materialization_data=targets.get(partition),
                blocking=False,
                partition=partition,
            )
    for output in op_context.op_def.output_defs:
        yield dg.Output(None, output_name=output.name)


def build_cloudglue_checks(
    *,
    chat_key: dg.AssetKey,
    usage_key: dg.AssetKey,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    slices: Slices,
) -> tuple[dg.AssetChecksDefinition, ...]:
    """The checks on ``chat_completions`` and ``token_usage``, evaluated per partition."""

    def spec(asset: dg.AssetKey, name: str, description: str, **kwargs: Any) -> dg.AssetCheckSpec:
        return dg.AssetCheckSpec(
            name=name, asset=asset, partitions_def=partitions_def, description=description, **kwargs
        )

    chat_specs = [
        spec(chat_key, "ids_unique", "Every completion id appears once."),
        spec(chat_key, "created_at_in_partition", "Every created_at falls inside its partition's UTC day."),
        spec(chat_key, "tokens_non_negative", "No token count is negative."),
        spec(
            chat_key,
            "total_tokens_consistent",
            "total_tokens == prompt_tokens + completion_tokens where all three are reported (warns).",
        ),
    ]
    prefix = "__".join(chat_key.path[:-1]) or "cloudglue"

    @dg.multi_asset_check(
        specs=chat_specs,
        name=f"{prefix}__chat_completions_checks",
        ins={"chat_completions": dg.AssetIn(key=chat_key)},
    )
    def chat_checks(context: dg.AssetCheckExecutionContext, chat_completions: pd.DataFrame):
        frame = conform(chat_completions, CHAT_COMPLETIONS_COLUMNS).sort_values("created_at", kind="stable")
        window = context.op_execution_context.partition_time_window
        outside = rows_outside(frame, pd.Timestamp(window.start), pd.Timestamp(window.end))
        outcomes: dict[str, dict[str, _Outcome]] = {s.name: {} for s in chat_specs}
        for key, day in slices(frame, "created_at", partitions_def, context.op_execution_context.partition_keys):
            dupes = duplicate_ids(day)
            outcomes["ids_unique"][key] = _Outcome(
                not dupes, {"rows": len(day), "duplicate_ids": len(dupes), "examples": _examples(dupes)}
            )
            outcomes["created_at_in_partition"][key] = _Outcome(outside == 0, {"rows_outside_window": outside})
            negative = negative_token_rows(day)
            outcomes["tokens_non_negative"][key] = _Outcome(
                negative.empty, {"rows": len(negative), "examples": _examples(negative["id"].tolist())}
            )
            bad = inconsistent_totals(day)
            outcomes["total_tokens_consistent"][key] = _Outcome(
                bad.empty,
                {"rows": len(bad), "examples": _examples(bad["id"].tolist())},
                severity=dg.AssetCheckSeverity.WARN,
            )
        yield from _report(context, chat_key, outcomes)

    usage_spec = spec(
        usage_key,
        "sums_match_chat_completions",
        "Stored token_usage equals usage recomputed from stored chat_completions.",
        additional_deps=[chat_key],
    )

    @dg.multi_asset_check(
        specs=[usage_spec],
        name=f"{prefix}__token_usage_checks",
        ins={"token_usage": dg.AssetIn(key=usage_key), "chat_completions": dg.AssetIn(key=chat_key)},
    )
    def usage_checks(context: dg.AssetCheckExecutionContext, token_usage: pd.DataFrame, chat_completions: pd.DataFrame):
        usage = conform(token_usage, TOKEN_USAGE_COLUMNS).sort_values("date", kind="stable")
        chat = conform(chat_completions, CHAT_COMPLETIONS_COLUMNS).sort_values("created_at", kind="stable")
        keys = context.op_execution_context.partition_keys
        chat_days = dict(slices(chat, "created_at", partitions_def, keys))
        outcomes: dict[str, _Outcome] = {}
        for key, usage_day in slices(usage, "date", partitions_def, keys):
            mismatches = usage_mismatches(usage_day, chat_days[key])
            outcomes[key] = _Outcome(
                not mismatches,
                {"mismatches": len(mismatches), "examples": dg.MetadataValue.json(mismatches[:10])},
            )
        yield from _report(context, usage_key, {usage_spec.name: outcomes})

    return (chat_checks, usage_checks)
