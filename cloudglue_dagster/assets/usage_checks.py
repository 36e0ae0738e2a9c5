"""The checks that compare a table with another: token_usage against what chat_completions
recorded when it was written, and collection_usage against token_usage.

Each loads the stored table for the run's partitions and reports one evaluation per
partition; the comparisons are plain functions of DataFrames.
"""

# No `from __future__ import annotations`: Dagster reads the check functions' annotations as types.

import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import dagster as dg
import pandas as pd

from cloudglue_dagster.tables.frames import COLLECTION_USAGE_COLUMNS, TOKEN_FIELDS, TOKEN_USAGE_COLUMNS, conform

from .checks import Outcome, latest_materializations, report_checks
from .masking import Masker
from .metadata_keys import COMPLETIONS_BY_MODEL, PARTITION_ROW_COUNT
from .partitions import partition_slices

__all__ = [
    "build_collection_usage_check",
    "build_usage_check",
    "collection_usage_mismatches",
    "same_value",
    "usage_against_recorded",
]


def _unmasked(value: Any) -> Any:
    return value


def usage_against_recorded(
    usage_day: pd.DataFrame, recorded: Mapping[str, Any] | None, mask: Callable[[Any], Any] = _unmasked
) -> list[dict[str, Any]]:
    """Differences between one day of stored ``token_usage`` and the totals that
    ``chat_completions`` recorded for that day when it was written.

    The recorded completions per model went through the run's masking (a model name may hold
    the API key a server echoed): ``mask`` (``Masker.value``) gives the stored ones the same
    treatment, in the same (sorted) order, before they are compared."""
    if recorded is None:
        return [{"column": "chat_completions", "expected": "a materialization", "stored": None}]
    stored = {
        "completions": int(usage_day["completions"].sum()),
        **{f: int(usage_day[f].sum()) for f in (*TOKEN_FIELDS, "completions_without_usage")},
    }
    expected = {
        "completions": recorded.get(PARTITION_ROW_COUNT),
        **{f: recorded.get(f) for f in stored if f != "completions"},
    }
    by_model = recorded.get(COMPLETIONS_BY_MODEL)
    out = [{"column": k, "expected": expected[k], "stored": v} for k, v in stored.items() if expected[k] != v]
    if by_model is not None:
        stored_by_model = mask(
            dict(sorted((str(m), int(n)) for m, n in zip(usage_day["model"], usage_day["completions"])))
        )
        if stored_by_model != by_model:
            out.append({"column": COMPLETIONS_BY_MODEL, "expected": by_model, "stored": stored_by_model})
    return out


def build_usage_check(
    *,
    chat_key: dg.AssetKey,
    usage_key: dg.AssetKey,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    name: str,
    resource_key: str,
) -> dg.AssetChecksDefinition:
    """Stored ``token_usage`` equals, per day, the totals ``chat_completions`` recorded
    when it was written: catches a day re-loaded in one table and not the other.

    It reads the ``resource_key`` resource's API key, to mask it in what it compares and shows."""
    spec = dg.AssetCheckSpec(
        name="sums_match_chat_completions",
        asset=usage_key,
        partitions_def=partitions_def,
        additional_deps=[chat_key],
        description=(
            "Stored token_usage equals the per-day totals (completions, tokens, per model) that"
            " chat_completions recorded when it was written."
        ),
    )

    # Named for the account, not the keys: a translator may give two accounts' keys one prefix.
    @dg.multi_asset_check(
        specs=[spec],
        name=f"{name}__token_usage_checks",
        ins={"token_usage": dg.AssetIn(key=usage_key)},
        required_resource_keys={resource_key},
    )
    def usage_check(
        context: dg.AssetCheckExecutionContext, token_usage: pd.DataFrame
    ) -> Iterator[dg.AssetCheckEvaluation | dg.Output[None]]:
        masker = Masker.of(getattr(context.resources, resource_key))  # model names come from the API
        usage = conform(token_usage, TOKEN_USAGE_COLUMNS).sort_values("date", kind="stable")
        keys = context.op_execution_context.partition_keys
        latest = latest_materializations(context.instance, chat_key, keys)
        outcomes: dict[str, Outcome] = {}
        for key, usage_day in partition_slices(usage, "date", partitions_def, keys):
            record = latest[key]
            recorded = None
            if record is not None:
                materialization = record.asset_materialization
                recorded = {k: v.value for k, v in (materialization.metadata if materialization else {}).items()}
            mismatches = usage_against_recorded(usage_day, recorded, masker.value)
            outcomes[key] = Outcome(
                not mismatches, {"mismatches": len(mismatches), "details": dg.MetadataValue.json(mismatches[:10])}
            )
        yield from report_checks(context, usage_key, masker.outcomes({spec.name: outcomes}))

    return usage_check


