"""What a hostile server or network sends cannot exhaust memory or read the key.

A response body is counted after decompression and capped (``max_response_bytes``, 128 MiB by
default): a gzip bomb (4 MB inflating to 4 GiB) fails the request at once with a typed,
permanent error, and the memory it costs is measured on a child process (``os.wait4``: the
kernel's peak resident set), for the client alone and for a real ``dagster asset
materialize`` run, whose stored rows stay as they were. Error pages and redirects are read
only a little, or not at all. And the key never reaches a proxy in clear: an ``http://``
loopback API bypasses every proxy setting, while ``https://`` keeps the environment's proxy
through a CONNECT tunnel.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import requests
from support.hostile_http import (
    GIB,
    MIB,
    Finished,
    RecordingProxy,
    Seen,
    gzip_bomb,
    in_pieces,
    measured_run,
    proxy_environment,
    streaming_server,
    without_proxy_settings,
)
from support.pipeline import TABLES, TEST_KEY, stored_tables
from support.reliability import EMPTY_PAGE, cli_env, materialize_cmd, read_table

from cloudglue_dagster import (
    CloudglueClient,
    CloudglueUnreachableError,
    HTTPRetryPolicy,
    InvalidResponseError,
    ResponseTooLargeError,
    RetriesExhaustedError,
    is_transient,
)
from cloudglue_dagster.api.client import DEFAULT_MAX_RESPONSE_BYTES
from cloudglue_dagster.emulator import Dataset, Emulator

START = dt.date(2026, 5, 1)
FIRST, LAST = "2026-05-03", "2026-05-05"
FAST = HTTPRetryPolicy(max_retries=1, initial_backoff=0.01, max_backoff=0.01)
EMPTY = json.dumps(EMPTY_PAGE).encode()


@pytest.fixture
def emu() -> Iterator[Emulator]:
    days = [START + dt.timedelta(days=i) for i in range(8)]
    dataset = Dataset(START, days[-1], seed=11, counts={d: 30 + 7 * i for i, d in enumerate(days)})
    with Emulator(dataset, api_key=TEST_KEY) as server:
        yield server


def bomb_reply(status: int = 200, **headers: str) -> tuple[int, dict[str, str], Iterator[bytes]]:
    """A body of 4 MB that inflates to 4 GiB, honestly labelled gzip, its length announced."""
    body = gzip_bomb()
    announced = {"Content-Type": "application/json", "Content-Encoding": "gzip", "Content-Length": str(len(body))}
    return status, {**announced, **headers}, in_pieces(body)


def page_reply(_: Seen) -> tuple[int, dict[str, str], list[bytes]]:
    return 200, {"Content-Type": "application/json", "Content-Length": str(len(EMPTY))}, [EMPTY]


# -- the client in a process of its own, to measure its memory ----------------------------------

_CHILD = """
import json, sys, time
from cloudglue_dagster import CloudglueClient, HTTPRetryPolicy, is_transient
key, base_url = sys.argv[1], sys.argv[2]
started = time.monotonic()
outcome = {}
try:
    retry = HTTPRetryPolicy(max_retries=1, initial_backoff=0.01, max_backoff=0.01)
    with CloudglueClient(key, base_url, retry=retry) as client:
        outcome["total"] = client.list_chat_completions(limit=100).total
except Exception as exc:
    outcome.update(error=type(exc).__name__, message=str(exc), transient=is_transient(exc))
outcome["seconds"] = time.monotonic() - started
print(json.dumps(outcome))
"""


def client_in_a_child(base_url: str, tmp_path: Path, name: str) -> tuple[dict[str, object], Finished]:
    """One ``list_chat_completions`` against ``base_url`` in a fresh Python process: what it
    returned or raised, and the process's peak memory."""
    finished = measured_run(
        [sys.executable, "-c", _CHILD, TEST_KEY, base_url],
        without_proxy_settings(os.environ),
        tmp_path / f"{name}.txt",
        timeout=120,
    )
    assert finished.returncode == 0, finished.output[-3000:]
    return json.loads(finished.output.strip().splitlines()[-1]), finished


