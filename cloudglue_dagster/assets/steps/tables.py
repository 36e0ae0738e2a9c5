"""Each table of a day from that day's rows of its source, and what the UI shows of it.

A :class:`Source` is an endpoint a step reads (chat completions, responses): its table, the
client's listing and how its records become that table's rows. A :class:`Table` knows its
contract, how its rows are built from a day of its step's source table (the rows just
fetched, or, when the source table is not in the run, the rows stored), and the metadata
and check outcomes of a day of it. Plain functions of DataFrames: the step (:mod:`.step`)
wires them to Dagster.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import dagster as dg
import pandas as pd

from cloudglue_dagster.api.client import CloudglueClient
from cloudglue_dagster.api.days import json_size
from cloudglue_dagster.api.responses import response_size
from cloudglue_dagster.assets.checks import chat_check_outcomes, messages_check_outcomes
from cloudglue_dagster.assets.metadata import cost_metadata, frame_metadata, messages_metadata, per_model_metadata
from cloudglue_dagster.assets.response_checks import in_progress_metadata, responses_check_outcomes
from cloudglue_dagster.tables.frames import (
    ACCOUNTING_COLUMNS,
    CHAT_COMPLETIONS_COLUMNS,
    CHAT_MESSAGES_COLUMNS,
    COLLECTION_SOURCE_COLUMNS,
    COLLECTION_USAGE_COLUMNS,
    MESSAGE_SOURCE_COLUMNS,
    TOKEN_USAGE_COLUMNS,
    Column,
    chat_completions_frame,
    chat_messages_frame,
    conform,
)
from cloudglue_dagster.tables.prices import Prices
from cloudglue_dagster.tables.spend import RESPONSES_COLUMNS, responses_frame
from cloudglue_dagster.tables.texts import described
from cloudglue_dagster.tables.usage import collection_usage_frame, token_usage_frame

__all__ = ["CHAT", "RESPONSES", "Described", "Source", "Table", "sources_for", "tables_for"]

CHAT = "chat_completions"
RESPONSES = "responses"

Described = tuple[dict[str, Any], dict[str, dict[str, Any]]]
"""A day's materialization metadata, and its check outcomes (check name -> {day: Outcome})."""

Mask = Callable[[str], str]

_CHAT_PREVIEW = ("created_at", "model", "total_tokens", "prompt", "response")
_MESSAGES_PREVIEW = ("completion_id", "source", "position", "role", "content")
_USAGE_PREVIEW = ("date", "model", "completions", "prompt_tokens", "completion_tokens", "total_tokens", "total_cost")
_COLLECTIONS_PREVIEW = ("date", "collection", "model", "completions", "attributed_completions", "total_tokens")
_RESPONSES_PREVIEW = ("created_at", "status", "model", "total_tokens", "instructions")
_CHAT_TOKENS = {"input_tokens": "prompt_tokens", "output_tokens": "completion_tokens", "total_tokens": "total_tokens"}
"""The per-model figures of a completion's usage: its prompt tokens are its input."""

# A day read back (a resumed day) needs only what its metadata and checks read: not the
# JSON columns of chat_completions, the largest.
_CHAT_RESUME = [c.name for c in CHAT_COMPLETIONS_COLUMNS if c.name not in ("payload_messages", "choices")]


@dataclass(frozen=True)
class Source:
    """An endpoint a step reads, and the table its records become.

    Attributes:
        table: the source table (``chat_completions``, ``responses``): the step's other
            tables are built from its rows.
        noun: what one record is called in the step's log lines (``completion``, ``response``).
        listing: the client's paged listing of the endpoint (``client.iter_chat_completions``).
        size: a record's approximate JSON size, in bytes (what a sweep counts as held).
        frame: a day's records, in listing order -> the source table's rows.
    """

    table: str
    noun: str
    listing: Callable[[CloudglueClient], Callable[..., Iterator[Any]]]
    size: Callable[[Any], int]
    frame: Callable[[Iterable[Any]], pd.DataFrame]