def same_value(expected: Any, stored: Any, tolerance: float = 0.0) -> bool:
    """Equal, both null, or (floats) within ``tolerance`` relative."""
    if pd.isna(expected) or pd.isna(stored):
        return bool(pd.isna(expected) and pd.isna(stored))
    return math.isclose(float(expected), float(stored), rel_tol=tolerance, abs_tol=tolerance)


def _sum_or_null(values: pd.Series) -> Any:
    """The sum, null when every value is (``sum()`` alone gives 0): nulls compare as nulls."""
    return values.sum(min_count=1)


def collection_usage_mismatches(collections_day: pd.DataFrame, usage_day: pd.DataFrame) -> list[dict[str, Any]]:
    """Where one day of collection_usage, summed over collections, differs from token_usage:
    per model, the tokens exactly (nulls included), ``attributed_completions`` against
    ``completions`` and the costs to 1e-9 (sums of fractions)."""
    summed = collections_day.groupby("model", dropna=False).agg(
        {
            "attributed_completions": "sum",
            **{f: _sum_or_null for f in (*TOKEN_FIELDS, "input_cost", "output_cost", "total_cost")},
        }
    )
    usage = usage_day.set_index("model")
    out = []
    for model in sorted(set(summed.index) | set(usage.index), key=str):
        if model not in usage.index or model not in summed.index:
            out.append({"model": str(model), "column": "model", "in_token_usage": model in usage.index})
            continue
        pairs = [("completions", "attributed_completions", 1e-9)] + [
            (f, f, 0.0 if f in TOKEN_FIELDS else 1e-9)
            for f in (*TOKEN_FIELDS, "input_cost", "output_cost", "total_cost")
        ]
        for usage_column, summed_column, tolerance in pairs:
            expected, stored = usage.at[model, usage_column], summed.at[model, summed_column]
            if not same_value(expected, stored, tolerance):
                out.append(
                    {"model": str(model), "column": summed_column, "expected": str(expected), "stored": str(stored)}
                )
    return out


def build_collection_usage_check(
    *,
    collections_key: dg.AssetKey,
    usage_key: dg.AssetKey,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    name: str,
    resource_key: str,
) -> dg.AssetChecksDefinition:
    """Stored collection_usage, summed over collections, equals stored token_usage, per day and
    model. It reads the ``resource_key`` resource's API key, to mask it in what it shows."""
    spec = dg.AssetCheckSpec(
        name="sums_match_token_usage",
        asset=collections_key,
        partitions_def=partitions_def,
        additional_deps=[usage_key],
        description=(
            "Summed over collections, each day and model of collection_usage equals token_usage: tokens"
            " exactly, attributed completions and costs to 1e-9."
        ),
    )

    @dg.multi_asset_check(
        specs=[spec],
        name=f"{name}__collection_usage_checks",
        ins={"collection_usage": dg.AssetIn(key=collections_key), "token_usage": dg.AssetIn(key=usage_key)},
        required_resource_keys={resource_key},
    )
    def collection_usage_check(
        context: dg.AssetCheckExecutionContext, collection_usage: pd.DataFrame, token_usage: pd.DataFrame
    ) -> Iterator[dg.AssetCheckEvaluation | dg.Output[None]]:
        masker = Masker.of(getattr(context.resources, resource_key))  # model and collection names come from the API
        collections = conform(collection_usage, COLLECTION_USAGE_COLUMNS).sort_values("date", kind="stable")
        usage = conform(token_usage, TOKEN_USAGE_COLUMNS).sort_values("date", kind="stable")
        keys = context.op_execution_context.partition_keys
        usage_days = dict(partition_slices(usage, "date", partitions_def, keys))
        outcomes: dict[str, Outcome] = {}
        for key, collections_day in partition_slices(collections, "date", partitions_def, keys):
            mismatches = collection_usage_mismatches(collections_day, usage_days[key])
            outcomes[key] = Outcome(
                not mismatches, {"mismatches": len(mismatches), "details": dg.MetadataValue.json(mismatches[:10])}
            )
        yield from report_checks(context, collections_key, masker.outcomes({spec.name: outcomes}))

    return collection_usage_check
