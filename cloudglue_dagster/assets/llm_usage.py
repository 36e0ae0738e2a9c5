"""``llm_usage``: LLM spend per UTC day, source and model, across both endpoints, and its check.

A plain partitioned asset downstream of ``token_usage`` and ``responses``: it loads the two
through the I/O manager (only the columns it sums, never the texts), builds the day's rows
with :func:`~cloudglue_dagster.tables.spend.llm_usage_frame` and hands them back to the I/O
manager, so it runs on any warehouse the tables do. A range run loads and writes its range
once. Its check, ``sums_match_sources``, loads the three tables again and holds, per day,
``llm_usage``'s ``chat_completions`` rows equal to ``token_usage`` and its ``responses`` rows
equal to the sums of ``responses``: a day re-loaded in one table and not the other fails it.
"""

# No `from __future__ import annotations`: Dagster reads the op functions' annotations as types.

from collections.abc import Iterator
from typing import Any

import dagster as dg
import pandas as pd

from cloudglue_dagster.tables.frames import TOKEN_USAGE_COLUMNS, conform
from cloudglue_dagster.tables.prices import Prices
from cloudglue_dagster.tables.spend import LLM_USAGE_COLUMNS, RESPONSES_COLUMNS, SOURCES, llm_usage_frame

from .checks import Outcome, report_checks
from .masking import Masker
from .metadata import column_lineage, frame_metadata, per_model_metadata
from .partitions import partition_slices
from .usage_checks import same_value

__all__ = ["RESPONSE_USAGE_COLUMNS", "build_llm_usage_asset", "build_llm_usage_check", "llm_usage_mismatches"]

RESPONSE_USAGE_COLUMNS = ["id", "created_at", "status", "model", "input_tokens", "output_tokens", "total_tokens"]
"""The columns of ``responses`` that ``llm_usage`` and its check load (not the instructions)."""

_PREVIEW = ("date", "source", "model", "requests", "input_tokens", "output_tokens", "total_tokens", "total_cost")
_RESPONSE_INPUT_COLUMNS = [c for c in RESPONSES_COLUMNS if c.name in RESPONSE_USAGE_COLUMNS]
_KEYS = ["date", "source", "model"]
_IO_MANAGER_KEY = "dagster/io_manager_key"


def _day_metadata(day: pd.DataFrame, mask: Any) -> dict[str, Any]:
    """One day's materialization metadata: the frame's, then requests, tokens and cost per source."""
    metadata = frame_metadata(day, columns=LLM_USAGE_COLUMNS, preview_columns=_PREVIEW, mask=mask)
    for source in SOURCES:
        rows = day[day["source"] == source]
        metadata[f"{source}_requests"] = dg.MetadataValue.int(int(rows["requests"].sum()))
        metadata[f"{source}_total_tokens"] = dg.MetadataValue.int(int(rows["total_tokens"].sum()))
    known = day["total_cost"].notna()
    metadata["total_cost_usd"] = dg.MetadataValue.float(round(float(day.loc[known, "total_cost"].sum()), 6))
    metadata["in_progress"] = dg.MetadataValue.int(int(day["in_progress"].sum()))
    tokens = {f: f for f in ("input_tokens", "output_tokens", "total_tokens")}
    for source in SOURCES:
        rows = day[day["source"] == source]
        metadata.update(per_model_metadata(rows, requests="requests", tokens=tokens, prefix=f"{source}/"))
    return metadata


def build_llm_usage_asset(
    *,
    spec: dg.AssetSpec,
    io_manager_key: str,
    usage_key: dg.AssetKey,
    responses_key: dg.AssetKey,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    backfill_policy: dg.BackfillPolicy,
    prices: Prices,
    name: str,
    resource_key: str,
) -> dg.AssetsDefinition:
    """The ``llm_usage`` asset (``spec``: the translator's, completed by the factory), built
    from the stored ``token_usage`` (``usage_key``) and ``responses`` (``responses_key``)."""

    # @asset, not multi_asset(specs=[spec]): an input's "columns" metadata (never load the
    # instructions) is refused on a key that a spec also names as a dep.
    kind_tags = {k for k in spec.tags if k.startswith("dagster/kind/")}
    lineage = column_lineage("llm_usage", {"token_usage": usage_key, "responses": responses_key})

    @dg.asset(
        key=spec.key,
        ins={
            "token_usage": dg.AssetIn(key=usage_key),
            "responses": dg.AssetIn(key=responses_key, metadata={"columns": RESPONSE_USAGE_COLUMNS}),
        },
        group_name=spec.group_name,
        description=spec.description,
        owners=list(spec.owners),
        tags={k: v for k, v in spec.tags.items() if k not in kind_tags},
        kinds=set(spec.kinds),
        code_version=spec.code_version,
        automation_condition=spec.automation_condition,
        freshness_policy=spec.freshness_policy,
        metadata={k: v for k, v in spec.metadata.items() if k != _IO_MANAGER_KEY},
        io_manager_key=io_manager_key,
        partitions_def=partitions_def,
        backfill_policy=backfill_policy,
        required_resource_keys={resource_key},
    )
    def llm_usage(
        context: dg.AssetExecutionContext, token_usage: pd.DataFrame, responses: pd.DataFrame
    ) -> pd.DataFrame:
        masker = Masker.of(getattr(context.resources, resource_key))  # model names come from the API
        with masker.errors():
            frame = llm_usage_frame(_usage(token_usage), _responses(responses), prices)
            for key, day in partition_slices(frame, "date", partitions_def, context.partition_keys):
                metadata = {**_day_metadata(day, masker.text), **lineage}
                context.add_asset_metadata(masker.metadata(metadata), partition_key=key)
            return frame

    return llm_usage


