"""Masking the API key out of what a run shows: its log lines, its metadata and its errors.

The transport never puts the key in what it builds (:mod:`cloudglue_dagster.api.secrecy`), but a server can send it
back inside its data: in a record's id or model, a prompt or an answer. What the package derives
from that data for people to read passes through a :class:`Masker`, made from the resource's key
when the run starts:

* log lines: :meth:`Masker.log` wraps ``context.log``;
* metadata of materializations, observations and check evaluations: :meth:`Masker.metadata`,
  for every Dagster metadata value type (text, markdown, JSON with its keys, URLs and paths,
  tables and their schemas, ... ; numbers are left as they are);
* errors: :meth:`Masker.error` masks an exception and its whole chain, :meth:`Masker.errors`
  whatever a block raises. The I/O manager, which does not know the key, gets
  :meth:`Masker.error` with the output (``DayStream.mask_error``).

The tables themselves hold what the server sent, key included: masking is for what is shown.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import dagster as dg

from cloudglue_dagster.api.secrecy import MaskedLog, Redactor, errors_masked, masked_error
from cloudglue_dagster.internals import is_whitelisted_for_serdes_object, pack_value

if TYPE_CHECKING:
    from .checks import Outcome

__all__ = ["Masker"]

# Values with no text in them: shown as they are.
_AS_IS = (
    bool,
    int,
    float,
    dg.IntMetadataValue,
    dg.FloatMetadataValue,
    dg.BoolMetadataValue,
    dg.TimestampMetadataValue,
    dg.NullMetadataValue,
)
# Values that are one text: masked and rebuilt with their own constructor.
_ONE_TEXT: dict[type, Callable[[str], Any]] = {
    dg.TextMetadataValue: dg.MetadataValue.text,
    dg.MarkdownMetadataValue: dg.MetadataValue.md,
    dg.UrlMetadataValue: dg.MetadataValue.url,
    dg.PathMetadataValue: dg.MetadataValue.path,
    dg.NotebookMetadataValue: dg.MetadataValue.notebook,
}
# Markers of Dagster's serialized form (dagster_shared.serdes) whose values are data.
_SERDES_CONTAINERS = ("__set__", "__frozenset__", "__mapping_items__")


class Masker:
    """Masks ``secret`` (the API key) in texts, metadata, errors and log lines, in every form
    :class:`~cloudglue_dagster.api.secrecy.Redactor` knows (raw, escaped, URL-encoded, base64).

    Args:
        secret: the key; None or blank masks nothing (every method returns its input).
    """

    def __init__(self, secret: str | None) -> None:
        self._redact = Redactor(secret) if isinstance(secret, str) and secret.strip() else None

    @classmethod
    def of(cls, resource: object) -> Masker:
        """The masker of a run: from the resource's ``api_key`` as resolved for the run (an
        ``EnvVar``'s value); masks nothing for a resource without one."""
        return cls(getattr(resource, "api_key", None))

    def text(self, text: str) -> str:
        return text if self._redact is None else self._redact(text)

    def value(self, value: Any) -> Any:
        """``value`` masked: a text; a dict (keys too), list, tuple or set, recursively; any
        Dagster metadata value or other serializable Dagster object (``TableSchema``,
        ``TableRecord``, ``AssetKey``...). Numbers, None and other objects are returned as is."""
        if self._redact is None or value is None or isinstance(value, _AS_IS):
            return value
        if isinstance(value, str):
            return self._redact(value)
        if type(value) in _ONE_TEXT:
            return _ONE_TEXT[type(value)](self._redact(value.value))
        if isinstance(value, dg.JsonMetadataValue):
            return dg.MetadataValue.json(self._data(value.data))
        if type(value) in (dict, list, tuple, set, frozenset):
            return self._data(value)
        if is_whitelisted_for_serdes_object(value):
            return self._serdes(value)
        return value

    def metadata(self, metadata: Mapping[str, Any]) -> dict[str, Any]:
        """A metadata mapping with its keys and values masked (:meth:`value`)."""
        if self._redact is None:
            return dict(metadata)
        return _unique_keys((self._redact(key), self.value(value)) for key, value in metadata.items())

    def outcomes(self, outcomes: Mapping[str, Mapping[str, Outcome]]) -> dict[str, dict[str, Outcome]]:
        """Check outcomes (check -> partition -> :class:`~cloudglue_dagster.assets.checks.Outcome`)
        with their metadata masked."""
        return {
            check: {key: dataclasses.replace(o, metadata=self.metadata(o.metadata)) for key, o in by_key.items()}
            for check, by_key in outcomes.items()
        }

    def error(self, exc: BaseException) -> BaseException:
        """``exc`` masked in place with its whole chain, ``dg.Failure``'s description and
        metadata included, or its stand-in (:func:`~cloudglue_dagster.api.secrecy.masked_error`)."""
        return exc if self._redact is None else masked_error(exc, self.value)

    def errors(self) -> AbstractContextManager[None]:
        """A block whose exceptions leave it masked (:meth:`error`)."""
        return errors_masked(self.error)

    def log(self, log: Any) -> MaskedLog:
        """``log`` (``context.log``) with every message masked."""
        return MaskedLog(log, self.text)

    def _data(self, data: Any) -> Any:
        """JSON-like data: texts masked, dict keys too (two keys masked alike stay apart)."""
        if isinstance(data, str):
            return self.text(data)
        if isinstance(data, dict):
            return _unique_keys((self._data(k), self._data(v)) for k, v in data.items())
        if type(data) in (list, tuple, set, frozenset):
            return type(data)(self._data(item) for item in data)
        return self.value(data)

    def _serdes(self, value: Any) -> Any:
        """Any other Dagster value, through its serialized form: every text in it masked, the
        structure (class names, field names) kept. The same object when none of its texts
        holds the secret, found without serializing it (the tables' schema, on every day)."""
        if not any(text is _OPAQUE or self.text(text) != text for text in _texts(value)):
            return value
        masked = self._packed(pack_value(value))
        return dg.deserialize_value(json.dumps(masked), as_type=type(value))

    def _packed(self, packed: Any) -> Any:
        if isinstance(packed, list):
            return [self._packed(item) for item in packed]
        if not isinstance(packed, dict):
            return self._data(packed)
        if "__class__" in packed:  # a Dagster object: its field names are structure
            return {k: v if k == "__class__" else self._packed(v) for k, v in packed.items()}
        if "__enum__" in packed:
            return packed
        if packed.keys() & set(_SERDES_CONTAINERS):
            return {k: self._packed(v) for k, v in packed.items()}
        return _unique_keys((self._data(k), self._packed(v)) for k, v in packed.items())


_OPAQUE = object()
"""What :func:`_texts` yields for a value it cannot see into: it may hold anything."""


def _texts(value: Any) -> Iterator[Any]:
    """Every text in ``value``: its strings, those of its containers and, for a Dagster record
    (a NamedTuple), of its fields; :data:`_OPAQUE` for anything else that is not a number."""
    if isinstance(value, str):
        yield value
    elif value is None or isinstance(value, (bool, int, float, enum.Enum)):
        return
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _texts(key)
            yield from _texts(item)
    elif hasattr(value, "_fields"):
        for name in value._fields:
            yield from _texts(getattr(value, name))
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from _texts(item)
    else:
        yield _OPAQUE


def _unique_keys(items: Iterator[tuple[Any, Any]]) -> dict[Any, Any]:
    """A dict of ``items``; a key already taken (two keys that masked alike) gets `` (2)``,
    `` (3)``... so no value is lost."""
    out: dict[Any, Any] = {}
    for key, value in items:
        unique, n = key, 1
        while unique in out:
            n += 1
            unique = f"{key} ({n})"
        out[unique] = value
    return out
