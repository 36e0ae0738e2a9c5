"""The Responses API's table, and LLM spend across both endpoints (``llm_usage``).

pandas only, no Dagster. ``responses`` holds one row per response of ``GET /v1/responses``;
``llm_usage`` sums both endpoints per (UTC day, source, model), where ``source`` is
``chat_completions`` or ``responses``:

* a chat completion's ``prompt_tokens`` are its input and its ``completion_tokens`` its output,
  so the ``chat_completions`` rows are ``token_usage``'s, renamed (``completions`` ->
  ``requests``), costs included;
* the ``responses`` rows are the sums of ``responses``: requests, the three token counts over
  the responses that report each (null when none do), the costs from the summed tokens at the
  model's price, and how many were still ``in_progress`` when the day was loaded (their usage
  is not final).

Costs are USD at :class:`~cloudglue_dagster.tables.prices.ModelPrice` per million tokens, null
for a model without a price, as in ``token_usage``.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from cloudglue_dagster.api.responses import IN_PROGRESS, Response

from .frames import COST_COLUMNS, TOKEN_USAGE_COLUMNS, Column, conform, empty_frame, typed_frame, utc_day
from .prices import Prices, cost_columns

__all__ = [
    "LLM_USAGE_COLUMNS",
    "RESPONSE_TOKEN_FIELDS",
    "RESPONSES_COLUMNS",
    "SOURCES",
    "llm_usage_frame",
    "responses_frame",
]

RESPONSE_TOKEN_FIELDS = ("input_tokens", "output_tokens", "total_tokens")
"""The three token counts a response may report (each optional)."""

SOURCES = ("chat_completions", "responses")
"""The values of ``llm_usage.source``: the endpoint each row sums."""

_RESPONSE_COSTS: tuple[Column, ...] = (
    Column("input_cost", "Float64", "input_tokens x the model's input price, USD; null without a price or a count."),
    Column("output_cost", "Float64", "output_tokens x the model's output price, USD; null without a price or a count."),
    Column("total_cost", "Float64", "input_cost + output_cost, USD; null when either is null."),
)

RESPONSES_COLUMNS: tuple[Column, ...] = (
    Column("id", "string", "Response id (unique)."),
    Column("created_at", "datetime64[ns, UTC]", "When the response was created, UTC."),
    Column(
        "status",
        "string",
        "in_progress, completed, failed or cancelled when the day was loaded (a day holding in_progress"
        " responses is read again until none remain); null when absent.",
    ),
    Column("model", "string", "The model; null when absent."),
    Column("instructions", "string", "The system instructions; null when absent.", text="text"),
    Column("input_tokens", "Int64", "Input tokens; null when not reported (yet)."),
    Column("output_tokens", "Int64", "Output tokens; null when not reported (yet)."),
    Column("total_tokens", "Int64", "Total tokens as reported by the API; null when not reported (yet)."),
    *_RESPONSE_COSTS,
)

LLM_USAGE_COLUMNS: tuple[Column, ...] = (
    Column("date", "datetime64[us]", "The UTC day (midnight, no time zone attached)."),
    Column("source", "string", "The endpoint: chat_completions or responses."),
    Column("model", "string", "Model; null for responses that named none."),
    Column("requests", "Int64", "Completions, or responses, of that model that day."),
    Column(
        "input_tokens",
        "Int64",
        "Sum of input tokens (a completion's prompt_tokens, a response's input_tokens) over the requests"
        " that report them; null if none do.",
    ),
    Column(
        "output_tokens",
        "Int64",
        "Sum of output tokens (a completion's completion_tokens, a response's output_tokens); null if none report them.",
    ),
    Column("total_tokens", "Int64", "Sum of total_tokens over the requests that report it; null if none do."),
    Column("requests_without_usage", "Int64", "Requests that reported none of the three token counts."),
    Column(
        "in_progress",
        "Int64",
        "Responses still in_progress when the day was loaded (their usage is not final); 0 for chat completions.",
    ),
    *COST_COLUMNS,
)


def responses_frame(records: Iterable[Response], prices: Prices | None = None) -> pd.DataFrame:
    """One row per response, sorted by ``created_at`` then ``id``, in :data:`RESPONSES_COLUMNS`'
    shape; ``prices`` (model -> :class:`ModelPrice`) fills the cost columns."""
    read = RESPONSES_COLUMNS[:8]  # the columns read from the records; the costs follow from them
    data: dict[str, list[object]] = {c.name: [] for c in read}
    ids, created, statuses, models, instructions, inputs, outputs, totals = data.values()
    for r in records:
        ids.append(r.id)
        created.append(r.created_at)
        statuses.append(r.status)
        models.append(r.model)
        instructions.append(r.instructions)
        inputs.append(r.usage.input_tokens)
        outputs.append(r.usage.output_tokens)
        totals.append(r.usage.total_tokens)
    frame = typed_frame(data, read)
    frame = frame.assign(
        **cost_columns(
            frame["model"], utc_day(frame["created_at"]), frame["input_tokens"], frame["output_tokens"], prices or {}
        )
    )
    return frame.sort_values(["created_at", "id"], kind="stable", ignore_index=True)


def _chat_rows(token_usage: pd.DataFrame) -> pd.DataFrame:
    usage = conform(token_usage, TOKEN_USAGE_COLUMNS)
    return pd.DataFrame(
        {
            "date": usage["date"],
            "source": "chat_completions",
            "model": usage["model"],
            "requests": usage["completions"],
            "input_tokens": usage["prompt_tokens"],
            "output_tokens": usage["completion_tokens"],
            "total_tokens": usage["total_tokens"],
            "requests_without_usage": usage["completions_without_usage"],
            "in_progress": 0,
            **{c.name: usage[c.name] for c in COST_COLUMNS},
        }
    )


def _response_rows(responses: pd.DataFrame, prices: Prices) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "date": utc_day(responses["created_at"]),
            "model": responses["model"].astype("string"),
            **{f: responses[f].astype("Int64") for f in RESPONSE_TOKEN_FIELDS},
            "no_usage": responses[list(RESPONSE_TOKEN_FIELDS)].isna().all(axis=1).astype("Int64"),
            "in_progress": (responses["status"] == IN_PROGRESS).fillna(False).astype("Int64"),
        }
    )
    grouped = frame.groupby(["date", "model"], sort=True, dropna=False)
    sums = pd.DataFrame(
        {
            "requests": grouped.size(),
            **{f: grouped[f].sum(min_count=1) for f in RESPONSE_TOKEN_FIELDS},
            "requests_without_usage": grouped["no_usage"].sum(),
            "in_progress": grouped["in_progress"].sum(),
        }
    ).reset_index()
    sums.insert(1, "source", "responses")
    return sums.assign(**cost_columns(sums["model"], sums["date"], sums["input_tokens"], sums["output_tokens"], prices))


def llm_usage_frame(token_usage: pd.DataFrame, responses: pd.DataFrame, prices: Prices | None = None) -> pd.DataFrame:
    """LLM spend per (UTC day, source, model) from ``token_usage`` rows and ``responses`` rows
    (the module docstring says how each source is summed). Sorted by date, source, model."""
    parts = [
        part.astype({c.name: c.dtype for c in LLM_USAGE_COLUMNS})[[c.name for c in LLM_USAGE_COLUMNS]]
        for part in (
            _chat_rows(token_usage) if len(token_usage) else None,
            _response_rows(responses, prices or {}) if len(responses) else None,
        )
        if part is not None
    ]
    if not parts:
        return empty_frame(LLM_USAGE_COLUMNS)
    frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    return frame.sort_values(["date", "source", "model"], na_position="last", kind="stable", ignore_index=True)
