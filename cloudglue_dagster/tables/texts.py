"""What the tables keep of the texts the API sends: ``text_storage``, the hash, the rewrite hook.

pandas and msgspec, no Dagster. Every text a table holds comes from a column of a source table
(``chat_completions``, ``responses``) that its contract marks as text (:attr:`Column.text`):

* ``"text"``: the cell is one text (``prompt``, ``response``, ``instructions``);
* ``"json"``: the cell is JSON (``payload_messages``, ``choices``, ``filter``), and every string
  value in it is a text, except the values of :data:`STRUCTURE_KEYS` (``role``, ``type``,
  ``finish_reason`` in messages; ``path``, ``operator``, ``scope`` in filters), which name
  structure. Keys, numbers, booleans and nulls are kept.

:func:`stored_texts` rewrites those cells of a source table's day once, before anything is
written or shown: the derived tables (``chat_messages``), the previews, the metadata and the
checks are built from the rewritten rows, so they hold what the source table holds (a derived
table's text columns, ``chat_messages.name`` and ``content``, are marked too, for the docs and
the column schema, and never rewritten a second time). Under a :class:`TextPolicy`:

* ``full``: the text, after the policy's ``rewrite`` hook if it has one;
* ``hash``: ``HMAC-SHA256(key, text)`` as 64 hex digits (:func:`text_hash`), after the hook.
  Equal texts give equal values in every column and table, so texts still join and count;
  the key (a secret) keeps anyone without it from confirming a guessed text, which a bare
  SHA-256 of a short prompt ("yes", an e-mail address) would allow by trying candidates;
* ``none``: null (the hook is not called).

Counts, tokens, ids, models, roles and the column types are the same under every setting.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import msgspec
import pandas as pd

from cloudglue_dagster.errors import CloudglueConfigError, InvalidResponseError, TextRewriteError

from .frames import Column

__all__ = [
    "MIN_KEY_LENGTH",
    "STRUCTURE_KEYS",
    "TEXT_STORAGES",
    "TextPolicy",
    "TextRewrite",
    "TextStorage",
    "check_hash_key",
    "check_storage",
    "described",
    "stored_texts",
    "text_hash",
]

TextStorage = Literal["full", "hash", "none"]
TEXT_STORAGES: tuple[str, ...] = get_args(TextStorage)
"""The values of ``text_storage``."""

TextRewrite = Callable[[str], "str | None"]
"""The rewrite hook: a text -> the text to store (None: store null). It should be a pure
function of the text: a text that is in two columns is rewritten once per day, and must be
rewritten alike on other days for joins across days to hold."""

STRUCTURE_KEYS = frozenset({"role", "type", "finish_reason", "path", "operator", "scope"})
"""Keys of the JSON columns whose string values name structure, not text: kept under every setting."""

MIN_KEY_LENGTH = 16
"""The fewest characters a hash key may have (32 random bytes in hex, 64 characters, is the advice)."""

_HOW = {
    "text": {"hash": "its HMAC-SHA256 (64 hex digits)", "none": "null"},
    "json": {
        "hash": "each text in it replaced by its HMAC-SHA256 (64 hex digits)",
        "none": "each text in it replaced by null",
    },
}


def text_hash(text: str, key: bytes | str) -> str:
    """``HMAC-SHA256(key, text)`` as 64 lowercase hex digits: what ``text_storage="hash"`` stores.

    The text and a ``str`` key are taken as UTF-8 (a lone surrogate, which JSON can carry, as
    its own code); a ``str`` key without its surrounding whitespace (a key read from a file
    keeps its line break). Compute it yourself to find a known text in the tables::

        SELECT * FROM cloudglue.chat_completions WHERE prompt = '<text_hash(text, key)>'
    """
    raw_key = key.strip().encode() if isinstance(key, str) else key
    return hmac.digest(raw_key, text.encode("utf-8", "surrogatepass"), "sha256").hex()


def check_storage(storage: object) -> None:
    """Raise :class:`CloudglueConfigError` unless ``storage`` is one of :data:`TEXT_STORAGES`."""
    if storage not in TEXT_STORAGES:
        raise CloudglueConfigError(f"text_storage must be one of {', '.join(TEXT_STORAGES)}; got {storage!r}")


def check_hash_key(key: str, where: str) -> None:
    """Raise :class:`CloudglueConfigError` if ``key`` is too short to be a secret; ``where``
    says where it came from. The key is never in the message."""
    if len(key.strip()) < MIN_KEY_LENGTH:
        raise CloudglueConfigError(
            f"the hash key ({where}) has {len(key.strip())} characters; text_storage='hash' needs at least"
            f" {MIN_KEY_LENGTH}, a random secret: python -c 'import secrets; print(secrets.token_hex(32))'"
        )


@dataclass(frozen=True)
class TextPolicy:
    """What a run stores of each text (module docstring).

    Attributes:
        storage: ``full``, ``hash`` or ``none``.
        key: the HMAC key (``hash`` only); never shown in a repr.
        rewrite: the hook applied to each text before it is stored or hashed (None: none).
    """

    storage: TextStorage = "full"
    key: bytes | None = field(default=None, repr=False)
    rewrite: TextRewrite | None = None

    def __post_init__(self) -> None:
        check_storage(self.storage)
        if self.storage == "hash" and not self.key:
            raise CloudglueConfigError("text_storage='hash' needs a key")

    @property
    def keeps_texts(self) -> bool:
        """Whether the texts are stored as the API sent them (nothing to do)."""
        return self.storage == "full" and self.rewrite is None


def stored_texts(frame: pd.DataFrame, columns: Sequence[Column], policy: TextPolicy) -> pd.DataFrame:
    """``frame`` (a source table's rows, :attr:`Column.text` marking its text columns) with
    each text as ``policy`` stores it; the same frame when the policy keeps the texts.

    Raises:
        TextRewriteError: the hook raised or returned a non-text (naming the column and the
            row's ``id``, never the text).
    """
    if policy.keeps_texts:
        return frame
    texts = _Texts(policy)
    ids = frame["id"].tolist() if "id" in frame.columns else [None] * len(frame)
    changed = {}
    for column in columns:
        if column.text is None or column.name not in frame.columns:
            continue
        one = texts.one if column.text == "text" else texts.json
        values = []
        for row_id, value in zip(ids, frame[column.name].tolist()):
            texts.where = (column.name, row_id)
            values.append(None if value is None or value is pd.NA else one(value))
        changed[column.name] = pd.array(values, dtype="string")  # every text column is a string
    return frame.assign(**changed)


class _Texts:
    """One day's rewriting: each distinct text is rewritten once (the prompt column's text is
    also in ``payload_messages``), so equal texts get equal values whatever the hook does."""

    def __init__(self, policy: TextPolicy) -> None:
        self.policy = policy
        self.done: dict[str, str | None] = {}
        self.where: tuple[str, Any] = ("", None)

    def one(self, text: str) -> str | None:
        if text in self.done:
            return self.done[text]
        policy, stored = self.policy, None
        if policy.storage != "none":
            kept = text if policy.rewrite is None else self._rewritten(text)
            if kept is not None:
                stored = kept if policy.storage == "full" else text_hash(kept, policy.key or b"")
        self.done[text] = stored
        return stored

    def json(self, cell: str) -> str | None:
        """A JSON cell with its texts rewritten, in the JSON columns' form (compact, unicode
        unescaped). msgspec reads what this package writes; what it refuses and Python's json
        reads (a lone surrogate, ``Infinity``, which the careful parser keeps) is read and
        written back by json alike; a cell that is not JSON at all is one text."""
        try:
            try:
                return msgspec.json.encode(self._walk(msgspec.json.decode(cell))).decode()
            except (msgspec.MsgspecError, UnicodeError):
                try:
                    value = json.loads(cell)
                except ValueError:
                    return self.one(cell)
                return json.dumps(self._walk(value), ensure_ascii=False, separators=(",", ":"))
        except RecursionError:  # the API's parser took it, from a shallower stack
            column, row_id = self.where
            raise InvalidResponseError(
                "the JSON nests too deep for its texts to be rewritten", completion_id=row_id, field=column
            ) from None

    def _walk(self, value: Any) -> Any:
        """``value`` (decoded JSON) with its texts rewritten, in place: a loop, not recursion,
        so JSON nested as deep as the parser took (about 1,000 levels) is no deeper here."""
        if isinstance(value, str):
            return self.one(value)
        stack = [value]
        while stack:
            node = stack.pop()
            items = enumerate(node) if isinstance(node, list) else node.items()
            for key, item in items:
                if isinstance(item, str):
                    if key not in STRUCTURE_KEYS:  # a list's index is never one of them
                        node[key] = self.one(item)
                elif isinstance(item, (list, dict)):
                    stack.append(item)
        return value

    def _rewritten(self, text: str) -> str | None:
        assert self.policy.rewrite is not None
        column, row_id = self.where
        try:
            out = self.policy.rewrite(text)
        except Exception as exc:
            # Under full storage the texts are stored anyway; otherwise the hook's message,
            # which may quote the text, stays out of the error (and so out of the event log).
            error = TextRewriteError(
                f"text_rewrite raised {type(exc).__name__} on a text of column {column!r} of row {row_id!r}"
                + ("" if self.policy.storage == "full" else " (its message is not shown: it may quote the text)")
            )
            raise error from (exc if self.policy.storage == "full" else None)
        if out is not None and not isinstance(out, str):
            raise TextRewriteError(
                f"text_rewrite must return a str or None, got {type(out).__name__} for a text of column"
                f" {column!r} of row {row_id!r}"
            )
        return out


def described(columns: Sequence[Column], storage: str) -> tuple[Column, ...]:
    """``columns`` with each text column's description saying what it holds under ``storage``
    (the contract shown in the UI's column schema)."""
    if storage == "full":
        return tuple(columns)
    return tuple(
        c
        if c.text is None
        else Column(
            c.name, c.dtype, f"{c.description} Under text_storage={storage!r}: {_HOW[c.text][storage]}.", c.text
        )
        for c in columns
    )
