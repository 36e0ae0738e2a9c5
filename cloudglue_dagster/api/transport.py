"""One GET to the Cloudglue API, with every guarantee the client makes about it.

* **Retries** what is worth retrying (429, 500, 502, 503, 504, dropped connections, timeouts,
  truncated or malformed bodies, a request past its deadline) per :class:`HTTPRetryPolicy`,
  honouring ``Retry-After``, and turns everything else into a typed, permanent
  :class:`~cloudglue_dagster.errors.CloudglueError`. Nothing else escapes.
* **A total deadline per request** (:mod:`.deadline`): an attempt past it is cut and counts as
  a transient failure, whether it was waiting for the headers or reading the body.
* **Bounded bodies.** A body is streamed and counted after decompression: a 200 may hold
  ``max_response_bytes``, an error page :data:`ERROR_BODY_BYTES`, a redirect nothing. A 200
  past its cap (or announcing more in ``Content-Length``) is a permanent
  :class:`~cloudglue_dagster.errors.ResponseTooLargeError`, so a gzip bomb costs at most the
  cap in memory.
* **The key stays secret** (:mod:`.secrecy`): sent only in the ``Authorization`` header,
  scrubbed from every text that reaches a message, and never handed to a proxy in clear:
  plain ``http://`` (loopback hosts only) goes straight to the host, whatever the proxy
  settings; ``https://`` uses them as requests does, through a CONNECT tunnel.
* **A host that never answered fails fast.** Until some HTTP response (any status) has come
  from the API host in this :class:`Transport`'s life, a failure to connect at all (refused, no
  such host, TLS handshake, connect timeout) gets :data:`UNREACHABLE_RETRIES` quick retries
  within :data:`UNREACHABLE_BUDGET_SECONDS`, then a permanent
  :class:`~cloudglue_dagster.errors.CloudglueUnreachableError` naming ``host:port`` and
  ``base_url``: a wrong base URL is not an outage. After the first answer, connection failures
  are retried per :class:`HTTPRetryPolicy` like any other transient failure.
* **Stops when told.** :meth:`Transport.close` (or a sweep's own cancel event) wakes every
  waiting request and aborts those in flight, so an interrupted run ends in seconds.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
import urllib3.exceptions

from cloudglue_dagster.errors import (
    AuthenticationError,
    BadRequestError,
    CloudglueConfigError,
    CloudglueError,
    CloudglueHTTPError,
    CloudglueRequestError,
    CloudglueUnreachableError,
    InvalidResponseError,
    NotFoundError,
    ResponseTooLargeError,
    RetriesExhaustedError,
)

from .deadline import Watch, Watchdog, WatchedAdapter, current
from .loopback import is_loopback
from .secrecy import Redactor, display_url, validate_api_key
from .throttle import Throttle

__all__ = [
    "ERROR_BODY_BYTES",
    "RETRYABLE_STATUSES",
    "UNREACHABLE_BUDGET_SECONDS",
    "UNREACHABLE_RETRIES",
    "HTTPRetryPolicy",
    "Transport",
]

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_REDIRECTS = 5
"""Redirects followed per request: enough for a moved API root, few enough that a loop fails fast."""
ERROR_BODY_BYTES = 64 * 1024
"""Bytes read of an error body (after decompression), for its message: a JSON error is a few
hundred bytes; a longer one (an HTML 502 page, a hostile answer) is cut there, unread."""
UNREACHABLE_RETRIES = 2
"""Retries of a request that could not connect at all (refused, no such host, TLS handshake,
connect timeout) while the host has never answered: enough for a DNS or network blip of a
second or two (the retries wait :meth:`HTTPRetryPolicy.backoff`, 0.25-0.5 s then 0.5-1 s by
default), few enough that a wrong ``base_url`` fails in seconds. ``max_retries`` lower
still wins."""
UNREACHABLE_BUDGET_SECONDS = 25.0
"""No retry of a never-answered host starts unless it could end (its connect timeout
included) within this many seconds of the request's first attempt: with the default
``connect_timeout_seconds`` of 10, a host that drops every packet costs two attempts, about
20 s, and a Dagster run against it ends well within a minute."""
_CHUNK_BYTES = 64 * 1024
"""Decoded bytes per read: urllib3 inflates at most this much per read, so a body is never
decompressed far past its cap."""


class Logger(Protocol):
    def debug(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...
    def info(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...
    def warning(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class HTTPRetryPolicy:
    """How the client retries one HTTP request after a transient failure.

    Not Dagster's ``dg.RetryPolicy``, which retries a whole step (the factory's
    ``retry_policy``): this one retries a request inside a step, within seconds. Named
    ``RetryPolicy`` until 0.2.0; that name still works, with a ``DeprecationWarning``, until 0.3.0.

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
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise CloudglueConfigError(f"max_retries must be an integer >= 0, got {self.max_retries!r}")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.max_retry_after < 0:
            raise CloudglueConfigError("backoff durations must be >= 0")

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based): exponential, with jitter.

        "Equal jitter": half the exponential delay is fixed, half random, so
        concurrent clients spread out but never retry immediately.
        """
        delay = self.longest_backoff(retry)
        return delay / 2 + random.uniform(0, delay / 2)

    def longest_backoff(self, retry: int) -> float:
        """The most :meth:`backoff` can wait before retry number ``retry``, in seconds."""
        growth: float = 2 ** (retry - 1)  # typeshed: int ** int is Any (a negative power is a float)
        return min(self.max_backoff, self.initial_backoff * growth)

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


# -- one request -------------------------------------------------------------------------------


class _Retryable(Exception):
    """An attempt failed in a way worth retrying."""

    def __init__(self, description: str, status: int | None = None, retry_after: str | None = None):
        super().__init__(description)
        self.description = description
        self.status = status
        self.retry_after = retry_after


class _Unconnected(_Retryable):
    """An attempt that never got a connection to the host: refused, no such host, TLS
    handshake failure, connect timeout. ``cause`` is the short name of what failed
    (:attr:`CloudglueUnreachableError.cause`); ``description`` says it in full."""

    def __init__(self, description: str, cause: str, proxy: str | None) -> None:
        super().__init__(description)
        self.cause = cause
        self.proxy = proxy


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: requests' error holds urllib3's ``MaxRetryError``, whose
    ``reason`` is the connection's error, which holds (or was caused by) the socket's."""
    seen: set[int] = set()
    current_: BaseException | None = exc
    while current_ is not None and id(current_) not in seen:
        seen.add(id(current_))
        yield current_
        reason = getattr(current_, "reason", None)
        if isinstance(reason, BaseException):
            current_ = reason
        elif current_.args and isinstance(current_.args[0], BaseException):
            current_ = current_.args[0]
        else:
            current_ = current_.__cause__ or current_.__context__