@pytest.mark.processes
def test_a_gzip_bomb_fails_at_once_with_a_typed_error_and_memory_stays_bounded(tmp_path: Path) -> None:
    """4 MB of gzip inflating to 4 GiB used to be read whole (over 4 GiB of RSS, then a
    MemoryError). Now reading stops at 128 MiB of decompressed bytes: the request fails once,
    not retried, with an error naming the limit, the path, that it counted after
    decompression, and the fix; the process holds the cap, and not much more, beyond what
    one reading a small page holds."""
    with streaming_server(page_reply) as (root, _):
        _, honest = client_in_a_child(f"{root}/v1", tmp_path, "honest")
    with streaming_server(lambda _: bomb_reply()) as (root, seen):
        outcome, finished = client_in_a_child(f"{root}/v1", tmp_path, "bomb")
    assert outcome["error"] == "ResponseTooLargeError" and outcome["transient"] is False, outcome
    message = str(outcome["message"])
    for part in ("134,217,728 bytes (128 MiB)", "GET /v1/chat/completions", "after decompression", "page_size"):
        assert part in message, (part, message)
    assert "raise max_response_bytes" in message and TEST_KEY not in finished.output
    assert len(seen) == 1  # permanent: no retry fetches the bomb again
    grown = finished.peak_rss - honest.peak_rss
    assert grown < DEFAULT_MAX_RESPONSE_BYTES + 64 * MIB, (
        f"{finished.peak_rss / MIB:.0f} MiB against {honest.peak_rss / MIB:.0f}"
    )
    assert finished.seconds < 60, finished.seconds


def test_the_typed_error_is_an_invalid_response_and_exported() -> None:
    error = ResponseTooLargeError(path="/v1/chat/completions", limit=DEFAULT_MAX_RESPONSE_BYTES)
    assert isinstance(error, InvalidResponseError) and not is_transient(error)
    assert (error.path, error.limit, error.announced) == ("/v1/chat/completions", 128 * MIB, None)


def test_a_content_length_over_the_cap_fails_before_the_body_is_read() -> None:
    """A 200 announcing 200 MB is refused on its headers: the client does not wait for a body
    the server is in no hurry to send (reading it would first cost the 30 s read timeout)."""
    release = threading.Event()

    def stalls(_: Seen) -> tuple[int, dict[str, str], Iterator[bytes]]:
        def body() -> Iterator[bytes]:
            yield b'{"object": "list", "data": ['
            release.wait(60)

        return 200, {"Content-Type": "application/json", "Content-Length": str(200_000_000)}, body()

    try:
        with streaming_server(stalls) as (root, seen):
            started = time.monotonic()
            with CloudglueClient(TEST_KEY, f"{root}/v1", read_timeout=30, retry=FAST) as client:
                with pytest.raises(ResponseTooLargeError) as info:
                    client.list_chat_completions(limit=100)
            took = time.monotonic() - started
            release.set()
    finally:
        release.set()
    assert info.value.announced == 200_000_000 and info.value.limit == DEFAULT_MAX_RESPONSE_BYTES
    assert "200,000,000 bytes" in str(info.value) and "Content-Length" in str(info.value)
    assert len(seen) == 1 and took < 10, took


@pytest.mark.processes
@pytest.mark.parametrize("status", [502, 302], ids=["error-page", "redirect"])
def test_a_bomb_in_an_error_page_or_a_redirect_does_not_grow_memory(tmp_path: Path, status: int) -> None:
    """An error body is read up to 64 KiB for its message (an HTML 502 is retried as before),
    and a redirect's body not at all: requests used to read either whole, bomb included. The
    process's peak memory stays that of one answering a small page."""
    with streaming_server(page_reply) as (honest_root, _):
        honest, honest_run = client_in_a_child(f"{honest_root}/v1", tmp_path, "honest")
        bomb = lambda request: bomb_reply(  # noqa: E731
            status, **({"Location": honest_root + request.target} if status == 302 else {"Content-Type": "text/html"})
        )
        with streaming_server(bomb) as (root, seen):
            outcome, finished = client_in_a_child(f"{root}/v1", tmp_path, "bomb")
    assert honest == {"total": 0, "seconds": honest["seconds"]}
    if status == 502:
        assert outcome["error"] == "RetriesExhaustedError" and "HTTP 502" in str(outcome["message"]), outcome
        assert len(seen) == 2  # retried once, as any 502
    else:
        assert outcome.get("total") == 0 and len(seen) == 1, outcome  # followed to the honest page
    grown = finished.peak_rss - honest_run.peak_rss
    assert grown < 64 * MIB, f"{finished.peak_rss / MIB:.0f} MiB against {honest_run.peak_rss / MIB:.0f} MiB"


