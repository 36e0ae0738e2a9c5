"""A total deadline per request, on top of requests' connect and read timeouts.

The read timeout applies between bytes, so a server trickling a byte every few seconds could
hold a request for days. :class:`Watchdog` (one daemon thread per client) shuts the socket of
any request older than its deadline; :class:`WatchedAdapter` is a ``requests`` adapter whose
connection pools tell the watchdog which socket a request got. ``abort_all`` cuts every request
in flight (a sweep that stops early, an interrupt). A watch covers its request, headers and
body however they are read, until the caller releases it; it lets go of a connection as soon
as the connection is back in its pool, where another request may take it.
"""

from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time
from typing import Any

import requests.adapters
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

__all__ = ["Watch", "WatchedAdapter", "Watchdog", "current"]


current = threading.local()  # the Watch of the request this thread is sending


class Watch:
    """One request's deadline: knows its connection once urllib3 picked it, and can cut it."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.expired = False
        self.aborted = False
        self._conn: Any = None
        self._sock: Any = None
        self._done = False
        self._lock = threading.Lock()

    def attach(self, conn: Any) -> None:
        """urllib3 picked ``conn`` for this request, or has just connected it. Its socket is
        kept here: http.client forgets it (``conn.sock = None``) as soon as the headers say
        ``Connection: close``, while the body is still to be read from it."""
        with self._lock:
            self._conn = conn
            self._sock = getattr(conn, "sock", None)
            cut = self.expired or self.aborted
        if cut:
            self._shutdown()

    def detach(self, conn: Any) -> None:
        """``conn`` went back to its pool: from now on it may serve another request, which
        this watch must never cut."""
        with self._lock:
            if self._conn is conn:
                self._conn = self._sock = None

    def cut(self, *, abort: bool) -> bool:
        """Mark expired (or aborted) and shut the socket; False if no socket to shut yet."""
        with self._lock:
            if self._done:
                return True
            if abort:
                self.aborted = True
            else:
                self.expired = True
        return self._shutdown()

    def finish(self) -> None:
        with self._lock:
            self._done = True
            self._conn = self._sock = None

    def _shutdown(self) -> bool:
        with self._lock:
            sock = None if self._done else getattr(self._conn, "sock", None) or self._sock
        if sock is None:
            return False
        try:
            # shutdown, not close: it wakes a recv blocked in another thread.
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        return True


class Watchdog:
    """One daemon thread per client that cuts requests past their deadline."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Watch]] = []
        self._active: set[Watch] = set()
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def watch(self, seconds: float) -> Watch:
        watch = Watch(time.monotonic() + seconds)
        with self._cond:
            self._active.add(watch)
            heapq.heappush(self._heap, (watch.deadline, next(self._seq), watch))
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="cloudglue-deadlines", daemon=True)
                self._thread.start()
            self._cond.notify()
        return watch

    def release(self, watch: Watch) -> None:
        watch.finish()
        with self._cond:
            self._active.discard(watch)

    def abort_all(self) -> None:
        with self._cond:
            active = list(self._active)
        for watch in active:
            watch.cut(abort=True)

    def close(self) -> None:
        self.abort_all()
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                while self._heap and self._heap[0][2] not in self._active:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, _, watch = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                if not watch.cut(abort=False):
                    # Still connecting (bounded by the connect timeout): look again shortly.
                    heapq.heappush(self._heap, (time.monotonic() + 0.05, next(self._seq), watch))


class _WatchedConnection:
    """Mixin for urllib3 connections: a new connection shows its socket to the sending
    thread's :class:`Watch` as soon as it is connected.

    The ignores on its ``super()`` calls (and :class:`_WatchedPool`'s): mypy looks for the
    method in ``object``, not in the urllib3 class the mixin is put before."""

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        watch = getattr(current, "watch", None)
        if watch is not None:
            watch.attach(self)


class _WatchedHTTPConnection(_WatchedConnection, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_WatchedConnection, HTTPSConnection):
    pass


class _WatchedPool:
    """Mixin for urllib3 pools: tells the sending thread's :class:`Watch` which connection it got."""

    def _make_request(self, conn: Any, *args: Any, **kwargs: Any) -> Any:
        watch = getattr(current, "watch", None)
        if watch is not None:
            watch.attach(conn)
        return super()._make_request(conn, *args, **kwargs)  # type: ignore[misc]

    def _put_conn(self, conn: Any) -> None:
        # Called by the thread whose request is done with ``conn`` (body read, or closed):
        # its watch lets go before the pool can hand the connection to another request.
        watch = getattr(current, "watch", None)
        if watch is not None:
            watch.detach(conn)
        super()._put_conn(conn)  # type: ignore[misc]


class _WatchedHTTPPool(_WatchedPool, HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(_WatchedPool, HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class WatchedAdapter(requests.adapters.HTTPAdapter):
    """A ``requests`` adapter whose pools report each request's connection to its :class:`Watch`."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}