def _tls_reason(exc: BaseException) -> str:
    """The TLS library's own words for a handshake failure, e.g. ``[SSL:
    WRONG_VERSION_NUMBER] wrong version number`` or ``certificate verify failed:
    self-signed certificate``, without the C source location."""
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {cause.verify_message}"
        if isinstance(cause, ssl.SSLError):
            return str(cause.args[1] if len(cause.args) > 1 else cause).split(" (_ssl.c")[0]
    return type(exc).__name__


def _unconnected(exc: BaseException, url: str, timeout: float, proxy: str | None) -> _Unconnected | None:
    """What an exception of ``session.get`` says, if the attempt never got a connection to
    the host (None if it did: a connection dropped mid-answer, a read timeout...)."""
    if isinstance(exc, requests.exceptions.ProxyError):
        causes = list(_causes(exc))
        if any(isinstance(c, ConnectionRefusedError) for c in causes):
            reason = "connection refused"
        elif any(isinstance(c, urllib3.exceptions.NameResolutionError) for c in causes):
            reason = "its name does not resolve"
        else:  # e.g. "Tunnel connection failed: 403 Forbidden": the proxy's answer to CONNECT
            reason = str(causes[-1])[:200]
        return _Unconnected(f"the proxy {proxy} could not open a tunnel to the host ({reason})", "proxy failed", proxy)
    if isinstance(exc, requests.exceptions.SSLError):
        return _Unconnected(f"TLS handshake failed ({_tls_reason(exc)})", "TLS error", proxy)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return _Unconnected(
            f"no connection within connect_timeout_seconds = {timeout:g}s (the TCP or TLS handshake never completed)",
            "connect timeout",
            proxy,
        )
    if not isinstance(exc, requests.ConnectionError):
        return None
    for cause in _causes(exc):
        if isinstance(cause, urllib3.exceptions.NameResolutionError):
            host = getattr(cause, "_host", None) or urlsplit(url).hostname
            return _Unconnected(f"no such host: the name {host!r} does not resolve (DNS)", "no such host", proxy)
        if isinstance(cause, urllib3.exceptions.NewConnectionError):
            refused = any(isinstance(c, ConnectionRefusedError) for c in _causes(cause))
            if refused:
                return _Unconnected("connection refused: nothing listens on that port", "connection refused", proxy)
            errno_text = next((c.strerror for c in _causes(cause) if isinstance(c, OSError) and c.strerror), None)
            return _Unconnected(f"could not connect ({errno_text or type(cause).__name__})", "could not connect", proxy)
    return None


