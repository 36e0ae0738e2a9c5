"""What the client checks before anything is sent: the base URL, the dates, the paging and
the timeouts. Standard library only; every refusal is a
:class:`~cloudglue_dagster.errors.CloudglueConfigError` that does not repeat a secret."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlsplit

from cloudglue_dagster.errors import CloudglueConfigError

from .loopback import is_loopback
from .secrecy import display_url

__all__ = ["MAX_PAGE_SIZE", "date_param", "list_params", "positive_seconds", "validate_base_url"]

MAX_PAGE_SIZE = 100
"""The API's largest page (``limit`` <= 100)."""


def validate_base_url(base_url: str) -> str:
    """Check a base URL and return it without a trailing slash.

    It must be ``https://host[:port]/path``; plain ``http://`` is accepted only for loopback
    hosts (the emulator), because the API key would otherwise travel in clear text. User info
    (``https://user:pass@host``) is refused: requests would switch to Basic auth, and the
    password would be echoed in errors. Messages never repeat user info.

    Raises:
        CloudglueConfigError: the URL is malformed, insecure or carries user info.
    """
    if not isinstance(base_url, str):
        raise CloudglueConfigError(f"base_url must be a string, got {type(base_url).__name__}")
    shown = display_url(base_url.strip())
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CloudglueConfigError(f"base_url must look like https://api.cloudglue.dev/v1, got {shown!r}")
    if "@" in parts.netloc:
        raise CloudglueConfigError(
            f"base_url must not carry user info (user:password@), got {shown!r}: the API"
            " authenticates with the API key (CLOUDGLUE_API_KEY) alone."
        )
    if parts.query or parts.fragment:
        raise CloudglueConfigError(f"base_url must not carry a query or fragment, got {shown!r}")
    try:
        parts.port  # noqa: B018  (reading it raises ValueError for a port that is not a number)
    except ValueError:
        raise CloudglueConfigError(f"base_url has an invalid port: {shown!r}") from None
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise CloudglueConfigError(
            f"base_url {shown!r} uses http:// to a non-loopback host; the API key would travel"
            " unencrypted. Use https:// (http:// is allowed only for localhost, e.g. the emulator)."
        )
    return base_url.strip().rstrip("/")


def date_param(name: str, value: dt.date | str | None) -> str | None:
    """A date filter as the API wants it, ``YYYY-MM-DD``."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        # A datetime's time of day would be silently dropped: the API filters whole dates.
        raise CloudglueConfigError(f"{name} must be a date or 'YYYY-MM-DD', not a datetime ({value!r})")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip()).isoformat()
        except ValueError:
            pass
    raise CloudglueConfigError(f"{name} must be a date or a 'YYYY-MM-DD' string, got {value!r}")


def positive_seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise CloudglueConfigError(f"{name} must be a number of seconds > 0, got {value!r}")
    return float(value)


def list_params(
    limit: int, offset: int, created_after: dt.date | str | None, created_before: dt.date | str | None
) -> dict[str, str | int]:
    """The query of a list page, checked before anything is sent."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise CloudglueConfigError(f"limit must be an integer between 1 and {MAX_PAGE_SIZE}, got {limit!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise CloudglueConfigError(f"offset must be an integer >= 0, got {offset!r}")
    params: dict[str, str | int] = {"limit": limit, "offset": offset}
    for name, value in (("created_after", created_after), ("created_before", created_before)):
        text = date_param(name, value)
        if text is not None:
            params[name] = text
    return params
