"""Records to DataFrames: the column contract of every table, in one place.

pandas, numpy and msgspec, no Dagster. Every frame built here has exactly the contract's
columns, in the contract's order, with the contract's dtypes, whether it holds
a million rows or none: the warehouse's column types come from the first frame
written, so an empty or all-null partition must not drift.

Missing values stay missing: a token count the API did not report is ``<NA>``
and stays out of every sum, and a cost without a price is ``<NA>``, never zero.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter
from typing import Any, Literal

import msgspec
import numpy as np
import pandas as pd

from cloudglue_dagster.api.models import ChatCompletion, Choice, encode_json

__all__ = [
    "ACCOUNTING_COLUMNS",
    "CHAT_COMPLETIONS_COLUMNS",
    "CHAT_MESSAGES_COLUMNS",
    "COLLECTION_SOURCE_COLUMNS",
    "COLLECTION_USAGE_COLUMNS",
    "COST_COLUMNS",
    "MESSAGE_SOURCE_COLUMNS",
    "TOKEN_FIELDS",
    "TOKEN_USAGE_COLUMNS",
    "Column",
    "chat_completions_frame",
    "chat_messages_frame",
    "conform",
    "empty_frame",
    "utc_day",
    "window_rows",
]


ColumnDtype = Literal["string", "Int64", "Float64", "datetime64[ns, UTC]", "datetime64[us]"]
"""The pandas dtypes the contracts use (a new one is added here, and to the warehouses' mappings)."""

TextKind = Literal["text", "json"]
"""How a column holds the API's texts: one text, or JSON whose string values are texts (:mod:`.texts`)."""


@dataclass(frozen=True)
class Column:
    """One column of a table's contract: name, pandas dtype, and what it holds.

    ``text`` marks a column holding the API's texts (None: no text): what ``text_storage``
    rewrites (:mod:`.texts`)."""

    name: str
    dtype: ColumnDtype
    description: str
    text: TextKind | None = None


COST_COLUMNS: tuple[Column, ...] = (
    Column("input_cost", "Float64", "prompt_tokens x the model's input price, USD; null without a price or a count."),
    Column(
        "output_cost", "Float64", "completion_tokens x the model's output price, USD; null without a price or a count."
    ),
    Column("total_cost", "Float64", "input_cost + output_cost, USD; null when either is null."),
)
"""The cost columns of the usage tables (USD, from :class:`ModelPrice`)."""


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
    Column("prompt", "string", "Content of the last user message of the prompt; null if there is none.", text="text"),
    Column("response", "string", "Content of the first choice; null if there are no choices.", text="text"),
    Column("collections", "string", "payload.collections as a JSON array of collection ids."),
    Column("filter", "string", "payload.filter as JSON; null when absent.", text="json"),
    Column("payload_messages", "string", "payload.messages as the API's JSON array.", text="json"),
    Column(
        "choices", "string", "choices as the API's JSON array ({index, message: {role, content[, name]}}).", text="json"
    ),
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
    *COST_COLUMNS,
)

COLLECTION_USAGE_COLUMNS: tuple[Column, ...] = (
    Column("date", "datetime64[us]", "The UTC day (midnight, no time zone attached)."),
    Column("collection", "string", "A collection id the completions named; null for those that named none."),
    Column("model", "string", "Model."),
    Column(
        "completions",
        "Int64",
        "Completions of that model that day naming the collection (one naming k collections counts in each).",
    ),
    Column(
        "attributed_completions",
        "Float64",
        "The same completions counted 1/k each: summed over collections, token_usage.completions.",
    ),
    Column(
        "prompt_tokens",
        "Int64",
        "prompt_tokens split evenly over the k collections, in whole tokens (remainder to the first"
        " collections in id order); summed over collections, token_usage's; null if none report it.",
    ),
    Column("completion_tokens", "Int64", "completion_tokens, split the same way."),
    Column("total_tokens", "Int64", "total_tokens, split the same way."),
    *COST_COLUMNS,
)

CHAT_MESSAGES_COLUMNS: tuple[Column, ...] = (
    Column("date", "datetime64[us]", "The completion's UTC day (midnight, no time zone attached)."),
    Column("completion_id", "string", "Id of the completion (chat_completions.id)."),
    Column("source", "string", "'prompt' (a message of payload.messages) or 'choice' (an answer)."),
    Column("position", "Int64", "0-based position in the prompt's messages, or in the choices as the API listed them."),
    Column("choice_index", "Int64", "The choice's index as the API gave it; null for prompt messages."),
    Column("role", "string", "system, user or assistant."),
    Column("name", "string", "The message's name; null when absent.", text="text"),
    Column("content", "string", "The message's text.", text="text"),
)