def test_connections_are_reused_after_a_page_and_dropped_after_a_body_cut_at_the_cap() -> None:
    """Streaming keeps the pool honest: a page read whole leaves its connection for the next
    request; a body abandoned at the cap (4 MB on the wire, 1 KB of it read) closes its
    connection instead of draining it."""
    answers = iter(["page", "page", "bomb", "page"])

    def reply(request: Seen) -> tuple[int, dict[str, str], Iterator[bytes] | list[bytes]]:
        return bomb_reply() if next(answers) == "bomb" else page_reply(request)

    with streaming_server(reply) as (root, seen):
        with CloudglueClient(TEST_KEY, f"{root}/v1", max_response_bytes=MIB, retry=FAST) as client:
            assert client.list_chat_completions().total == 0
            assert client.list_chat_completions().total == 0
            with pytest.raises(ResponseTooLargeError, match="1,048,576 bytes"):
                client.list_chat_completions()
            assert client.list_chat_completions().total == 0
    ports = [request.port for request in seen]
    assert ports[0] == ports[1] == ports[2] != ports[3], ports


@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "until-close"])
def test_a_trickling_body_sent_with_connection_close_is_cut_at_the_deadline_too(announced: bool) -> None:
    """``Connection: close`` made http.client drop its reference to the socket as soon as the
    headers arrived, so the watchdog found nothing to cut and the body trickled on (14 s here,
    forever in general). The watch now keeps the socket. A body that ends with the connection
    (no Content-Length) looks complete once cut: it is still reported as the deadline it was."""

    def trickle(_: Seen) -> tuple[int, dict[str, str], Iterator[bytes]]:
        def body() -> Iterator[bytes]:
            for byte in EMPTY:
                yield bytes([byte])
                time.sleep(0.2)

        length = {"Content-Length": str(len(EMPTY))} if announced else {}
        return 200, {"Content-Type": "application/json", "Connection": "close", **length}, body()

    started = time.monotonic()
    with streaming_server(trickle) as (root, seen):
        with CloudglueClient(TEST_KEY, f"{root}/v1", request_deadline=1.0, read_timeout=5, retry=FAST) as client:
            with pytest.raises(RetriesExhaustedError) as info:
                client.list_chat_completions()
    assert "deadline of 1s" in info.value.last_error and info.value.attempts == 2 == len(seen)
    assert time.monotonic() - started < 10  # the body alone takes 14 s an attempt


# -- a real Dagster run ------------------------------------------------------------------------


@pytest.mark.processes
def test_a_gzip_bomb_fails_a_cli_run_at_once_keeps_every_row_and_bounds_its_memory(
    emu: Emulator, tmp_path: Path
) -> None:
    """A real ``dagster asset materialize`` of three days loads them from the emulator; the
    same command against a server answering the bomb fails at once (one request: no client
    retry, no step retry) with the error's message, every row of the three tables stays,
    and the run's process holds no more than an honest run's memory plus the cap."""
    home, database = tmp_path / "home", tmp_path / "w.duckdb"
    command = materialize_cmd("--partition-range", f"{FIRST}...{LAST}")
    honest_env = without_proxy_settings(
        cli_env(key=TEST_KEY, base_url=emu.base_url, start=START.isoformat(), database=database, home=home)
    )
    honest = measured_run(command, honest_env, tmp_path / "honest.txt", timeout=300)
    assert honest.returncode == 0, honest.output[-3000:]
    before = stored_tables(database)
    assert all(len(before[name]) > 0 for name in TABLES)

    with streaming_server(lambda _: bomb_reply()) as (root, seen):
        bomb_env = {**honest_env, "CLOUDGLUE_BASE_URL": f"{root}/v1"}
        bombed = measured_run(command, bomb_env, tmp_path / "bomb.txt", timeout=300)
    assert bombed.returncode != 0, bombed.output[-3000:]
    assert "ResponseTooLargeError" in bombed.output and "measured after" in bombed.output, bombed.output[-3000:]
    assert "max_response_bytes = 134,217,728 bytes" in bombed.output
    assert "STEP_UP_FOR_RETRY" not in bombed.output and len(seen) == 1
    assert TEST_KEY not in bombed.output
    after = stored_tables(database)
    for name in TABLES:
        pd.testing.assert_frame_equal(before[name], after[name], obj=name)
    assert bombed.peak_rss < 1 * GIB, f"peak RSS {bombed.peak_rss / MIB:.0f} MiB"
    assert bombed.peak_rss < honest.peak_rss + DEFAULT_MAX_RESPONSE_BYTES + 256 * MIB, (
        f"{bombed.peak_rss / MIB:.0f} MiB against {honest.peak_rss / MIB:.0f} MiB for the honest run"
    )


