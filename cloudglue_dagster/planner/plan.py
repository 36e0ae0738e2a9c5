"""Plan a backfill before running it: requests, time and memory per run, and how to split it.

No Dagster. The API's ``total`` is known from one ``limit=1`` request, so a year can be planned
with a few hundred cheap, concurrent requests:

* each day: the ``total`` of the padded window a one-day run asks for (``created_after`` =
  the day before, ``created_before`` = the day after): the completions that run would receive
  (the day's own, and, depending on how the API reads the dates, some of its neighbours'), so
  its requests exactly, and an upper bound of the day's size;
* each planned run (the range cut into ``max_partitions_per_run`` days, as Dagster's
  backfill policy cuts it): the ``total`` of that run's padded window, so its sweep's requests
  exactly (``ceil(total / page_size)``, at least one) when the API answers honestly.

Time and memory are estimates, from the measured latency of the probes and the figures
:data:`DEFAULT_ASSUMPTIONS` names (measured by ``make bench``); :meth:`BackfillPlan.to_text`
prints them with the plan.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import statistics
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from cloudglue_dagster.api.client import CloudglueClient
from cloudglue_dagster.errors import CloudglueConfigError

__all__ = [
    "DEFAULT_ASSUMPTIONS",
    "Assumptions",
    "BackfillPlan",
    "DayProbe",
    "RunPlan",
    "parse_size",
    "plan_backfill",
    "plan_from_probes",
]

_ONE_DAY = dt.timedelta(days=1)
MiB = 1024**2


@dataclass(frozen=True)
class Assumptions:
    """What the estimates rest on (all printed with the plan).

    Attributes:
        page_size: completions per page (the resource's ``page_size``, 100).
        concurrency: pages fetched at once (the resource's ``max_concurrent_requests``, 8).
        latency_seconds: seconds per request; None: the probes' median.
        cpu_seconds_per_day: the run's own work per day, whatever its size (each day's
            commits, materializations and check evaluations, all three assets).
        cpu_seconds_per_completion: the run's own work per completion received (decode,
            frames, rows written), all three assets with their checks.
        run_overhead_seconds: a run's fixed cost (process start-up, imports, planning).
        base_memory_bytes: peak RSS of a run holding almost nothing.
        bytes_per_completion: memory per completion of the day a run holds.
        streaming: True for an I/O manager that commits day by day (ours: a run holds at
            most the busiest days); False for one that is handed the whole range.
    """

    page_size: int = 100
    concurrency: int = 8
    latency_seconds: float | None = None
    cpu_seconds_per_day: float = 0.36
    cpu_seconds_per_completion: float = 0.00026
    run_overhead_seconds: float = 5.5
    base_memory_bytes: int = 254 * MiB
    bytes_per_completion: int = 10_700
    streaming: bool = True


DEFAULT_ASSUMPTIONS = Assumptions()
"""The defaults, fitted by ``python bench/planner_calibration.py`` on this project's 2-core
machine (``dagster asset materialize`` of the three assets with their checks, 12 to 36 days,
300 to 8,000 completions a day): start-up 5.7 s, 0.36 s per day, 0.26 ms per completion
received; peak RSS 254 MiB + 10.7 KB per completion of the busiest day. Against ``make bench``
(all three assets and checks, 25 ms per request, concurrency 8) they give 24.3 s for 31 days
and 114.6 s for 180 days: measured 22.0 and 108.4 s on commit 3724107 (10% and 6% high), and
10.0 and 44.2 s on commit 8871271, on a day the machine ran twice as fast (2.4x and 2.6x
high). Other machines and days differ: measure yours with that script and pass an
:class:`Assumptions`."""


@dataclass(frozen=True)
class DayProbe:
    """One day's probe: the ``total`` of a one-day run's padded window."""

    day: dt.date
    window_total: int


@dataclass(frozen=True)
class RunPlan:
    """One planned run: its days, its window's ``total``, and what it will cost."""

    first: dt.date
    last: dt.date
    window_total: int
    requests: int
    seconds: float
    peak_memory_bytes: int

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


