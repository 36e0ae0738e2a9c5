"""The exceptions this package raises, all under :class:`CloudglueError`, and the one rule
that says which of them are worth retrying.

Standard library only, so records, client, assets and the I/O manager share them. No message
built here ever contains the API key: the client redacts server text before it reaches an
exception (see ``client._Redactor``).

**Transient or permanent.** An error is *transient* when the same operation, unchanged, may
succeed later: an API outage that outlasted the client's own retries, or a window that kept
changing while it was read. Everything else is *permanent* (a refused key, a malformed answer,
an unusable DuckDB path, a setting out of range, an interrupted run): retrying it costs
minutes and fails the same way. :func:`is_transient` is the only place that decides; the
client, the assets (which turn transient errors into Dagster step retries and permanent ones
into an immediate failure) and the I/O manager all ask it.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "CloudglueConfigError",
    "CloudglueError",
    "CloudglueHTTPError",
    "CloudglueRequestError",
    "CloudglueUnreachableError",
    "HeldTooMuchError",
    "InconsistentResponseError",
    "InvalidResponseError",
    "NotFoundError",
    "ResponseTooLargeError",
    "RetriesExhaustedError",
    "TextRewriteError",
    "WindowTooLargeError",
    "is_transient",
]


class CloudglueError(Exception):
    """Base class of every error raised by cloudglue-dagster.

    Attributes:
        transient: True when the same operation may succeed later unchanged; see
            :func:`is_transient`. False (permanent) unless a subclass says otherwise.
    """

    transient: bool = False


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is worth retrying later: a :class:`CloudglueError` whose ``transient``
    is True. Anything else (other exceptions included) is permanent: a retry would fail the
    same way, so the step fails at once."""
    return isinstance(exc, CloudglueError) and bool(exc.transient)


class CloudglueConfigError(CloudglueError, ValueError):
    """A configuration value is invalid (bad base URL, API key, page size, date...).

    Raised before any request is sent; the message names the offending setting (never the
    value of the API key).
    """