def _usage(token_usage: pd.DataFrame) -> pd.DataFrame:
    return conform(token_usage, TOKEN_USAGE_COLUMNS).sort_values("date", kind="stable", ignore_index=True)


def _responses(responses: pd.DataFrame) -> pd.DataFrame:
    if not len(responses.columns):  # nothing stored for the range (a DataFrame with no columns)
        responses = pd.DataFrame({c: [] for c in RESPONSE_USAGE_COLUMNS})
    return conform(responses, _RESPONSE_INPUT_COLUMNS).sort_values("created_at", kind="stable", ignore_index=True)


def llm_usage_mismatches(stored: pd.DataFrame, expected: pd.DataFrame) -> list[dict[str, Any]]:
    """Where one day of stored ``llm_usage`` differs from what its sources give (``expected``,
    from :func:`~cloudglue_dagster.tables.spend.llm_usage_frame`): a (source, model) row on one
    side only, a count or token sum that differs (nulls compare as nulls), a cost off by more
    than 1e-9."""
    index = ["source", "model"]
    have = stored.assign(model=stored["model"].astype(object)).set_index(index)
    want = expected.assign(model=expected["model"].astype(object)).set_index(index)
    out: list[dict[str, Any]] = []
    for row in sorted(set(have.index) | set(want.index), key=str):
        if row not in have.index or row not in want.index:
            out.append({"source": row[0], "model": str(row[1]), "column": "row", "stored": row in have.index})
            continue
        for column in [c.name for c in LLM_USAGE_COLUMNS if c.name not in _KEYS]:
            tolerance = 1e-9 if column.endswith("_cost") else 0.0
            a, b = want.at[row, column], have.at[row, column]
            if not same_value(a, b, tolerance):
                out.append(
                    {"source": row[0], "model": str(row[1]), "column": column, "expected": str(a), "stored": str(b)}
                )
    return out


def build_llm_usage_check(
    *,
    llm_usage_key: dg.AssetKey,
    usage_key: dg.AssetKey,
    responses_key: dg.AssetKey,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    prices: Prices,
    name: str,
    resource_key: str,
) -> dg.AssetChecksDefinition:
    """Stored ``llm_usage`` equals, per day, what stored ``token_usage`` and ``responses`` give."""
    spec = dg.AssetCheckSpec(
        name="sums_match_sources",
        asset=llm_usage_key,
        partitions_def=partitions_def,
        additional_deps=[usage_key, responses_key],
        description=(
            "Per UTC day, llm_usage's chat_completions rows equal token_usage and its responses rows the"
            " sums of responses: counts and tokens exactly, costs to 1e-9."
        ),
    )

    @dg.multi_asset_check(
        specs=[spec],
        name=f"{name}__llm_usage_checks",
        ins={
            "llm_usage": dg.AssetIn(key=llm_usage_key),
            "token_usage": dg.AssetIn(key=usage_key),
            # Whole rows, instructions included: Dagster refuses an input's "columns" metadata on
            # a check's dep. A response's row is small (the list carries no output text).
            "responses": dg.AssetIn(key=responses_key),
        },
        required_resource_keys={resource_key},
    )
    def llm_usage_check(
        context: dg.AssetCheckExecutionContext,
        llm_usage: pd.DataFrame,
        token_usage: pd.DataFrame,
        responses: pd.DataFrame,
    ) -> Iterator[dg.AssetCheckEvaluation | dg.Output[None]]:
        masker = Masker.of(getattr(context.resources, resource_key))
        stored = conform(llm_usage, LLM_USAGE_COLUMNS).sort_values("date", kind="stable", ignore_index=True)
        expected = llm_usage_frame(_usage(token_usage), _responses(responses), prices)
        keys = context.op_execution_context.partition_keys
        wanted = dict(partition_slices(expected, "date", partitions_def, keys))
        outcomes: dict[str, Outcome] = {}
        for key, day in partition_slices(stored, "date", partitions_def, keys):
            mismatches = llm_usage_mismatches(day, wanted[key])
            outcomes[key] = Outcome(
                not mismatches, {"mismatches": len(mismatches), "details": dg.MetadataValue.json(mismatches[:10])}
            )
        yield from report_checks(context, llm_usage_key, masker.outcomes({spec.name: outcomes}))

    return llm_usage_check