TOKEN_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")
"""The three token counts a completion may report (each optional)."""

ACCOUNTING_COLUMNS: tuple[Column, ...] = tuple(
    c for c in CHAT_COMPLETIONS_COLUMNS if c.name in ("id", "created_at", "model", *TOKEN_FIELDS)
)
"""The chat_completions columns that token usage and the checks read: loading
only these (the I/O manager's ``columns`` input metadata) skips the text."""

COLLECTION_SOURCE_COLUMNS: tuple[Column, ...] = tuple(
    c for c in CHAT_COMPLETIONS_COLUMNS if c.name in ("id", "created_at", "model", *TOKEN_FIELDS, "collections")
)
"""The chat_completions columns that collection_usage is built from."""

MESSAGE_SOURCE_COLUMNS: tuple[Column, ...] = tuple(
    c
    for c in CHAT_COMPLETIONS_COLUMNS
    if c.name in ("id", "created_at", "message_count", "choice_count", "payload_messages", "choices")
)
"""The chat_completions columns that chat_messages is built and checked from."""


def empty_frame(columns: Sequence[Column]) -> pd.DataFrame:
    """A frame with no rows and the contract's columns and dtypes."""
    return pd.DataFrame({c.name: pd.Series([], dtype=c.dtype) for c in columns})


def typed_frame(data: Mapping[str, Any], columns: Sequence[Column]) -> pd.DataFrame:
    # Arrays, not Series: a frame made of Series aligns their indexes, which took as long as
    # building the columns (2.1 of 5.2 ms for a day of the benchmark's completions).
    # The ignore: pandas-stubs' pd.array has no overload for the datetime64 dtypes pandas takes.
    return pd.DataFrame({c.name: pd.array(data[c.name], dtype=c.dtype) for c in columns}, copy=False)  # type: ignore[arg-type]


def chat_completions_frame(completions: Iterable[ChatCompletion]) -> pd.DataFrame:
    """One row per completion, sorted by ``created_at`` then ``id``, in the contract's shape.

    Consumes ``completions`` once, keeping no record: a backfill's memory holds
    the frame's columns, not the parsed records too. The JSON columns are the
    records' :attr:`~cloudglue_dagster.api.models.ChatCompletion.raw` text, the API's
    own JSON (unknown fields included), so nothing the API sent there is lost.
    """
    with _fewer_collections():
        frame = typed_frame(_chat_columns(completions), CHAT_COMPLETIONS_COLUMNS)
    return _by_time_then_id(frame)


