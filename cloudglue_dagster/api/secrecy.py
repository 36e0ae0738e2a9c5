"""Keeping the API key secret: which keys can travel, and how any text is scrubbed of them.

Standard library only. The key travels only in the ``Authorization`` header; every text that
reaches a message passes through :class:`Redactor` first; a key that could not travel in a
header (empty, control characters, non-ASCII) is refused before anything is sent, by an error
that does not repeat it; URLs are shown without their user info.

A server can also send the key back inside its data (a record's id, model, prompt or answer).
What is shown of that data is masked by the primitives here, built on a :class:`Redactor`:
:func:`masked_error` (an exception and its whole chain), :func:`errors_masked` (whatever a block
raises) and :class:`MaskedLog` (a logger). :mod:`cloudglue_dagster.assets.masking` adds Dagster's
metadata values and ties them to the resource's key.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

from cloudglue_dagster.errors import CloudglueConfigError

__all__ = [
    "MaskedError",
    "MaskedLog",
    "Redactor",
    "display_url",
    "errors_masked",
    "masked_error",
    "validate_api_key",
]


def validate_api_key(api_key: Any) -> str:
    """The key, stripped, if it can travel in an HTTP header; else a config error that
    describes the problem without repeating the key.

    Refused: not a string, empty or whitespace, or containing a control character (a pasted
    newline) or a non-ASCII character: requests would refuse the header, quoting it.
    """
    if not isinstance(api_key, str) or not api_key.strip():
        raise CloudglueConfigError("No Cloudglue API key given: set CLOUDGLUE_API_KEY (or pass api_key).")
    key = api_key.strip()
    for position, char in enumerate(key):
        if not " " <= char <= "~":
            kind = "a control character" if ord(char) < 0x20 or ord(char) == 0x7F else "a non-ASCII character"
            raise CloudglueConfigError(
                f"The Cloudglue API key contains {kind} at position {position} (of {len(key)}), so it"
                " cannot be sent in an HTTP header. Copy the key again (a pasted line break?) and"
                " set CLOUDGLUE_API_KEY to exactly the key."
            )
    return key


def display_url(url: str) -> str:
    """``url`` without any user info (``https://user:pass@host`` -> ``https://***@host``)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


_USERINFO = re.compile(r"(?<=//)[^/@\s]+@")
# The only characters re.IGNORECASE matches with an ASCII character other than themselves and
# their ASCII case (found by trying every code point): what they stand for, in lower case.
_ASCII_LOOKALIKES = {"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"}
_MIN_DERIVED = 8  # shorter keys get no encoded needles: they would match ordinary text


def _base64_cores(secret: bytes) -> set[str]:
    """The base64 characters that depend only on ``secret``, whatever its alignment in a
    longer encoded text (three alignments, standard and URL-safe alphabets)."""
    cores = set()
    for pad in range(3):
        first, end = -(-8 * pad // 6), (8 * (pad + len(secret))) // 6
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            cores.add(encode(b"\0" * pad + secret).decode()[first:end])
    return cores


CUT = "…"
"""What ends a text cut short (``parsing``'s values in errors): the redactor masks a beginning
of the secret just before it, as it does at the end of a text."""


class Redactor:
    """Replaces a secret in text by ``***``, in every form it can take there: as is, escaped
    (``repr``, JSON, ``unicode_escape``), URL-encoded (``quote``, ``quote_plus``, any case) and
    base64-encoded (standard or URL-safe, at any alignment); and masks the user info of URLs.

    A text cut short inside the secret (a value shortened for a message, a body read up to its
    limit) ends with the secret's beginning: a beginning of 8 characters or more, as is or
    escaped, is masked at the end of the text and before each :data:`CUT`."""

    def __init__(self, secret: str) -> None:
        # repr() of a longer text escapes ' or not depending on that whole text: both forms.
        escaped = secret.replace("\\", "\\\\")
        textual = {secret, repr(secret)[1:-1], json.dumps(secret)[1:-1], escaped, escaped.replace("'", "\\'")}
        needles = set(textual)
        if len(secret) >= _MIN_DERIVED:
            raw = secret.encode("utf-8", "surrogatepass")
            needles |= {secret.encode("unicode_escape").decode("ascii"), quote(secret, safe=""), quote_plus(secret)}
            for blob in (raw, f"Bearer {secret}".encode("utf-8", "surrogatepass")):
                needles |= _base64_cores(blob)
        ordered = sorted((n for n in needles if n), key=len, reverse=True)
        # A text cut short may end inside a textual form (a 60-character repr, a body read up
        # to its limit): their beginnings, longest first, are masked at a cut.
        self._starts = sorted(
            {form[:n] for form in textual for n in range(_MIN_DERIVED, len(form))}, key=len, reverse=True
        )
        self._openings = {start[:_MIN_DERIVED] for start in self._starts}
        # An empty secret has nothing to mask: a pattern that never matches, not one that always does.
        self._pattern = re.compile("|".join(map(re.escape, ordered)) or "(?!)", re.IGNORECASE)
        self._folded = [n.lower() for n in ordered] if all(n.isascii() for n in ordered) else None

    def error(self, exc: BaseException) -> BaseException:
        """``exc`` and its chain masked, seeing into texts only (:func:`masked_error`)."""
        return masked_error(exc, self._text_only)

    def _text_only(self, value: Any) -> Any:
        return self(value) if isinstance(value, str) else value

    def __call__(self, text: str) -> str:
        if self._may_hold(text):
            text = self._pattern.sub("***", text)
        if any(opening in text for opening in self._openings):
            text = CUT.join(self._masked_end(piece) for piece in text.split(CUT))
        return _USERINFO.sub("***@", text) if "@" in text else text

    def _masked_end(self, piece: str) -> str:
        """``piece`` (a text's end, or what comes before a :data:`CUT`) without a beginning of
        the secret, of :data:`_MIN_DERIVED` characters or more, at its very end: where a text
        was cut short inside the secret, which the whole-secret pattern cannot see."""
        for start in self._starts:
            if piece.endswith(start):
                return piece[: -len(start)] + "***"
        return piece

    def _may_hold(self, text: str) -> bool:
        """False only if the pattern cannot match: no needle is in the text, compared as
        ``re.IGNORECASE`` compares ASCII needles. Almost every text (metadata, log lines) holds
        no secret, and substring searches are much faster than the pattern on them (a day's
        preview of accented and CJK text: 8 us instead of 230 us)."""
        if self._folded is None:
            return True
        if not text.isascii():
            for lookalike, letter in _ASCII_LOOKALIKES.items():
                if lookalike in text:
                    text = text.replace(lookalike, letter)
        folded = text.lower()
        return any(needle in folded for needle in self._folded)


# -- what is shown of data a server sent: exceptions and log lines --------------------------------


class MaskedError(Exception):
    """Stands in for an exception whose text held the secret and could not be masked in place:
    its ``str()`` is built from state outside its ``args`` and its instance attributes (an
    ``OSError``'s file name), or from values the mask does not see into. The stand-in is made
    by :func:`masked_error` under the original class's name and module, so a traceback or
    Dagster shows the same heading, with the masked text, the masked attributes and the masked
    chain."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@cache
def _stand_in_class(original: type[BaseException]) -> type[MaskedError]:
    names = {"__module__": original.__module__, "__qualname__": original.__qualname__}
    return type(original.__name__, (MaskedError,), names)


def _text_of(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # a broken __str__ shows nothing of the secret either
        return f"<unprintable {type(exc).__name__}>"


class _ChainMasker:
    """One pass over an exception graph: each exception masked once, cycles followed once."""

    def __init__(self, mask: Callable[[Any], Any]) -> None:
        self.mask = mask
        self.done: dict[int, BaseException] = {}

    def __call__(self, exc: BaseException) -> BaseException:
        if id(exc) in self.done:
            return self.done[id(exc)]
        self.done[id(exc)] = exc  # provisional: a cycle leads back here
        self._in_place(exc)
        text = _text_of(exc)
        shown = self.mask(text)
        masked = exc if shown == text else self._stand_in(exc, shown)
        self.done[id(exc)] = masked
        suppress = exc.__suppress_context__  # setting __cause__ would set it
        for link in ("__cause__", "__context__"):
            linked = getattr(exc, link)
            replaced = None if linked is None else self(linked)
            if replaced is not linked or masked is not exc:
                setattr(masked, link, replaced)
        masked.__suppress_context__ = suppress
        # An exception group's members are a read-only tuple: masked in place only.
        for member in getattr(exc, "exceptions", None) or ():
            if isinstance(member, BaseException):
                self(member)
        return masked

    def _in_place(self, exc: BaseException) -> None:
        """``args`` and every attribute: ``__notes__``, ``dg.Failure``'s description and metadata,
        our errors' ``completion_id``, ``row_key``..."""
        values = [("args", exc.args), *vars(exc).items()]
        for name, value in values:
            try:
                setattr(exc, name, tuple(map(self.mask, value)) if name == "args" else self.mask(value))
            except (AttributeError, TypeError):  # read-only: the text check after decides
                pass

    @staticmethod
    def _stand_in(exc: BaseException, text: str) -> MaskedError:
        # A class is hashable (type.__hash__); mypy checks BaseException's own __hash__ instead.
        stand_in = _stand_in_class(type(exc))(text)  # type: ignore[arg-type]
        vars(stand_in).update(vars(exc))  # already masked
        stand_in.__traceback__ = exc.__traceback__
        return stand_in


def masked_error(exc: BaseException, mask: Callable[[Any], Any]) -> BaseException:
    """``exc`` with ``mask`` applied to everything shown or recorded of it: the ``args``, the
    attributes (``__notes__`` among them) and ``str()`` of it and of every exception in its
    chain (``__cause__``, ``__context__``, an exception group's members).

    ``mask`` takes any value and returns it masked (a text, a container, a metadata value);
    the text check uses it on strings. Masking is in place, so the same exception object goes
    on (``raise`` keeps it); an exception whose ``str()`` still holds the secret afterwards is
    replaced by a :class:`MaskedError` stand-in, in the chain or, for ``exc`` itself, as the
    returned value."""
    return _ChainMasker(mask)(exc)


@contextmanager
def errors_masked(mask_error: Callable[[BaseException], BaseException]) -> Iterator[None]:
    """Whatever the block raises leaves it through ``mask_error`` (e.g. a bound
    ``Masker.error``): the same exception, masked in place, or its stand-in."""
    try:
        yield
    except BaseException as exc:
        masked = mask_error(exc)
        if masked is exc:
            raise
        # Raised here, the stand-in gets ``exc`` (unmasked) as its __context__: Python sets it
        # on any raise in this block. ``from`` suppresses it (tracebacks and Dagster skip a
        # suppressed context); the cause keeps the masked chain.
        raise masked from masked.__cause__ or (None if exc.__suppress_context__ else masked.__context__)


class MaskedLog:
    """A logger (``context.log``, a ``logging.Logger``) whose every message is masked by
    ``mask`` before it is logged: the message with its ``%`` arguments applied, and the
    traceback that ``exc_info`` (or :meth:`exception`) adds, rendered into the message."""

    def __init__(self, log: Any, mask: Callable[[str], str]) -> None:
        self._log, self._mask = log, mask

    def debug(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.log(logging.DEBUG, msg, *args, **kwargs)

    def info(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.log(logging.INFO, msg, *args, **kwargs)

    def warning(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.log(logging.WARNING, msg, *args, **kwargs)

    def error(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.log(logging.ERROR, msg, *args, **kwargs)

    def critical(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.log(logging.CRITICAL, msg, *args, **kwargs)

    def exception(self, msg: object, *args: Any, exc_info: Any = True, **kwargs: Any) -> None:
        self.log(logging.ERROR, msg, *args, exc_info=exc_info, **kwargs)

    def log(self, level: int, msg: object, *args: Any, exc_info: Any = None, **kwargs: Any) -> None:
        text = _formatted(msg, args) + _traceback_text(exc_info)
        self._log.log(level, self._mask(text), **kwargs)


def _formatted(msg: object, args: tuple[Any, ...]) -> str:
    """``msg % args`` as ``logging`` applies it (a lone mapping argument fills ``%(name)s``)."""
    if len(args) == 1 and isinstance(args[0], Mapping) and args[0]:
        return str(msg) % args[0]
    return str(msg) % args if args else str(msg)


def _traceback_text(exc_info: Any) -> str:
    """The traceback ``exc_info`` asks for, as text to append to the message ("" for none)."""
    if not exc_info:
        return ""
    if isinstance(exc_info, BaseException):
        error: BaseException | None = exc_info
    elif isinstance(exc_info, tuple):
        error = exc_info[1]
    else:
        error = sys.exc_info()[1]
    return "" if error is None else "\n" + "".join(traceback.format_exception(type(error), error, error.__traceback__))
