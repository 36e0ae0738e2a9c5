"""The steps that build a table from chat_completions, one stored day at a time:
chat_messages (each completion's messages), token_usage (sums per day and model) and
collection_usage (sums per day, collection and model)."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping

import dagster as dg
import pandas as pd

from ..checks import messages_check_outcomes
from ..days import UTCDay
from ..frames import (
    ACCOUNTING_COLUMNS,
    CHAT_MESSAGES_COLUMNS,
    COLLECTION_SOURCE_COLUMNS,
    COLLECTION_USAGE_COLUMNS,
    MESSAGE_SOURCE_COLUMNS,
    TOKEN_USAGE_COLUMNS,
    ModelPrice,
    chat_messages_frame,
    conform,
)
from ..masking import Masker
from ..metadata import cost_metadata, frame_metadata, messages_metadata
from ..run_control import TerminationWatch, step_errors
from ..streams import DayFrames, StoredDay
from ..usage import collection_usage_frame, token_usage_frame
from .base import Step

__all__ = ["ChatMessagesStep", "CollectionUsageStep", "TokenUsageStep"]

_USAGE_PREVIEW = ("date", "model", "completions", "prompt_tokens", "completion_tokens", "total_tokens", "total_cost")
_MESSAGES_PREVIEW = ("completion_id", "source", "position", "role", "content")
_COLLECTIONS_PREVIEW = ("date", "collection", "model", "completions", "attributed_completions", "total_tokens")


class _DerivedStep(Step):
    """A table made of each day of chat_completions (``chat``), a day at a time."""

    def __init__(
        self,
        context: dg.AssetExecutionContext,
        *,
        key: dg.AssetKey,
        chat: DayFrames,
        retry_policy: dg.RetryPolicy | None,
        masker: Masker,
    ) -> None:
        super().__init__(context, key, chat.days, masker)
        self.chat, self.retry_policy = chat, retry_policy
        self.termination = TerminationWatch(context)

    def days_to_write(self, skip: Collection[str]) -> Iterator[StoredDay]:
        for day in self.days:
            if day.key in skip:
                continue
            with step_errors(self.context, self.retry_policy, self.log):
                self.termination.poll()
            yield self.build(day)

    def build(self, day: UTCDay) -> StoredDay:
        """The day's rows, built from that day of chat_completions."""
        raise NotImplementedError


class ChatMessagesStep(_DerivedStep):
    """chat_messages: each day's messages built from that day of chat_completions."""

    def __init__(self, context: dg.AssetExecutionContext, **kwargs) -> None:
        super().__init__(context, **kwargs)
        self._chat_of: tuple[str, pd.DataFrame] | None = None  # the day being handed on

    def build(self, day: UTCDay) -> StoredDay:
        chat = self._chat(day)
        self._chat_of = (day.key, chat)
        return StoredDay(day, chat_messages_frame(chat))

    def _chat(self, day: UTCDay) -> pd.DataFrame:
        # Storage returns rows in no particular order; sorted, the messages come out in order.
        return conform(self.chat.load(day), MESSAGE_SOURCE_COLUMNS).sort_values(
            ["created_at", "id"], kind="stable", ignore_index=True
        )

    def on_written(self, stored: StoredDay) -> None:
        messages = stored.frame
        held = self._chat_of
        chat = held[1] if held is not None and held[0] == stored.day.key else self._chat(stored.day)
        self._chat_of = None
        metadata = frame_metadata(
            messages, columns=CHAT_MESSAGES_COLUMNS, preview_columns=_MESSAGES_PREVIEW, mask=self.masker.text
        )
        self._record(
            stored,
            {**metadata, **messages_metadata(messages)},
            messages_check_outcomes([(stored.day.key, messages, chat)]),
        )

    def on_resumed(self, stored: StoredDay) -> None:
        self.on_written(
            StoredDay(stored.day, conform(stored.frame, CHAT_MESSAGES_COLUMNS), stored.resumed_from, stored.metadata)
        )


class TokenUsageStep(_DerivedStep):
    """token_usage: each day's sums per model from that day of chat_completions' accounting
    columns, priced with ``prices`` (USD per million tokens)."""

    def __init__(self, context: dg.AssetExecutionContext, *, prices: Mapping[str, ModelPrice], **kwargs) -> None:
        super().__init__(context, **kwargs)
        self.prices = prices

    def build(self, day: UTCDay) -> StoredDay:
        return StoredDay(day, token_usage_frame(conform(self.chat.load(day), ACCOUNTING_COLUMNS), self.prices))

    def on_written(self, stored: StoredDay) -> None:
        usage = stored.frame
        metadata = frame_metadata(
            usage, columns=TOKEN_USAGE_COLUMNS, preview_columns=_USAGE_PREVIEW, mask=self.masker.text
        )
        self._record(stored, {**metadata, **(cost_metadata(usage) if self.prices else {})})

    def on_resumed(self, stored: StoredDay) -> None:
        self.on_written(
            StoredDay(stored.day, conform(stored.frame, TOKEN_USAGE_COLUMNS), stored.resumed_from, stored.metadata)
        )


class CollectionUsageStep(TokenUsageStep):
    """collection_usage: each day's sums per collection and model (see :mod:`..usage` for the
    attribution rule), priced like token_usage."""

    def build(self, day: UTCDay) -> StoredDay:
        chat = conform(self.chat.load(day), COLLECTION_SOURCE_COLUMNS)
        return StoredDay(day, collection_usage_frame(chat, self.prices))

    def on_written(self, stored: StoredDay) -> None:
        usage = stored.frame
        metadata = frame_metadata(
            usage, columns=COLLECTION_USAGE_COLUMNS, preview_columns=_COLLECTIONS_PREVIEW, mask=self.masker.text
        )
        collections = usage["collection"].dropna().nunique()
        self._record(
            stored, {**metadata, "collections": dg.MetadataValue.int(int(collections)), **cost_metadata(usage)}
        )

    def on_resumed(self, stored: StoredDay) -> None:
        self.on_written(
            StoredDay(stored.day, conform(stored.frame, COLLECTION_USAGE_COLUMNS), stored.resumed_from, stored.metadata)
        )