@dataclass(frozen=True)
class Table:
    """One table's contract and its rules for a day.

    Attributes:
        name: the table (``chat_completions``, ``chat_messages``, ``token_usage``, ``collection_usage``).
        columns: its column contract.
        partition_expr: the column holding each row's time (the I/O manager's ``partition_expr``).
        source_columns: the columns of chat_completions its rows are built from.
        build: a day of chat_completions (at least ``source_columns``) -> the day's rows.
        describe: ``(the day's rows, the day's chat_completions, its partition key, its window,
            the run's masking of texts)`` -> metadata and check outcomes (the preview's cells
            masked before they are cut; the caller masks the rest).
        resume_columns: the columns ``describe`` needs of a day read back (None: all).
    """

    name: str
    columns: Sequence[Column]
    partition_expr: str
    source_columns: Sequence[str]
    build: Callable[[pd.DataFrame], pd.DataFrame]
    describe: Callable[[pd.DataFrame, pd.DataFrame, str, Any, Mask], Described]
    resume_columns: Sequence[str] | None = None


def _chat_describe(chat: pd.DataFrame, _source: pd.DataFrame, key: str, window: Any, mask: Mask) -> Described:
    chat = conform(chat, [c for c in CHAT_COMPLETIONS_COLUMNS if c.name in chat.columns])
    metadata = frame_metadata(
        chat, columns=CHAT_COMPLETIONS_COLUMNS, preview_columns=_CHAT_PREVIEW, time_column="created_at", mask=mask
    )
    start, end = pd.Timestamp(window.start), pd.Timestamp(window.end)
    return metadata, chat_check_outcomes(chat, start, end, [(key, chat)])


def _messages_source(chat: pd.DataFrame) -> pd.DataFrame:
    # Storage returns rows in no particular order; sorted, the messages come out in order.
    return conform(chat, MESSAGE_SOURCE_COLUMNS).sort_values(["created_at", "id"], kind="stable", ignore_index=True)


def _messages_describe(messages: pd.DataFrame, chat: pd.DataFrame, key: str, _window: Any, mask: Mask) -> Described:
    messages = conform(messages, CHAT_MESSAGES_COLUMNS)
    metadata = frame_metadata(messages, columns=CHAT_MESSAGES_COLUMNS, preview_columns=_MESSAGES_PREVIEW, mask=mask)
    return {**metadata, **messages_metadata(messages)}, messages_check_outcomes([(key, messages, chat)])


def _usage_describe(
    prices: Prices,
) -> Callable[[pd.DataFrame, pd.DataFrame, str, Any, Mask], Described]:
    def describe(usage: pd.DataFrame, _chat: pd.DataFrame, _key: str, _window: Any, mask: Mask) -> Described:
        usage = conform(usage, TOKEN_USAGE_COLUMNS)
        metadata = frame_metadata(usage, columns=TOKEN_USAGE_COLUMNS, preview_columns=_USAGE_PREVIEW, mask=mask)
        by_model = per_model_metadata(usage, requests="completions", tokens=_CHAT_TOKENS)
        return {**metadata, **(cost_metadata(usage) if prices else {}), **by_model}, {}

    return describe


def _collections_describe(
    collections: pd.DataFrame, _chat: pd.DataFrame, _key: str, _window: Any, mask: Mask
) -> Described:
    collections = conform(collections, COLLECTION_USAGE_COLUMNS)
    metadata = frame_metadata(
        collections, columns=COLLECTION_USAGE_COLUMNS, preview_columns=_COLLECTIONS_PREVIEW, mask=mask
    )
    count = int(collections["collection"].dropna().nunique())
    return {**metadata, "collections": dg.MetadataValue.int(count), **cost_metadata(collections)}, {}


def _responses_describe(
    in_progress_limit_hours: float | None,
) -> Callable[[pd.DataFrame, pd.DataFrame, str, Any, Mask], Described]:
    def describe(responses: pd.DataFrame, _source: pd.DataFrame, key: str, window: Any, mask: Mask) -> Described:
        responses = conform(responses, [c for c in RESPONSES_COLUMNS if c.name in responses.columns])
        metadata = frame_metadata(
            responses,
            columns=RESPONSES_COLUMNS,
            preview_columns=_RESPONSES_PREVIEW,
            time_column="created_at",
            mask=mask,
        )
        metadata.update(_response_totals(responses))
        start, end = pd.Timestamp(window.start), pd.Timestamp(window.end)
        now = dt.datetime.now(dt.timezone.utc)
        outcomes = responses_check_outcomes(
            responses, start, end, [(key, responses)], now=now, limit_hours=in_progress_limit_hours
        )
        return metadata, outcomes

    return describe


