"""Base URLs where nothing answers, for real: a loopback port that refuses, a name that does
not resolve, TLS to a server that does not speak it or whose certificate nobody trusts, and
a port whose handshake never completes. No mocks: each is a socket of this machine."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from .reliability import free_port

NO_SUCH_HOST = "no-such-host.invalid"
"""``.invalid`` never resolves (RFC 2606)."""


def resolver_refuses_quickly(host: str = NO_SUCH_HOST) -> None:
    """Skip the test unless this machine's resolver says at once that ``host`` does not exist."""
    began = time.monotonic()
    try:
        socket.getaddrinfo(host, 443)
    except socket.gaierror:
        if time.monotonic() - began > 5:
            pytest.skip(f"the resolver took {time.monotonic() - began:.1f}s to refuse {host}")
        return
    pytest.skip(f"this machine's resolver resolves {host}")


@contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port bound by nobody: a connection to it is refused at once."""
    yield free_port()


class _Quiet(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.send_error(500)

    def log_message(self, *args: object) -> None:
        pass


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a TLS hello read as HTTP, a handshake refused: expected here


@contextmanager
def _serving(server: ThreadingHTTPServer) -> Iterator[int]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def plain_http_port() -> Iterator[int]:
    """A loopback server speaking plain HTTP: ``https://`` to it fails the TLS handshake."""
    with _serving(_QuietServer(("127.0.0.1", 0), _Quiet)) as port:
        yield port


@contextmanager
def self_signed_tls_port(tmp_path: Path) -> Iterator[int]:
    """A loopback HTTPS server whose certificate is self-signed (for 127.0.0.1 and
    localhost): the client's verification refuses it."""
    cryptography = pytest.importorskip("cryptography")
    del cryptography
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "self-signed.pem", tmp_path / "self-signed.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server = _QuietServer(("127.0.0.1", 0), _Quiet)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    with _serving(server) as port:
        yield port


@contextmanager
def blackholed_port() -> Iterator[int]:
    """A loopback port whose TCP handshake never completes: a listening socket that never
    accepts, its backlog filled, so the kernel drops every further SYN (what a firewall that
    drops packets, or a routable address with nothing behind it, looks like). Skips the test
    if this kernel completes the handshake anyway."""
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        for _ in range(8):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(address)
            fillers.append(filler)
        time.sleep(0.1)
        probe = socket.socket()
        probe.settimeout(1.0)
        try:
            probe.connect(address)
        except TimeoutError:
            pass
        else:
            pytest.skip("this kernel completes a handshake on a full backlog: no blackhole on loopback")
        finally:
            probe.close()
        yield int(address[1])
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