class _BearerAuth(requests.auth.AuthBase):
    """Sends the key as ``Authorization: Bearer <key>``.

    Passed as ``auth=``, not as a header: without an ``auth``, requests looks the host up in
    ``~/.netrc`` (or ``$NETRC``) on every request, and an entry found there *replaces* the
    ``Authorization`` header (documented requests behaviour), so another credential would be
    sent instead of the key. The lookup also cost ~1 ms a request."""

    def __init__(self, key: str) -> None:
        self._key = key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._key}"
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(<redacted>)"


class _Adapter(WatchedAdapter):
    """The adapter every request goes through: the deadline's pools (:mod:`.deadline`), and
    no proxy for ``http://`` to a loopback host.

    On ``http://`` the key travels in clear, and a proxy would read it. ``validate_base_url``
    admits ``http://`` only for loopback hosts, which need no proxy (one on another machine
    would reach its own loopback, not ours), so such a request goes straight to the host
    whatever the settings: ``HTTP_PROXY``, ``http_proxy``, ``ALL_PROXY``, a session's
    ``proxies``, or one requests adds back while following a redirect. Deciding here, where
    the connection is chosen, covers them all.
    """

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        parts = urlsplit(request.url or "")
        if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
            proxies = {}
            # requests may have added the proxy's own credential (on a redirect): not for the host.
            request.headers.pop("Proxy-Authorization", None)
        return super().send(request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies)


