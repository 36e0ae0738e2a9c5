"""Keeping the API key secret: which keys can travel, and how any text is scrubbed of them.

Standard library only. The key travels only in the ``Authorization`` header; every text that
reaches a message passes through :class:`Redactor` first; a key that could not travel in a
header (empty, control characters, non-ASCII) is refused before anything is sent, by an error
that does not repeat it; URLs are shown without their user info.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

from .errors import CloudglueConfigError

__all__ = ["Redactor", "display_url", "validate_api_key"]


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


class Redactor:
    """Replaces a secret in text by ``***``, in every form it can take there: as is, escaped
    (``repr``, JSON, ``unicode_escape``), URL-encoded (``quote``, ``quote_plus``, any case) and
    base64-encoded (standard or URL-safe, at any alignment); and masks the user info of URLs."""

    def __init__(self, secret: str) -> None:
        needles = {secret, repr(secret)[1:-1], json.dumps(secret)[1:-1]}
        if len(secret) >= _MIN_DERIVED:
            raw = secret.encode("utf-8", "surrogatepass")
            needles |= {secret.encode("unicode_escape").decode("ascii"), quote(secret, safe=""), quote_plus(secret)}
            for blob in (raw, f"Bearer {secret}".encode("utf-8", "surrogatepass")):
                needles |= _base64_cores(blob)
        ordered = sorted((n for n in needles if n), key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered)), re.IGNORECASE)

    def __call__(self, text: str) -> str:
        return _USERINFO.sub("***@", self._pattern.sub("***", text))
