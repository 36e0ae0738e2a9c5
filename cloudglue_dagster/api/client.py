"""A plain-Python HTTP client for the Cloudglue list endpoints: chat completions and responses.

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
from collections.abc import Callable, Generator, Iterable, Iterator
from functools import partial
from importlib import metadata
from typing import Any, TypeVar

import requests

from cloudglue_dagster.errors import CloudglueConfigError

from .decoding import decode_page
from .fan_out import LOOKAHEAD_PAGES, fan_out
from .models import ChatCompletion, ChatCompletionPage
from .params import MAX_PAGE_SIZE, date_param, list_params, positive_seconds, validate_base_url
from .parsing import parse_page
from .responses import RESPONSE_STATUSES, Response, ResponsePage, decode_responses_page, parse_responses_page
from .secrecy import errors_masked
from .sweep import DEFAULT_MAX_WINDOW_RECORDS, FanOut, Fetch, Page, R, Sweep, SweepStats
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
DEFAULT_REQUEST_DEADLINE = 120.0
"""Seconds one attempt of a request may take in all (a page is ~150 KB; the emulator answers in ms)."""
DEFAULT_MAX_RESPONSE_BYTES = 128 * 1024 * 1024
"""The largest response body accepted, in bytes after decompression: 128 MiB. A page of 100
completions is about 150 KB, so this leaves room for completions hundreds of times longer
than usual, while a gzip bomb (4 MB inflating to 4 GiB) is stopped at 128 MiB."""
MIN_RESPONSE_BYTES = 1024
"""The smallest ``max_response_bytes`` accepted: a page of one completion is about 1.4 KB, so
a smaller cap can only be a unit mistake (128 meant as MiB)."""

P = TypeVar("P", ChatCompletionPage, ResponsePage)

_CHAT_COMPLETIONS_PATH = "/chat/completions"
_RESPONSES_PATH = "/responses"

try:
    _VERSION = metadata.version("cloudglue-dagster")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    _VERSION = "0+unknown"
USER_AGENT = f"cloudglue-dagster/{_VERSION} python-requests/{requests.__version__}"


class CloudglueClient:
    """Client for ``GET /chat/completions`` and ``GET /responses``, on one pooled ``requests.Session``.

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
        timeout = (positive_seconds("connect_timeout", connect_timeout), positive_seconds("read_timeout", read_timeout))
        deadline = positive_seconds("request_deadline", request_deadline)
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
        params = list_params(limit, offset, created_after, created_before)
        # A well-formed page is decoded straight to records (decode_page); any other is
        # decoded by json and parsed field by field, so that its fault is explained.
        return self._page(_CHAT_COMPLETIONS_PATH, params, _cancel, ChatCompletionPage, decode_page, parse_page)

    def list_responses(
        self,
        limit: int = MAX_PAGE_SIZE,
        offset: int = 0,
        created_after: dt.date | str | None = None,
        created_before: dt.date | str | None = None,
        status: str | None = None,
        *,
        _cancel: threading.Event | None = None,
    ) -> ResponsePage:
        """Fetch one page of ``GET /responses`` (the Responses API's list).

        Args:
            limit, offset, created_after, created_before: as :meth:`list_chat_completions`
                (the same undocumented date boundaries: pad and cut).
            status: only responses with this status, one of
                :data:`~cloudglue_dagster.api.responses.RESPONSE_STATUSES`; None: all.

        Raises:
            as :meth:`list_chat_completions` (an invalid item names the response at fault).
        """
        params = list_params(limit, offset, created_after, created_before)
        if status is not None:
            if status not in RESPONSE_STATUSES:
                raise CloudglueConfigError(f"status must be one of {', '.join(RESPONSE_STATUSES)}, got {status!r}")
            params["status"] = status
        return self._page(_RESPONSES_PATH, params, _cancel, ResponsePage, decode_responses_page, parse_responses_page)

    def _page(
        self,
        path: str,
        params: dict[str, str | int],
        cancel: threading.Event | None,
        page_type: type[P],
        fast: Callable[[bytes], P | None],
        parse: Callable[[Any], P],
    ) -> P:
        body = self._transport.get_json(self.base_url + path, params, self._headers, cancel, fast=fast)
        if type(body) is page_type:
            return body
        with errors_masked(self._transport.redact.error):  # the record it names may hold the key
            return parse(body)

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
        after, before = date_param("created_after", created_after), date_param("created_before", created_before)

        def fetch(offset: int, cancel: threading.Event) -> ChatCompletionPage:
            return self.list_chat_completions(page_size, offset, after, before, _cancel=cancel)

        yield from self._sweep(fetch, after, before, page_size, stats, "completion")

    def iter_responses(
        self,
        created_after: dt.date | str | None = None,
        created_before: dt.date | str | None = None,
        page_size: int = MAX_PAGE_SIZE,
        *,
        status: str | None = None,
        stats: SweepStats | None = None,
    ) -> Iterator[Response]:
        """Yield every response in the window exactly once, after checking each page: the
        same paging, verification and re-reads as :meth:`iter_chat_completions`.

        Args:
            created_after, created_before, page_size, stats: as :meth:`iter_chat_completions`.
            status: only responses with this status (:meth:`list_responses`); None: all.
        """
        after, before = date_param("created_after", created_after), date_param("created_before", created_before)

        def fetch(offset: int, cancel: threading.Event) -> ResponsePage:
            return self.list_responses(page_size, offset, after, before, status, _cancel=cancel)

        yield from self._sweep(fetch, after, before, page_size, stats, "response")

    def _sweep(
        self,
        fetch: Callable[[int, threading.Event], Page[R]],
        after: str | None,
        before: str | None,
        page_size: int,
        stats: SweepStats | None,
        noun: str,
    ) -> Iterator[R]:
        cancel = threading.Event()
        sweep: Sweep[R] = Sweep(
            partial(_with_cancel, fetch, cancel),
            self._fan_out(cancel) if self.max_concurrent_requests > 1 else None,
            limit=page_size,
            window=(after, before),
            stats=stats if stats is not None else SweepStats(),
            warn=self.log.warning,
            max_window_records=self.max_window_records,
            noun=noun,
        )
        yield from sweep

    def _fan_out(self, cancel: threading.Event) -> FanOut[Any]:
        def pages(fetch: Fetch[Any], offsets: Iterable[int]) -> Generator[tuple[int, Page[Any]], None, None]:
            return fan_out(
                fetch,
                offsets,
                concurrency=self.max_concurrent_requests,
                cancel=cancel,
                abort_in_flight=self._transport.abort_in_flight,
            )

        return pages


def _with_cancel(fetch: Callable[[int, threading.Event], Page[R]], cancel: threading.Event, offset: int) -> Page[R]:
    return fetch(offset, cancel)


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
