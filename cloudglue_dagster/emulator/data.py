"""Deterministic, lazily generated data set of chat completions.

A :class:`Dataset` covers the UTC days ``start..end`` (``end`` INCLUSIVE).
Per-day record counts are derived cheaply from ``(seed, day)`` when the data
set is built; a day's records are generated only when a request (or a ground
truth query) needs them, and kept in a small thread-safe LRU cache together
with the JSON around their texts. The texts themselves (``text="realistic"``)
are generated each time a record is served, so a cached day costs ~0.3 KB of
memory per record, not the ~1.4 KB of its JSON. Records can also be injected
at any time with :meth:`Dataset.add_record`; they take part in filtering,
ordering, totals and ground truth like generated ones.
"""

from __future__ import annotations

import json
import random
import threading
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from operator import attrgetter
from typing import Any

from .content import TEXT_MODES, Generated, LazyBody, RecordFactory
from .counts import derive_counts
from .timeutil import DAY_MS, ORDERS, day_of_ms, day_start_ms, render_created_at

__all__ = ["Dataset", "DayTruth"]

_SENTINEL = "\x00cloudglue-emulator-created-at\x00"
_ORDER_KEY = attrgetter("at_ms", "sort_id")  # the records' order: (created_at, id)
_SENTINEL_JSON = json.dumps(_SENTINEL).encode()


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class DayTruth:
    """What one UTC day holds, for checking a client against the emulator.

    Token sums only add records that report that field (absent = not added);
    ``no_usage`` counts records whose usage has none of the three fields.
    """

    ids: frozenset[str]
    count: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    no_usage: int
    by_model: dict[str, int]


class _Stored:
    """One record: canonical time, facts for ground truth, serialized JSON."""

    __slots__ = (
        "at_ms",
        "sort_id",
        "id",
        "model",
        "prompt",
        "completion",
        "total",
        "head",
        "tail",
        "body",
        "fixed",
    )
    at_ms: int  # canonical time, epoch ms (placement, filtering, ordering)
    sort_id: str  # tie-breaker of the order
    id: str | None
    model: str
    prompt: int | None
    completion: int | None
    total: int | None
    head: bytes  # JSON before the created_at value
    tail: bytes  # JSON after it (all of it, or up to the texts' part)
    body: LazyBody | None  # the texts' part, generated when served (realistic texts)
    fixed: bytes | None  # whole JSON, when created_at is served verbatim

    @classmethod
    def generated(cls, g: Generated, at_ms: int) -> _Stored:
        """Wrap a generated record placed at ``at_ms``."""
        self = cls.__new__(cls)
        self.at_ms = at_ms
        self.id = self.sort_id = g.id
        self.model = g.model
        self.prompt, self.completion, self.total = g.prompt_tokens, g.completion_tokens, g.total_tokens
        self.head, self.tail, self.body, self.fixed = g.head, g.tail, g.body, None
        return self

    def __init__(self, raw: dict[str, Any], at_ms: int, render_ts: bool) -> None:
        """Wrap an injected raw record (serialized now; later changes to ``raw`` do not matter)."""
        self.at_ms = at_ms
        rid = raw.get("id")
        self.id = rid if isinstance(rid, str) else None
        self.sort_id = rid if isinstance(rid, str) else ("" if rid is None else str(rid))
        model = raw.get("model")
        self.model = model if isinstance(model, str) else str(model)
        usage = raw.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        self.prompt = _int_or_none(usage.get("prompt_tokens"))
        self.completion = _int_or_none(usage.get("completion_tokens"))
        self.total = _int_or_none(usage.get("total_tokens"))
        self.fixed = self.body = None
        self.head = self.tail = b""
        if render_ts:
            self.head, self.tail = _dumps(_with_created_at(raw, _SENTINEL)).split(_SENTINEL_JSON, 1)
        else:
            self.fixed = _dumps(raw)

    def render(self, unit: str) -> bytes:
        """Serialized JSON of the record with ``created_at`` in ``unit``."""
        if self.fixed is not None:
            return self.fixed
        if self.body is not None:
            return b"".join((self.head, render_created_at(self.at_ms, unit), self.tail, self.body.render()))
        return self.head + render_created_at(self.at_ms, unit) + self.tail


