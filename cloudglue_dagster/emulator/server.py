"""HTTP side of the emulator: ``GET /v1/chat/completions`` and ``/v1/responses`` over loopback.

:class:`Emulator` owns a :class:`~http.server.ThreadingHTTPServer` running in a
daemon thread. Responses are assembled from the data set's cached JSON bytes,
so paging large data sets stays cheap. Settings such as ``boundary``,
``order``, ``timestamp_unit``, ``latency_seconds`` and ``fault_rate`` can be
changed while the server runs. The responses endpoint's own parts are in
:mod:`.responses_api`.
"""

from __future__ import annotations

import hmac
import socket
import sys
import threading
import traceback
from collections.abc import Iterable
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qs

from .data import Dataset, DayTruth
from .faults import ALL_FAULT_KINDS, MALFORMED_BODIES, FaultPlan, html_error_page, json_error
from .replies import BadRequest, Reply, list_body, page_params
from .responses import ResponsesDataset, ResponsesDayTruth
from .responses_api import RESPONSES_ENDPOINT, delete_response, list_responses, responses_route
from .timeutil import BOUNDARY_READINGS, ORDERS, TIMESTAMP_UNITS, window_ms

__all__ = ["ENDPOINT", "RESPONSES_ENDPOINT", "Emulator", "LoggedRequest"]

#: The chat completions list's path (the responses' is :data:`RESPONSES_ENDPOINT`).
ENDPOINT = "/v1/chat/completions"

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class LoggedRequest(NamedTuple):
    """One request as the emulator saw it; ``status`` is 0 for a dropped connection."""

    path: str
    query: dict[str, str]
    status: int


class _Server(ThreadingHTTPServer):
    """Threading server that tracks open connections so ``stop()`` can cut them."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], emulator: Emulator, family: int) -> None:
        self.address_family = family
        self.emulator = emulator
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        try:
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Shut every open client connection (unblocks keep-alive readers)."""
        with self.connections_lock:
            conns = list(self.connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        if self.emulator.verbose:
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "CloudglueEmulator/0.1"
    sys_version = ""
    timeout = 300  # idle keep-alive connections are closed after this
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.emulator.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def do_OPTIONS(self) -> None:  # noqa: N802
        self._dispatch("OPTIONS")

    # ------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        emu = self.server.emulator
        emu._note_request()
        path, _, qs = self.path.partition("?")
        query = {k: v[0] for k, v in parse_qs(qs, keep_blank_values=True).items()}
        window = (query.get("created_after"), query.get("created_before"))
        emu._enter(window)
        try:
            self._answer(emu, method, path, query)
        finally:
            emu._leave(window)

    def _answer(self, emu: Emulator, method: str, path: str, query: dict[str, str]) -> None:
        if method != "GET" and self.headers.get("Content-Length") not in (None, "0"):
            self.close_connection = True  # do not bother draining a request body
        if not emu._wait(emu.latency_seconds):
            return
        try:
            route = responses_route(path) if path != ENDPOINT else None  # (method allowed, id)
            if path != ENDPOINT and route is None:
                self._finish(emu, path, query, Reply(404, json_error("Not found")), method)
                return
            allowed = "GET" if route is None else route[0]
            if method != allowed:
                reply = Reply(405, json_error("Method not allowed"), headers=(("Allow", allowed),))
                self._finish(emu, path, query, reply, method)
                return
            auth_error = emu._check_auth(self.headers.get("Authorization"))
            if auth_error is not None:
                reply = Reply(401, json_error(auth_error), headers=(("WWW-Authenticate", "Bearer"),))
                self._finish(emu, path, query, reply, method)
                return
            if route is not None and route[1] is not None:  # DELETE /v1/responses/{id}: never faulted
                self._finish(emu, path, query, delete_response(emu, route[1]), method)
                return
            kind, variant = emu._faults.next()
            if kind == "slow":
                if not emu._wait(emu.slow_seconds):
                    return
            elif kind is not None and kind not in ("truncated", "malformed"):
                self._fault(emu, path, query, kind, variant)
                return
            reply = emu._answer(query) if route is None else list_responses(emu, query)
            if kind == "truncated":
                emu._log(path, query, reply.status)
                self._send(reply, method, declared_length=len(reply.body), body=reply.body[: len(reply.body) // 2])
                self.close_connection = True
                return
            if kind == "malformed":
                body = MALFORMED_BODIES[variant % len(MALFORMED_BODIES)]
                reply = Reply(200, body)
            self._finish(emu, path, query, reply, method)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # an emulator bug must not look like a "drop" fault
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            self._finish(emu, path, query, Reply(500, json_error(f"emulator error: {type(exc).__name__}")), method)

    def _fault(self, emu: Emulator, path: str, query: dict[str, str], kind: str, variant: int) -> None:
        retry = (("Retry-After", str(emu.retry_after_seconds)),)
        if kind == "drop":
            emu._log(path, query, 0)
            self.close_connection = True
            return
        if kind == "429":
            reply = Reply(429, json_error("Rate limit reached"), headers=retry)
        elif kind == "500":
            reply = Reply(500, json_error("Internal server error"))
        elif kind == "502_html":
            reply = Reply(502, html_error_page(502, "Bad Gateway"), "text/html")
        elif variant % 2:
            reply = Reply(503, json_error("Service unavailable"), headers=retry)
        else:
            reply = Reply(503, html_error_page(503, "Service Temporarily Unavailable"), "text/html", retry)
        self._finish(emu, path, query, reply, "GET")

    def _finish(self, emu: Emulator, path: str, query: dict[str, str], reply: Reply, method: str) -> None:
        emu._log(path, query, reply.status)
        self._send(reply, method)

    def _send(self, reply: Reply, method: str, declared_length: int | None = None, body: bytes | None = None) -> None:
        """Write status line, headers and body in one go (no Nagle stalls)."""
        payload = reply.body if body is None else body
        length = len(reply.body) if declared_length is None else declared_length
        lines = [
            f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, '')}",
            f"Server: {self.server_version}",
            f"Date: {self.date_time_string()}",
            f"Content-Type: {reply.content_type}" + ("; charset=utf-8" if reply.content_type == "text/html" else ""),
            f"Content-Length: {length}",
        ]
        lines.extend(f"{k}: {v}" for k, v in reply.headers)
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head if method == "HEAD" else head + payload)
        if self.server.emulator.verbose:
            self.log_request(reply.status)