def _drop_redirect_body(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
    """A response hook: requests reads a redirect's whole body before it follows the
    ``Location`` (to free the connection), however large, even when streaming. The body of a
    redirect says nothing we need, so its connection is closed unread instead."""
    if response.is_redirect:
        response.raw.close()
    return response


class Transport:
    """GETs JSON from one API root with retries, a deadline, a shared throttle and redaction.

    Args:
        api_key: the bearer token (checked with :func:`validate_api_key`).
        root: the API root the requests go under (``base_url``), named in errors that ask
            to check it (without user info).
        timeout: ``(connect, read)`` seconds; read is between bytes.
        deadline: seconds one attempt may take in all, headers and body included.
        max_response_bytes: the largest body a 200 may have, in bytes after decompression;
            past it the request fails with :class:`ResponseTooLargeError`.
        retry: the :class:`HTTPRetryPolicy`.
        concurrency: requests in flight at most (the :class:`Throttle` ceiling).
        logger: where retries are reported.
        session: a ``requests.Session`` to use instead of a new one.
    """

    def __init__(
        self,
        api_key: str,
        *,
        root: str,
        timeout: tuple[float, float],
        deadline: float,
        max_response_bytes: int,
        retry: HTTPRetryPolicy,
        concurrency: int,
        logger: Logger,
        session: requests.Session | None = None,
    ) -> None:
        self._api_key = validate_api_key(api_key)
        self._auth = _BearerAuth(self._api_key)
        self.redact = Redactor(self._api_key)
        self._root_shown = display_url(root)
        self.timeout = timeout
        self.deadline = deadline
        self.max_response_bytes = max_response_bytes
        self.retry = retry
        self.log = logger
        self.throttle = Throttle(concurrency)
        self._session = session or requests.Session()
        self._session.max_redirects = MAX_REDIRECTS
        # One pooled connection per concurrent request, so fan-out reuses sockets.
        pooled = _Adapter(pool_maxsize=max(10, concurrency))
        self._session.mount("https://", pooled)
        self._session.mount("http://", pooled)
        self._watchdog = Watchdog()
        self._stop = threading.Event()
        self._count_lock = threading.Lock()
        self.requests_sent = 0
        self._answered = threading.Event()

    @property
    def host_answered(self) -> bool:
        """Whether any HTTP response (any status, a redirect included) has come back in this
        transport's life, or :meth:`mark_host_answered` said so. Until then a request that
        cannot connect at all fails fast with :class:`CloudglueUnreachableError`."""
        return self._answered.is_set()

    def mark_host_answered(self) -> None:
        """Treat the host as one that has answered: connection failures are then retried per
        :class:`HTTPRetryPolicy` from the first (a step retry, whose previous attempt reached it)."""
        self._answered.set()

    def _heard(self, response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        """A response hook: the host answered (every hop of a redirect passes here)."""
        self._answered.set()
        return response

    def close(self) -> None:
        """Stop: waiting requests give up, requests in flight are cut, connections closed."""
        self._stop.set()
        self.throttle.close()
        self._watchdog.close()
        self._session.close()

    def abort_in_flight(self) -> None:
        """Cut the requests in flight now (a sweep that stops early, or an interrupt)."""
        self._watchdog.abort_all()

    def get_json(
        self,
        url: str,
        params: Mapping[str, Any],
        headers: Mapping[str, str],
        cancel: threading.Event | None = None,
        *,
        fast: Callable[[bytes], Any] | None = None,
    ) -> Any:
        """GET ``url`` and decode its JSON body, retrying transient failures per ``retry``.

        Every attempt holds a slot of the :class:`Throttle`: a 429 pauses all requests and
        lowers the concurrency; other failures back off this request alone. ``cancel`` (or
        :meth:`close`) ends the retries at once.

        ``fast`` reads a 200's bytes first (:func:`~cloudglue_dagster.api.decoding.decode_page`):
        what it returns is the result, unless it is None, and then the body is decoded with
        ``json.loads`` as always, its failures retried or refused as below.

        Raises:
            RetriesExhaustedError: transient failures outlasted ``max_retries``.
            CloudglueHTTPError and subclasses: the API refused the request.
            CloudglueRequestError: the request cannot be sent or completed (redirect loop...).
            CloudglueUnreachableError: no connection to a host that has never answered, after
                :data:`UNREACHABLE_RETRIES` quick retries (a subclass of CloudglueRequestError).
            InvalidResponseError: a 200 whose body no JSON parser can represent.
            ResponseTooLargeError: a 200 whose body exceeds ``max_response_bytes``.
            CloudglueError: the transport was closed or the sweep cancelled.
        """
        path = urlsplit(url).path
        attempts = 0
        began = time.monotonic()
        while True:
            self._check_running(cancel)
            attempts += 1
            with self.throttle.slot(cancel):
                try:
                    body = self._attempt(url, params, headers, fast)
                except _Retryable as exc:
                    failure = exc
                else:
                    self.throttle.succeeded()
                    return body
            self._check_running(cancel)
            retries = self.retry.max_retries
            if isinstance(failure, _Unconnected) and not self._answered.is_set():
                retries = min(UNREACHABLE_RETRIES, retries)
                # The next attempt could take a whole connect timeout, after its longest backoff.
                worst_next = self.retry.longest_backoff(attempts) + self.timeout[0]
                if attempts > retries or time.monotonic() - began + worst_next > UNREACHABLE_BUDGET_SECONDS:
                    raise self._unreachable(url, failure, attempts, time.monotonic() - began)
            if attempts > self.retry.max_retries:
                raise RetriesExhaustedError(
                    f"GET {path} failed after {attempts} attempts; last error: {failure.description}."
                    " The Cloudglue API or the network is unavailable; try again later"
                    " or raise max_retries.",
                    attempts=attempts,
                    last_status=failure.status,
                    last_error=failure.description,
                )
            self._back_off(path, attempts, retries, failure, cancel)

    def _unreachable(self, url: str, failure: _Unconnected, attempts: int, spent: float) -> CloudglueUnreachableError:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        root = self._root_shown
        via = ""
        if failure.proxy is not None:
            via = (
                f" The request went through the proxy {failure.proxy} (HTTPS_PROXY, https_proxy or"
                " ALL_PROXY in the environment): check that setting too, or list the host in NO_PROXY."
            )
        message = (
            f"Cannot reach the Cloudglue API at {where}: {failure.description}"
            f" ({attempts} attempt{'s' if attempts != 1 else ''} in {spent:.1f}s; nothing has ever"
            " answered from that host, so this is taken for a wrong setting, not an outage, and not"
            f" retried). Check base_url of CloudglueResource, now {root} (CLOUDGLUE_BASE_URL when"
            " base_url is not set); it should be the API root, e.g. https://api.cloudglue.dev/v1."
            f"{via}"
        )
        return CloudglueUnreachableError(
            self.redact(message), host=host, port=port, cause=failure.cause, attempts=attempts, proxy=failure.proxy
        )

    def _proxy_for(self, url: str) -> str | None:
        """The proxy a request to ``url`` goes through (as requests chooses it from the
        session and the environment, ``NO_PROXY`` included), shown without user info; None
        for none, and for ``http://`` to a loopback host, which :class:`_Adapter` sends direct."""
        parts = urlsplit(url)
        if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
            return None
        try:
            settings = self._session.merge_environment_settings(url, {}, None, None, None)
            proxy = requests.utils.select_proxy(url, settings["proxies"])
        except Exception:  # noqa: BLE001 - only for the message
            return None
        if not proxy:
            return None
        shown = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        return shown.netloc.rpartition("@")[2] or None

    def _back_off(
        self, path: str, attempts: int, retries: int, failure: _Retryable, cancel: threading.Event | None
    ) -> None:
        wait = self.retry.retry_after(failure.retry_after)
        if wait is None:
            wait = self.retry.backoff(attempts)
        if failure.status == 429:
            limit = self.throttle.throttled(wait)
            self.log.warning(
                f"Cloudglue API: rate limited (HTTP 429) on GET {path}; all requests pause"
                f" {wait:.2f}s, concurrency now {limit}; retry {attempts} of {self.retry.max_retries}"
            )
            return
        self.log.warning(
            f"Cloudglue API: {failure.description} on GET {path}; retry {attempts}"
            f" of {retries} in {wait:.2f}s"
            + (" (the host has never answered: few retries)" if retries < self.retry.max_retries else "")
        )
        end = time.monotonic() + wait
        while (left := end - time.monotonic()) > 0:
            self._stop.wait(min(left, 0.1))
            self._check_running(cancel)

    def _check_running(self, cancel: threading.Event | None) -> None:
        if self._stop.is_set() or (cancel is not None and cancel.is_set()):
            raise CloudglueError("The Cloudglue client was stopped (closed, or its sweep cancelled).")

    def _attempt(
        self, url: str, params: Mapping[str, Any], headers: Mapping[str, str], fast: Callable[[bytes], Any] | None
    ) -> Any:
        with self._count_lock:
            self.requests_sent += 1
        path = urlsplit(url).path
        watch = self._watchdog.watch(self.deadline)
        current.watch = watch
        try:
            # The body is read under the same watch as the headers: a trickling body is cut
            # at the deadline, and a connection goes back to its pool only once read whole.
            with self._mapped(url, watch):
                response = self._session.get(
                    url,
                    params=params,
                    headers=headers,
                    auth=self._auth,
                    timeout=self.timeout,
                    stream=True,
                    hooks={"response": [self._heard, _drop_redirect_body]},
                )
            try:
                status = response.status_code
                if status == 200:
                    # Content-Length counts the bytes on the wire: compressed, a body that long
                    # still inflates to about as much at least (deflate grows incompressible
                    # data by a fraction of a percent), so it is refused unread either way.
                    announced = _content_length(response)
                    if announced is not None and announced > self.max_response_bytes:
                        raise ResponseTooLargeError(path=path, limit=self.max_response_bytes, announced=announced)
                with self._mapped(url, watch):
                    body = _read_at_most(response, self.max_response_bytes if status == 200 else ERROR_BODY_BYTES)
            finally:
                response.close()  # an unread rest closes the connection rather than being drained
        finally:
            current.watch = None
            self._watchdog.release(watch)
        if status == 200:
            if body is None:
                raise ResponseTooLargeError(path=path, limit=self.max_response_bytes)
            return self._decode(body, response, fast)
        message = self._server_message(body)
        if status in RETRYABLE_STATUSES:
            detail = f"HTTP {status}" + (f" ({message})" if message else "")
            raise _Retryable(detail, status=status, retry_after=response.headers.get("Retry-After"))
        raise self._http_error(status, message)

    @contextmanager
    def _mapped(self, url: str, watch: Watch) -> Iterator[None]:
        """Sending or reading, its exceptions mapped: transient ones to :class:`_Retryable`, the
        rest to a permanent :class:`CloudglueRequestError` whose text is redacted."""
        try:
            yield
        except (CloudglueError, _Retryable):
            raise
        except requests.TooManyRedirects:
            raise CloudglueRequestError(
                f"GET {display_url(url)} was redirected more than {MAX_REDIRECTS} times (a redirect"
                " loop?). Check base_url: it should be the API root, e.g. https://api.cloudglue.dev/v1."
            ) from None
        except (
            requests.Timeout,
            requests.ConnectionError,
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
        ) as exc:
            if watch.aborted:
                raise CloudglueError("The Cloudglue request was aborted (the sweep stopped).") from None
            if watch.expired:
                raise _Retryable(f"exceeded the request deadline of {self.deadline:g}s") from None
            unconnected = _unconnected(exc, url, self.timeout[0], self._proxy_for(url))
            if unconnected is not None:
                raise unconnected from None
            if isinstance(exc, requests.Timeout):
                raise _Retryable(f"timed out ({type(exc).__name__})") from None
            # ChunkedEncodingError is also how urllib3 reports a body shorter
            # than its Content-Length: a truncated response.
            raise _Retryable(f"connection failed or body truncated ({type(exc).__name__})") from None
        except Exception as exc:  # noqa: BLE001 - nothing but CloudglueError leaves the client
            raise CloudglueRequestError(
                f"GET {display_url(url)} could not be completed: {type(exc).__name__}: {self.redact(str(exc))[:500]}"
            ) from None
        # A socket the watchdog shut reads as the end of a body that announced no length:
        # what was read is a fragment, not the answer.
        if watch.aborted:
            raise CloudglueError("The Cloudglue request was aborted (the sweep stopped).")
        if watch.expired:
            raise _Retryable(f"exceeded the request deadline of {self.deadline:g}s")

    def _decode(self, body: bytes, response: requests.Response, fast: Callable[[bytes], Any] | None = None) -> Any:
        if fast is not None:
            decoded = fast(body)
            if decoded is not None:
                return decoded
        try:
            return json.loads(body)
        except RecursionError:
            raise InvalidResponseError(
                f"the body ({len(body)} bytes) nests deeper than a JSON parser can follow"
            ) from None
        except ValueError as exc:  # UnicodeDecodeError included
            if "digits" in str(exc):  # Python's limit on integer digits: valid JSON we refuse to read
                raise InvalidResponseError(f"the body holds an integer too long to read ({exc})") from None
            raise _Retryable(
                f"malformed JSON body ({len(body)} bytes,"
                f" Content-Type {response.headers.get('Content-Type', 'missing')!r})",
                status=200,
            ) from None

    def _http_error(self, status: int, message: str | None) -> CloudglueHTTPError:
        said = f": {message}" if message else ""
        root = self._root_shown
        if status in (401, 403):
            return AuthenticationError(
                f"Cloudglue API refused the API key (HTTP {status}{said}). Check that CLOUDGLUE_API_KEY"
                f" holds a valid key for {root}.",
                status_code=status,
                server_message=message,
            )
        if status == 400:
            return BadRequestError(
                f"Cloudglue API rejected the request (HTTP 400{said}).", status_code=status, server_message=message
            )
        if status == 404:
            return NotFoundError(
                f"Cloudglue API answered 404 Not Found{said}. Check base_url ({root}):"
                " it should end with the API version, e.g. https://api.cloudglue.dev/v1.",
                status_code=status,
                server_message=message,
            )
        return CloudglueHTTPError(
            f"Cloudglue API answered HTTP {status}{said}.", status_code=status, server_message=message
        )

    def _server_message(self, body: bytes | None) -> str | None:
        """The ``error`` text of a JSON error body, redacted; None for other bodies (HTML
        pages) and for those longer than :data:`ERROR_BODY_BYTES` (``body`` None)."""
        if body is None:
            return None
        try:
            parsed = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None
        if isinstance(parsed, Mapping) and isinstance(parsed.get("error"), str):
            return self.redact(parsed["error"])[:500]
        return None


def _content_length(response: requests.Response) -> int | None:
    """The ``Content-Length`` a response announces, in bytes; None if absent or unreadable
    (urllib3 then reads to the end of the stream, and the cap still applies)."""
    try:
        length = int(response.headers.get("Content-Length", ""))
    except ValueError:
        return None
    return length if length >= 0 else None


def _read_at_most(response: requests.Response, limit: int) -> bytes | None:
    """The body, decoded (``Content-Encoding`` undone), if it holds at most ``limit`` bytes;
    None as soon as it holds more, without reading further."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(_CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