@dataclass(frozen=True)
class BackfillPlan:
    """A backfill of ``days`` cut into ``runs``; see the module docstring for what is exact."""

    days: Sequence[DayProbe]
    runs: Sequence[RunPlan]
    max_partitions_per_run: int | None
    assumptions: Assumptions
    probe_requests: int
    memory_budget_bytes: int | None = None
    recommended_max_partitions_per_run: int | None = None
    recommendation: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        """Requests of the backfill's sweeps (one per page), the probes not included."""
        return sum(r.requests for r in self.runs)

    @property
    def seconds(self) -> float:
        """Estimated wall seconds, the runs one after another."""
        return sum(r.seconds for r in self.runs)

    @property
    def peak_memory_bytes(self) -> int:
        return max((r.peak_memory_bytes for r in self.runs), default=self.assumptions.base_memory_bytes)

    def to_text(self) -> str:
        """The plan as a terminal report: per day, per run, totals, assumptions."""
        return "\n".join(_report(self, markdown=False))

    def to_markdown(self) -> str:
        """The plan as markdown, for the UI's metadata."""
        return "\n".join(_report(self, markdown=True))


def parse_size(text: str) -> int:
    """``2GiB``, ``512MiB``, ``1.5GB``, ``800M`` or a number of bytes, as bytes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(i?)B?\s*", text, flags=re.I)
    if not match:
        raise CloudglueConfigError(f"memory must be like 2GiB, 512MiB or 1.5GB, got {text!r}")
    number, unit, binary = float(match[1]), match[2].upper(), match[3]
    power = " KMGT".index(unit) if unit else 0
    return int(number * (1024 if binary or not unit else 1000) ** power)


def _sweep_requests(total: int, page_size: int) -> int:
    return max(1, math.ceil(total / page_size))


def _run_plan(first: dt.date, last: dt.date, total: int, held: int, a: Assumptions, latency: float) -> RunPlan:
    requests = _sweep_requests(total, a.page_size)
    # The first page tells how many there are; the others go `concurrency` at a time.
    api = latency * (1 + math.ceil((requests - 1) / a.concurrency))
    days = (last - first).days + 1
    cpu = a.cpu_seconds_per_day * days + a.cpu_seconds_per_completion * total
    # Added, not overlapped: chat_completions writes its days during the sweep, but the other
    # assets and the checks run after it (what overlaps is small next to the error of either).
    return RunPlan(
        first,
        last,
        total,
        requests,
        round(a.run_overhead_seconds + api + cpu, 1),
        a.base_memory_bytes + a.bytes_per_completion * held,
    )


def _chunks(days: Sequence[dt.date], size: int | None) -> list[tuple[dt.date, dt.date]]:
    """The runs Dagster's backfill policy makes: consecutive ``size`` days (all, for None)."""
    size = size or len(days)
    return [(days[i], days[min(i + size, len(days)) - 1]) for i in range(0, len(days), size)]


def _held(probes: dict[dt.date, int], first: dt.date, last: dt.date, streaming: bool) -> int:
    """Completions a run holds at its peak: its busiest day (streaming) or all of its days."""
    window = [probes[first + dt.timedelta(days=i)] for i in range((last - first).days + 1)]
    return max(window) if streaming else sum(window)


def plan_from_probes(
    days: Sequence[DayProbe],
    run_totals: dict[tuple[dt.date, dt.date], int],
    *,
    max_partitions_per_run: int | None,
    assumptions: Assumptions,
    latency_seconds: float,
    probe_requests: int,
    memory_budget_bytes: int | None = None,
) -> BackfillPlan:
    """The plan, from the probes' totals (pure; :func:`plan_backfill` does the probing)."""
    probes = {p.day: p.window_total for p in days}
    runs = [
        _run_plan(
            first,
            last,
            run_totals[first, last],
            _held(probes, first, last, assumptions.streaming),
            assumptions,
            latency_seconds,
        )
        for first, last in _chunks([p.day for p in days], max_partitions_per_run)
    ]
    plan = BackfillPlan(
        days,
        runs,
        max_partitions_per_run,
        replace(assumptions, latency_seconds=latency_seconds),
        probe_requests,
        memory_budget_bytes,
    )
    if memory_budget_bytes is None:
        return plan
    recommended, text = _recommend(probes, assumptions, memory_budget_bytes)
    return replace(plan, recommended_max_partitions_per_run=recommended, recommendation=text)


def _recommend(probes: dict[dt.date, int], a: Assumptions, budget: int) -> tuple[int | None, str]:
    """The largest ``max_partitions_per_run`` whose every run fits ``budget`` (None: all in one)."""
    days = sorted(probes)
    for size in range(len(days), 0, -1):
        if all(
            a.base_memory_bytes + a.bytes_per_completion * _held(probes, first, last, a.streaming) <= budget
            for first, last in _chunks(days, size)
        ):
            chosen = None if size == len(days) else size
            label = "None (the whole range in one run)" if chosen is None else str(chosen)
            return chosen, f"max_partitions_per_run = {label} fits {budget / MiB:,.0f} MiB"
    need = a.base_memory_bytes + a.bytes_per_completion * max(probes.values(), default=0)
    return 1, (
        f"no split fits {budget / MiB:,.0f} MiB: the busiest day alone needs about {need / MiB:,.0f} MiB;"
        " give the run more memory"
    )


