"""Deterministic, lazily generated data set of Cloudglue responses (``GET /v1/responses``).

A :class:`ResponsesDataset` covers the UTC days ``start..end`` (``end`` INCLUSIVE). Counts
per day come from the seed at once (:func:`.counts.derive_counts`, another salt than the
chat completions'); a day's records are generated when something first needs them and are
then KEPT (no LRU, unlike the chat data set), because a response's status and usage can
change afterwards (:meth:`~ResponsesDataset.set_status`, :meth:`~ResponsesDataset.complete`,
``settle_after_seconds``) and it can be deleted. A record is ~0.3 KB of memory; its
``instructions`` text is drawn again (identical) each time it is served.

Items follow the SDK's ``ResponseListItem`` (``id``, ``object``, ``status``, ``created_at``,
``model``, ``instructions``, ``usage`` with ``input_tokens``, ``output_tokens``,
``total_tokens``), every field of which is optional.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from bisect import bisect_left, insort
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from operator import attrgetter
from typing import Any

from .counts import derive_counts
from .response_records import COUNTS, ORDER_KEY, STATUSES, Resp, ResponseFactory, State
from .timeutil import DAY_MS, ORDERS, day_of_ms, day_start_ms

__all__ = ["STATUSES", "ResponsesDataset", "ResponsesDayTruth"]

_AT = attrgetter("at_ms")


def _count_of(usage: Any, key: str) -> int | None:
    value = usage.get(key) if isinstance(usage, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class ResponsesDayTruth:
    """What one UTC day of responses holds, as served at the moment it is asked.

    ``statuses`` maps each id to its status; token sums only add records that report that
    count; ``no_usage`` counts records with none of the three counts (usage absent or empty).
    """

    ids: frozenset[str]
    count: int
    statuses: Mapping[str, str]
    by_status: dict[str, int]
    input_tokens: int
    output_tokens: int
    total_tokens: int
    no_usage: int
    by_model: dict[str, int]


class ResponsesDataset:
    """Synthetic responses for the UTC days ``start`` to ``end`` INCLUSIVE.

    Args:
        start: first day.
        end: last day, included.
        per_day: mean record count of a non-empty day (varies like the chat data set's).
        seed: counts, ids, times, models, statuses, usage and texts derive from it (through
            other seed strings than the chat completions', so they differ for one seed).
        empty_days, counts: as for :class:`~.data.Dataset`.
        in_progress_rate: share of each day's generated records that are ``in_progress``
            (``round(rate * count)``, picked deterministically); others are ~95% completed,
            ~3% failed, ~2% cancelled.
        settle_after_seconds: if set, every ``in_progress`` response reads as completed (with
            its deterministic usage) once this many seconds (``time.monotonic``) have passed
            since the data set was made, including ones set in progress after that.
        extra_fields: give ~5% of the records a field the SDK does not know.

    Each day with at least 2 generated records has one at 00:00:00.000 and one at
    23:59:59.999 UTC. Completed responses carry all three counts (``total = input +
    output``), from ``(seed, id)``: :meth:`complete` gives an in-progress one the same.
    ``in_progress`` ones have no ``usage`` key; failed and cancelled ones have it full,
    partial (one count missing) or absent, a third each. ``instructions`` is a text
    (unicode, quotes, newlines) on ~85%, ``null`` on ~5%, absent on ~10%.
    """

    def __init__(
        self,
        start: date,
        end: date,
        per_day: int = 50,
        seed: int = 0,
        *,
        empty_days: Iterable[date] | None = None,
        counts: Mapping[date, int] | None = None,
        in_progress_rate: float = 0.0,
        settle_after_seconds: float | None = None,
        extra_fields: bool = True,
    ) -> None:
        if end < start:
            raise ValueError(f"end {end} is before start {start}")
        if per_day < 0:
            raise ValueError("per_day must be >= 0")
        if not 0.0 <= in_progress_rate <= 1.0:
            raise ValueError("in_progress_rate must be within [0, 1]")
        if settle_after_seconds is not None and settle_after_seconds < 0:
            raise ValueError("settle_after_seconds must be >= 0")
        self.start, self.end, self.per_day, self.seed = start, end, per_day, seed
        self.in_progress_rate = in_progress_rate
        self.settle_after_seconds = settle_after_seconds
        self.extra_fields = extra_fields
        self._settle_at = None if settle_after_seconds is None else time.monotonic() + settle_after_seconds
        self._day_list = [start + timedelta(days=i) for i in range((end - start).days + 1)]
        self._base = derive_counts(self._day_list, per_day, seed, empty_days, counts or {}, "responses-count")
        self._lock = threading.RLock()
        self._days: dict[date, list[Resp]] = {}  # generated (or injected-into) days, sorted
        self._by_id: dict[str, list[Resp]] = {}
        self._factory = ResponseFactory(seed, extra_fields)

    # ----------------------------------------------------------------- counts
    @property
    def days(self) -> list[date]:
        """The data set's days, ``start..end`` inclusive."""
        return list(self._day_list)

    @property
    def empty_days(self) -> list[date]:
        """Days of ``start..end`` holding no response."""
        return [d for d in self._day_list if self.count(d) == 0]

    def count(self, day: date) -> int:
        """Number of responses on ``day`` (UTC), injected and deleted ones counted in. Cheap."""
        with self._lock:
            recs = self._days.get(day)
            return len(recs) if recs is not None else self._base.get(day, 0)

    @property
    def total(self) -> int:
        """Number of responses in the whole data set."""
        with self._lock:
            outside = [d for d in self._days if d not in self._base]
            return sum(self.count(d) for d in self._day_list) + sum(len(self._days[d]) for d in outside)

    def __len__(self) -> int:
        return self.total

    # ------------------------------------------------------------ generation
    def _day(self, day: date) -> list[Resp]:
        """The day's records, generated on first use (caller holds the lock)."""
        recs = self._days.get(day)
        if recs is None:
            n = self._base.get(day, 0)
            recs = self._days[day] = self._factory.generate(
                day_start_ms(day), day.isoformat(), n, self.in_progress_rate
            )
            for r in recs:
                self._by_id.setdefault(r.sort_id, []).append(r)
        return recs

    def _find(self, response_id: str) -> Resp | None:
        """The record with this id (the last added if several), generating days until found."""
        with self._lock:
            found = self._by_id.get(response_id)
            if not found:
                for day in self._day_list:
                    if day not in self._days:
                        self._day(day)
                        found = self._by_id.get(response_id)
                        if found:
                            break
            return found[-1] if found else None

    # ------------------------------------------------------------- changes
    def add_record(self, raw: dict[str, Any], at_ms: int | None = None) -> None:
        """Inject one raw response, as :meth:`Dataset.add_record <.data.Dataset.add_record>` does.

        ``at_ms`` (epoch ms) places it; then a ``created_at`` in ``raw`` is served verbatim
        (any value) and an absent one is rendered in the server's unit. Without ``at_ms``,
        ``raw["created_at"]`` must be an int of epoch ms, rendered in the unit. Its
        ``status`` and ``usage`` are served as given until changed.
        """
        if not isinstance(raw, dict):
            raise TypeError("raw must be a dict")
        given = raw.get("created_at")
        if at_ms is None:
            if not isinstance(given, int) or isinstance(given, bool):
                raise ValueError("raw['created_at'] must be an int (epoch ms) unless at_ms is given")
            at_ms, render_ts = given, True
        elif not isinstance(at_ms, int) or isinstance(at_ms, bool):
            raise TypeError("at_ms must be an int (epoch ms)")
        else:
            render_ts = "created_at" not in raw
        rid = raw.get("id")
        sort_id = rid if isinstance(rid, str) else ("" if rid is None else str(rid))
        state = (raw.get("status"), raw.get("usage"))
        rec = Resp(at_ms, sort_id, rid if isinstance(rid, str) else None, raw.get("model"), state)
        rec.raw, rec.orig, rec.render_ts = copy.deepcopy(raw), state, render_ts
        day = day_of_ms(at_ms)
        with self._lock:
            insort(self._day(day), rec, key=ORDER_KEY)
            self._by_id.setdefault(sort_id, []).append(rec)

    def set_status(self, response_id: str, status: str, usage: dict[str, int] | None = None) -> None:
        """Give a response a new status and usage (``KeyError`` if no such id).

        ``usage=None``: the full deterministic usage when ``status`` is ``completed``, else
        none (the key absent). A dict is served as given.
        """
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {status!r}")
        rec = self._find(response_id)
        if rec is None:
            raise KeyError(response_id)
        if usage is None and status == "completed":
            usage = self._factory.final_usage(rec.sort_id)
        rec.state = (status, None if usage is None else dict(usage))

    def complete(self, day: date | None = None) -> int:
        """Complete every ``in_progress`` response of ``day`` (UTC), or of all days.

        Each gets its full usage, deterministic from ``(seed, id)``. Returns how many changed.
        """
        with self._lock:
            days = [day] if day is not None else sorted(set(self._day_list) | set(self._days))
            n = 0
            for d in days:
                for rec in self._day(d):
                    if rec.state[0] == "in_progress":
                        rec.state = ("completed", self._factory.final_usage(rec.sort_id))
                        n += 1
            return n

    def delete(self, response_id: str) -> bool:
        """Delete a response (the last added, if several share the id); False if none has it."""
        with self._lock:
            rec = self._find(response_id)
            if rec is None:
                return False
            recs = self._days[day_of_ms(rec.at_ms)]
            del recs[next(i for i, r in enumerate(recs) if r is rec)]
            self._by_id[rec.sort_id].remove(rec)
            return True

    # ------------------------------------------------------------- reading
    def _settled(self) -> bool:
        return self._settle_at is not None and time.monotonic() >= self._settle_at

    def _view(self, rec: Resp, settled: bool) -> State:
        """The state a reader sees (in progress reads as completed once settled)."""
        state = rec.state
        if settled and state[0] == "in_progress":
            return ("completed", self._factory.final_usage(rec.sort_id))
        return state

    def _days_in(self, lo: int | None, hi: int | None) -> list[date]:
        """Days (ascending) that may hold records in ``[lo, hi)`` (caller holds the lock)."""
        lo_day = day_of_ms(lo) if lo is not None else date.min
        hi_day = day_of_ms(hi - 1) if hi is not None else date.max
        days = set(self._day_list[(max(self.start, lo_day) - self.start).days :]) if lo_day <= self.end else set()
        days |= set(self._days)
        return sorted(d for d in days if lo_day <= d <= hi_day)

    def select(
        self,
        lo: int | None,
        hi: int | None,
        offset: int,
        limit: int,
        order: str = "newest",
        unit: str = "int-s",
        status: str | None = None,
    ) -> tuple[int, list[bytes]]:
        """One page of the responses with ``lo <= created_at < hi`` (epoch ms) and ``status``.

        Returns ``(total, page)`` like :meth:`Dataset.select <.data.Dataset.select>`
        (``newest``: created_at then id descending; ``oldest``: the exact reverse). A status
        filter is an exact match on the status as served now; it generates every day of the
        window the first time (~25 ms of CPU per 1,000 responses), an unfiltered page only the
        days it touches.
        """
        if order not in ORDERS:
            raise ValueError(f"unknown order {order!r}; expected one of {ORDERS}")
        settled = self._settled()
        spans: list[tuple[date, int, list[Resp] | None]] = []
        total = 0
        with self._lock:
            for day in self._days_in(lo, hi):
                d0 = day_start_ms(day)
                whole = (lo is None or lo <= d0) and (hi is None or d0 + DAY_MS <= hi)
                recs: list[Resp] | None = None
                if status is not None or not whole:
                    recs = self._day(day)
                    i = bisect_left(recs, lo, key=_AT) if lo is not None else 0
                    j = bisect_left(recs, hi, key=_AT) if hi is not None else len(recs)
                    recs = recs[i:j]
                    if status is not None:
                        recs = [r for r in recs if self._view(r, settled)[0] == status]
                n = len(recs) if recs is not None else self.count(day)
                if n:
                    spans.append((day, n, recs))
                    total += n
            page: list[Resp] = []
            skip = offset
            newest = order == "newest"
            for day, n, recs in reversed(spans) if newest else spans:
                if len(page) >= limit:
                    break
                if skip >= n:
                    skip -= n
                    continue
                if recs is None:
                    recs = self._day(day)
                want = limit - len(page)
                if newest:
                    top = n - skip
                    page.extend(recs[max(0, top - want) : top][::-1])
                else:
                    page.extend(recs[skip : skip + want])
                skip = 0
        return total, [self._factory.render(r, self._view(r, settled), unit) for r in page]

    def records(self, day: date, unit: str = "int-s") -> list[dict[str, Any]]:
        """The raw JSON responses of ``day`` (UTC), oldest first, as served now in ``unit``."""
        settled = self._settled()
        with self._lock:
            recs = list(self._day(day))
        return [json.loads(self._factory.render(r, self._view(r, settled), unit)) for r in recs]

    def ground_truth(self, day: date) -> ResponsesDayTruth:
        """Ids, statuses, token sums and per-model counts of ``day`` (UTC), as served now."""
        settled = self._settled()
        with self._lock:
            recs = list(self._day(day))
        statuses: dict[str, str] = {}
        by_status: dict[str, int] = {}
        by_model: dict[str, int] = {}
        sums = dict.fromkeys(COUNTS, 0)
        no_usage = 0
        for r in recs:
            status, usage = self._view(r, settled)
            if isinstance(status, str):
                by_status[status] = by_status.get(status, 0) + 1
                if r.id is not None:
                    statuses[r.id] = status
            model = r.model if isinstance(r.model, str) else str(r.model)
            by_model[model] = by_model.get(model, 0) + 1
            counts = [_count_of(usage, k) for k in COUNTS]
            for k, c in zip(COUNTS, counts):
                sums[k] += c or 0
            no_usage += all(c is None for c in counts)
        return ResponsesDayTruth(
            ids=frozenset(r.id for r in recs if r.id is not None),
            count=len(recs),
            statuses=statuses,
            by_status=by_status,
            input_tokens=sums["input_tokens"],
            output_tokens=sums["output_tokens"],
            total_tokens=sums["total_tokens"],
            no_usage=no_usage,
            by_model=by_model,
        )

    def ground_truth_range(self, start: date, end: date) -> dict[date, ResponsesDayTruth]:
        """:meth:`ground_truth` of every day ``start..end`` (``end`` inclusive)."""
        n = (end - start).days + 1
        return {start + timedelta(days=i): self.ground_truth(start + timedelta(days=i)) for i in range(max(0, n))}

    @staticmethod
    def per_day_beside(chat_per_day: int) -> int:
        """The responses' mean per day beside ``chat_per_day`` completions, by default: a
        quarter of them, at least one (none beside none)."""
        return max(1, chat_per_day // 4) if chat_per_day else 0

    def __repr__(self) -> str:
        return (
            f"ResponsesDataset(start={self.start}, end={self.end}, per_day={self.per_day}, seed={self.seed}, "
            f"in_progress_rate={self.in_progress_rate}, settle_after_seconds={self.settle_after_seconds})"
        )
