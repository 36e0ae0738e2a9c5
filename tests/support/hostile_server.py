"""A loopback server that answers like the emulator behind it, except in one chosen way.

``HostileProxy(emu)`` forwards every request (path, query, ``Authorization``) to ``emu`` over
real HTTP and returns its answer, rewritten by the current ``lie`` (settable at any time; None
answers honestly). The lies are the self-contradictory or hostile answers a broken server, a
caching proxy or an attacker could give; see :data:`LIES`. Lies that rewrite a 200's records
combine: ``lie`` may be a tuple of them, applied in order (``("lone_surrogate",
"key_in_records")`` corrupts a record whose id then carries the key).
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus, urlencode, urlsplit

from cloudglue_dagster.emulator import Emulator

ABSURD_TOTAL = 10**9
"""The ``total`` the ``absurd_total`` lies claim: a window no client could page (10 million pages)."""

LIES = {
    "empty_first_page": "offset 0 answers data: [] with the true total",
    "same_page": "every offset answers the page at offset 0 (echoing the offset asked)",
    "more_than_total": "every page claims a total smaller than the records it holds",
    "huge_tokens": "the first record of every page reports usage.total_tokens = 2**70",
    "huge_total": "every page claims total = 2**70",
    "long_integer": "a 200 whose total is an integer of 5,000 digits (more than Python reads from text)",
    "deep_json": "a 200 whose body is 100,000 nested arrays",
    "lone_surrogate": "the first choice of the records in ``targets`` says '\\ud800' (valid JSON, not valid text)",
    "redirect_loop": "every request is redirected (302) to itself",
    "trickle": "the body is sent one byte every 0.2 s",
    "echo_key": "401 whose error text holds the key raw, repr-escaped, URL-encoded and base64",
    "empty_account": "every page is empty with total 0 (a key of another, empty account; an outage answering empty lists)",
    "unauthorized": "401, as to a revoked key",
    "key_in_records": (
        "every record carries the request's key: raw in its id and model, raw, base64 and URL-encoded"
        " in each prompt message, JSON- and repr-escaped in each answer"
    ),
    "swelling_total": (
        "every page claims total = the true total + 2 x limit x the proxy's request count (it grows"
        " faster than a page-by-page read advances), and a page past the true records is made of"
        " fresh records (copies of the window's first records under new ids)"
    ),
    "absurd_total": f"every page claims total = {ABSURD_TOTAL:,}, and a page past the true records is made of fresh records",
    "absurd_total_later": "as absurd_total, except the page at offset 0, which is honest (the total jumps mid-sweep)",
}


class HostileProxy:
    """Start with ``with HostileProxy(emu) as proxy:``; point clients at ``proxy.base_url``."""

    def __init__(self, emu: Emulator, lie: str | tuple[str, ...] | None = None) -> None:
        self.emu = emu
        self.lie = lie
        self.requests = 0
        self.seen_offsets: list[int] = []
        self.targets: set[str] = set()
        """Completion ids the ``lone_surrogate`` lie corrupts."""
        self.moves: dict[str, int] = {}
        """Completion id -> the ``created_at`` (epoch ms) to answer for it, lie or not."""
        self.on_request: Callable[[int], None] | None = None
        """Called with each request's number (from 1) before it is answered: a test's trigger."""
        self.down_until = 0.0
        """``time.monotonic()`` until which every request gets a 503 (an outage)."""
        self.reorder: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None
        """Rewrites a window's whole listing (each record's JSON, in the emulator's order) before it
        is paged: a listing out of order, told consistently on every page."""
        self._listings: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.refuse_from_offset: int | None = None
        """Requests at this offset or later get a 401 (a key revoked in the middle of a sweep)."""
        self.answered_during_outage = 0
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> HostileProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                proxy.requests += 1
                if proxy.on_request is not None:
                    proxy.on_request(proxy.requests)
                if time.monotonic() < proxy.down_until:
                    proxy.answered_during_outage += 1
                    status, headers, body, trickle = 503, {}, b'{"error": "service unavailable"}', False
                else:
                    status, headers, body, trickle = proxy._answer(self.path, self.headers.get("Authorization"))
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    if trickle:
                        for i in range(len(body)):
                            self.wfile.write(body[i : i + 1])
                            self.wfile.flush()
                            time.sleep(0.2)
                    else:
                        self.wfile.write(body)
                except OSError:
                    self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    # -- answers ----------------------------------------------------------------------------

    def _forward(self, path: str, auth: str | None) -> tuple[int, Any]:
        request = urllib.request.Request(
            self.emu.base_url.removesuffix("/v1") + path, headers={"Authorization": auth or ""}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def _answer(self, path: str, auth: str | None) -> tuple[int, dict[str, str], bytes, bool]:
        lie = self.lie
        query = {k: v[0] for k, v in parse_qs(urlsplit(path).query).items()}
        offset = int(query.get("offset", "0"))
        self.seen_offsets.append(offset)
        if lie == "redirect_loop":
            return 302, {"Location": path}, b"", False
        if lie == "deep_json":
            return 200, {}, b"[" * 100_000 + b"]" * 100_000, False
        if lie == "long_integer":
            return (
                200,
                {},
                b'{"object": "list", "data": [], "limit": 100, "offset": 0, "total": ' + b"9" * 5000 + b"}",
                False,
            )
        if lie == "echo_key":
            key = (auth or "").removeprefix("Bearer ")
            forms = [
                key,
                repr(key),
                quote(key, safe=""),
                quote_plus(key),
                base64.b64encode(key.encode()).decode(),
                base64.b64encode(f"x{key}".encode()).decode(),
                base64.urlsafe_b64encode(f"ab{key}".encode()).decode(),
            ]
            return 401, {}, json.dumps({"error": "invalid key: " + " | ".join(forms)}).encode(), False
        if lie == "unauthorized" or (self.refuse_from_offset is not None and offset >= self.refuse_from_offset):
            return 401, {}, b'{"error": "invalid api key"}', False
        if lie == "same_page":
            path = path.replace(f"offset={offset}", "offset=0")
        if self.reorder is not None:
            status, body = self._reordered(query, auth)
        else:
            status, body = self._forward(path, auth)
        if status == 200:
            if lie in ("swelling_total", "absurd_total", "absurd_total_later") and not body["data"] and offset > 0:
                body["data"] = self._fresh_records(path, auth, query, offset)
            for record in body["data"]:
                record["created_at"] = self.moves.get(record["id"], record["created_at"])
            for each in (lie,) if isinstance(lie, str) else lie or ():
                body = self._rewrite(each, body, offset, int(query.get("limit", "100")), auth)
        # json.dumps escapes a lone surrogate as \ud800: valid JSON that decodes to invalid text.
        return status, {}, json.dumps(body).encode(), lie == "trickle"

    def _reordered(self, query: dict[str, str], auth: str | None) -> tuple[int, Any]:
        """The page asked for, cut from the window's whole listing after :attr:`reorder`."""
        window = (query.get("created_after", ""), query.get("created_before", ""))
        if window not in self._listings:
            records: list[dict[str, Any]] = []
            while True:
                params = "&".join(f"{k}={v}" for k, v in zip(("created_after", "created_before"), window) if v)
                status, body = self._forward(f"/v1/chat/completions?limit=100&offset={len(records)}&{params}", auth)
                if status != 200:
                    return status, body
                records.extend(body["data"])
                if not body["data"] or len(records) >= body["total"]:
                    break
            assert self.reorder is not None
            self._listings[window] = self.reorder(records)
        listing = self._listings[window]
        offset, limit = int(query.get("offset", "0")), int(query.get("limit", "100"))
        page = [dict(r) for r in listing[offset : offset + limit]]
        return 200, {"object": "list", "data": page, "total": len(listing), "limit": limit, "offset": offset}

    def _fresh_records(self, path: str, auth: str | None, query: dict[str, str], offset: int) -> list[dict[str, Any]]:
        """A full page of records no earlier page of a read held: the window's first records,
        repeated, under ids made from ``offset`` (the same offset gives the same ids)."""
        first = urlsplit(path)._replace(query=urlencode({**query, "offset": "0"})).geturl()
        _status, body = self._forward(first, auth)
        models = body["data"]
        limit = int(query.get("limit", "100"))
        return [
            dict(models[i % len(models)], id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"fresh/{offset}/{i}")))
            for i in range(limit if models else 0)
        ]

    def _rewrite(self, lie: str, body: dict[str, Any], offset: int, limit: int, auth: str | None) -> dict[str, Any]:
        if lie == "empty_account":
            body.update(data=[], total=0)
        elif lie == "empty_first_page" and offset == 0:
            body["data"] = []
        elif lie == "same_page":
            body["offset"] = offset
        elif lie == "more_than_total" and body["data"]:
            body["total"] = offset + len(body["data"]) // 2
        elif lie == "huge_total":
            body["total"] = 2**70
        elif lie == "swelling_total":
            body["total"] += 2 * limit * self.requests
        elif lie == "absurd_total" or (lie == "absurd_total_later" and offset > 0):
            body["total"] = ABSURD_TOTAL
        elif lie == "huge_tokens" and body["data"]:
            body["data"][0]["usage"]["total_tokens"] = 2**70
        elif lie == "lone_surrogate":
            for record in body["data"]:
                if record["id"] in self.targets:
                    record["choices"][0]["message"]["content"] = "\ud800"
        elif lie == "key_in_records":
            for record in body["data"]:
                _carry_key(record, (auth or "").removeprefix("Bearer "))
        return body


def _carry_key(record: dict[str, Any], key: str) -> None:
    """Put ``key`` into ``record`` where a server echoing it would: see ``key_in_records``."""
    record["id"] = f"{record['id']}.{key}"
    record["model"] = f"{record['model']}:{key}"
    encoded = f"[{key} | {base64.b64encode(key.encode()).decode()} | {quote(key, safe='')}] "
    escaped = f"[{json.dumps(key)} | {key!r}] "
    for message in (record.get("payload") or {}).get("messages") or []:
        message["content"] = encoded + (message.get("content") if isinstance(message.get("content"), str) else "")
    for choice in record.get("choices") or []:
        message = choice.get("message") or {}
        message["content"] = escaped + (message.get("content") if isinstance(message.get("content"), str) else "")
        choice["message"] = message
