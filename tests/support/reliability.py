"""Helpers of the reliability, secrets, hostile, streaming and production tests.

Ground truth computed from the emulator's raw records (independently of the package's own
frame code), the real Dagster CLI, tiny loopback HTTP servers, and deterministic fault seeds.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from cloudglue_dagster.emulator import FAULT_KINDS, Emulator
from cloudglue_dagster.emulator.faults import FaultPlan

from .pipeline import read_table  # noqa: F401  (re-exported for the reliability tests)

UTC = dt.timezone.utc
RETRYABLE_FAULTS = tuple(k for k in FAULT_KINDS if k != "slow")
"""Fault kinds that fail an attempt whatever the read timeout (``slow`` fails one only when
it outlasts the client's read timeout)."""

DAGSTER_SELECT = ["--select", 'key:"cloudglue/*"']


def days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


# -- DuckDB ---------------------------------------------------------------------------------


def describe(database: Path, name: str) -> list[tuple[str, str]]:
    """``(column, DuckDB type)`` of a stored table, in table order."""
    with duckdb.connect(str(database), read_only=True) as conn:
        return [(r[0], r[1]) for r in conn.execute(f"DESCRIBE cloudglue.{name}").fetchall()]


# -- ground truth ---------------------------------------------------------------------------


@dataclass
class Expected:
    """What the warehouse must hold for some days, from the emulator's raw records."""

    ids: dict[dt.date, set[str]] = field(default_factory=dict)
    usage: dict[tuple[dt.date, str], tuple[Any, ...]] = field(default_factory=dict)
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)