# -- proxies -----------------------------------------------------------------------------------


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingProxy]:
    """A recording proxy, set in this process's environment by every variable requests reads
    for ``http://`` (and no NO_PROXY exempting loopback)."""
    with RecordingProxy() as server:
        for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy"):
            monkeypatch.delenv(name, raising=False)
        for name, value in proxy_environment(server.url).items():
            monkeypatch.setenv(name, value)
        yield server


@pytest.mark.parametrize("where", ["environment", "session"])
def test_an_http_loopback_api_bypasses_every_proxy_setting(emu: Emulator, proxy: RecordingProxy, where: str) -> None:
    """Over http:// the key travels in clear, so a proxy would read it. With HTTP_PROXY,
    http_proxy and ALL_PROXY set (and, for a caller's own session, its ``proxies`` too), the
    client reaches the emulator directly, and the proxy receives nothing at all."""
    session = requests.Session()
    if where == "session":
        session.proxies = {"http": proxy.url, "all": proxy.url}
    with CloudglueClient(TEST_KEY, emu.base_url, retry=FAST, session=session) as client:
        page = client.list_chat_completions(created_after=FIRST, created_before=LAST)
        assert page.total > 0 and len(list(client.iter_chat_completions(FIRST, LAST, page_size=20))) == page.total
    assert proxy.seen == []


def test_an_https_api_still_goes_through_the_proxy_by_a_connect_that_carries_no_key(
    proxy: RecordingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """https:// keeps the environment's proxy, as requests does: the proxy only opens a
    tunnel (CONNECT host:443, no Authorization), and the key would travel inside TLS. This
    proxy refuses the tunnel, so the request fails as a host that never answered does
    (CloudglueUnreachableError), naming the proxy and the variables that chose it."""
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    with CloudglueClient(TEST_KEY, "https://api.cloudglue.invalid/v1", max_retries=0) as client:
        with pytest.raises(CloudglueUnreachableError) as info:
            client.list_chat_completions()
    said = str(info.value)
    assert "api.cloudglue.invalid:443" in said and "403 Forbidden" in said
    assert f"through the proxy {proxy.url.split('://')[-1]}" in said and "HTTPS_PROXY" in said and "NO_PROXY" in said
    assert TEST_KEY not in said
    assert [(s.method, s.target) for s in proxy.seen] == [("CONNECT", "api.cloudglue.invalid:443")]
    assert "authorization" not in {k.lower() for k in proxy.seen[0].headers}
    assert TEST_KEY not in json.dumps(proxy.seen[0].headers)


@pytest.mark.processes
def test_a_cli_run_against_an_http_loopback_api_sends_nothing_to_the_proxy(emu: Emulator, tmp_path: Path) -> None:
    """The real ``dagster asset materialize``, with HTTP_PROXY, http_proxy and ALL_PROXY set
    in its environment: the run loads the days from the emulator directly, and the proxy
    receives no request, so never the Authorization header."""
    home, database = tmp_path / "home", tmp_path / "w.duckdb"
    with RecordingProxy() as proxy:
        env = {
            **without_proxy_settings(
                cli_env(key=TEST_KEY, base_url=emu.base_url, start=START.isoformat(), database=database, home=home)
            ),
            **proxy_environment(proxy.url),
        }
        run = measured_run(
            materialize_cmd("--partition-range", f"{FIRST}...{LAST}"), env, tmp_path / "run.txt", timeout=300
        )
    assert run.returncode == 0, run.output[-3000:]
    expected = sum(emu.ground_truth(dt.date.fromisoformat(day)).count for day in (FIRST, "2026-05-04", LAST))
    assert len(read_table(database, "chat_completions")) == expected > 0
    assert proxy.seen == [], [(s.method, s.target, sorted(s.headers)) for s in proxy.seen]
