"""Typed records of the API's chat completions, and the rules both parsers share.

Standard library plus msgspec, no Dagster. Two parsers build these records, with one result:
:mod:`.decoding` (the fast path: a page's bytes straight into the records with msgspec, for
bodies that are well formed) and :mod:`.parsing` (the careful path: ``json.loads`` then field
by field, for everything else, explaining what is wrong). Parsing is strict where the spec
says a field is required and lenient where it says optional: a missing optional field becomes
None, an unknown field is ignored (the API grows), and a field of the wrong type raises
:class:`~cloudglue_dagster.errors.InvalidResponseError` naming the completion id and the
field's path.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

import msgspec

__all__ = [
    "ChatCompletion",
    "CompletionJSON",
    "ChatCompletionPage",
    "ChatMessage",
    "Choice",
    "Usage",
    "encode_json",
    "parse_created_at",
]

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# The list schema only says "number"; the rest of the spec documents
# created_at as epoch milliseconds. Below 1e11 a value cannot be a plausible
# millisecond time (1e11 ms is 1973-03-03) but is a plausible second time
# (1e11 s is the year 5138), so smaller numbers are read as seconds.
MILLISECONDS_THRESHOLD = 1e11

# Integers are stored as 64-bit (pandas Int64, DuckDB BIGINT): a larger one is refused here,
# naming its completion, rather than overflowing later in a frame or the warehouse.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
Int64 = Annotated[int, msgspec.Meta(ge=INT64_MIN, le=INT64_MAX)]
Count = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]

# The records are msgspec Structs: the fast path decodes JSON straight into them, and one
# costs a tenth of a frozen dataclass to build. They behave as the frozen dataclasses they
# replace did: same fields, positional or keyword construction, immutable, compared and
# hashed by value. The leaves hold only strings and numbers, so they need not be tracked by
# the cyclic garbage collector (gc=False).


class ChatMessage(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """One message: ``role`` (system, user or assistant), ``content``, optional ``name``."""

    role: str
    content: str
    name: str | None = None


class Choice(msgspec.Struct, frozen=True, gc=False):
    """One answer of a completion: its ``index`` and its ``message``."""

    index: Int64
    message: ChatMessage


class Usage(msgspec.Struct, frozen=True, gc=False):
    """Token counts of a completion. The API may omit any of them: None means not reported."""

    prompt_tokens: Int64 | None = None
    completion_tokens: Int64 | None = None
    total_tokens: Int64 | None = None

    @property
    def reported(self) -> bool:
        """True when the API reported at least one of the three counts."""
        return not (self.prompt_tokens is None and self.completion_tokens is None and self.total_tokens is None)


class CompletionJSON(msgspec.Struct, frozen=True, gc=False):
    """The parts of a completion kept as JSON text (the JSON columns of ``chat_completions``).

    Each is the text ``json.dumps(value, ensure_ascii=False, separators=(",", ":"))`` makes
    of the API's value, unknown fields included: compact, unicode unescaped. The fast path
    passes the API's own bytes through when they already are that text (the usual case) and
    re-encodes them otherwise, so the text does not depend on the path.

    Attributes:
        payload_messages: ``payload.messages``; ``[]`` when absent or null.
        choices: ``choices``.
        collections: ``payload.collections``; ``[]`` when absent or null.
        filter: ``payload.filter``; None when absent or null.
    """

    payload_messages: str
    choices: str
    collections: str
    filter: str | None


class ChatCompletion(msgspec.Struct, frozen=True):
    """A stored chat completion.

    Attributes:
        id: the completion's id.
        created_at: when it was created, timezone-aware, in UTC.
        model: the model that answered.
        usage: token counts (each may be None).
        choices: the answers, in the order the API gave them.
        messages: the prompt's messages (``payload.messages``).
        temperature: ``payload.temperature``, or None when absent.
        filter: ``payload.filter`` as decoded JSON, or None when absent.
        collections: ``payload.collections`` (collection ids).
        raw: the API's JSON text of ``payload.messages``, ``choices``,
            ``payload.collections`` and ``payload.filter`` (:class:`CompletionJSON`),
            unknown fields included. Fields of the completion that no attribute holds are
            not kept. Not part of equality, hashing or the repr.
    """

    id: str
    created_at: datetime
    model: str
    usage: Usage
    choices: tuple[Choice, ...]
    messages: tuple[ChatMessage, ...]
    temperature: float | None
    filter: Mapping[str, Any] | None
    collections: tuple[str, ...]
    raw: CompletionJSON

    def _key(self) -> tuple[object, ...]:
        return (
            self.id,
            self.created_at,
            self.model,
            self.usage,
            self.choices,
            self.messages,
            self.temperature,
            self.filter,
            self.collections,
        )

    def __eq__(self, other: object) -> bool:
        if type(other) is not ChatCompletion:
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"ChatCompletion(id={self.id!r}, created_at={self.created_at!r}, model={self.model!r},"
            f" usage={self.usage!r}, choices={self.choices!r}, messages={self.messages!r},"
            f" temperature={self.temperature!r}, filter={self.filter!r}, collections={self.collections!r})"
        )


class ChatCompletionPage(msgspec.Struct, frozen=True):
    """One page of ``GET /chat/completions``.

    Attributes:
        data: the completions of this page.
        total: how many completions match the filters, over all pages.
        limit: the page size the server applied (it may cap what was asked).
        offset: how many matching completions precede this page.
    """

    data: tuple[ChatCompletion, ...]
    total: int
    limit: int
    offset: int


def parse_created_at(value: Any) -> datetime:
    """Read an API timestamp as a timezone-aware UTC datetime.

    Numbers >= 1e11 are epoch milliseconds, smaller numbers epoch seconds;
    ISO-8601 strings are accepted too (a string without an offset is UTC).

    Raises:
        ValueError: the value is not a finite number or an ISO-8601 string.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a number or ISO-8601 string, got {value!r}")
    if isinstance(value, int):
        if abs(value) >= MILLISECONDS_THRESHOLD:
            return EPOCH + timedelta(milliseconds=value)
        return EPOCH + timedelta(seconds=value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {value!r}")
        # Whole microseconds, rounded once, without the local-time detour of
        # datetime.fromtimestamp.
        scale = 1_000 if abs(value) >= MILLISECONDS_THRESHOLD else 1_000_000
        return EPOCH + timedelta(microseconds=round(value * scale))
    if isinstance(value, str):
        text = value.strip()
        # Python 3.10's fromisoformat does not read a trailing "Z".
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=timezone.utc)
        return parsed.astimezone(timezone.utc)
    raise ValueError(f"expected a number or ISO-8601 string, got {type(value).__name__}")


# The JSON columns' text: compact, unicode kept readable (ensure_ascii=False). One encoder
# for every call: json.dumps with options builds a new one per call.
encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
"""How the JSON columns are spelled (``payload_messages``, ``choices``, ...), by both parsers."""
