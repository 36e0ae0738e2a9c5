"""The client against the emulator, over real HTTP on loopback."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cloudglue_dagster import (
    AuthenticationError,
    BadRequestError,
    CloudglueClient,
    CloudglueConfigError,
    CloudglueResource,
    HTTPRetryPolicy,
    InvalidResponseError,
    NotFoundError,
    RetriesExhaustedError,
)
from cloudglue_dagster.api.client import LOOKAHEAD_PAGES, SweepStats
from cloudglue_dagster.api.parsing import parse_page
from cloudglue_dagster.api.throttle import Throttle
from cloudglue_dagster.emulator import FAULT_KINDS, Dataset, Emulator

KEY = "sk-test-7f3a9c-SECRET"
D0 = dt.date(2026, 3, 1)
FAST = HTTPRetryPolicy(max_retries=8, initial_backoff=0.01, max_backoff=0.05)


def client_for(emu: Emulator, **kwargs: object) -> CloudglueClient:
    kwargs.setdefault("retry", FAST)
    return CloudglueClient(KEY, emu.base_url, **kwargs)  # type: ignore[arg-type]


def truth_ids(emu: Emulator, start: dt.date, end: dt.date) -> set[str]:
    ids: set[str] = set()
    for truth in emu.ground_truth_range(start, end).values():
        ids |= truth.ids
    return ids


@pytest.fixture
def emu() -> Iterator[Emulator]:
    dataset = Dataset(D0, D0 + dt.timedelta(days=2), per_day=120, seed=3)
    with Emulator(dataset, api_key=KEY, retry_after_seconds=0, slow_seconds=1.0) as server:
        yield server


# -- pagination ---------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 1, 100, 101, 2345])
@pytest.mark.parametrize("concurrency", [1, 8])
def test_pagination_returns_every_record_once(count: int, concurrency: int) -> None:
    dataset = Dataset(D0, D0, counts={D0: count}, seed=count)
    with Emulator(dataset, api_key=KEY, boundary="inclusive") as emu:
        with client_for(emu, max_concurrent_requests=concurrency) as client:
            got = [c.id for c in client.iter_chat_completions(created_after=D0, created_before=D0)]
        assert len(got) == len(set(got)) == count
        assert set(got) == truth_ids(emu, D0, D0)
        pages = max(1, -(-count // 100))
        assert emu.requests_served == pages


def test_the_pages_ahead_are_fetched_while_the_consumer_works_and_no_more() -> None:
    # A range run's consumer stops to build and write each day: the pool must go on fetching
    # meanwhile (up to LOOKAHEAD_PAGES asked for ahead of it), and not past that bound.
    pages = LOOKAHEAD_PAGES + 40
    dataset = Dataset(D0, D0, counts={D0: pages * 10}, seed=5)
    with Emulator(dataset, api_key=KEY) as server, client_for(server, max_concurrent_requests=4) as client:
        records = client.iter_chat_completions(created_after=D0, created_before=D0, page_size=10)
        for _ in range(11):  # the first page, then one record of the concurrent read
            next(records)
        # The consumer busy with a day: the lookahead arrives meanwhile, and nothing past it.
        deadline = time.monotonic() + 10
        while server.requests_served < 1 + LOOKAHEAD_PAGES and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        asked = server.requests_served
        seen = 11 + sum(1 for _ in records)
    assert seen == pages * 10
    # the first page, the lookahead (the one handed on included), nothing more
    assert asked == 1 + LOOKAHEAD_PAGES, asked


def test_server_capping_limit_is_followed(emu: Emulator) -> None:
    emu.max_page_size = 30
    with client_for(emu, max_concurrent_requests=4) as client:
        got = [c.id for c in client.iter_chat_completions(page_size=100)]
    expected = truth_ids(emu, D0, D0 + dt.timedelta(days=2))
    assert len(got) == len(expected) and set(got) == expected
    assert all(r.query["limit"] == "100" for r in emu.request_log)
    assert emu.requests_served == -(-len(expected) // 30)


@pytest.mark.parametrize("order", ["newest", "oldest"])
def test_records_arriving_during_the_sweep_are_not_lost(emu: Emulator, order: str) -> None:
    """A completion inserted mid-sweep shifts offsets; nothing is missed or duplicated."""
    emu.order = order
    before = truth_ids(emu, D0, D0 + dt.timedelta(days=2))
    with client_for(emu, max_concurrent_requests=1) as client:
        it = client.iter_chat_completions(page_size=50)
        got = [next(it).id for _ in range(60)]
        base = next(iter(emu.records(D0 + dt.timedelta(days=1))))
        for i in range(3):  # placed mid-window, so they shift the pages still to come
            emu.add_record(
                dict(base, id=f"late-{i}"),
                at_ms=int(dt.datetime(2026, 3, 2, 12, tzinfo=dt.timezone.utc).timestamp() * 1000) + i,
            )
        got += [c.id for c in it]
    assert len(got) == len(set(got))
    assert before <= set(got)


def test_window_shift_under_fan_out_triggers_a_reread(emu: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    """With concurrent pages, a total that changes mid-sweep is detected and the window re-read."""
    before = truth_ids(emu, D0, D0 + dt.timedelta(days=2))
    base = next(iter(emu.records(D0)))
    with client_for(emu, max_concurrent_requests=4) as client, caplog.at_level(logging.WARNING):
        it = client.iter_chat_completions(page_size=20)
        got = [next(it).id]  # first page fetched and total known
        emu.add_record(
            dict(base, id="late-x"), at_ms=int(dt.datetime(2026, 3, 2, 6, tzinfo=dt.timezone.utc).timestamp() * 1000)
        )
        got += [c.id for c in it]
    assert len(got) == len(set(got))
    assert before | {"late-x"} == set(got)
    assert "window changed while it was paged" in caplog.text


# -- retries ------------------------------------------------------------------


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_fault_kind_is_retried(emu: Emulator, kind: str) -> None:
    emu.fault_kinds = (kind,)
    emu.fault_rate = 0.4
    emu.fault_seed = 11
    with client_for(emu, read_timeout=0.5, max_concurrent_requests=4) as client:
        got = [c.id for c in client.iter_chat_completions(page_size=25)]
    assert emu.faults_injected.get(kind, 0) >= 1
    expected = truth_ids(emu, D0, D0 + dt.timedelta(days=2))
    assert len(got) == len(expected) and set(got) == expected


def test_twenty_percent_faults_of_every_kind_still_exact(emu: Emulator) -> None:
    emu.fault_rate = 0.2
    emu.fault_seed = 5
    with client_for(emu, read_timeout=0.5, max_concurrent_requests=8) as client:
        got = [c.id for c in client.iter_chat_completions(page_size=4)]
    expected = truth_ids(emu, D0, D0 + dt.timedelta(days=2))
    assert len(got) == len(expected) and set(got) == expected
    injected = emu.faults_injected
    assert sum(injected.values()) >= 0.1 * emu.requests_served
    assert sum(1 for n in injected.values() if n) >= 6, injected


def test_gives_up_after_max_retries(emu: Emulator) -> None:
    emu.fault_kinds = ("500",)
    emu.fault_rate = 1.0
    with client_for(emu, retry=HTTPRetryPolicy(max_retries=2, initial_backoff=0.01)) as client:
        with pytest.raises(RetriesExhaustedError) as info:
            client.list_chat_completions()
    assert info.value.attempts == 3 and info.value.last_status == 500
    assert "3 attempts" in str(info.value) and "HTTP 500" in str(info.value)
    assert emu.requests_served == 3


def test_dropped_connections_exhaust_with_no_status(emu: Emulator) -> None:
    emu.fault_kinds = ("drop",)
    emu.fault_rate = 1.0
    with client_for(emu, retry=HTTPRetryPolicy(max_retries=1, initial_backoff=0.01)) as client:
        with pytest.raises(RetriesExhaustedError) as info:
            client.list_chat_completions()
    assert info.value.last_status is None and info.value.attempts == 2


def test_retry_after_is_honoured(emu: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    emu.fault_kinds = ("429",)
    emu.fault_rate = 1.0
    emu.retry_after_seconds = 1
    policy = HTTPRetryPolicy(max_retries=1, initial_backoff=0.01, max_backoff=0.01)
    with client_for(emu, retry=policy) as client, caplog.at_level(logging.WARNING):
        with pytest.raises(RetriesExhaustedError) as info:
            client.list_chat_completions()
    assert info.value.last_status == 429
    assert "pause 1.00s" in caplog.text  # the server's Retry-After, not the 0.01 s backoff


def test_rate_limit_slows_the_whole_client_and_recovers(emu: Emulator) -> None:
    emu.fault_kinds = ("429",)
    emu.fault_rate = 0.25
    emu.fault_seed = 4
    with client_for(emu, max_concurrent_requests=8) as client:
        stats = SweepStats()
        got = [c.id for c in client.iter_chat_completions(page_size=5, stats=stats)]
        throttle = client.throttle
    expected = truth_ids(emu, D0, D0 + dt.timedelta(days=2))
    assert len(got) == len(expected) and set(got) == expected
    assert throttle.rate_limited == emu.faults_injected["429"] > 0
    assert throttle.lowest_limit < 8
    assert stats.pages == -(-len(expected) // 5) and stats.duplicates == 0


def test_throttle_pauses_everyone_halves_once_and_recovers() -> None:
    throttle = Throttle(8, recover_after=3)
    assert throttle.throttled(0.3) == 4
    assert throttle.throttled(0.3) == 4  # answers already in flight do not halve it again
    started = time.monotonic()
    with throttle.slot():
        waited = time.monotonic() - started
    assert waited >= 0.25  # nobody starts a request during the pause
    for _ in range(3):
        throttle.succeeded()
    assert throttle.limit == 5
    for _ in range(30):
        throttle.succeeded()
    assert throttle.limit == 8  # never above the configured maximum


def test_throttle_limits_requests_in_flight() -> None:
    throttle = Throttle(2)
    peak, current, lock = 0, 0, threading.Lock()

    def work() -> None:
        nonlocal peak, current
        with throttle.slot():
            with lock:
                current += 1
                peak = max(peak, current)
            time.sleep(0.02)
            with lock:
                current -= 1

    threads = [threading.Thread(target=work) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 2


def test_retry_after_parsing() -> None:
    policy = HTTPRetryPolicy(initial_backoff=0.5, max_retry_after=60)
    now = dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone.utc)
    assert policy.retry_after("3", now) == 3.0
    assert policy.retry_after("0", now) == 0.5  # floor
    assert policy.retry_after("86400", now) == 60  # cap
    assert policy.retry_after("Thu, 01 Jan 2026 12:00:10 GMT", now) == 10.0
    assert policy.retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0.5  # in the past: floor
    assert policy.retry_after("soon", now) is None
    assert policy.retry_after(None, now) is None


def test_backoff_grows_with_jitter() -> None:
    policy = HTTPRetryPolicy(initial_backoff=1.0, max_backoff=8.0)
    for retry, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        waits = {policy.backoff(retry) for _ in range(50)}
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert len(waits) > 1


# -- errors that are never retried --------------------------------------------


def test_wrong_key_fails_fast_and_says_what_to_check(emu: Emulator) -> None:
    with CloudglueClient("sk-wrong-key-0000", emu.base_url, retry=FAST) as client:
        with pytest.raises(AuthenticationError) as info:
            client.list_chat_completions()
    assert info.value.status_code == 401
    assert "CLOUDGLUE_API_KEY" in str(info.value)
    assert "sk-wrong-key-0000" not in str(info.value)
    assert emu.requests_served == 1


def test_bad_request_carries_server_text_and_is_not_retried(emu: Emulator) -> None:
    with client_for(emu) as client:
        with pytest.raises(BadRequestError) as info:
            # bypass the client's own check of limit
            client._transport.get_json(client.base_url + "/chat/completions", {"limit": 500}, {})
    assert info.value.status_code == 400
    assert info.value.server_message and "limit" in info.value.server_message
    assert emu.requests_served == 1


def test_not_found_points_at_base_url(emu: Emulator) -> None:
    with CloudglueClient(KEY, emu.base_url.removesuffix("/v1") + "/v2", retry=FAST) as client:
        with pytest.raises(NotFoundError) as info:
            client.list_chat_completions()
    assert "base_url" in str(info.value)
    assert emu.requests_served == 1


def test_key_appears_in_no_error_log_or_repr(emu: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    emu.fault_rate = 0.5
    emu.fault_seed = 2
    texts = []
    with caplog.at_level(logging.DEBUG):
        client = client_for(emu, read_timeout=0.5)
        texts.append(repr(client))
        texts.append(str([c.id for c in client.iter_chat_completions(page_size=40)]))
        emu.fault_kinds = ("500",)
        emu.fault_rate = 1.0
        try:
            CloudglueClient(
                KEY, emu.base_url, retry=HTTPRetryPolicy(max_retries=1, initial_backoff=0.01)
            ).list_chat_completions()
        except RetriesExhaustedError as exc:
            texts.append(str(exc) + repr(exc))
        emu.api_key = "another-key"
        try:
            client.list_chat_completions()
        except AuthenticationError as exc:
            texts.append(str(exc) + repr(exc))
    texts.append(caplog.text)
    assert len(texts) == 5
    assert KEY not in "\n".join(texts)
    assert "retry" in caplog.text  # the log did capture the retries


# -- validation before anything is sent ---------------------------------------


@pytest.mark.parametrize("limit", [0, 101, -1, 1.5, "10", True])
def test_limit_outside_range_rejected_before_sending(emu: Emulator, limit: object) -> None:
    with client_for(emu) as client:
        with pytest.raises(CloudglueConfigError, match="limit"):
            client.list_chat_completions(limit=limit)  # type: ignore[arg-type]
    assert emu.requests_served == 0


@pytest.mark.parametrize("value", ["2026/03/01", "March 1", 20260301, dt.datetime(2026, 3, 1)])
def test_bad_dates_rejected_before_sending(emu: Emulator, value: object) -> None:
    with client_for(emu) as client:
        with pytest.raises(CloudglueConfigError, match="created_after"):
            client.list_chat_completions(created_after=value)  # type: ignore[arg-type]
    assert emu.requests_served == 0


def test_dates_accept_date_and_string(emu: Emulator) -> None:
    with client_for(emu) as client:
        a = client.list_chat_completions(created_after=D0, created_before="2026-03-01")
        b = client.list_chat_completions(created_after="2026-03-01", created_before=D0)
    assert [c.id for c in a.data] == [c.id for c in b.data]
    assert a.total == emu.ground_truth(D0).count
    assert emu.request_log[0].query["created_after"] == "2026-03-01"


@pytest.mark.parametrize(
    "url",
    [
        "api.cloudglue.dev/v1",
        "ftp://api.cloudglue.dev/v1",
        "http://api.cloudglue.dev/v1",
        "https://",
        "https://h:99999/v1",
        "https://api.cloudglue.dev/v1?x=1",
    ],
)
def test_bad_base_urls(url: str) -> None:
    with pytest.raises(CloudglueConfigError, match="base_url"):
        CloudglueClient(KEY, url)


@pytest.mark.parametrize("value", [0, 1023, 1.5e6, "128MiB", True])
def test_a_response_cap_below_a_page_or_not_a_byte_count_is_refused(value: object) -> None:
    with pytest.raises(CloudglueConfigError, match="max_response_bytes must be an integer >= 1024"):
        CloudglueClient(KEY, "https://api.cloudglue.dev/v1", max_response_bytes=value)  # type: ignore[arg-type]
    assert CloudglueClient(KEY, max_response_bytes=1024).max_response_bytes == 1024
    assert CloudglueClient(KEY).max_response_bytes == 128 * 1024 * 1024


def test_http_allowed_for_loopback_only() -> None:
    for url in ["http://127.0.0.1:1/v1", "http://localhost:8787/v1", "http://[::1]:8787/v1"]:
        CloudglueClient(KEY, url)
    with pytest.raises(CloudglueConfigError, match="unencrypted"):
        CloudglueClient(KEY, "http://10.0.0.5/v1")


def test_empty_key_is_a_config_error() -> None:
    with pytest.raises(CloudglueConfigError, match="CLOUDGLUE_API_KEY"):
        CloudglueClient("  ", "https://api.cloudglue.dev/v1")


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("sk-test\nSECRET-tail", "control character"),
        ("sk-test\tSECRET-tail", "control character"),
        ("sk-test-SECRET-\x7f", "control character"),
        ("sk-test-SECRÉT-tail", "non-ASCII character"),
    ],
)
def test_a_key_that_cannot_travel_in_a_header_is_refused_without_repeating_it(key: str, kind: str) -> None:
    for build in (lambda: CloudglueClient(key), lambda: CloudglueResource(api_key=key)):
        with pytest.raises(Exception) as info:
            build()
        assert kind in str(info.value)
        assert "SECRET" not in str(info.value) and "SECRÉT" not in str(info.value)
    assert CloudglueClient(" sk-test-key-with-a-trailing-newline\n").base_url  # stripped, as read from a file


# -- what goes on the wire ------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802
        type(self).seen.append(dict(self.headers))
        body = b'{"object":"list","data":[],"total":0,"limit":1,"offset":0}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_user_agent_and_bearer_token() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with CloudglueClient(KEY, f"http://127.0.0.1:{server.server_address[1]}/v1") as client:
            client.list_chat_completions(limit=1)
    finally:
        server.shutdown()
        server.server_close()
    headers = _Recorder.seen[-1]
    assert headers["User-Agent"].startswith("cloudglue-dagster/")
    assert headers["Authorization"] == f"Bearer {KEY}"


# -- decoding the pages ---------------------------------------------------------------


class _Fixed(BaseHTTPRequestHandler):
    body = b""
    served = 0

    def do_GET(self) -> None:  # noqa: N802
        type(self).served += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


def _page_from(body: bytes):
    _Fixed.body, _Fixed.served = body, 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Fixed)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with CloudglueClient(KEY, f"http://127.0.0.1:{server.server_address[1]}/v1", retry=FAST) as client:
            return client.list_chat_completions(limit=10)
    finally:
        server.shutdown()
        server.server_close()


def _record(**changes: object) -> dict:
    record = {
        "id": "c-1",
        "created_at": 1772323200000,
        "object": "chat.completion",
        "model": "m",
        "usage": {"prompt_tokens": 3, "total_tokens": 5},
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Zoë ✓\n"}}],
        "payload": {"messages": [{"role": "user", "content": "q"}], "collections": ["c"], "temperature": 0.5},
    }
    record.update(changes)
    return record


@pytest.mark.parametrize(
    "body",
    [
        json.dumps(
            {"object": "list", "data": [_record()], "total": 1, "limit": 10, "offset": 0},
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode(),
        json.dumps({"object": "list", "data": [_record()], "total": 1, "limit": 10, "offset": 0}, indent=2).encode(),
        json.dumps(
            {"object": "list", "data": [_record(usage={"prompt_tokens": 3.0})], "total": 1, "limit": 10, "offset": 0}
        ).encode(),  # the fast path declines: the careful one reads it
    ],
    ids=["compact", "indented", "integral-float-tokens"],
)
def test_the_client_reads_a_page_as_the_careful_parser_does(body: bytes) -> None:
    page = _page_from(body)
    expected = parse_page(json.loads(body))
    assert page == expected and [c.raw for c in page.data] == [c.raw for c in expected.data]
    assert page.data[0].usage.prompt_tokens == 3 and _Fixed.served == 1


def test_a_wrong_type_is_refused_at_once_naming_the_field_and_a_malformed_body_is_retried() -> None:
    body = json.dumps({"object": "list", "data": [_record(model=7)], "total": 1, "limit": 10, "offset": 0}).encode()
    with pytest.raises(InvalidResponseError) as info:
        _page_from(body)
    assert (info.value.field, info.value.completion_id, _Fixed.served) == ("model", "c-1", 1)
    with pytest.raises(RetriesExhaustedError):
        _page_from(body[:-5])
    assert _Fixed.served == FAST.max_retries + 1


def test_a_netrc_entry_for_the_api_host_does_not_replace_the_key(
    emu: Emulator, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # requests lets ~/.netrc override an Authorization header; the key must win.
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password another-credential\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with client_for(emu) as client:
        page = client.list_chat_completions(limit=1)
    assert page.total > 0
    assert {r.status for r in emu.request_log} == {200}
