"""Records to DataFrames: the column contract of every table, in one place.

pandas only, no Dagster. Every frame built here has exactly the contract's
columns, in the contract's order, with the contract's dtypes, whether it holds
a million rows or none: the warehouse's column types come from the first frame
written, so an empty or all-null partition must not drift.

Missing values stay missing: a token count the API did not report is ``<NA>``
and stays out of every sum.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd

from .models import ChatCompletion, ChatMessage

__all__ = [
    "CHAT_COMPLETIONS_COLUMNS",
    "TOKEN_USAGE_COLUMNS",
    "Column",
    "chat_completions_frame",
    "conform",
    "empty_frame",
    "token_usage_frame",
    "utc_day",
]


@dataclass(frozen=True)
class Column:
    """One column of a table's contract: name, pandas dtype, and what it holds."""

    name: str
    dtype: str
    description: str


CHAT_COMPLETIONS_COLUMNS: tuple[Column, ...] = (
    Column("id", "string", "Completion id (unique)."),
    Column("created_at", "datetime64[ns, UTC]", "When the completion was created, UTC."),
    Column("model", "string", "Model that answered."),
    Column("prompt_tokens", "Int64", "Prompt tokens; null when the API did not report it."),
    Column("completion_tokens", "Int64", "Completion tokens; null when the API did not report it."),
    Column("total_tokens", "Int64", "Total tokens as reported by the API; null when not reported."),
    Column("temperature", "Float64", "payload.temperature; null when absent."),
    Column("message_count", "Int64", "Number of messages in the prompt (payload.messages)."),
    Column("choice_count", "Int64", "Number of choices in the answer."),
    Column("prompt", "string", "Content of the last user message of the prompt; null if there is none."),
    Column("response", "string", "Content of the first choice; null if there are no choices."),
    Column("collections", "string", "payload.collections as a JSON array of collection ids."),
    Column("filter", "string", "payload.filter as JSON; null when absent."),
    Column("payload_messages", "string", "payload.messages as a JSON array of {role, content[, name]}."),
    Column("choices", "string", "choices as a JSON array of {index, message: {role, content[, name]}}."),
)

TOKEN_USAGE_COLUMNS: tuple[Column, ...] = (
    Column("date", "datetime64[us]", "The UTC day (midnight, no time zone attached)."),
    Column("model", "string", "Model."),
    Column("completions", "Int64", "Completions of that model that day."),
    Column("prompt_tokens", "Int64", "Sum of prompt_tokens over the completions that report it; null if none do."),
    Column(
        "completion_tokens",
        "Int64",
        "Sum of completion_tokens over the completions that report it; null if none do.",
    ),
    Column("total_tokens", "Int64", "Sum of total_tokens over the completions that report it; null if none do."),
    Column("completions_without_usage", "Int64", "Completions that reported none of the three token counts."),
)

_TOKEN_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")


def empty_frame(columns: Sequence[Column]) -> pd.DataFrame:
    """A frame with no rows and the contract's columns and dtypes."""
    return pd.DataFrame({c.name: pd.Series([], dtype=c.dtype) for c in columns})


def _typed(data: dict[str, list], columns: Sequence[Column]) -> pd.DataFrame:
    return pd.DataFrame({c.name: pd.Series(data[c.name], dtype=c.dtype) for c in columns})


def _message_json(message: ChatMessage) -> dict[str, str]:
    out = {"role": message.role, "content": message.content}
    if message.name is not None:
        out["name"] = message.name
    return out


def _dumps(value: object) -> str:
    # ensure_ascii=False keeps unicode readable in the warehouse; compact separators keep it small.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def chat_completions_frame(completions: Iterable[ChatCompletion]) -> pd.DataFrame:
    """One row per completion, sorted by ``created_at`` then ``id``, in the contract's shape."""
    data: dict[str, list] = {c.name: [] for c in CHAT_COMPLETIONS_COLUMNS}
    for c in sorted(completions, key=lambda c: (c.created_at, c.id)):
        user_messages = [m for m in c.messages if m.role == "user"]
        first_choice = min(c.choices, key=lambda ch: ch.index, default=None)
        data["id"].append(c.id)
        data["created_at"].append(c.created_at)
        data["model"].append(c.model)
        data["prompt_tokens"].append(c.usage.prompt_tokens)
        data["completion_tokens"].append(c.usage.completion_tokens)
        data["total_tokens"].append(c.usage.total_tokens)
        data["temperature"].append(c.temperature)
        data["message_count"].append(len(c.messages))
        data["choice_count"].append(len(c.choices))
        data["prompt"].append(user_messages[-1].content if user_messages else None)
        data["response"].append(first_choice.message.content if first_choice else None)
        data["collections"].append(_dumps(list(c.collections)))
        data["filter"].append(None if c.filter is None else _dumps(c.filter))
        data["payload_messages"].append(_dumps([_message_json(m) for m in c.messages]))
        data["choices"].append(
            _dumps([{"index": ch.index, "message": _message_json(ch.message)} for ch in c.choices])
        )
    return _typed(data, CHAT_COMPLETIONS_COLUMNS)


def utc_day(created_at: pd.Series) -> pd.Series:
    """The UTC day of each timestamp, as naive midnight (``datetime64[us]``)."""
    return created_at.dt.tz_convert("UTC").dt.tz_localize(None).dt.floor("D").astype("datetime64[us]")


def token_usage_frame(chat_completions: pd.DataFrame) -> pd.DataFrame:
    """Token usage per (UTC day, model) from a ``chat_completions`` frame.

    Sums skip unreported counts (a model-day where no completion reported a
    field gets null, never zero); ``completions_without_usage`` counts the
    completions that reported none of them. Sorted by date then model.
    """
    if chat_completions.empty:
        return empty_frame(TOKEN_USAGE_COLUMNS)
    frame = pd.DataFrame(
        {
            "date": utc_day(chat_completions["created_at"]),
            "model": chat_completions["model"].astype("string"),
            **{f: chat_completions[f].astype("Int64") for f in _TOKEN_FIELDS},
        }
    )
    frame["no_usage"] = frame[list(_TOKEN_FIELDS)].isna().all(axis=1).astype("Int64")
    grouped = frame.groupby(["date", "model"], sort=True, dropna=False)
    usage = pd.DataFrame(
        {
            "completions": grouped.size(),
            **{f: grouped[f].sum(min_count=1) for f in _TOKEN_FIELDS},
            "completions_without_usage": grouped["no_usage"].sum(),
        }
    ).reset_index()
    return usage.astype({c.name: c.dtype for c in TOKEN_USAGE_COLUMNS})[[c.name for c in TOKEN_USAGE_COLUMNS]]


def conform(frame: pd.DataFrame, columns: Sequence[Column]) -> pd.DataFrame:
    """A frame read back from storage, brought to the contract: exactly its
    columns, in order, with its dtypes. Naive timestamps in a column the
    contract says is UTC are taken as UTC.

    Raises:
        ValueError: the frame lacks contract columns (the table was written
            under another contract).
    """
    missing = [c.name for c in columns if c.name not in frame.columns]
    if missing:
        raise ValueError(
            f"stored table lacks contract column(s) {missing}; it was written by another version."
            " Re-materialize the affected partitions (or drop the table)."
        )
    out = {}
    for c in columns:
        series = frame[c.name]
        if c.dtype.startswith("datetime64[ns, "):
            series = pd.to_datetime(series, utc=True)
        out[c.name] = series.astype(c.dtype)
    return pd.DataFrame(out, index=frame.index)
