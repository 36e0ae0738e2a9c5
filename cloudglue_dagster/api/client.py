"""A plain-Python HTTP client for the Cloudglue chat-completions list endpoint.

No Dagster here: the client is usable (and tested) on its own::

    with CloudglueClient(api_key=os.environ["CLOUDGLUE_API_KEY"]) as client:
        for completion in client.iter_chat_completions(created_after="2026-01-01"):
            print(completion.id, completion.created_at)

It pages by offset and verifies that the pages account for ``total`` (:mod:`.sweep`); each
request is retried when worth it, bounded by a total deadline and a body size, and its key
kept secret (:mod:`.transport`). Only :class:`~cloudglue_dagster.errors.CloudglueError` subclasses leave
it, each transient or permanent (:func:`~cloudglue_dagster.errors.is_transient`).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import warnings
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from importlib import metadata
from typing import Any
from urllib.parse import urlsplit

import requests

from cloudglue_dagster.errors import CloudglueConfigError

from .decoding import decode_page
from .loopback import is_loopback
from .models import ChatCompletion, ChatCompletionPage
from .parsing import parse_page
from .secrecy import display_url, errors_masked
from .sweep import DEFAULT_MAX_WINDOW_RECORDS, FanOut, Fetch, Sweep, SweepStats
from .throttle import Throttle
from .transport import HTTPRetryPolicy, Logger, Transport

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_REQUEST_DEADLINE",
    "LOOKAHEAD_PAGES",
    "MAX_PAGE_SIZE",
    "MIN_RESPONSE_BYTES",
    "CloudglueClient",
    "HTTPRetryPolicy",
    "SweepStats",
    "validate_base_url",
]

DEFAULT_BASE_URL = "https://api.cloudglue.dev/v1"
MAX_PAGE_SIZE = 100
"""The API's largest page (``limit`` <= 100)."""
DEFAULT_REQUEST_DEADLINE = 120.0
"""Seconds one attempt of a request may take in all (a page is ~150 KB; the emulator answers in ms)."""
DEFAULT_MAX_RESPONSE_BYTES = 128 * 1024 * 1024
"""The largest response body accepted, in bytes after decompression: 128 MiB. A page of 100
completions is about 150 KB, so this leaves room for completions hundreds of times longer
than usual, while a gzip bomb (4 MB inflating to 4 GiB) is stopped at 128 MiB."""
LOOKAHEAD_PAGES = 64
"""Pages a concurrent read keeps asked for ahead of its consumer (in flight, or finished and
waiting), or twice ``max_concurrent_requests`` if that is more. The requests go on while the
consumer builds and writes a day: at 25 ms a request, 8 at once, 64 pages are about 0.2 s of
fetching, longer than a day's work in a range run. With only twice the concurrency ahead, the
pool stood idle whenever a day was written: at 2 requests at once, a 180-day sweep took 43.0 s
with 4 pages ahead, 30.7 s with 16 and 29.0 s with 64 (CHANGELOG.md, 0.2.0). At most about
6,400 completions wait: ~9 MB of JSON, ~40 MB as records."""
MIN_RESPONSE_BYTES = 1024
"""The smallest ``max_response_bytes`` accepted: a page of one completion is about 1.4 KB, so
a smaller cap can only be a unit mistake (128 meant as MiB)."""

_CHAT_COMPLETIONS_PATH = "/chat/completions"

try:
    _VERSION = metadata.version("cloudglue-dagster")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    _VERSION = "0+unknown"
USER_AGENT = f"cloudglue-dagster/{_VERSION} python-requests/{requests.__version__}"


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


def _date_param(name: str, value: dt.date | str | None) -> str | None:
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


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise CloudglueConfigError(f"{name} must be a number of seconds > 0, got {value!r}")
    return float(value)