class Emulator:
    """A local, faithful emulator of Cloudglue's ``GET /v1/chat/completions`` and ``GET /v1/responses``.

    Use as a context manager (``with Emulator(ds) as emu: ...``) or call
    :meth:`start` / :meth:`stop`. Point clients at :attr:`base_url`.

    Args:
        dataset: records to serve; default: :meth:`Dataset.recent` (14 days
            ending yesterday UTC, 200/day, seed 0).
        responses: responses to serve (``GET /v1/responses``); default: a
            :class:`ResponsesDataset` over the same days, ``per_day`` a quarter of the
            chat data set's (at least 1 unless that is 0), the same seed.
        api_key: the bearer token accepted; anything else gets 401.
        host, port: where to listen (``port=0``: a free port).
        boundary: reading of the date filters, one of
            :data:`~cloudglue_dagster.emulator.BOUNDARY_READINGS`.
        timestamp_unit: how chat completions' ``created_at`` is rendered: ``ms``
            (int epoch ms), ``s`` (float epoch seconds), ``iso`` (ISO-8601 string,
            outside the spec) or ``int-s`` (int epoch seconds).
        responses_timestamp_unit: the same for responses; default ``int-s`` (the SDK
            types it as an integer Unix timestamp).
        order: ``newest`` (created_at, then id, descending) or ``oldest``
            (the exact reverse).
        latency_seconds: sleep before answering every request.
        max_page_size: ``limit`` is silently capped to this (the response's
            ``limit`` tells the applied value).
        fault_rate, fault_seed, fault_kinds: deterministic fault injection,
            see :data:`~cloudglue_dagster.emulator.FAULT_KINDS`.
        retry_after_seconds: ``Retry-After`` of 429 and 503 faults.
        slow_seconds: delay of the ``slow`` fault.
        verbose: log each request to stderr.
    """

    def __init__(
        self,
        dataset: Dataset | None = None,
        *,
        responses: ResponsesDataset | None = None,
        responses_timestamp_unit: str = "int-s",
        api_key: str = "emulator-key",
        host: str = "127.0.0.1",
        port: int = 0,
        boundary: str = "inclusive",
        timestamp_unit: str = "ms",
        order: str = "newest",
        latency_seconds: float = 0.0,
        max_page_size: int = 100,
        fault_rate: float = 0.0,
        fault_seed: int = 0,
        fault_kinds: Iterable[str] = ALL_FAULT_KINDS,
        retry_after_seconds: int = 1,
        slow_seconds: float = 5.0,
        verbose: bool = False,
    ) -> None:
        self.dataset = dataset if dataset is not None else Dataset.recent()
        if responses is None:
            ds = self.dataset
            per_day = ResponsesDataset.per_day_beside(ds.per_day)
            responses = ResponsesDataset(ds.start, ds.end, per_day, ds.seed, extra_fields=ds.extra_fields)
        self.responses = responses
        self.responses_timestamp_unit = responses_timestamp_unit
        self.api_key = api_key
        self.host = host
        self._requested_port = port
        self.boundary = boundary
        self.timestamp_unit = timestamp_unit
        self.order = order
        self.latency_seconds = latency_seconds
        self.max_page_size = max_page_size
        self._faults = FaultPlan(fault_rate, fault_seed, fault_kinds)
        self.retry_after_seconds = retry_after_seconds
        self.slow_seconds = slow_seconds
        self.verbose = verbose
        self._stats_lock = threading.Lock()
        self._requests_served = 0
        self._request_log: list[LoggedRequest] = []
        self._in_flight: dict[tuple[str | None, str | None], int] = {}
        self._peak_in_flight = 0
        self._peak_windows_in_flight = 0
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ settings
    @property
    def boundary(self) -> str:
        """Reading of ``created_after`` / ``created_before`` (see ``BOUNDARY_READINGS``)."""
        return self._boundary

    @boundary.setter
    def boundary(self, value: str) -> None:
        if value not in BOUNDARY_READINGS:
            raise ValueError(f"boundary must be one of {BOUNDARY_READINGS}, not {value!r}")
        self._boundary = value

    @property
    def timestamp_unit(self) -> str:
        """How chat completions' ``created_at`` is rendered: ``ms``, ``s``, ``iso`` or ``int-s``."""
        return self._timestamp_unit

    @timestamp_unit.setter
    def timestamp_unit(self, value: str) -> None:
        if value not in TIMESTAMP_UNITS:
            raise ValueError(f"timestamp_unit must be one of {TIMESTAMP_UNITS}, not {value!r}")
        self._timestamp_unit = value

    @property
    def responses_timestamp_unit(self) -> str:
        """How responses' ``created_at`` is rendered (one of ``TIMESTAMP_UNITS``; default ``int-s``)."""
        return self._responses_timestamp_unit

    @responses_timestamp_unit.setter
    def responses_timestamp_unit(self, value: str) -> None:
        if value not in TIMESTAMP_UNITS:
            raise ValueError(f"responses_timestamp_unit must be one of {TIMESTAMP_UNITS}, not {value!r}")
        self._responses_timestamp_unit = value

    @property
    def order(self) -> str:
        """``newest`` or ``oldest`` first."""
        return self._order

    @order.setter
    def order(self, value: str) -> None:
        if value not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, not {value!r}")
        self._order = value

    @property
    def max_page_size(self) -> int:
        """Largest page served; larger ``limit`` values are capped silently."""
        return self._max_page_size

    @max_page_size.setter
    def max_page_size(self, value: int) -> None:
        if not 1 <= int(value) <= 100:
            raise ValueError("max_page_size must be within 1..100")
        self._max_page_size = int(value)

    @property
    def fault_rate(self) -> float:
        """Probability that a request (past auth) is faulted."""
        return self._faults.rate

    @fault_rate.setter
    def fault_rate(self, value: float) -> None:
        self._faults.rate = value

    @property
    def fault_seed(self) -> int:
        """Seed of the fault decisions."""
        return self._faults.seed

    @fault_seed.setter
    def fault_seed(self, value: int) -> None:
        self._faults.seed = value

    @property
    def fault_kinds(self) -> tuple[str, ...]:
        """Fault kinds drawn from."""
        return self._faults.kinds

    @fault_kinds.setter
    def fault_kinds(self, value: Iterable[str]) -> None:
        self._faults.kinds = value

    # ------------------------------------------------------------ lifecycle
    def start(self) -> Emulator:
        """Start serving in a daemon thread (no-op if already running)."""
        if self._server is not None:
            return self
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._stopping.clear()
        self._server = _Server((self.host, self._requested_port), self, family)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"cloudglue-emulator:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every connection; never hangs on slow requests."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the server is serving."""
        return self._server is not None

    @property
    def port(self) -> int:
        """The TCP port listened on (known once started)."""
        if self._server is None:
            raise RuntimeError("emulator is not running")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """API base URL, e.g. ``http://127.0.0.1:8787/v1``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    # ---------------------------------------------------------------- stats
    @property
    def requests_served(self) -> int:
        """Requests received since start or :meth:`reset_stats` (faulted and 4xx included)."""
        return self._requests_served

    @property
    def request_log(self) -> list[LoggedRequest]:
        """Copy of the log of ``(path, query, status)`` per request."""
        with self._stats_lock:
            return list(self._request_log)

    @property
    def peak_in_flight(self) -> int:
        """The most requests that were being answered at once (since start or :meth:`reset_stats`)."""
        return self._peak_in_flight

    @property
    def peak_windows_in_flight(self) -> int:
        """The most distinct ``(created_after, created_before)`` windows that had a request being
        answered at once: how many sweeps (API steps) were reading concurrently."""
        return self._peak_windows_in_flight

    @property
    def faults_injected(self) -> dict[str, int]:
        """How many faults of each kind were injected."""
        with self._faults._lock:
            return dict(self._faults.injected)

    def reset_stats(self) -> None:
        """Zero counters, clear the log, and restart the fault sequence."""
        with self._stats_lock:
            self._requests_served = 0
            self._request_log = []
            self._peak_in_flight = sum(self._in_flight.values())
            self._peak_windows_in_flight = len(self._in_flight)
        self._faults.reset()

    # ------------------------------------------------------ data delegation
    def add_record(self, raw: dict[str, Any], at_ms: int | None = None) -> None:
        """Inject a record while serving; see :meth:`Dataset.add_record`."""
        self.dataset.add_record(raw, at_ms)

    def add_records(self, raw_records: Iterable[dict[str, Any]]) -> None:
        """Inject records; see :meth:`Dataset.add_records`."""
        self.dataset.add_records(raw_records)

    def ground_truth(self, day: date) -> DayTruth:
        """See :meth:`Dataset.ground_truth`."""
        return self.dataset.ground_truth(day)

    def ground_truth_range(self, start: date, end: date) -> dict[date, DayTruth]:
        """See :meth:`Dataset.ground_truth_range` (``end`` inclusive)."""
        return self.dataset.ground_truth_range(start, end)

    def records(self, day: date) -> list[dict[str, Any]]:
        """Raw records of ``day``, oldest first, ``created_at`` in the current unit."""
        return self.dataset.records(day, self.timestamp_unit)

    def responses_ground_truth(self, day: date) -> ResponsesDayTruth:
        """See :meth:`ResponsesDataset.ground_truth`."""
        return self.responses.ground_truth(day)

    def responses_ground_truth_range(self, start: date, end: date) -> dict[date, ResponsesDayTruth]:
        """See :meth:`ResponsesDataset.ground_truth_range` (``end`` inclusive)."""
        return self.responses.ground_truth_range(start, end)

    # ------------------------------------------------------------ internals
    def _note_request(self) -> None:
        with self._stats_lock:
            self._requests_served += 1

    def _enter(self, window: tuple[str | None, str | None]) -> None:
        with self._stats_lock:
            self._in_flight[window] = self._in_flight.get(window, 0) + 1
            self._peak_in_flight = max(self._peak_in_flight, sum(self._in_flight.values()))
            self._peak_windows_in_flight = max(self._peak_windows_in_flight, len(self._in_flight))

    def _leave(self, window: tuple[str | None, str | None]) -> None:
        with self._stats_lock:
            left = self._in_flight[window] - 1
            if left:
                self._in_flight[window] = left
            else:
                del self._in_flight[window]

    def _log(self, path: str, query: dict[str, str], status: int) -> None:
        with self._stats_lock:
            self._request_log.append(LoggedRequest(path, query, status))

    def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds``; False if the emulator is stopping meanwhile."""
        if seconds > 0:
            return not self._stopping.wait(seconds)
        return not self._stopping.is_set()

    def _check_auth(self, header: str | None) -> str | None:
        """Error message for a bad ``Authorization`` header, else None."""
        if not header:
            return "Missing Authorization header; expected 'Bearer <api key>'"
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return "Malformed Authorization header; expected 'Bearer <api key>'"
        if not hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
            return "Invalid API key"
        return None

    def _answer(self, query: dict[str, str]) -> Reply:
        """One page of chat completions (the responses' is :func:`.responses_api.list_responses`)."""
        try:
            p = page_params(query, self._max_page_size)
        except BadRequest as exc:
            return Reply(400, json_error(str(exc)))
        lo, hi = window_ms(p.after, p.before, self._boundary)
        total, page = self.dataset.select(lo, hi, p.offset, p.limit, self._order, self._timestamp_unit)
        return Reply(200, list_body(total, p.limit, p.offset, page))

    def __repr__(self) -> str:
        where = self.base_url if self.running else "stopped"
        return f"Emulator({where}, {self.dataset!r}, boundary={self.boundary!r}, unit={self.timestamp_unit!r})"