def plan_backfill(
    client: CloudglueClient,
    start: dt.date,
    end: dt.date,
    *,
    max_partitions_per_run: int | None = None,
    assumptions: Assumptions = DEFAULT_ASSUMPTIONS,
    memory_budget_bytes: int | None = None,
) -> BackfillPlan:
    """Probe ``start..end`` (UTC days, both included) with ``limit=1`` requests, concurrently
    with the client's retries and rate budget, and plan the backfill.

    Raises:
        CloudglueConfigError: ``end`` before ``start``; the client's errors as they come.
    """
    if end < start:
        raise CloudglueConfigError(f"end {end.isoformat()} is before start {start.isoformat()}")
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    windows = {(d, d) for d in days} | set(_chunks(days, max_partitions_per_run))
    seconds: list[float] = []

    def probe(window: tuple[dt.date, dt.date]) -> int:
        began = time.monotonic()
        total = client.list_chat_completions(
            limit=1, created_after=window[0] - _ONE_DAY, created_before=window[1] + _ONE_DAY
        ).total
        seconds.append(time.monotonic() - began)
        return total

    ordered = sorted(windows)
    with ThreadPoolExecutor(max_workers=client.max_concurrent_requests) as pool:
        totals = dict(zip(ordered, pool.map(probe, ordered)))
    latency = assumptions.latency_seconds if assumptions.latency_seconds is not None else statistics.median(seconds)
    return plan_from_probes(
        [DayProbe(d, totals[d, d]) for d in days],
        totals,
        max_partitions_per_run=max_partitions_per_run,
        assumptions=assumptions,
        latency_seconds=latency,
        probe_requests=len(ordered),
        memory_budget_bytes=memory_budget_bytes,
    )


def _report(plan: BackfillPlan, *, markdown: bool) -> list[str]:
    a = plan.assumptions

    def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
        if markdown:
            return [
                "| " + " | ".join(header) + " |",
                "|" + "---|" * len(header),
                *("| " + " | ".join(map(str, r)) + " |" for r in rows),
            ]
        widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
        return ["  ".join(str(x).rjust(w) for x, w in zip(r, widths)) for r in (header, *rows)]

    first, last = plan.days[0].day, plan.days[-1].day
    lines = [f"{'## ' if markdown else ''}Backfill plan: {first}..{last} ({len(plan.days)} UTC days)", ""]
    lines += table(
        ["day", "one-day window", "one-day requests"],
        [(p.day, f"{p.window_total:,}", _sweep_requests(p.window_total, a.page_size)) for p in plan.days],
    )
    lines += ["", f"{len(plan.runs)} run(s) (max_partitions_per_run = {plan.max_partitions_per_run}):", ""]
    lines += table(
        ["run", "days", "window completions", "requests", "est. seconds", "est. peak memory"],
        [
            (
                f"{r.first}..{r.last}",
                r.days,
                f"{r.window_total:,}",
                f"{r.requests:,}",
                f"{r.seconds:,.1f}",
                f"{r.peak_memory_bytes / MiB:,.0f} MiB",
            )
            for r in plan.runs
        ],
    )
    lines += [
        "",
        f"Total: {plan.requests:,} requests (exact, for honest answers), about {plan.seconds:,.0f} s with the runs one"
        f" after another, at most about {plan.peak_memory_bytes / MiB:,.0f} MiB per run; planned with"
        f" {plan.probe_requests:,} limit=1 requests.",
    ]
    if plan.recommendation:
        lines += [f"Memory budget: {plan.recommendation}."]
    lines += [
        "",
        f"Assumptions: {a.latency_seconds:.3f} s per request (the probes' median unless given),"
        f" {a.concurrency} requests at once, {a.page_size} per page; the run's own work"
        f" {a.cpu_seconds_per_day:.2f} s per day + {a.cpu_seconds_per_completion * 1000:.2f} ms per completion"
        f" received, {a.run_overhead_seconds:.1f} s of start-up per run, API time and work added;"
        f" {a.base_memory_bytes / MiB:,.0f} MiB + {a.bytes_per_completion:,} bytes per completion held;"
        f" a run holds {'its busiest day (day-by-day commits)' if a.streaming else 'all its days (the whole range)'}."
        " A day's window includes some of its neighbours' completions under some readings of the API's"
        " dates, so memory errs on the high side.",
    ]
    return lines
