"""Column lineage: which source columns each column of a derived table is computed from.

pandas-free and Dagster-free: a table of facts, one entry per column of every derived table's
contract, held against the contracts by ``tests/test_lineage.py``. The assets turn it into
Dagster's ``dagster/column_lineage`` metadata (:func:`cloudglue_dagster.assets.metadata.column_lineage`),
which the UI shows as column-level lineage. Source tables (``chat_completions``, ``responses``)
come from the API and have none; a column computed from no column (``llm_usage.source``, a
constant per row set) has an empty entry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["LINEAGE", "Lineage"]

Lineage = Mapping[str, Sequence[tuple[str, str]]]
"""Column -> the ``(source table, source column)`` pairs it is computed from."""

_CHAT = "chat_completions"
_TOKENS = ("prompt_tokens", "completion_tokens", "total_tokens")


def _chat(*columns: str) -> list[tuple[str, str]]:
    return [(_CHAT, c) for c in columns]


_TOKEN_USAGE: Lineage = {
    "date": _chat("created_at"),
    "model": _chat("model"),
    "completions": _chat("id"),
    **{t: _chat(t) for t in _TOKENS},
    "completions_without_usage": _chat(*_TOKENS),
    "input_cost": _chat("prompt_tokens", "model"),
    "output_cost": _chat("completion_tokens", "model"),
    "total_cost": _chat("prompt_tokens", "completion_tokens", "model"),
}

_MESSAGE_TEXTS = _chat("payload_messages", "choices")

LINEAGE: Mapping[str, Lineage] = {
    "chat_messages": {
        "date": _chat("created_at"),
        "completion_id": _chat("id"),
        **{c: _MESSAGE_TEXTS for c in ("source", "position", "role", "name", "content")},
        "choice_index": _chat("choices"),
    },
    "token_usage": _TOKEN_USAGE,
    "collection_usage": {
        "date": _chat("created_at"),
        "collection": _chat("collections"),
        "model": _chat("model"),
        "completions": _chat("id", "collections"),
        "attributed_completions": _chat("id", "collections"),
        **{t: _chat(t, "collections") for t in _TOKENS},
        "input_cost": _chat("prompt_tokens", "collections", "model"),
        "output_cost": _chat("completion_tokens", "collections", "model"),
        "total_cost": _chat("prompt_tokens", "completion_tokens", "collections", "model"),
    },
    "llm_usage": {
        "date": [("token_usage", "date"), ("responses", "created_at")],
        "source": [],
        "model": [("token_usage", "model"), ("responses", "model")],
        "requests": [("token_usage", "completions"), ("responses", "id")],
        "input_tokens": [("token_usage", "prompt_tokens"), ("responses", "input_tokens")],
        "output_tokens": [("token_usage", "completion_tokens"), ("responses", "output_tokens")],
        "total_tokens": [("token_usage", "total_tokens"), ("responses", "total_tokens")],
        "requests_without_usage": [
            ("token_usage", "completions_without_usage"),
            *(("responses", t) for t in ("input_tokens", "output_tokens", "total_tokens")),
        ],
        "in_progress": [("responses", "status")],
        "input_cost": [("token_usage", "input_cost"), ("responses", "input_tokens"), ("responses", "model")],
        "output_cost": [("token_usage", "output_cost"), ("responses", "output_tokens"), ("responses", "model")],
        "total_cost": [
            ("token_usage", "total_cost"),
            ("responses", "input_tokens"),
            ("responses", "output_tokens"),
            ("responses", "model"),
        ],
    },
}
"""Each derived table's lineage, by table."""