class CloudglueClient:
    """Client for ``GET /chat/completions``, on one pooled ``requests.Session``.

    Args:
        api_key: the Cloudglue API key (``CLOUDGLUE_API_KEY``). Sent only as a
            bearer token, never logged; refused if empty or holding a control or
            non-ASCII character (the message does not repeat it).
        base_url: API root, default ``https://api.cloudglue.dev/v1``. ``http://``
            only for loopback hosts; no user info.
        connect_timeout: seconds to wait for a TCP/TLS connection. Default 10. While the host
            has never answered, a request spends at most about 25 s trying to connect
            (:data:`~cloudglue_dagster.api.transport.UNREACHABLE_BUDGET_SECONDS`).
        read_timeout: seconds to wait for the server between bytes of a
            response. Default 60.
        request_deadline: seconds one attempt may take in all, however the server
            trickles its bytes; past it the attempt is a transient failure. Default 120.
        max_response_bytes: the largest response body accepted, in bytes counted after
            decompression; default 128 MiB (:data:`DEFAULT_MAX_RESPONSE_BYTES`; a page of 100
            completions is about 150 KB), at least 1024. A body past it, or a
            ``Content-Length`` announcing more, fails the request at once with
            :class:`~cloudglue_dagster.errors.ResponseTooLargeError` (permanent), having held at
            most that much in memory per request in flight. Error bodies are read up to 64 KiB.
        retry: a :class:`HTTPRetryPolicy`; or give ``max_retries`` alone.
        max_retries: shorthand for ``HTTPRetryPolicy(max_retries=...)``.
        max_concurrent_requests: pages fetched at once by
            :meth:`iter_chat_completions` after the first. Default 8.
        logger: where retries are reported (``logging.Logger`` or Dagster's
            ``context.log``). Default: the ``cloudglue_dagster.api.client`` logger.
        session: a ``requests.Session`` to use instead of a new one.
        max_window_records: the largest ``total`` :meth:`iter_chat_completions` pages; a
            page announcing more stops it with
            :class:`~cloudglue_dagster.errors.WindowTooLargeError`. Default 10,000,000
            (:data:`~cloudglue_dagster.api.sweep.DEFAULT_MAX_WINDOW_RECORDS` says why).

    The client is a context manager; ``close()`` releases its connections and stops any
    request still waiting or in flight.

    Raises:
        CloudglueConfigError: a setting is invalid (nothing is sent).
    """

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        request_deadline: float = DEFAULT_REQUEST_DEADLINE,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        retry: HTTPRetryPolicy | None = None,
        max_retries: int | None = None,
        max_concurrent_requests: int = 8,
        logger: Logger | None = None,
        session: requests.Session | None = None,
        max_window_records: int = DEFAULT_MAX_WINDOW_RECORDS,
    ) -> None:
        timeout = (_positive("connect_timeout", connect_timeout), _positive("read_timeout", read_timeout))
        deadline = _positive("request_deadline", request_deadline)
        if (
            isinstance(max_concurrent_requests, bool)
            or not isinstance(max_concurrent_requests, int)
            or max_concurrent_requests < 1
        ):
            raise CloudglueConfigError(
                f"max_concurrent_requests must be an integer >= 1, got {max_concurrent_requests!r}"
            )
        if (
            isinstance(max_response_bytes, bool)
            or not isinstance(max_response_bytes, int)
            or max_response_bytes < MIN_RESPONSE_BYTES
        ):
            raise CloudglueConfigError(
                f"max_response_bytes must be an integer >= {MIN_RESPONSE_BYTES} (bytes), got {max_response_bytes!r}"
            )
        if retry is not None and max_retries is not None:
            raise CloudglueConfigError("give either retry= or max_retries=, not both")
        if isinstance(max_window_records, bool) or not isinstance(max_window_records, int) or max_window_records < 1:
            raise CloudglueConfigError(f"max_window_records must be an integer >= 1, got {max_window_records!r}")
        self.max_window_records = max_window_records
        self.base_url = validate_base_url(base_url)
        self.max_concurrent_requests = max_concurrent_requests
        self.log: Logger = logger or logging.getLogger(__name__)
        self._transport = Transport(
            api_key,
            root=self.base_url,
            timeout=timeout,
            deadline=deadline,
            max_response_bytes=max_response_bytes,
            retry=retry or (HTTPRetryPolicy(max_retries=max_retries) if max_retries is not None else HTTPRetryPolicy()),
            concurrency=max_concurrent_requests,
            logger=self.log,
            session=session,
        )
        self._headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}

    def __repr__(self) -> str:
        return f"CloudglueClient(base_url={self.base_url!r}, api_key='***')"

    def __enter__(self) -> CloudglueClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections; requests waiting or in flight give up at once."""
        self._transport.close()

    @property
    def timeout(self) -> tuple[float, float]:
        """``(connect, read)`` timeouts in seconds."""
        return self._transport.timeout

    @property
    def request_deadline(self) -> float:
        """Seconds one attempt may take in all."""
        return self._transport.deadline

    @property
    def max_response_bytes(self) -> int:
        """The largest response body accepted, in bytes after decompression."""
        return self._transport.max_response_bytes

    @property
    def retry(self) -> HTTPRetryPolicy:
        """The client's :class:`HTTPRetryPolicy`."""
        return self._transport.retry

    @property
    def throttle(self) -> Throttle:
        """The shared request budget (rate-limit state)."""
        return self._transport.throttle

    @property
    def host_answered(self) -> bool:
        """Whether the API host has answered this client (any HTTP status) since it was made,
        or :meth:`mark_host_answered` said so. Until then a request that cannot connect at all
        (refused, no such host, TLS handshake failure, connect timeout) gets two quick retries
        and then fails with :class:`~cloudglue_dagster.errors.CloudglueUnreachableError`
        (permanent); afterwards such failures are retried up to ``max_retries`` like any other
        transient failure."""
        return self._transport.host_answered

    def mark_host_answered(self) -> None:
        """Count the host as one that has answered, so that connection failures are retried up
        to ``max_retries`` from the first: the assets' step does it in a step retry, whose
        previous attempt reached the host (only transient errors are retried)."""
        self._transport.mark_host_answered()

    @property
    def requests_sent(self) -> int:
        """HTTP requests this client has sent, retries included."""
        return self._transport.requests_sent

    def list_chat_completions(
        self,
        limit: int = MAX_PAGE_SIZE,
        offset: int = 0,
        created_after: dt.date | str | None = None,
        created_before: dt.date | str | None = None,
        *,
        _cancel: threading.Event | None = None,
    ) -> ChatCompletionPage:
        """Fetch one page of chat completions.

        Args:
            limit: page size, 1..100 (checked before anything is sent).
            offset: how many matching completions to skip, >= 0.
            created_after: a UTC date (``datetime.date`` or ``YYYY-MM-DD``).
            created_before: a UTC date (``datetime.date`` or ``YYYY-MM-DD``).
                Whether the server includes the named days is not documented:
                pad the window and filter on ``created_at`` to select exact days.

        Raises:
            CloudglueConfigError: a parameter is invalid.
            AuthenticationError, BadRequestError, NotFoundError, CloudglueHTTPError:
                the API refused the request (never retried).
            CloudglueRequestError: the request could not be sent or completed (a redirect loop).
            CloudglueUnreachableError: no connection could be made to a host that has never
                answered this client (:attr:`host_answered`), after two quick retries; a
                subclass of CloudglueRequestError, permanent.
            RetriesExhaustedError: transient failures outlasted ``max_retries``.
            InvalidResponseError: a 200 whose body does not have the documented shape.
            ResponseTooLargeError: a 200 whose body exceeds ``max_response_bytes`` (a subclass
                of InvalidResponseError).
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
            raise CloudglueConfigError(f"limit must be an integer between 1 and {MAX_PAGE_SIZE}, got {limit!r}")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise CloudglueConfigError(f"offset must be an integer >= 0, got {offset!r}")
        params: dict[str, str | int] = {"limit": limit, "offset": offset}
        for name, value in (("created_after", created_after), ("created_before", created_before)):
            text = _date_param(name, value)
            if text is not None:
                params[name] = text
        # A well-formed page is decoded straight to records (decode_page); any other is
        # decoded by json and parsed field by field, so that its fault is explained.
        body = self._transport.get_json(
            self.base_url + _CHAT_COMPLETIONS_PATH, params, self._headers, _cancel, fast=decode_page
        )
        if type(body) is ChatCompletionPage:
            return body
        with errors_masked(self._transport.redact.error):  # the record it names may hold the key
            return parse_page(body)

    def iter_chat_completions(
        self,
        created_after: dt.date | str | None = None,
        created_before: dt.date | str | None = None,
        page_size: int = MAX_PAGE_SIZE,
        *,
        stats: SweepStats | None = None,
    ) -> Iterator[ChatCompletion]:
        """Yield every completion in the window exactly once, after checking each page.

        The first page tells ``total`` and the page size the server applies (it may cap
        ``limit``); the remaining offsets are then fetched up to ``max_concurrent_requests``
        at a time and yielded in offset order, de-duplicated by id. The pages must account
        for ``total`` and hold only records created within the dates asked under every reading
        of their boundaries (:mod:`cloudglue_dagster.api.sweep`): when they do not (the window
        changed while it was paged, or the server contradicted itself), the window is read
        again page by page, up to twice, and
        :class:`~cloudglue_dagster.errors.InconsistentResponseError` is raised if it still
        does not add up. A ``total`` above ``max_window_records`` raises
        :class:`~cloudglue_dagster.errors.WindowTooLargeError` at once. Order is the server's
        (not documented; newest first is likely).

        Records are yielded as pages pass their checks, so a consumer that must not act on a
        partial window waits until the iterator is exhausted, or acts only on what a failure
        later in the sweep cannot contradict (the assets write a day once the listing has
        moved past it).

        Args:
            created_after, created_before: UTC dates (``datetime.date`` or ``YYYY-MM-DD``);
                None leaves that side unbounded.
            page_size: the ``limit`` asked, 1..100.
            stats: a :class:`SweepStats` to fill in (pages, duplicates, re-reads).
        """
        after, before = _date_param("created_after", created_after), _date_param("created_before", created_before)
        cancel = threading.Event()

        def fetch(offset: int) -> ChatCompletionPage:
            return self.list_chat_completions(page_size, offset, after, before, _cancel=cancel)

        sweep = Sweep(
            fetch,
            self._fan_out(cancel) if self.max_concurrent_requests > 1 else None,
            limit=page_size,
            window=(after, before),
            stats=stats if stats is not None else SweepStats(),
            warn=self.log.warning,
            max_window_records=self.max_window_records,
        )
        yield from sweep

    def _fan_out(self, cancel: threading.Event) -> FanOut:
        def fan_out(fetch: Fetch, offsets: Iterable[int]) -> Generator[tuple[int, ChatCompletionPage], None, None]:
            """Fetch ``offsets`` concurrently, yielding ``(offset, page)`` in offset order.

            At most ``max_concurrent_requests`` are in flight, and at most
            :data:`LOOKAHEAD_PAGES` (or twice the concurrency, if more) are asked for ahead
            of the consumer, however long the window: the pool goes on fetching while the
            consumer works on what it received. Stopping early (the
            sweep found a problem, or an interrupt) cancels what is queued and cuts what is
            in flight, so the workers end at once.
            """
            window = max(LOOKAHEAD_PAGES, 2 * self.max_concurrent_requests)
            pool = ThreadPoolExecutor(self.max_concurrent_requests, thread_name_prefix="cloudglue")
            pending: deque[tuple[int, Future[ChatCompletionPage]]] = deque()
            finished = False
            try:
                for offset in offsets:
                    pending.append((offset, pool.submit(fetch, offset)))
                    if len(pending) >= window:
                        offset_done, future = pending.popleft()
                        yield offset_done, future.result()
                while pending:
                    offset_done, future = pending.popleft()
                    yield offset_done, future.result()
                finished = True
            finally:
                if not finished:
                    cancel.set()
                    self._transport.abort_in_flight()
                pool.shutdown(wait=True, cancel_futures=True)
                cancel.clear()

        return fan_out


def deprecated_name(module: str, name: str) -> Any:
    """The value of a deprecated name of ``module``, with a ``DeprecationWarning`` naming the new one."""
    new = _RENAMED[name]
    warnings.warn(
        f"{module}.{name} is deprecated: use {module}.{new}, the client's HTTP retries ({name} read like"
        f" dg.RetryPolicy, which retries a Dagster step). {name} goes in 0.3.0.",
        DeprecationWarning,
        stacklevel=3,
    )
    return globals()[new]


_RENAMED = {"RetryPolicy": "HTTPRetryPolicy"}
"""Old name -> new name, each old one kept for one release (0.2.x) with a warning."""


def __getattr__(name: str) -> Any:
    if name in _RENAMED:
        return deprecated_name(__name__, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
