"""A base URL where nothing answers fails within a minute, naming host:port and the setting.

A connection failure used to be transient everywhere: ``max_retries`` (5) retries with
backoff, then three step retries 56, 105 and 210 s apart, over six minutes before a misspelt
``base_url`` failed, and no message named the host. Now, while nothing has ever answered from
the host (any HTTP status is an answer), a refused connection, an unknown name, a TLS failure
or a connect timeout gets two quick retries and then a permanent ``CloudglueUnreachableError``
naming ``host:port``, what failed and ``base_url`` / ``CLOUDGLUE_BASE_URL``: Dagster does not
retry the step. A host that has answered keeps today's retries, within one client and across a
step retry. Every dead host here is a real socket of this machine (``support/dead_hosts.py``).
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from support.dead_hosts import (
    NO_SUCH_HOST,
    blackholed_port,
    plain_http_port,
    refusing_port,
    resolver_refuses_quickly,
    self_signed_tls_port,
)
from support.pipeline import TEST_KEY
from support.reliability import EMPTY_PAGE, cli_env, materialize_cmd

from cloudglue_dagster import (
    CloudglueClient,
    CloudglueDuckDBIOManager,
    CloudglueRequestError,
    CloudglueResource,
    CloudglueUnreachableError,
    HTTPRetryPolicy,
    RetriesExhaustedError,
    build_cloudglue_assets,
    is_transient,
)

QUICK = HTTPRetryPolicy(max_retries=5, initial_backoff=0.01, max_backoff=0.01)


@contextmanager
def dead_url(kind: str, tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """``(base_url, "host:port", what the message says failed)`` of a base URL of ``kind``."""
    if kind == "refused":
        with refusing_port() as port:
            yield f"http://127.0.0.1:{port}/v1", f"127.0.0.1:{port}", "connection refused"
    elif kind == "no such host":
        resolver_refuses_quickly()
        yield f"https://{NO_SUCH_HOST}/v1", f"{NO_SUCH_HOST}:443", "does not resolve"
    elif kind == "https to plain http":
        with plain_http_port() as port:
            yield f"https://127.0.0.1:{port}/v1", f"127.0.0.1:{port}", "TLS handshake failed"
    elif kind == "self-signed certificate":
        with self_signed_tls_port(tmp_path) as port:
            yield f"https://127.0.0.1:{port}/v1", f"127.0.0.1:{port}", "certificate verify failed"
    elif kind == "blackholed":
        with blackholed_port() as port:
            yield f"https://127.0.0.1:{port}/v1", f"127.0.0.1:{port}", "no connection within connect_timeout_seconds"
    else:
        raise AssertionError(kind)


KINDS = ["refused", "no such host", "https to plain http", "self-signed certificate", "blackholed"]


# -- 1. the client: a never-answered host fails in seconds, permanently --------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_host_that_never_answered_fails_after_two_quick_retries_naming_host_port_and_base_url(
    kind: str, tmp_path: Path
) -> None:
    """Three attempts (two retries, however high max_retries), then a permanent
    CloudglueUnreachableError (a CloudglueRequestError) that says what failed, where, and
    which setting to check, and never repeats the key."""
    with dead_url(kind, tmp_path) as (base_url, where, what):
        with CloudglueClient(TEST_KEY, base_url, retry=QUICK, connect_timeout=1) as client:
            with pytest.raises(CloudglueUnreachableError) as info:
                client.list_chat_completions()
            sent = client.requests_sent
            assert not client.host_answered
    error = info.value
    assert isinstance(error, CloudglueRequestError) and not is_transient(error)
    assert error.attempts == sent == 3
    said = str(error)
    assert f"Cannot reach the Cloudglue API at {where}: " in said and what in said, said
    assert "base_url" in said and "CLOUDGLUE_BASE_URL" in said and base_url in said
    assert f"{error.host}:{error.port}" == where
    assert TEST_KEY not in said and TEST_KEY not in repr(error.args)


def test_with_the_default_connect_timeout_a_blackholed_host_costs_two_attempts_not_six() -> None:
    """connect_timeout_seconds is 10 by default: no retry starts that could end past
    UNREACHABLE_BUDGET_SECONDS (25) after the first attempt, so two attempts, about 20 s."""
    with blackholed_port() as port:
        with CloudglueClient(TEST_KEY, f"https://127.0.0.1:{port}/v1") as client:
            with pytest.raises(CloudglueUnreachableError) as info:
                client.list_chat_completions()
    assert info.value.attempts == 2 and info.value.cause == "connect timeout"
    assert "connect_timeout_seconds = 10s" in str(info.value)


def test_max_retries_zero_tries_a_never_answered_host_once() -> None:
    with refusing_port() as port:
        with CloudglueClient(TEST_KEY, f"http://127.0.0.1:{port}/v1", max_retries=0) as client:
            with pytest.raises(CloudglueUnreachableError) as info:
                client.list_chat_completions()
    assert info.value.attempts == 1 and info.value.cause == "connection refused"


class _Logged:
    """A Logger whose warnings run ``then`` (the client warns before each retry's wait)."""

    def __init__(self, then: Callable[[], None]) -> None:
        self.then, self.warnings = then, []

    def debug(self, msg: str, *args: Any, **kwargs: Any) -> None:
        pass

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        pass

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.warnings.append(msg)
        self.then()


def _answering(sock: socket.socket, reply: Callable[[int], tuple[int, bytes]]) -> ThreadingHTTPServer:
    """An HTTP server on the already bound ``sock`` (listening once this is called):
    ``reply(n)`` for its n-th request (1-based), and ``Connection: close`` every time."""
    count = [0]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            count[0] += 1
            status, body = reply(count[0])
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(sock.getsockname(), Handler, bind_and_activate=False)
    server.daemon_threads = True
    server.socket.close()
    server.socket = sock
    server.server_activate()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


PAGE = json.dumps(EMPTY_PAGE).encode()


def test_a_brief_refusal_before_the_host_is_up_does_not_fail_the_request() -> None:
    """The port refuses the first attempt (bound, not listening) and starts listening when
    the client announces its retry: the second attempt gets the page."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    servers: list[ThreadingHTTPServer] = []
    log = _Logged(lambda: servers or servers.append(_answering(sock, lambda _n: (200, PAGE))))
    try:
        with CloudglueClient(TEST_KEY, f"http://127.0.0.1:{sock.getsockname()[1]}/v1", retry=QUICK, logger=log) as c:
            page = c.list_chat_completions()
            assert c.host_answered and c.requests_sent == 2
    finally:
        for server in servers:
            server.shutdown()
        sock.close()
    assert page.total == 0
    assert len(log.warnings) == 1 and "connection refused" in log.warnings[0] and "retry 1 of 2" in log.warnings[0]


@pytest.mark.parametrize("first_answer", [200, 503])
def test_a_host_that_answered_once_and_then_refuses_is_retried_as_a_transient_outage(first_answer: int) -> None:
    """Any status is an answer, a 503 as much as a page: once one came, a refused connection
    is an outage. It gets every one of max_retries and ends in RetriesExhaustedError
    (transient: the step is retried), not in CloudglueUnreachableError. (200: a first request
    got its page, the server went away before the second; 503: the server went away after
    answering the first attempt.)"""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = _answering(sock, lambda _n: (first_answer, PAGE if first_answer == 200 else b'{"error": "down"}'))
    gone: list[bool] = []

    def go_away() -> None:
        if not gone:
            gone.append(True)
            server.shutdown()
            server.server_close()

    log = _Logged(go_away)
    policy = HTTPRetryPolicy(max_retries=4, initial_backoff=0.01, max_backoff=0.01)
    with CloudglueClient(TEST_KEY, f"http://127.0.0.1:{sock.getsockname()[1]}/v1", retry=policy, logger=log) as c:
        if first_answer == 200:
            c.list_chat_completions()
            go_away()
        with pytest.raises(RetriesExhaustedError) as info:
            c.list_chat_completions()
        assert c.host_answered
    assert is_transient(info.value) and info.value.attempts == 5
    assert "connection refused" in info.value.last_error
    assert all("of 4 in" in w and "never answered" not in w for w in log.warnings), log.warnings


# -- 2. a Dagster run: the step fails at once, without step retries ----------------------------------


@pytest.mark.processes
@pytest.mark.parametrize("kind", ["refused", "no such host", "https to plain http", "blackholed"])
def test_a_dagster_run_against_a_dead_base_url_fails_within_a_minute_naming_the_host_and_the_setting(
    kind: str, tmp_path: Path
) -> None:
    """The real ``dagster asset materialize`` of the bundled definitions (their default step
    retry policy, the resource's defaults: max_retries 5, connect_timeout_seconds 10) with
    CLOUDGLUE_BASE_URL pointing where nothing answers. It used to take over six minutes; it
    ends in well under one, with no step retry, and its output names host:port, the failure,
    base_url and CLOUDGLUE_BASE_URL, and never the key."""
    home, database = tmp_path / "home", tmp_path / "w.duckdb"
    with dead_url(kind, tmp_path) as (base_url, where, what):
        env = cli_env(key=TEST_KEY, base_url=base_url, start="2026-05-01", database=database, home=home)
        began = time.monotonic()
        done = subprocess.run(
            materialize_cmd("--partition", "2026-05-03"), env=env, capture_output=True, text=True, timeout=300
        )
        took = time.monotonic() - began
    said = done.stdout + done.stderr
    assert done.returncode != 0, said[-3000:]
    assert took < 60, took
    assert "CloudglueUnreachableError" in said and f"Cannot reach the Cloudglue API at {where}: " in said
    assert what in said and "base_url" in said and "CLOUDGLUE_BASE_URL" in said
    assert TEST_KEY not in said
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        (run,) = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.FAILURE
        kinds = [r.dagster_event.event_type_value for r in instance.all_logs(run.run_id) if r.dagster_event]
        assert "STEP_UP_FOR_RETRY" not in kinds and "STEP_FAILURE" in kinds
    finally:
        instance.dispose()


def test_a_step_retry_of_a_host_that_answered_keeps_retrying_its_refused_connections(tmp_path: Path) -> None:
    """The host answered the step's first request (a 503) and then stopped listening. Each
    step retry makes a new client that has heard nothing yet; it counts the host as answered
    (only a transient error gets a step retry), so the refusals are an outage: every step
    retry is used, and the step fails with RetriesExhaustedError, not CloudglueUnreachableError
    (which, permanent, would have ended the run at the first step retry)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    servers: list[ThreadingHTTPServer] = []

    def go_away() -> None:
        servers[0].shutdown()
        servers[0].server_close()

    def once(n: int) -> tuple[int, bytes]:
        assert n == 1
        threading.Thread(target=go_away, daemon=True).start()  # the listener closes; this answer still goes out
        return 503, b'{"error": "down"}'

    servers.append(_answering(sock, once))
    built = build_cloudglue_assets(
        start_date="2026-05-01", retry_policy=dg.RetryPolicy(max_retries=2, delay=0.1), responses=False
    )
    resources = {
        "cloudglue": CloudglueResource(api_key=TEST_KEY, base_url=f"http://127.0.0.1:{port}/v1", max_retries=1),
        "io_manager": CloudglueDuckDBIOManager(database=str(tmp_path / "w.duckdb"), schema="cloudglue"),
    }
    result = dg.materialize(
        built.assets,
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
        partition_key="2026-05-03",
        raise_on_error=False,
    )
    assert not result.success
    kinds = [e.event_type_value for e in result.all_events]
    assert kinds.count("STEP_UP_FOR_RETRY") == 2
    error = result.get_step_failure_events()[0].step_failure_data.error.to_string()
    assert "RetriesExhaustedError" in error and "connection refused" in error, error
    assert "CloudglueUnreachableError" not in error


def test_a_proxy_that_refuses_is_named_without_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """https:// goes through HTTPS_PROXY; when nothing listens there, the error names the
    API's host:port, the proxy's host:port and the variables to check, not the proxy's
    password."""
    with refusing_port() as port:
        monkeypatch.setenv("HTTPS_PROXY", f"http://user:s3cret-proxy-pass@127.0.0.1:{port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        with CloudglueClient(TEST_KEY, "https://api.cloudglue.dev/v1", retry=QUICK) as client:
            with pytest.raises(CloudglueUnreachableError) as info:
                client.list_chat_completions()
    said = str(info.value)
    assert "Cannot reach the Cloudglue API at api.cloudglue.dev:443: the proxy" in said
    assert f"through the proxy 127.0.0.1:{port}" in said and "connection refused" in said
    assert "HTTPS_PROXY" in said and "NO_PROXY" in said
    assert info.value.proxy == f"127.0.0.1:{port}" and info.value.attempts == 3
    assert "s3cret" not in said and "user:" not in said and TEST_KEY not in said
