"""Loopback attacks on the transport: a gzip bomb, bodies streamed from an iterator, a forward
proxy that records what reaches it, and the peak memory of a command.

``gzip_bomb()`` is a real gzip body (one member, valid CRC) of about 4 MB that inflates to
4 GiB of zeros; it is assembled from one deflate segment repeated, so building it holds 4 MB,
never 4 GiB. ``streaming_server`` answers each request with a status, headers and an iterable
of byte chunks, so a body can be longer than memory, stall, or announce more than it sends.
``RecordingProxy`` is an HTTP forward proxy: it records every request it receives (request
line and headers), forwards plain GETs to their origin and refuses CONNECT tunnels.
``measured_run`` runs a command and returns, with its output, its peak resident memory as
the kernel counted it (``os.wait4``).
"""

from __future__ import annotations

import functools
import http.client
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

GIB = 1 << 30
MIB = 1 << 20


@functools.lru_cache(maxsize=2)
def gzip_bomb(inflated: int = 4 * GIB) -> bytes:
    """A gzip body inflating to ``inflated`` zero bytes (a multiple of 1 MiB), about 1/1000 of it.

    Each MiB of zeros is deflated once and ended with a full flush, which makes the segment
    independent of what precedes it: the same bytes then stand for every MiB of the stream.
    """
    assert inflated % MIB == 0
    zero = bytes(MIB)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    segment = deflate.compress(zero) + deflate.flush(zlib.Z_FULL_FLUSH)
    end = deflate.flush(zlib.Z_FINISH)
    crc = 0
    for _ in range(inflated // MIB):
        crc = zlib.crc32(zero, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"  # gzip, deflate, no name, no mtime
    trailer = struct.pack("<II", crc, inflated & 0xFFFFFFFF)
    return header + segment * (inflated // MIB) + end + trailer


@dataclass
class Seen:
    """A request as a loopback server or proxy received it."""

    method: str
    target: str
    """The request target: a path, an absolute URI (a proxy's GET) or host:port (CONNECT)."""
    headers: dict[str, str]
    port: int
    """The client's source port: two requests with one port came over one connection."""


Streamed = tuple[int, Mapping[str, str], Iterable[bytes]]


@contextmanager
def streaming_server(reply: Callable[[Seen], Streamed]) -> Iterator[tuple[str, list[Seen]]]:
    """A loopback server answering every GET with ``reply(request)``: a status, headers (sent as
    given: no Content-Length is added) and the body's chunks, written one by one. A client that
    hangs up ends the answer quietly. Yields the root URL (``http://127.0.0.1:port``) and the
    requests seen; on exit, iterators still writing are abandoned with the server."""
    seen: list[Seen] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            request = Seen("GET", self.path, dict(self.headers), self.client_address[1])
            seen.append(request)
            status, headers, chunks = reply(request)
            try:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                for chunk in chunks:
                    self.wfile.write(chunk)
                self.wfile.flush()
            except OSError:  # the client stopped reading and closed: what it should do
                self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def in_pieces(body: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


class RecordingProxy:
    """An HTTP forward proxy on loopback that records every request it receives.

    Plain GETs (absolute URI, as clients send them to a proxy) are forwarded to their origin
    and answered, so a client that uses the proxy works and leaks without noticing; CONNECT
    (an ``https://`` tunnel) is recorded and refused with 403. ``url`` is what goes in
    ``HTTP_PROXY``; ``seen`` holds each request it received.
    """

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> RecordingProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_CONNECT(self) -> None:  # noqa: N802
                proxy.seen.append(Seen("CONNECT", self.path, dict(self.headers), self.client_address[1]))
                self._answer(403, {}, b"")

            def do_GET(self) -> None:  # noqa: N802
                proxy.seen.append(Seen("GET", self.path, dict(self.headers), self.client_address[1]))
                target = urlsplit(self.path)
                if target.scheme != "http" or not target.hostname:
                    self._answer(400, {}, b"not a proxy request")
                    return
                # Straight to the origin with http.client: urllib would read HTTP_PROXY itself.
                origin = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "proxy-connection")}
                    origin.request("GET", target.path + (f"?{target.query}" if target.query else ""), headers=headers)
                    answer = origin.getresponse()
                    body = answer.read()
                    kept = {k: v for k, v in answer.getheaders() if k.lower() in ("content-type", "content-encoding")}
                    self._answer(answer.status, kept, body)
                finally:
                    origin.close()

            def _answer(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def proxy_environment(proxy_url: str) -> dict[str, str]:
    """Every variable through which requests would pick a proxy for ``http://``, all set to
    ``proxy_url`` (and no ``NO_PROXY`` exempting loopback hosts)."""
    return {"HTTP_PROXY": proxy_url, "http_proxy": proxy_url, "ALL_PROXY": proxy_url, "all_proxy": proxy_url}


def without_proxy_settings(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without any proxy variable, so a test sets exactly the ones it means."""
    names = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    return {k: v for k, v in env.items() if k.lower() not in names}


@dataclass
class Finished:
    returncode: int
    output: str
    peak_rss: int
    """The command's peak resident set, in bytes (``ru_maxrss`` of ``os.wait4``)."""
    seconds: float


ADDRESS_SPACE_LIMIT = 4 * GIB
"""The command's address space cap (RLIMIT_AS): twice what a Dagster CLI run needs (it
completes under 2 GiB), so it never decides a passing test, but a regression that reads a bomb
whole meets a MemoryError instead of taking 8 GiB of a shared machine."""

# Forks the command, caps its address space, waits for it and writes its exit code and
# ru_maxrss (KiB) to the file argv[2]. A small process forks it because a child starts with
# its parent's resident pages and the kernel keeps that peak across exec: forked by pytest
# itself, the command's peak would be at least pytest's.
_LAUNCHER = """
import json, os, resource, sys
limit, report, command = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
pid = os.fork()
if pid == 0:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.execvp(command[0], command)
_, status, usage = os.wait4(pid, 0)
with open(report, "w") as f:
    json.dump({"returncode": os.waitstatus_to_exitcode(status), "maxrss_kib": usage.ru_maxrss}, f)
"""


def measured_run(command: Sequence[str], env: Mapping[str, str], output: Path, *, timeout: float) -> Finished:
    """Run ``command`` to its end (killed after ``timeout`` seconds), its output (stdout and
    stderr) in the file ``output``, and report its exit status and peak memory."""
    report = output.with_suffix(".rusage.json")
    started = time.monotonic()
    with output.open("w") as sink:
        launcher = subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER, str(ADDRESS_SPACE_LIMIT), str(report), *command],
            env=dict(env),
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a timeout kills the command too
        )
        try:
            launcher.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
            raise AssertionError(f"{command} ran for more than {timeout} s:\n{output.read_text()[-3000:]}") from None
    measured = json.loads(report.read_text())
    return Finished(
        measured["returncode"], output.read_text(), measured["maxrss_kib"] * 1024, time.monotonic() - started
    )
