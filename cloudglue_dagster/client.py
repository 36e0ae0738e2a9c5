"""A plain-Python HTTP client for the Cloudglue chat-completions list endpoint.

No Dagster here: the client is usable (and tested) on its own::

    with CloudglueClient(api_key=os.environ["CLOUDGLUE_API_KEY"]) as client:
        for completion in client.iter_chat_completions(created_after="2026-01-01"):
            print(completion.id, completion.created_at)

It pages by offset, retries what is worth retrying (429, 5xx gateways,
dropped connections, timeouts, truncated or malformed bodies) with
exponential backoff and jitter, honours ``Retry-After``, and turns everything
else into a typed :class:`~cloudglue_dagster.errors.CloudglueError`. The API
key travels only in the ``Authorization`` header: it is redacted from every
message and absent from the client's ``repr``.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
import requests.adapters

from .errors import (
    AuthenticationError,
    BadRequestError,
    CloudglueConfigError,
    CloudglueError,
    CloudglueHTTPError,
    NotFoundError,
    RetriesExhaustedError,
)
from .models import ChatCompletion, ChatCompletionPage, parse_page
from .throttle import Throttle
from ._loopback import is_loopback

__all__ = [
    "DEFAULT_BASE_URL",
    "MAX_PAGE_SIZE",
    "CloudglueClient",
    "RetryPolicy",
    "SweepStats",
    "validate_base_url",
]

DEFAULT_BASE_URL = "https://api.cloudglue.dev/v1"
MAX_PAGE_SIZE = 100
"""The API's largest page (``limit`` <= 100)."""

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
_CHAT_COMPLETIONS_PATH = "/chat/completions"

try:
    _VERSION = metadata.version("cloudglue-dagster")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    _VERSION = "0+unknown"
USER_AGENT = f"cloudglue-dagster/{_VERSION} python-requests/{requests.__version__}"


