"""Materialization metadata: what the Dagster UI shows for each partition."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from cloudglue_dagster.tables.frames import TOKEN_FIELDS, Column
from cloudglue_dagster.tables.lineage import LINEAGE

from .metadata_keys import COLUMN_LINEAGE, COMPLETIONS_BY_MODEL, PARTITION_ROW_COUNT, by_model_key

__all__ = [
    "column_lineage",
    "column_schema",
    "cost_metadata",
    "frame_metadata",
    "markdown_preview",
    "messages_metadata",
    "per_model_metadata",
]


def column_schema(columns: Sequence[Column]) -> dg.TableSchema:
    """The contract as a ``dg.TableSchema`` (shown as ``dagster/column_schema``)."""
    return dg.TableSchema(
        columns=[dg.TableColumn(name=c.name, type=c.dtype, description=c.description) for c in columns]
    )


def _unmasked(text: str) -> str:
    return text


def markdown_preview(
    frame: pd.DataFrame,
    columns: Sequence[str],
    rows: int = 5,
    width: int = 40,
    mask: Callable[[str], str] = _unmasked,
) -> str:
    """A small markdown table of the first ``rows`` rows, cells cut to ``width`` characters.

    ``mask`` (the run's key masking) applies to each cell before it is escaped and cut: a
    secret cut in two, or escaped for markdown, would no longer be recognized."""
    if frame.empty:
        return "_no rows_"

    def cell(value: Any) -> str:
        text = "" if value is None or value is pd.NA or (isinstance(value, float) and value != value) else str(value)
        text = mask(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")
        return text if len(text) <= width else text[: width - 1] + "…"

    # Column by column: a five-row frame of the columns costs pandas more than the cells.
    cells = zip(*(frame[column].iloc[:rows].tolist() for column in columns))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for record in cells:
        lines.append("| " + " | ".join(cell(v) for v in record) + " |")
    if len(frame) > rows:
        lines.append(f"\n_{rows} of {len(frame)} rows_")
    return "\n".join(lines)


def frame_metadata(
    frame: pd.DataFrame,
    *,
    columns: Sequence[Column],
    preview_columns: Sequence[str],
    time_column: str | None = None,
    mask: Callable[[str], str] = _unmasked,
) -> dict[str, Any]:
    """Metadata of one partition's slice: row count, schema, token totals and
    models (for frames that have them), time span, preview (its cells masked by ``mask``
    before they are cut; the rest is masked with the whole mapping).

    Token totals are plain numbers so the UI plots them over partitions; they
    sum the completions that reported each field (unreported ones are counted
    by ``completions_without_usage`` where the table has it).
    """
    metadata: dict[str, Any] = {
        PARTITION_ROW_COUNT: dg.MetadataValue.int(len(frame)),
        "dagster/column_schema": column_schema(columns),
    }
    if set(TOKEN_FIELDS) <= set(frame.columns):
        metadata.update(_usage_metadata(frame))
    if time_column is not None and len(frame):
        metadata[f"first_{time_column}"] = dg.MetadataValue.timestamp(frame[time_column].min().to_pydatetime())
        metadata[f"last_{time_column}"] = dg.MetadataValue.timestamp(frame[time_column].max().to_pydatetime())
    metadata["preview"] = dg.MetadataValue.md(markdown_preview(frame, preview_columns, mask=mask))
    return metadata


def _usage_metadata(frame: pd.DataFrame) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    for field in TOKEN_FIELDS:
        metadata[field] = dg.MetadataValue.int(int(frame[field].sum()) if len(frame) else 0)
    if "completions_without_usage" in frame.columns:
        metadata["completions_without_usage"] = dg.MetadataValue.int(
            int(frame["completions_without_usage"].sum()) if len(frame) else 0
        )
    elif "attributed_completions" not in frame.columns:  # chat_completions: one row per completion
        unreported = np.logical_and.reduce([frame[field].isna().to_numpy() for field in TOKEN_FIELDS])
        metadata["completions_without_usage"] = dg.MetadataValue.int(int(unreported.sum()))
    by_model = _completions_by_model(frame)
    metadata[COMPLETIONS_BY_MODEL] = dg.MetadataValue.json({str(m): int(n) for m, n in sorted(by_model.items())})
    models = sorted(str(m) for m in by_model.keys())  # the models that are not null, each once
    metadata["models"] = dg.MetadataValue.text(", ".join(models) if models else "(none)")
    metadata["model_count"] = dg.MetadataValue.int(len(models))
    return metadata


def _completions_by_model(frame: pd.DataFrame) -> pd.Series | Counter[Any]:
    """Completions per model (models that are null left out), by model: read it with
    ``keys()`` and ``items()``, which the two types share."""
    if "attributed_completions" in frame.columns:  # collection_usage: a completion's shares sum to 1
        return frame.groupby("model")["attributed_completions"].sum().round()
    if "completions" in frame.columns:  # token_usage
        return frame.groupby("model")["completions"].sum()
    # Counted in Python: pandas' value_counts of a string column cost ten times as much here.
    # The ignore: pandas takes any na_value, None included; pandas-stubs' overloads leave None out.
    models = frame["model"].to_numpy(dtype=object, na_value=None).tolist()  # type: ignore[call-overload]
    counts: Counter[str | None] = Counter(models)
    counts.pop(None, None)
    return counts


def cost_metadata(usage: pd.DataFrame) -> dict[str, Any]:
    """Cost of one day of ``token_usage``: ``total_cost_usd`` sums the known
    ``total_cost`` values; ``completions_without_cost`` counts the completions
    of model-days whose cost is null (no price, or tokens not reported), which
    that total leaves out."""
    known = usage["total_cost"].notna()
    return {
        "total_cost_usd": dg.MetadataValue.float(round(float(usage.loc[known, "total_cost"].sum()), 6)),
        "completions_without_cost": dg.MetadataValue.int(int(usage.loc[~known, "completions"].sum())),
    }


def messages_metadata(messages: pd.DataFrame) -> dict[str, Any]:
    """Counts of one day of ``chat_messages``: completions, prompt and choice rows, rows per role."""
    # Counted in Python: pandas' string comparisons and value_counts cost ten times as much.
    sources = Counter(messages["source"].tolist())
    by_role = Counter("(none)" if pd.isna(role) else str(role) for role in messages["role"].tolist())
    completions = set(messages["completion_id"].tolist())
    completions.discard(pd.NA)  # the completions of rows that name one
    return {
        "completions": dg.MetadataValue.int(len(completions)),
        "prompt_messages": dg.MetadataValue.int(sources["prompt"]),
        "choice_messages": dg.MetadataValue.int(sources["choice"]),
        "messages_by_role": dg.MetadataValue.json(dict(sorted(by_role.items()))),
    }


def column_lineage(table: str, keys: Mapping[str, dg.AssetKey]) -> dict[str, Any]:
    """``dagster/column_lineage`` of a derived ``table`` (:data:`~cloudglue_dagster.tables.lineage.LINEAGE`),
    its source tables named by their asset keys (``keys``: table -> key); empty for a table
    without lineage (the API's tables)."""
    lineage = LINEAGE.get(table)
    if lineage is None:
        return {}
    deps = {
        column: [dg.TableColumnDep(asset_key=keys[source], column_name=name) for source, name in sources]
        for column, sources in lineage.items()
    }
    return {COLUMN_LINEAGE: dg.TableColumnLineage(deps_by_column=deps)}


def per_model_metadata(
    frame: pd.DataFrame, *, tokens: Mapping[str, str], requests: str | None = None, prefix: str = ""
) -> dict[str, Any]:
    """One number per model and figure, under stable keys a dashboard can plot over partitions
    (:func:`~.metadata_keys.by_model_key`): ``requests`` sums the column of that name (a usage
    table), or, None, counts the rows (a table of one row per request); ``tokens`` maps each figure to the column it sums, and
    ``cost_usd`` sums the known ``total_cost`` (absent for a model without a price). Models that
    are null are left out; ``prefix`` goes before the model (``llm_usage``: its source)."""
    if not len(frame):
        return {}
    models = frame["model"].astype("string")
    out: dict[str, Any] = {}
    for model, rows in frame[models.notna().to_numpy(dtype=bool)].groupby(models.dropna(), sort=True):
        name = f"{prefix}{model}"
        count = len(rows) if requests is None else int(rows[requests].sum())
        out[by_model_key(name, "requests")] = dg.MetadataValue.int(count)
        for figure, column in tokens.items():
            out[by_model_key(name, figure)] = dg.MetadataValue.int(int(rows[column].sum()))
        cost = rows["total_cost"].dropna() if "total_cost" in rows.columns else pd.Series(dtype="Float64")
        if len(cost):
            out[by_model_key(name, "cost_usd")] = dg.MetadataValue.float(round(float(cost.sum()), 6))
    return out