class CloudglueHTTPError(CloudglueError):
    """The API answered with an HTTP error status.

    Attributes:
        status_code: the HTTP status the API answered.
        server_message: the ``error`` text of the JSON body, if there was one (redacted).
    """

    def __init__(self, message: str, *, status_code: int, server_message: str | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.server_message = server_message


class AuthenticationError(CloudglueHTTPError):
    """401 or 403: the API key is missing, wrong or lacks access. Never retried."""


class BadRequestError(CloudglueHTTPError):
    """400: the API rejected the request's parameters. Never retried."""


class NotFoundError(CloudglueHTTPError):
    """404: the endpoint does not exist at this base URL. Never retried."""


class CloudglueRequestError(CloudglueError):
    """A request could not be completed for a reason a retry does not fix: a redirect loop,
    a URL or header that cannot be sent. The message names the cause, never the key."""


class CloudglueUnreachableError(CloudglueRequestError):
    """Nothing ever answered at the base URL's host: every attempt failed before any HTTP
    response (connection refused, no such host, TLS handshake failure, no connection within
    the connect timeout), and no response at all had come from that host in the client's life.

    A base URL where nothing answers is a setting to fix, not an outage to wait out, so the
    client gives such a failure a short budget (:data:`~cloudglue_dagster.api.transport.UNREACHABLE_RETRIES`
    quick retries) and then raises this, permanent: the step fails at once, without step
    retries. Once the host has answered (any HTTP status), connection failures are transient
    again and retried up to ``max_retries`` (:class:`RetriesExhaustedError`).

    The message names ``host:port``, what failed and the setting to check (``base_url``,
    ``CLOUDGLUE_BASE_URL``; the proxy variables when a proxy is in use), never the key.

    Attributes:
        host: the host of the base URL.
        port: its port (443 for ``https://`` without one).
        cause: what failed: ``"connection refused"``, ``"no such host"``, ``"TLS error"``,
            ``"connect timeout"`` or ``"could not connect"``.
        attempts: how many times the request was sent.
        proxy: the proxy the request went through (no user info), or None.
    """

    transient = False  # said outright: the whole point is that Dagster does not retry it

    def __init__(
        self, message: str, *, host: str, port: int, cause: str, attempts: int, proxy: str | None = None
    ) -> None:
        super().__init__(message)
        self.host = host
        self.port = port
        self.cause = cause
        self.attempts = attempts
        self.proxy = proxy


class RetriesExhaustedError(CloudglueError):
    """A request kept failing with retryable errors until ``max_retries`` ran out. Transient:
    the assets retry the step later (``retry_policy``).

    Attributes:
        attempts: how many times the request was sent.
        last_status: the HTTP status of the last attempt, or None if it got no
            response at all (connection dropped, timeout, deadline).
        last_error: a one-line description of the last failure.
    """

    transient = True

    def __init__(self, message: str, *, attempts: int, last_status: int | None, last_error: str):
        super().__init__(message)
        self.attempts = attempts
        self.last_status = last_status
        self.last_error = last_error


class InvalidResponseError(CloudglueError):
    """The API answered 200 with a body that does not have the documented shape.

    Attributes:
        reason: what was wrong.
        completion_id: the id of the record at fault (a completion, or a response of the
            Responses API), if known.
        field: the dotted path of the field at fault (``usage.total_tokens``,
            ``choices[0].message.content``), if known.
        record: what the record is, as messages name it (``completion``, ``response``).
    """

    def __init__(
        self, reason: str, *, completion_id: str | None = None, field: str | None = None, record: str = "completion"
    ):
        where = []
        if completion_id is not None:
            where.append(f"{record} {completion_id!r}")
        if field is not None:
            where.append(f"field {field!r}")
        message = f"Invalid response from the Cloudglue API: {reason}"
        if where:
            message += f" ({', '.join(where)})"
        super().__init__(message)
        self.reason = reason
        self.completion_id = completion_id
        self.field = field


class ResponseTooLargeError(InvalidResponseError):
    """A response body larger than the client's ``max_response_bytes``, counted after
    decompression (a gzip body of 4 MB can inflate to 4 GiB), or announced larger by its
    ``Content-Length``. Reading stopped at the limit, so memory stayed bounded. Permanent: the
    same request would get the same body.

    Attributes:
        path: the URL path that answered (no query: it names the endpoint, not the page).
        limit: the ``max_response_bytes`` in force, in bytes.
        announced: the ``Content-Length`` that exceeded the limit, in bytes; None when the
            body itself went past the limit as it was read.
    """

    def __init__(self, *, path: str, limit: int, announced: int | None = None):
        if announced is None:
            what = (
                f"the body of GET {path} went past max_response_bytes = {_size(limit)}, measured after"
                " decompression (any Content-Encoding undone); reading stopped there"
            )
        else:
            what = (
                f"GET {path} announced a body of {_size(announced)} (Content-Length), more than"
                f" max_response_bytes = {_size(limit)}; none of it was read"
            )
        super().__init__(
            f"{what}. A page of 100 completions is about 150 KB: lower page_size, or raise"
            " max_response_bytes if your completions really are that large."
        )
        self.path = path
        self.limit = limit
        self.announced = announced


def _size(n: int) -> str:
    return f"{n:,} bytes ({n / 2**20:.4g} MiB)"


class InconsistentResponseError(CloudglueError):
    """The pages of a window contradicted themselves, and kept doing so when read again.

    The sweep stops when it raises this; the client cannot know what its caller did with the
    records yielded before (the assets say what they stored). Examples: a page with no
    records while ``total`` says more remain, a page holding more records than ``total``
    leaves, pages made only of records already received, a record created outside the dates
    asked under every reading of their boundaries, fewer distinct records than ``total`` at
    the end of a read, or a ``total`` that grew during a read past what arrivals explain.

    Permanent, unless every read failed because the window kept changing (``total`` moved
    while it was paged): then ``transient`` is True and the step is retried later.

    Attributes:
        created_after, created_before: the dates of the window, as sent.
        reads: how many times the window was read.
        problems: what each read found, in order (offsets and counts).
    """

    def __init__(
        self,
        *,
        created_after: str | None,
        created_before: str | None,
        problems: Sequence[str],
        transient: bool = False,
    ):
        window = f"created_after={created_after or '-'} created_before={created_before or '-'}"
        what = "kept changing while it was read" if transient else "gave a self-contradictory answer"
        listed = "; ".join(f"read {i}: {p}" for i, p in enumerate(problems, 1))
        super().__init__(
            f"The Cloudglue API {what} for the window {window}, {len(problems)} times in a row"
            f" ({listed}). The sweep of this window stopped there."
            + (
                " The window may settle: a later retry may read it whole."
                if transient
                else " This is a fault of the API's answers, not of the data; a retry would meet it again."
            )
        )
        self.created_after = created_after
        self.created_before = created_before
        self.reads = len(problems)
        self.problems = tuple(problems)
        self.transient = transient


class HeldTooMuchError(CloudglueError):
    """A sweep would have held more completions in memory than its bound allows.

    Days are held until the listing has moved past them (or, when the listing is not sorted,
    until the sweep ends); past ``max_held_bytes`` of their JSON the sweep stops instead of
    growing until the kernel kills the run. Permanent: the same answer would need the same
    memory. Attributes: ``held_bytes``, ``max_held_bytes``, ``days`` (the days open),
    ``listing_sorted``.
    """

    def __init__(self, *, held_bytes: int, max_held_bytes: int, days: Sequence[str], listing_sorted: bool):
        span = days[0] if len(days) == 1 else f"{len(days)} days, {days[0]}..{days[-1]}" if days else "no day"
        why = (
            "One day holds more completions than that: raise max_held_bytes (build_cloudglue_assets,"
            " or max_held_bytes in the component's YAML) if the machine has the memory for the day."
            if listing_sorted
            else "The API's listing is not sorted by created_at (or shifted while it was paged), so"
            " every day is held until the sweep ends: load fewer days per run"
            " (max_partitions_per_run), or raise max_held_bytes."
        )
        super().__init__(
            f"The sweep would hold more than max_held_bytes={max_held_bytes:,} bytes of completions"
            f" in memory ({held_bytes:,} bytes of JSON, open: {span}). {why}"
        )
        self.held_bytes = held_bytes
        self.max_held_bytes = max_held_bytes
        self.days = list(days)
        self.listing_sorted = listing_sorted


class WindowTooLargeError(CloudglueError):
    """A page announced a ``total`` above the client's ``max_window_records``; the sweep
    stopped before paging the window (or the rest of it, when the total jumped mid-sweep).

    Permanent: either the answer is absurd, or the window is too large to page in one sweep
    (every id is held in memory to de-duplicate, and each page costs a request). The message
    names the figure, the window and the fix.

    Attributes:
        created_after, created_before: the dates of the window, as sent.
        total: the ``total`` the page announced.
        offset: the offset of that page.
        max_window_records: the bound it exceeded.
    """

    def __init__(
        self,
        *,
        created_after: str | None,
        created_before: str | None,
        total: int,
        offset: int,
        max_window_records: int,
    ):
        window = f"created_after={created_after or '-'} created_before={created_before or '-'}"
        super().__init__(
            f"The Cloudglue API announced total={total:,} completions for the window {window} (page at"
            f" offset {offset}), more than max_window_records={max_window_records:,}; the sweep stopped"
            f" without paging it (at least {-(-total // 100):,} requests of 100 completions, and memory for"
            " every id). If the window really holds that many completions, split it: backfill shorter"
            " ranges (the assets' max_partitions_per_run), or raise max_window_records. Otherwise the"
            " API's answer is wrong, and a retry would meet it again."
        )
        self.created_after = created_after
        self.created_before = created_before
        self.total = total
        self.offset = offset
        self.max_window_records = max_window_records


class TextRewriteError(CloudglueError):
    """The ``text_rewrite`` hook (see ``text_storage``) raised, or returned something other than
    a text or None. Permanent: the same text would fail again. Names the column and the record's
    id, never the text; under ``text_storage="hash"`` not the hook's message either (it may quote
    the text)."""