def expected_for(emu: Emulator, wanted: Iterable[dt.date]) -> Expected:
    """Ids per UTC day, ``(completions, prompt, completion, total, without_usage)`` per (day,
    model) with None for a sum nothing reported, and a few per-row values, computed here
    from the raw JSON the emulator serves (not with the package's code)."""
    out = Expected()
    for day in wanted:
        out.ids[day] = set()
        for raw in emu.dataset.records(day, "ms"):
            out.ids[day].add(raw["id"])
            usage = raw.get("usage") or {}
            counts = [usage.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens")]
            key = (day, raw["model"])
            n, *sums, none = out.usage.get(key, (0, None, None, None, 0))
            sums = [s if c is None else (s or 0) + c for s, c in zip(sums, counts)]
            out.usage[key] = (n + 1, *sums, none + all(c is None for c in counts))
            payload = raw.get("payload") or {}
            out.rows[raw["id"]] = {
                "created_at": pd.Timestamp(raw["created_at"], unit="ms", tz="UTC"),
                "model": raw["model"],
                "prompt_tokens": counts[0],
                "completion_tokens": counts[1],
                "total_tokens": counts[2],
                "temperature": payload.get("temperature"),
                "choice_count": len(raw.get("choices") or []),
                "message_count": len(payload.get("messages") or []),
            }
    return out


def _value(x: Any) -> Any:
    return None if pd.isna(x) else x


def assert_tables_equal_truth(database: Path, emu: Emulator, wanted: Sequence[dt.date], *, only: bool = True) -> None:
    """Both tables hold exactly the emulator's completions and usage for ``wanted`` (and,
    with ``only``, nothing for any other day)."""
    exp = expected_for(emu, wanted)
    chat = read_table(database, "chat_completions")
    assert chat["id"].is_unique, chat[chat["id"].duplicated()]["id"].tolist()[:10]
    got: dict[dt.date, set[str]] = {}
    for created, id_ in zip(chat["created_at"], chat["id"]):
        got.setdefault(created.tz_convert("UTC").date(), set()).add(id_)
    for day in wanted:
        missing, extra = exp.ids[day] - got.get(day, set()), got.get(day, set()) - exp.ids[day]
        assert not missing and not extra, f"{day}: {len(missing)} missing, {len(extra)} unexpected"
    if only:
        assert set(got) <= set(wanted), sorted(set(got) - set(wanted))
    # Row values survived faults untouched (a half-read body would show here).
    stored = chat.set_index("id")
    for id_, row in exp.rows.items():
        for column, want in row.items():
            have = _value(stored.at[id_, column])
            assert have == want, (id_, column, have, want)
    usage = read_table(database, "token_usage")
    have_usage = {
        (r.date.date(), r.model): (
            r.completions,
            _value(r.prompt_tokens),
            _value(r.completion_tokens),
            _value(r.total_tokens),
            r.completions_without_usage,
        )
        for r in usage.itertuples()
        if r.date.date() in exp.ids
    }
    assert have_usage == exp.usage
    if only:
        assert {d.date() for d in usage["date"]} <= set(wanted)


# -- faults -----------------------------------------------------------------------------------


def faults_before_success(seed: int, rate: float, kinds: Sequence[str], successes: int) -> list[str]:
    """The fault kinds the emulator draws before its ``successes``-th unfaulted answer.

    Faults are a pure function of ``(seed, n)`` for the n-th authorized request, so this is
    exactly what a sweep needing ``successes`` pages meets, whatever the concurrency: every
    non-failing draw completes one page. ``slow`` counts as an answer (long read timeout).
    """
    out: list[str] = []
    n = ok = 0
    while ok < successes:
        u, bits = FaultPlan.draw(seed, n)
        n += 1
        kind = kinds[bits % len(kinds)] if u < rate else None
        if kind is None or kind == "slow":
            ok += 1
        else:
            out.append(kind)
    return out


def pick_fault_seed(rate: float, kinds: Sequence[str], successes: int, *, max_faults: int, min_kinds: int) -> int:
    """The first seed whose run meets at least ``min_kinds`` different failing kinds but at
    most ``max_faults`` failures in all: then no request can exhaust ``max_retries =
    max_faults`` retries, by construction."""
    for seed in range(100_000):
        met = faults_before_success(seed, rate, kinds, successes)
        if len(met) <= max_faults and len(set(met)) >= min_kinds:
            return seed
    raise AssertionError("no suitable fault seed")


def pages(emu: Emulator, first: dt.date, last: dt.date, page_size: int) -> int:
    """Pages of a sweep over ``first..last`` padded by a day each side (boundary inclusive)."""
    total = sum(emu.ground_truth(d).count for d in days(first - dt.timedelta(days=1), last + dt.timedelta(days=1)))
    return max(1, -(-total // page_size))


# -- the Dagster CLI -----------------------------------------------------------------------------


def cli_env(
    *, key: str, base_url: str, start: str, database: Path, home: Path, responses: bool = False, **extra: str
) -> dict[str, str]:
    """The environment of a CLI run of the bundled definitions. ``responses``: build the Responses
    API's tables too (off by default: a test of the chat completions' step keeps to that step,
    as :class:`~support.pipeline.Pipeline` does)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDGLUE_")}
    env.update(
        CLOUDGLUE_RESPONSES="true" if responses else "false",
        CLOUDGLUE_API_KEY=key,
        CLOUDGLUE_BASE_URL=base_url,
        CLOUDGLUE_START_DATE=start,
        CLOUDGLUE_DUCKDB_PATH=str(database),
        DAGSTER_HOME=str(home),
        **extra,
    )
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return env


def dagster(*args: str) -> list[str]:
    return [sys.executable, "-m", "dagster", *args]


def materialize_cmd(*partition: str) -> list[str]:
    """``dagster asset materialize`` of every table of ``cloudglue_dagster.definitions``."""
    return dagster("asset", "materialize", "-m", "cloudglue_dagster.definitions", *DAGSTER_SELECT, *partition)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# -- tiny HTTP servers ---------------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


Reply = tuple[int, dict[str, str], bytes]


@contextmanager
def http_server(host: str, reply: Callable[[Seen], Reply]) -> Iterator[tuple[str, list[Seen]]]:
    """A loopback server answering every request with ``reply(request)``; yields its root URL
    (``http://host:port``) and the requests it saw."""
    seen: list[Seen] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            request = Seen("GET", self.path, dict(self.headers))
            seen.append(request)
            status, headers, body = reply(request)
            self.send_response(status)
            for k, v in {"Content-Type": "application/json", **headers}.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def json_reply(body: Any, status: int = 200) -> Callable[[Seen], Reply]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return lambda _request: (status, {}, data)


EMPTY_PAGE = {"object": "list", "data": [], "total": 0, "limit": 100, "offset": 0}