def _response_totals(responses: pd.DataFrame) -> dict[str, Any]:
    """Token totals, responses per model, statuses and cost of a day of ``responses``."""
    models = responses["model"].astype("string").dropna()
    totals: dict[str, Any] = {
        f: dg.MetadataValue.int(int(responses[f].sum()) if len(responses) else 0)
        for f in ("input_tokens", "output_tokens", "total_tokens")
    }
    by_model = {str(m): int(n) for m, n in sorted(models.value_counts().items())}
    known = responses["total_cost"].notna()
    return {
        **totals,
        **per_model_metadata(responses, tokens={f: f for f in ("input_tokens", "output_tokens", "total_tokens")}),
        "responses_by_model": dg.MetadataValue.json(by_model),
        **in_progress_metadata(responses),
        "total_cost_usd": dg.MetadataValue.float(round(float(responses.loc[known, "total_cost"].sum()), 6)),
    }


def sources_for(prices: Prices) -> dict[str, Source]:
    """Each endpoint's :class:`Source`, by source table, priced with ``prices``."""
    return {
        CHAT: Source(CHAT, "completion", lambda c: c.iter_chat_completions, json_size, chat_completions_frame),
        RESPONSES: Source(
            RESPONSES,
            "response",
            lambda c: c.iter_responses,
            response_size,
            lambda records: responses_frame(records, prices),
        ),
    }


def tables_for(
    prices: Prices, in_progress_limit_hours: float | None = None, text_storage: str = "full"
) -> dict[str, Table]:
    """Every table a step writes, priced with ``prices`` (USD per million tokens), in build
    order; ``in_progress_limit_hours`` ages the responses' in-progress rows (None: never stuck);
    each text column's description says what it holds under ``text_storage``."""
    tables = _tables(prices, in_progress_limit_hours)
    return {name: replace(t, columns=described(t.columns, text_storage)) for name, t in tables.items()}


def _tables(prices: Prices, in_progress_limit_hours: float | None) -> dict[str, Table]:
    return {
        CHAT: Table(
            name=CHAT,
            columns=CHAT_COMPLETIONS_COLUMNS,
            partition_expr="created_at",
            source_columns=[c.name for c in CHAT_COMPLETIONS_COLUMNS],
            build=lambda chat: chat,
            describe=_chat_describe,
            resume_columns=_CHAT_RESUME,
        ),
        "chat_messages": Table(
            name="chat_messages",
            columns=CHAT_MESSAGES_COLUMNS,
            partition_expr="date",
            source_columns=[c.name for c in MESSAGE_SOURCE_COLUMNS],
            build=lambda chat: chat_messages_frame(_messages_source(chat)),
            describe=_messages_describe,
        ),
        "token_usage": Table(
            name="token_usage",
            columns=TOKEN_USAGE_COLUMNS,
            partition_expr="date",
            source_columns=[c.name for c in ACCOUNTING_COLUMNS],
            build=lambda chat: token_usage_frame(conform(chat, ACCOUNTING_COLUMNS), prices),
            describe=_usage_describe(prices),
        ),
        "collection_usage": Table(
            name="collection_usage",
            columns=COLLECTION_USAGE_COLUMNS,
            partition_expr="date",
            source_columns=[c.name for c in COLLECTION_SOURCE_COLUMNS],
            build=lambda chat: collection_usage_frame(conform(chat, COLLECTION_SOURCE_COLUMNS), prices),
            describe=_collections_describe,
        ),
        RESPONSES: Table(
            name=RESPONSES,
            columns=RESPONSES_COLUMNS,
            partition_expr="created_at",
            source_columns=[c.name for c in RESPONSES_COLUMNS],
            build=lambda responses: responses,
            describe=_responses_describe(in_progress_limit_hours),
            resume_columns=None,  # all: a response's row is small, and the preview shows its instructions
        ),
    }