def _by_time_then_id(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame.sort_values(["created_at", "id"], kind="stable", ignore_index=True)``, without
    sorting every id: pandas' two-key sort factorizes the ids (0.3 s of CPU for 100k rows),
    when only rows that share a ``created_at`` need them. Those runs are ordered by id here."""
    times = frame["created_at"].array.asi8
    order = np.argsort(times, kind="stable")
    ordered = times[order]
    ties = ordered[1:] == ordered[:-1]
    if ties.any():
        ids = frame["id"].to_numpy(dtype=object)
        edges = np.diff(np.concatenate(([False], ties, [False])).astype(np.int8))
        for start, end in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) + 1):
            order[start:end] = sorted(order[start:end].tolist(), key=ids.__getitem__)  # stable
    if (order[1:] > order[:-1]).all():
        return frame  # in order already: no copy of every column
    return frame.take(order).reset_index(drop=True)


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """Run the cyclic garbage collector less often for the duration.

    Parsing pages allocates millions of short-lived dicts and lists, none in
    reference cycles; at the default thresholds the collector runs every 700
    of them and, often, walks every live object of the process. Measured on a
    50k-completion sweep (emulator, 8 concurrent requests): 2.3-2.9 s of CPU
    at the default thresholds, 1.6 s at these. Restored afterwards.
    """
    previous = gc.get_threshold()
    gc.set_threshold(50_000, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*previous)


def _chat_columns(completions: Iterable[ChatCompletion]) -> dict[str, list[Any]]:
    """The contract's columns as lists, one pass over the records. The JSON columns are the
    records' own text (:class:`~cloudglue_dagster.api.models.CompletionJSON`): nothing is encoded here."""
    columns: tuple[list[Any], ...] = tuple([] for _ in CHAT_COMPLETIONS_COLUMNS)
    (
        ids,
        created,
        models,
        prompt_tokens,
        completion_tokens,
        total_tokens,
        temperatures,
        message_counts,
        choice_counts,
        prompts,
        responses,
        collections,
        filters,
        payload_messages,
        choices,
    ) = columns
    for c in completions:
        usage, messages, answers, raw = c.usage, c.messages, c.choices, c.raw
        ids.append(c.id)
        created.append(c.created_at)
        models.append(c.model)
        prompt_tokens.append(usage.prompt_tokens)
        completion_tokens.append(usage.completion_tokens)
        total_tokens.append(usage.total_tokens)
        temperatures.append(c.temperature)
        message_counts.append(len(messages))
        choice_counts.append(len(answers))
        # The last user message of the prompt.
        prompt = None
        for m in reversed(messages):
            if m.role == "user":
                prompt = m.content
                break
        prompts.append(prompt)
        # The choice with the lowest index (the first of them if several share it).
        if len(answers) == 1:
            responses.append(answers[0].message.content)
        else:
            responses.append(min(answers, key=_choice_index).message.content if answers else None)
        collections.append(raw.collections)
        filters.append(raw.filter)
        payload_messages.append(raw.payload_messages)
        choices.append(raw.choices)
    return dict(zip((c.name for c in CHAT_COMPLETIONS_COLUMNS), columns))


def _choice_index(choice: Choice) -> int:
    return choice.index


def window_rows(frame: pd.DataFrame, column: str, start: Any, end: Any) -> pd.DataFrame:
    """The rows of ``frame`` (sorted by ``column``) with ``start <= column < end``.

    ``start`` and ``end`` are timezone-aware; a tz-aware column is compared in UTC, a naive
    one is taken to hold UTC times already.
    """
    values = frame[column]
    bounds = [pd.Timestamp(t).tz_convert("UTC") for t in (start, end)]
    if getattr(values.dtype, "tz", None) is None:
        bounds = [b.tz_localize(None) for b in bounds]
    lo, hi = values.searchsorted(bounds[0], side="left"), values.searchsorted(bounds[1], side="left")
    return frame.iloc[lo:hi]


def utc_day(created_at: pd.Series[pd.Timestamp]) -> pd.Series[pd.Timestamp]:
    """The UTC day of each timestamp, as naive midnight (``datetime64[us]``)."""
    return created_at.dt.tz_convert("UTC").dt.tz_localize(None).dt.floor("D").astype("datetime64[us]")


def chat_messages_frame(chat_completions: pd.DataFrame) -> pd.DataFrame:
    """One row per message of a ``chat_completions`` frame (its :data:`MESSAGE_SOURCE_COLUMNS`).

    For each completion, in the frame's order: the prompt's messages
    (``source='prompt'``, from ``payload_messages``), then its choices
    (``source='choice'``, from ``choices``), each numbered from 0 by
    ``position``. Give the completions sorted by ``created_at`` and the rows
    come out sorted by ``date``.
    """
    if not len(chat_completions):
        return typed_frame({c.name: [] for c in CHAT_MESSAGES_COLUMNS}, CHAT_MESSAGES_COLUMNS)
    try:
        data = _message_columns(chat_completions)
    except Exception:  # noqa: BLE001 - JSON this package does not write: read it cell by cell
        data = _message_columns_cell_by_cell(chat_completions)
    return typed_frame(data, CHAT_MESSAGES_COLUMNS)


class _MessageRow(msgspec.Struct, gc=False):
    role: str | None = None
    name: str | None = None
    content: str | None = None


class _ChoiceRow(msgspec.Struct, gc=False):
    index: int | None = None
    message: _MessageRow = msgspec.field(default_factory=_MessageRow)


_PROMPT_ROWS = msgspec.json.Decoder(list[_MessageRow])
_CHOICE_ROWS = msgspec.json.Decoder(list[_ChoiceRow])
_ROLE, _NAME, _CONTENT = attrgetter("role"), attrgetter("name"), attrgetter("content")
_CHOICE_ROLE, _CHOICE_NAME, _CHOICE_CONTENT = (
    attrgetter("message.role"),
    attrgetter("message.name"),
    attrgetter("message.content"),
)


def _message_columns(chat: pd.DataFrame) -> dict[str, Any]:
    """The message columns with no Python loop per row: each JSON cell decoded by msgspec
    (a C loop over the cells), the columns gathered by ``map``, placed with numpy.

    Takes the JSON :func:`chat_completions_frame` writes: arrays of objects whose role, name
    and content are strings (or absent) and whose choice index is an integer. Anything
    else raises, and :func:`_message_columns_cell_by_cell` reads it.
    """
    n = len(chat)
    # Bytes, not the cells' strings: msgspec would keep a UTF-8 copy inside each non-ASCII one.
    prompts = list(map(_PROMPT_ROWS.decode, map(str.encode, chat["payload_messages"].fillna("[]").tolist())))
    answers = list(map(_CHOICE_ROWS.decode, map(str.encode, chat["choices"].fillna("[]").tolist())))
    n_prompt = np.fromiter(map(len, prompts), dtype=np.int64, count=n)
    n_choice = np.fromiter(map(len, answers), dtype=np.int64, count=n)
    per_row = n_prompt + n_choice
    first = np.cumsum(per_row) - per_row  # each completion's first message row
    # Rows of one completion are contiguous: its prompt messages, then its choices.
    prompt_position = np.arange(n_prompt.sum()) - np.repeat(np.cumsum(n_prompt) - n_prompt, n_prompt)
    choice_position = np.arange(n_choice.sum()) - np.repeat(np.cumsum(n_choice) - n_choice, n_choice)
    prompt_rows = np.repeat(first, n_prompt) + prompt_position
    choice_rows = np.repeat(first + n_prompt, n_choice) + choice_position
    messages = list(chain.from_iterable(prompts))
    choices = list(chain.from_iterable(answers))

    total = int(per_row.sum())
    position = np.empty(total, dtype=np.int64)
    position[prompt_rows] = prompt_position
    position[choice_rows] = choice_position
    source = np.full(total, "prompt", dtype=object)
    source[choice_rows] = "choice"
    choice_index = np.full(total, None, dtype=object)
    choice_index[choice_rows] = _objects(map(attrgetter("index"), choices), len(choices))
    columns: dict[str, Any] = {
        "date": np.repeat(utc_day(chat["created_at"]).to_numpy(), per_row),
        "completion_id": np.repeat(chat["id"].to_numpy(dtype=object), per_row),
        "source": source,
        "position": position,
        "choice_index": choice_index,
    }
    for name, of_prompt, of_choice in (
        ("role", _ROLE, _CHOICE_ROLE),
        ("name", _NAME, _CHOICE_NAME),
        ("content", _CONTENT, _CHOICE_CONTENT),
    ):
        column = np.empty(total, dtype=object)
        column[prompt_rows] = _objects(map(of_prompt, messages), len(messages))
        column[choice_rows] = _objects(map(of_choice, choices), len(choices))
        columns[name] = column
    return columns


def _objects(values: Iterable[Any], count: int) -> np.ndarray:
    """An object array of ``values`` (np.array would turn a list of strings into a fixed-width one)."""
    return np.fromiter(values, dtype=object, count=count)


def _message_columns_cell_by_cell(chat_completions: pd.DataFrame) -> dict[str, list[Any]]:
    """:func:`_message_columns` for any JSON: each cell read with json, row by row."""
    data: dict[str, list[Any]] = {c.name: [] for c in CHAT_MESSAGES_COLUMNS}
    dates, ids, sources, positions, indexes, roles, names, contents = data.values()
    days = utc_day(chat_completions["created_at"])
    for completion_id, day, prompt_json, choices_json in zip(
        chat_completions["id"], days, chat_completions["payload_messages"], chat_completions["choices"]
    ):
        rows = [("prompt", None, m) for m in _json_list(prompt_json)]
        rows += [("choice", c.get("index"), c.get("message") or {}) for c in _json_list(choices_json)]
        position = {"prompt": 0, "choice": 0}
        for source, index, message in rows:
            dates.append(day)
            ids.append(completion_id)
            sources.append(source)
            positions.append(position[source])
            position[source] += 1
            indexes.append(index)
            roles.append(_text(message.get("role")))
            names.append(_text(message.get("name")))
            contents.append(_text(message.get("content")))
    return data


def _json_list(text: Any) -> list[dict[str, Any]]:
    """A stored JSON array of objects; nothing for a null cell."""
    if not isinstance(text, str):
        return []
    return [item for item in json.loads(text) if isinstance(item, dict)]


def _text(value: Any) -> str | None:
    # The API's contents are strings; anything else is kept as its JSON rather than dropped.
    return value if value is None or isinstance(value, str) else encode_json(value)


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
