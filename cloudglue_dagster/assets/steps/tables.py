"""Each table of a day from that day's chat_completions rows, and what the UI shows of it.

A :class:`Table` knows its contract, how its rows are built from a day of chat_completions
(the rows just fetched, or, when chat_completions is not in the run, the rows stored), and
the metadata and check outcomes of a day of it. Plain functions of DataFrames: the step
(:mod:`.step`) wires them to Dagster.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pandas as pd

from cloudglue_dagster.assets.checks import chat_check_outcomes, messages_check_outcomes
from cloudglue_dagster.assets.metadata import cost_metadata, frame_metadata, messages_metadata
from cloudglue_dagster.tables.frames import (
    ACCOUNTING_COLUMNS,
    CHAT_COMPLETIONS_COLUMNS,
    CHAT_MESSAGES_COLUMNS,
    COLLECTION_SOURCE_COLUMNS,
    COLLECTION_USAGE_COLUMNS,
    MESSAGE_SOURCE_COLUMNS,
    TOKEN_USAGE_COLUMNS,
    Column,
    ModelPrice,
    chat_messages_frame,
    conform,
)
from cloudglue_dagster.tables.usage import collection_usage_frame, token_usage_frame

__all__ = ["CHAT", "Described", "Table", "tables_for"]

CHAT = "chat_completions"

Described = tuple[dict[str, Any], dict[str, dict[str, Any]]]
"""A day's materialization metadata, and its check outcomes (check name -> {day: Outcome})."""

Mask = Callable[[str], str]

_CHAT_PREVIEW = ("created_at", "model", "total_tokens", "prompt", "response")
_MESSAGES_PREVIEW = ("completion_id", "source", "position", "role", "content")
_USAGE_PREVIEW = ("date", "model", "completions", "prompt_tokens", "completion_tokens", "total_tokens", "total_cost")
_COLLECTIONS_PREVIEW = ("date", "collection", "model", "completions", "attributed_completions", "total_tokens")

# A day read back (a resumed day) needs only what its metadata and checks read: not the
# JSON columns of chat_completions, the largest.
_CHAT_RESUME = [c.name for c in CHAT_COMPLETIONS_COLUMNS if c.name not in ("payload_messages", "choices")]


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
    prices: Mapping[str, ModelPrice],
) -> Callable[[pd.DataFrame, pd.DataFrame, str, Any, Mask], Described]:
    def describe(usage: pd.DataFrame, _chat: pd.DataFrame, _key: str, _window: Any, mask: Mask) -> Described:
        usage = conform(usage, TOKEN_USAGE_COLUMNS)
        metadata = frame_metadata(usage, columns=TOKEN_USAGE_COLUMNS, preview_columns=_USAGE_PREVIEW, mask=mask)
        return {**metadata, **(cost_metadata(usage) if prices else {})}, {}

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


def tables_for(prices: Mapping[str, ModelPrice]) -> dict[str, Table]:
    """Every table, priced with ``prices`` (USD per million tokens), in build order."""
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
    }