def _with_created_at(raw: dict[str, Any], value: Any) -> dict[str, Any]:
    """Copy of ``raw`` with ``created_at`` set (placed after ``id`` if it was absent)."""
    out: dict[str, Any]
    if "created_at" in raw:
        out = dict(raw)
        out["created_at"] = value
        return out
    out = {}
    if "id" not in raw:
        out["created_at"] = value
    for key, val in raw.items():
        out[key] = val
        if key == "id":
            out["created_at"] = value
    return out


class _Day:
    """A day's records sorted by (created_at, id), with their times for bisecting."""

    __slots__ = ("base", "version", "recs", "ats")

    def __init__(self, base: list[_Stored], extras: Iterable[_Stored], version: int) -> None:
        self.base = base
        self.version = version
        extra = list(extras)
        if extra:
            recs = sorted(base + extra, key=_ORDER_KEY)
        else:
            recs = base
        self.recs = recs
        self.ats = [r.at_ms for r in recs]


class Dataset:
    """Synthetic chat completions for the UTC days ``start`` to ``end`` INCLUSIVE.

    Args:
        start: first day.
        end: last day, included.
        per_day: mean record count of a non-empty day; actual counts vary
            (busy days up to ~2.5x, quiet days down to ~0.25x).
        seed: everything (counts, ids, contents, times) derives from it.
        empty_days: if given, exactly these days are empty. Otherwise about 1
            day in 7 is empty, never the first or last day, and at least one
            is when there are 7 days or more.
        counts: exact record counts for some days (overrides the above).
        extra_fields: give a few records fields the spec does not list.
        cache_days: how many generated days to keep in memory (LRU).
        text: ``realistic`` (default): every completion's prompt messages and
            choices are distinct texts (about 1.4 KB of JSON a completion on
            average, 1 in 40 with a 2-8 KB choice, ~17% of them in accented
            European words or Chinese/Japanese), generated from ``(seed, id)``
            each time the record is served (~5 us of CPU a record). ``compact``: texts
            from a pool of 256 bodies, which repeat (a DuckDB file of them is
            some 40x smaller than of real data). Ids, times, models, usage and
            extra fields are the same in both.

    Each day with at least 2 generated records has one at 00:00:00.000 and
    one at 23:59:59.999 UTC; other times are random, millisecond resolution.
    """

    def __init__(
        self,
        start: date,
        end: date,
        per_day: int = 200,
        seed: int = 0,
        *,
        empty_days: Iterable[date] | None = None,
        counts: Mapping[date, int] | None = None,
        extra_fields: bool = True,
        cache_days: int = 48,
        text: str = "realistic",
    ) -> None:
        if end < start:
            raise ValueError(f"end {end} is before start {start}")
        if per_day < 0:
            raise ValueError("per_day must be >= 0")
        if text not in TEXT_MODES:
            raise ValueError(f"text must be one of {TEXT_MODES}, not {text!r}")
        self.start = start
        self.end = end
        self.per_day = per_day
        self.seed = seed
        self.extra_fields = extra_fields
        self.text = text
        self._cache_days = max(1, cache_days)
        n = (end - start).days + 1
        self._day_list: list[date] = [start + timedelta(days=i) for i in range(n)]
        self._base_counts: dict[date, int] = self._derive_counts(empty_days, counts or {})
        self._record_factory: RecordFactory | None = None
        self._lock = threading.Lock()
        self._extras: dict[date, list[_Stored]] = {}
        self._versions: dict[date, int] = {}
        self._cache: OrderedDict[date, _Day] = OrderedDict()
        self._gen_locks: dict[date, threading.Lock] = {}

    @classmethod
    def recent(
        cls, days: int = 14, per_day: int = 200, seed: int = 0, *, today: date | None = None, **kwargs: Any
    ) -> Dataset:
        """A data set of the ``days`` UTC days ending yesterday (``today`` excluded)."""
        if days < 1:
            raise ValueError("days must be >= 1")
        today = today or datetime.now(timezone.utc).date()
        end = today - timedelta(days=1)
        return cls(end - timedelta(days=days - 1), end, per_day, seed, **kwargs)

    # ----------------------------------------------------------------- counts
    def _derive_counts(self, empty_days: Iterable[date] | None, counts: Mapping[date, int]) -> dict[date, int]:
        return derive_counts(self._day_list, self.per_day, self.seed, empty_days, counts)

    @property
    def days(self) -> list[date]:
        """The data set's days, ``start..end`` inclusive."""
        return list(self._day_list)

    @property
    def empty_days(self) -> list[date]:
        """Days of ``start..end`` holding no record (injected ones included)."""
        return [d for d in self._day_list if self.count(d) == 0]

    def count(self, day: date) -> int:
        """Number of records on ``day`` (UTC), injected ones included. Cheap."""
        return self._base_counts.get(day, 0) + len(self._extras.get(day, ()))

    @property
    def total(self) -> int:
        """Number of records in the whole data set, injected ones included."""
        with self._lock:
            extra = sum(len(v) for v in self._extras.values())
        return sum(self._base_counts.values()) + extra

    def __len__(self) -> int:
        return self.total

    # ------------------------------------------------------------- injection
    def add_record(self, raw: dict[str, Any], at_ms: int | None = None) -> None:
        """Inject one raw record (thread-safe; fine while a server runs).

        ``at_ms`` (epoch ms) places the record for filtering and ordering; if
        given, ``raw["created_at"]``, when present, is served verbatim (any
        value, for malformed-record tests), and when absent is rendered in the
        server's unit. Without ``at_ms``, ``raw["created_at"]`` must be an
        int of epoch ms: it is the canonical time, rendered in the unit.
        """
        if not isinstance(raw, dict):
            raise TypeError("raw must be a dict")
        if at_ms is None:
            ts = _int_or_none(raw.get("created_at"))
            if ts is None:
                raise ValueError("raw['created_at'] must be an int (epoch ms) unless at_ms is given")
            stored = _Stored(raw, ts, render_ts=True)
        else:
            if _int_or_none(at_ms) is None:
                raise TypeError("at_ms must be an int (epoch ms)")
            stored = _Stored(raw, at_ms, render_ts="created_at" not in raw)
        day = day_of_ms(stored.at_ms)
        with self._lock:
            self._extras.setdefault(day, []).append(stored)
            self._versions[day] = self._versions.get(day, 0) + 1

    def add_records(self, raw_records: Iterable[dict[str, Any]]) -> None:
        """Inject several raw records, each with an int epoch-ms ``created_at``."""
        for raw in raw_records:
            self.add_record(raw)

    # ------------------------------------------------------------ generation
    def _generate(self, day: date) -> list[_Stored]:
        n = self._base_counts.get(day, 0)
        if n == 0:
            return []
        rng = random.Random(f"cloudglue-emulator:day:{self.seed}:{day.isoformat()}")
        d0 = day_start_ms(day)
        offsets = [int(rng.random() * DAY_MS) for _ in range(n)]
        if n >= 2:
            offsets[0] = 0
            offsets[1] = DAY_MS - 1
        factory = self._factory()
        out = [_Stored.generated(factory.make(rng), d0 + off) for off in offsets]
        out.sort(key=_ORDER_KEY)
        return out

    def _factory(self) -> RecordFactory:
        """The record factory, built on first use (its body pool costs a few ms)."""
        factory = self._record_factory
        if factory is None:
            with self._lock:
                if self._record_factory is None:
                    self._record_factory = RecordFactory(self.seed, extra_fields=self.extra_fields, text=self.text)
                factory = self._record_factory
        return factory

    def _cached(self, day: date) -> _Day | None:
        """Cache lookup (caller holds ``_lock``); refreshes entries after injections."""
        entry = self._cache.get(day)
        if entry is None:
            return None
        self._cache.move_to_end(day)
        version = self._versions.get(day, 0)
        if entry.version != version:
            entry = _Day(entry.base, self._extras.get(day, ()), version)
            self._cache[day] = entry
        return entry

    def _day(self, day: date) -> _Day:
        with self._lock:
            entry = self._cached(day)
            if entry is not None:
                return entry
            gen_lock = self._gen_locks.setdefault(day, threading.Lock())
        with gen_lock:
            with self._lock:
                entry = self._cached(day)
                if entry is not None:
                    return entry
            base = self._generate(day)
            with self._lock:
                entry = _Day(base, self._extras.get(day, ()), self._versions.get(day, 0))
                self._cache[day] = entry
                while len(self._cache) > self._cache_days:
                    self._cache.popitem(last=False)
                self._gen_locks.pop(day, None)
        return entry

    # --------------------------------------------------------------- queries
    def _days_in(self, lo: int | None, hi: int | None) -> list[date]:
        """Days (ascending) that may hold records in ``[lo, hi)``."""
        first, last = self.start, self.end
        if lo is not None:
            first = max(first, day_of_ms(lo))
        if hi is not None:
            last = min(last, day_of_ms(hi - 1))
        days = self._day_list[(first - self.start).days : (last - self.start).days + 1] if first <= last else []
        with self._lock:
            outside = [d for d in self._extras if not self.start <= d <= self.end]
        if outside:
            lo_day = day_of_ms(lo) if lo is not None else date.min
            hi_day = day_of_ms(hi - 1) if hi is not None else date.max
            days = sorted(days + [d for d in outside if lo_day <= d <= hi_day])
        return days

    @staticmethod
    def _bounds(entry: _Day, lo: int | None, hi: int | None) -> tuple[int, int]:
        i = bisect_left(entry.ats, lo) if lo is not None else 0
        j = bisect_left(entry.ats, hi) if hi is not None else len(entry.ats)
        return i, max(i, j)

    def select(
        self, lo: int | None, hi: int | None, offset: int, limit: int, order: str = "newest", unit: str = "ms"
    ) -> tuple[int, list[bytes]]:
        """One page of the records with ``lo <= created_at < hi`` (epoch ms).

        Returns ``(total, page)``: the number of matching records over all
        pages, and the serialized records ``offset .. offset+limit-1`` in
        ``order`` (``newest``: created_at then id descending; ``oldest``: the
        exact reverse). Only the days the page touches are generated.
        """
        if order not in ORDERS:
            raise ValueError(f"unknown order {order!r}; expected one of {ORDERS}")
        spans: list[tuple[date, int]] = []
        total = 0
        base, extras = self._base_counts, self._extras
        for day in self._days_in(lo, hi):
            # count(day), inlined: this runs for every day of the window on every page.
            n = base.get(day, 0) + len(extras.get(day, ()))
            if not n:
                continue
            d0 = day_start_ms(day)
            if (lo is not None and lo > d0) or (hi is not None and d0 + DAY_MS > hi):
                i, j = self._bounds(self._day(day), lo, hi)
                n = j - i
            if n:
                spans.append((day, n))
                total += n
        out: list[bytes] = []
        skip = offset
        newest = order == "newest"
        for day, n in reversed(spans) if newest else spans:
            if len(out) >= limit:
                break
            if skip >= n:
                skip -= n
                continue
            entry = self._day(day)
            i, j = self._bounds(entry, lo, hi)
            want = limit - len(out)
            if newest:
                top = j - skip
                recs = entry.recs[max(i, top - want) : max(i, top)][::-1]
            else:
                recs = entry.recs[i + skip : min(j, i + skip + want)]
            skip = 0
            out.extend(r.render(unit) for r in recs)
        return total, out

    # ----------------------------------------------------------- ground truth
    def records(self, day: date, unit: str = "ms") -> list[dict[str, Any]]:
        """The raw JSON records of ``day`` (UTC), oldest first, as served in ``unit``."""
        return [json.loads(r.render(unit)) for r in self._day(day).recs]

    def ground_truth(self, day: date) -> DayTruth:
        """Ids, count, token sums and per-model counts of ``day`` (UTC)."""
        recs = self._day(day).recs
        by_model: dict[str, int] = {}
        prompt = completion = total = no_usage = 0
        for r in recs:
            by_model[r.model] = by_model.get(r.model, 0) + 1
            if r.prompt is not None:
                prompt += r.prompt
            if r.completion is not None:
                completion += r.completion
            if r.total is not None:
                total += r.total
            if r.prompt is None and r.completion is None and r.total is None:
                no_usage += 1
        return DayTruth(
            ids=frozenset(r.id for r in recs if r.id is not None),
            count=len(recs),
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=total,
            no_usage=no_usage,
            by_model=by_model,
        )

    def ground_truth_range(self, start: date, end: date) -> dict[date, DayTruth]:
        """:meth:`ground_truth` of every day ``start..end`` (``end`` inclusive)."""
        n = (end - start).days + 1
        return {start + timedelta(days=i): self.ground_truth(start + timedelta(days=i)) for i in range(max(0, n))}

    def __repr__(self) -> str:
        return (
            f"Dataset(start={self.start}, end={self.end}, per_day={self.per_day}, seed={self.seed}, text={self.text!r})"
        )