class _Logger(Protocol):
    def debug(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...
    def info(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...
    def warning(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class RetryPolicy:
    """How the client retries transient failures.

    Attributes:
        max_retries: retries after the first attempt (0 = try once). Default 5.
        initial_backoff: seconds before the first retry; doubles each retry.
            Also the floor for a server's ``Retry-After``. Default 0.5.
        max_backoff: cap on the exponential backoff, in seconds. Default 30.
        max_retry_after: cap on a server's ``Retry-After``, in seconds, so a
            misbehaving proxy cannot park a run for hours. Default 120.
    """

    max_retries: int = 5
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    max_retry_after: float = 120.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise CloudglueConfigError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.max_retry_after < 0:
            raise CloudglueConfigError("backoff durations must be >= 0")

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based): exponential, with jitter.

        "Equal jitter": half the exponential delay is fixed, half random, so
        concurrent clients spread out but never retry immediately.
        """
        delay = min(self.max_backoff, self.initial_backoff * (2 ** (retry - 1)))
        return delay / 2 + random.uniform(0, delay / 2)

    def retry_after(self, header: str | None, now: dt.datetime | None = None) -> float | None:
        """Seconds a ``Retry-After`` header asks for (delta-seconds or HTTP-date),
        clamped to [``initial_backoff``, ``max_retry_after``]; None if absent or unreadable."""
        if not header:
            return None
        header = header.strip()
        try:
            seconds = float(header)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(header)
            except (TypeError, ValueError):
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.timezone.utc)
            seconds = (when - (now or dt.datetime.now(dt.timezone.utc))).total_seconds()
        if seconds != seconds:  # NaN
            return None
        return min(self.max_retry_after, max(self.initial_backoff, seconds))


@dataclass
class SweepStats:
    """What one :meth:`CloudglueClient.iter_chat_completions` sweep saw; filled in as it goes.

    Attributes:
        pages: pages received (re-reads included).
        records: records received, duplicates included.
        duplicates: records dropped because their id was already seen.
        first_total: ``total`` on the first page.
        last_total: ``total`` on the last page read.
        rereads: times the window was read again because it changed mid-sweep.
    """

    pages: int = 0
    records: int = 0
    duplicates: int = 0
    first_total: int | None = None
    last_total: int | None = None
    rereads: int = 0


def validate_base_url(base_url: str) -> str:
    """Check a base URL and return it without a trailing slash.

    It must be ``https://host[:port]/path``; plain ``http://`` is accepted only
    for loopback hosts (the emulator), because the API key would otherwise
    travel in clear text.

    Raises:
        CloudglueConfigError: the URL is malformed or insecure.
    """
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CloudglueConfigError(
            f"base_url must look like https://api.cloudglue.dev/v1, got {base_url!r}"
        )
    if parts.query or parts.fragment:
        raise CloudglueConfigError(f"base_url must not carry a query or fragment, got {base_url!r}")
    try:
        parts.port
    except ValueError:
        raise CloudglueConfigError(f"base_url has an invalid port: {base_url!r}") from None
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise CloudglueConfigError(
            f"base_url {base_url!r} uses http:// to a non-loopback host; the API key would travel"
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


class _Retryable(Exception):
    """An attempt failed in a way worth retrying."""

    def __init__(self, description: str, status: int | None = None, retry_after: str | None = None):
        super().__init__(description)
        self.description = description
        self.status = status
        self.retry_after = retry_after


class CloudglueClient:
    """Client for ``GET /chat/completions``, on one pooled ``requests.Session``.

    Args:
        api_key: the Cloudglue API key (``CLOUDGLUE_API_KEY``). Sent only as a
            bearer token, never logged.
        base_url: API root, default ``https://api.cloudglue.dev/v1``. ``http://``
            only for loopback hosts.
        connect_timeout: seconds to wait for a TCP/TLS connection. Default 10.
        read_timeout: seconds to wait for the server between bytes of a
            response. Default 60.
        retry: a :class:`RetryPolicy`; or give ``max_retries`` alone.
        max_retries: shorthand for ``RetryPolicy(max_retries=...)``.
        max_concurrent_requests: pages fetched at once by
            :meth:`iter_chat_completions` after the first. Default 8.
        logger: where retries are reported (``logging.Logger`` or Dagster's
            ``context.log``). Default: the ``cloudglue_dagster.client`` logger.
        session: a ``requests.Session`` to use instead of a new one.

    The client is a context manager; ``close()`` releases its connections.
    """

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        max_retries: int | None = None,
        max_concurrent_requests: int = 8,
        logger: _Logger | None = None,
        session: requests.Session | None = None,
    ) -> None:
        if not isinstance(api_key, str) or not api_key.strip():
            raise CloudglueConfigError("No Cloudglue API key given: set CLOUDGLUE_API_KEY (or pass api_key).")
        if connect_timeout <= 0 or read_timeout <= 0:
            raise CloudglueConfigError(
                f"timeouts must be > 0 seconds, got connect={connect_timeout}, read={read_timeout}"
            )
        if isinstance(max_concurrent_requests, bool) or not isinstance(max_concurrent_requests, int) \
                or max_concurrent_requests < 1:
            raise CloudglueConfigError(f"max_concurrent_requests must be an integer >= 1, got {max_concurrent_requests!r}")
        if retry is not None and max_retries is not None:
            raise CloudglueConfigError("give either retry= or max_retries=, not both")
        self._api_key = api_key.strip()
        self.base_url = validate_base_url(base_url)
        self.timeout = (connect_timeout, read_timeout)
        self.retry = retry or (RetryPolicy(max_retries=max_retries) if max_retries is not None else RetryPolicy())
        self.log: _Logger = logger or logging.getLogger(__name__)
        self.max_concurrent_requests = max_concurrent_requests
        self.throttle = Throttle(max_concurrent_requests)
        self._session = session or requests.Session()
        # One pooled connection per concurrent request, so fan-out reuses sockets.
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=max(10, max_concurrent_requests))
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        self._session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        self._lock = threading.Lock()
        self._requests_sent = 0

    def __repr__(self) -> str:
        return f"CloudglueClient(base_url={self.base_url!r}, api_key='***')"

    def __enter__(self) -> CloudglueClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled HTTP connections."""
        self._session.close()

    @property
    def requests_sent(self) -> int:
        """HTTP requests this client has sent, retries included."""
        return self._requests_sent

    def list_chat_completions(
        self,
        limit: int = MAX_PAGE_SIZE,
        offset: int = 0,
        created_after: dt.date | str | None = None,
        created_before: dt.date | str | None = None,
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
            RetriesExhaustedError: transient failures outlasted ``max_retries``.
            InvalidResponseError: a 200 whose body does not have the documented shape.
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
        return parse_page(self._get_json(_CHAT_COMPLETIONS_PATH, params))

    def iter_chat_completions(
        self,
        created_after: dt.date | str | None = None,
        created_before: dt.date | str | None = None,
        page_size: int = MAX_PAGE_SIZE,
        *,
        stats: SweepStats | None = None,
    ) -> Iterator[ChatCompletion]:
        """Yield every completion in the window exactly once.

        The first page tells ``total`` and the page size the server applies
        (it may cap ``limit``); the remaining offsets are then fetched up to
        ``max_concurrent_requests`` at a time and yielded in offset order.
        Paging advances by the number of records actually received and stops
        at ``total`` or at an empty page. Records are de-duplicated by id:
        offset paging over a window that is still receiving completions can
        show a record on two pages. If ``total`` changes during the sweep, or a
        page comes back short, the window is read again one page at a time, so
        nothing that shifted between pages is missed. Order is the server's
        (not documented; newest first is likely).

        Args:
            stats: a :class:`SweepStats` to fill in (pages, duplicates, re-reads).
        """
        stats = stats if stats is not None else SweepStats()
        seen: set[str] = set()

        def fresh(page: ChatCompletionPage) -> Iterator[ChatCompletion]:
            stats.pages += 1
            stats.records += len(page.data)
            stats.last_total = page.total
            for completion in page.data:
                if completion.id in seen:
                    stats.duplicates += 1
                else:
                    seen.add(completion.id)
                    yield completion

        def fetch(offset: int) -> ChatCompletionPage:
            return self.list_chat_completions(
                limit=page_size, offset=offset, created_after=created_after, created_before=created_before
            )

        first = fetch(0)
        stats.first_total = first.total
        yield from fresh(first)
        step = len(first.data)
        if step == 0 or step >= first.total:
            return
        offset = step
        if self.max_concurrent_requests > 1:
            consistent = True
            for page in self._fetch_pages(fetch, range(step, first.total, step)):
                yield from fresh(page)
                if page.total != first.total or (len(page.data) < step and page.offset + len(page.data) < page.total):
                    consistent = False
            if consistent:
                return
            stats.rereads += 1
            self.log.warning(
                f"Cloudglue API: the window changed while it was paged (total {first.total} ->"
                f" {stats.last_total}); reading it again page by page so no completion is missed"
            )
            offset = 0
        while True:
            page = fetch(offset)
            yield from fresh(page)
            offset += len(page.data)
            if not page.data or offset >= page.total:
                return

    def _fetch_pages(
        self, fetch: Callable[[int], ChatCompletionPage], offsets: range
    ) -> Iterator[ChatCompletionPage]:
        """Fetch pages at ``offsets`` concurrently, yielding them in offset order.

        At most ``max_concurrent_requests`` are in flight, and at most twice that
        many finished pages wait in memory, however long the window.
        """
        window = 2 * self.max_concurrent_requests
        with ThreadPoolExecutor(self.max_concurrent_requests, thread_name_prefix="cloudglue") as pool:
            pending: deque[Future[ChatCompletionPage]] = deque()
            try:
                for offset in offsets:
                    pending.append(pool.submit(fetch, offset))
                    if len(pending) >= window:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
            finally:
                for future in pending:
                    future.cancel()

    # -- transport ---------------------------------------------------------

    def _get_json(self, path: str, params: Mapping[str, Any]) -> Any:
        """GET a JSON body, retrying transient failures per ``self.retry``.

        Every attempt holds a slot of the client's :class:`Throttle`: a 429
        pauses all of the client's requests and lowers its concurrency; other
        failures back off this request alone.
        """
        url = self.base_url + path
        attempts = 0
        while True:
            attempts += 1
            with self.throttle.slot():
                try:
                    body = self._attempt(url, params)
                except _Retryable as exc:
                    failure = exc
                else:
                    self.throttle.succeeded()
                    return body
            if attempts > self.retry.max_retries:
                raise RetriesExhaustedError(
                    f"GET {path} failed after {attempts} attempts; last error: {failure.description}."
                    " The Cloudglue API or the network is unavailable; try again later"
                    " or raise max_retries.",
                    attempts=attempts,
                    last_status=failure.status,
                    last_error=failure.description,
                )
            wait = self.retry.retry_after(failure.retry_after)
            if wait is None:
                wait = self.retry.backoff(attempts)
            if failure.status == 429:
                limit = self.throttle.throttled(wait)
                self.log.warning(
                    f"Cloudglue API: rate limited (HTTP 429) on GET {path}; all requests pause"
                    f" {wait:.2f}s, concurrency now {limit}; retry {attempts} of {self.retry.max_retries}"
                )
            else:
                self.log.warning(
                    f"Cloudglue API: {failure.description} on GET {path}; retry {attempts}"
                    f" of {self.retry.max_retries} in {wait:.2f}s"
                )
                time.sleep(wait)

    def _attempt(self, url: str, params: Mapping[str, Any]) -> Any:
        with self._lock:
            self._requests_sent += 1
        try:
            response = self._session.get(
                url,
                params=params,
                headers={"Authorization": f"Bearer {self._api_key}"},
                timeout=self.timeout,
            )
        except requests.Timeout as exc:
            raise _Retryable(f"timed out ({type(exc).__name__})") from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError) as exc:
            # ChunkedEncodingError is also how urllib3 reports a body shorter
            # than its Content-Length: a truncated response.
            raise _Retryable(f"connection failed or body truncated ({type(exc).__name__})") from None
        except requests.RequestException as exc:
            raise CloudglueError(f"request to {url} failed: {self._redact(str(exc))}") from None

        status = response.status_code
        if status == 200:
            try:
                return json.loads(response.content)
            except (ValueError, UnicodeDecodeError):
                raise _Retryable(
                    f"malformed JSON body ({len(response.content)} bytes,"
                    f" Content-Type {response.headers.get('Content-Type', 'missing')!r})",
                    status=status,
                ) from None
        message = self._server_message(response)
        if status in RETRYABLE_STATUSES:
            detail = f"HTTP {status}" + (f" ({message})" if message else "")
            raise _Retryable(detail, status=status, retry_after=response.headers.get("Retry-After"))
        raise self._http_error(status, message)

    def _http_error(self, status: int, message: str | None) -> CloudglueHTTPError:
        said = f": {message}" if message else ""
        if status in (401, 403):
            return AuthenticationError(
                f"Cloudglue API refused the API key (HTTP {status}{said}). Check that CLOUDGLUE_API_KEY"
                f" holds a valid key for {self.base_url}.",
                status_code=status,
                server_message=message,
            )
        if status == 400:
            return BadRequestError(
                f"Cloudglue API rejected the request (HTTP 400{said}).", status_code=status, server_message=message
            )
        if status == 404:
            return NotFoundError(
                f"Cloudglue API answered 404 Not Found{said}. Check base_url ({self.base_url}):"
                " it should end with the API version, e.g. https://api.cloudglue.dev/v1.",
                status_code=status,
                server_message=message,
            )
        return CloudglueHTTPError(
            f"Cloudglue API answered HTTP {status}{said}.", status_code=status, server_message=message
        )

    def _server_message(self, response: requests.Response) -> str | None:
        """The ``error`` text of a JSON error body, redacted; None for other bodies (HTML pages)."""
        try:
            body = json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            return None
        if isinstance(body, Mapping) and isinstance(body.get("error"), str):
            return self._redact(body["error"])[:500]
        return None

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***")
