"""Plan a backfill before running it: requests, time and memory per run, and how to split it.

No Dagster. The API's ``total`` is known from one ``limit=1`` request, so a year can be planned
with a few hundred cheap, concurrent requests:

* each day: the ``total`` of the padded window a one-day run asks for (``created_after`` =
  the day before, ``created_before`` = the day after): the completions that run would receive
  (the day's own, and, depending on how the API reads the dates, some of its neighbours'), so
  its requests exactly, and an upper bound of the day's size;
* each planned run (the range cut into ``max_partitions_per_run`` days, as Dagster's
  backfill policy cuts it): the ``total`` of that run's padded window, so its sweep's requests
  exactly (``ceil(total / page_size)``, at least one) when the API answers honestly;
* with ``responses=True`` (the default, as the assets' option), each planned run's padded
  window of the Responses API (``GET /v1/responses``) too: the run's second sweep, so its
  requests exactly (at least one, even for an account with no responses). Responses are not
  probed per day (one probe per run, not one per day: the day table is the completions'), except
  the days of a run whose responses might weigh in its memory (more than
  :data:`REFINE_RESPONSES_BYTES`): a run's busiest day of responses is bounded by its window's
  total otherwise, a bound that costs no request and errs high.

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

from .report import report_lines

__all__ = [
    "DEFAULT_ASSUMPTIONS",
    "REFINE_RESPONSES_BYTES",
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
        cpu_seconds_per_response: the run's own work per response received (the Responses
            API's second sweep): the completions' figure, an upper bound (see
            :data:`DEFAULT_ASSUMPTIONS`).
        bytes_per_response: memory per response of the day a run holds (measured, see
            :data:`DEFAULT_ASSUMPTIONS`).
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
    cpu_seconds_per_response: float = 0.00026
    bytes_per_response: int = 1_000
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
:class:`Assumptions`.

The Responses API's figures are not fitted on runs (the emulator does not serve
``/v1/responses`` yet). ``python bench/responses_cost.py`` (100,000 synthetic list items of 286
bytes of JSON; on d7b0d83 with this change, this 2-core machine at a load of 3.6) measured decoding
(``decode_responses_page``) 2.5 us, ``responses_frame`` 2.7 us and a DuckDB write 1.0 us per
response, and a ``tracemalloc`` peak of 779 bytes per response holding the records and their
frame: ``bytes_per_response`` is that figure rounded up to 1,000 (the allocator's overhead is
not traced). ``cpu_seconds_per_response`` reuses the completions' 0.26 ms, an upper bound: a
completion's figure covers three tables (and its messages) from ~1.4 KB of JSON, a response is
one row from ~300 bytes, and the stages measured cost 6.1 us of it. The responses step's own
work per day (its commits, ``llm_usage`` and their checks) is not counted: not measured yet."""

REFINE_RESPONSES_BYTES = 16 * MiB
"""A run whose responses window, held whole, would weigh more than this (at
``bytes_per_response``) has its days' responses probed, so that its memory counts its busiest
day of responses rather than its whole window (16 MiB: 6% of a run's base, about 16,800
responses at 1,000 bytes; below it, the bound's error is smaller than the estimate's)."""


@dataclass(frozen=True)
class DayProbe:
    """One day's probe: the ``total`` of a one-day run's padded window (chat completions), and
    of its responses' window when probed (None: not probed, see the module docstring)."""

    day: dt.date
    window_total: int
    responses_window_total: int | None = None


@dataclass(frozen=True)
class RunPlan:
    """One planned run: its days, its windows' ``total``, and what it will cost.

    ``window_total`` and ``requests`` are the chat completions' window and sweep;
    ``responses_window_total`` and ``responses_requests`` the Responses API's (None and 0 when
    responses are not planned); ``seconds`` and ``peak_memory_bytes`` count both."""

    first: dt.date
    last: dt.date
    window_total: int
    requests: int
    seconds: float
    peak_memory_bytes: int
    responses_window_total: int | None = None
    responses_requests: int = 0

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    @property
    def all_requests(self) -> int:
        """The run's requests, both sweeps."""
        return self.requests + self.responses_requests


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
        """Requests of the backfill's sweeps (one per page, both endpoints), the probes not included."""
        return sum(r.all_requests for r in self.runs)

    @property
    def completion_requests(self) -> int:
        """Requests of the chat completions' sweeps."""
        return sum(r.requests for r in self.runs)

    @property
    def responses_requests(self) -> int:
        """Requests of the responses' sweeps (0 when responses are not planned)."""
        return sum(r.responses_requests for r in self.runs)

    @property
    def plans_responses(self) -> bool:
        """Whether the plan covers the Responses API."""
        return any(r.responses_window_total is not None for r in self.runs)

    @property
    def seconds(self) -> float:
        """Estimated wall seconds, the runs one after another."""
        return sum(r.seconds for r in self.runs)

    @property
    def peak_memory_bytes(self) -> int:
        return max((r.peak_memory_bytes for r in self.runs), default=self.assumptions.base_memory_bytes)

    def to_text(self) -> str:
        """The plan as a terminal report: per day, per run, totals, assumptions."""
        return "\n".join(report_lines(self, markdown=False))

    def to_markdown(self) -> str:
        """The plan as markdown, for the UI's metadata."""
        return "\n".join(report_lines(self, markdown=True))


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


def _api_seconds(requests: int, a: Assumptions, latency: float) -> float:
    # The first page tells how many there are; the others go `concurrency` at a time.
    return latency * (1 + math.ceil((requests - 1) / a.concurrency))


Window = tuple[dt.date, dt.date]


@dataclass(frozen=True)
class _Responses:
    """What the probes tell of the responses: each planned run's window total, and the days probed."""

    runs: dict[Window, int]
    days: dict[dt.date, int]

    def run_of(self, day: dt.date) -> Window:
        return next(w for w in self.runs if w[0] <= day <= w[1])

    def held(self, first: dt.date, last: dt.date, streaming: bool) -> int:
        """An upper bound of the responses a run over ``first..last`` holds at its peak: its
        busiest day (a day not probed: its planned run's window total), or (not streaming) the
        windows of the planned runs it overlaps."""
        days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
        if streaming:
            return max(self.days.get(d, self.runs[self.run_of(d)]) for d in days)
        return sum(self.runs[w] for w in {self.run_of(d) for d in days})


def _memory(a: Assumptions, completions: int, responses: int) -> int:
    return a.base_memory_bytes + a.bytes_per_completion * completions + a.bytes_per_response * responses


def _run_plan(
    first: dt.date,
    last: dt.date,
    total: int,
    held: int,
    a: Assumptions,
    latency: float,
    responses: _Responses | None,
) -> RunPlan:
    requests = _sweep_requests(total, a.page_size)
    days = (last - first).days + 1
    cpu = a.cpu_seconds_per_day * days + a.cpu_seconds_per_completion * total
    # Added, not overlapped: chat_completions writes its days during the sweep, but the other
    # assets and the checks run after it (what overlaps is small next to the error of either).
    seconds = a.run_overhead_seconds + _api_seconds(requests, a, latency) + cpu
    if responses is None:
        return RunPlan(first, last, total, requests, round(seconds, 1), _memory(a, held, 0))
    # The responses' sweep is the run's second step, after the first in the in-process
    # executor: its API time and work add.
    r_total = responses.runs[first, last]
    r_requests = _sweep_requests(r_total, a.page_size)
    seconds += _api_seconds(r_requests, a, latency) + a.cpu_seconds_per_response * r_total
    memory = _memory(a, held, responses.held(first, last, a.streaming))
    return RunPlan(first, last, total, requests, round(seconds, 1), memory, r_total, r_requests)


def _chunks(days: Sequence[dt.date], size: int | None) -> list[Window]:
    """The runs Dagster's backfill policy makes: consecutive ``size`` days (all, for None)."""
    size = size or len(days)
    return [(days[i], days[min(i + size, len(days)) - 1]) for i in range(0, len(days), size)]


def _held(probes: dict[dt.date, int], first: dt.date, last: dt.date, streaming: bool) -> int:
    """Completions a run holds at its peak: its busiest day (streaming) or all of its days."""
    window = [probes[first + dt.timedelta(days=i)] for i in range((last - first).days + 1)]
    return max(window) if streaming else sum(window)


def plan_from_probes(
    days: Sequence[DayProbe],
    run_totals: dict[Window, int],
    *,
    max_partitions_per_run: int | None,
    assumptions: Assumptions,
    latency_seconds: float,
    probe_requests: int,
    memory_budget_bytes: int | None = None,
    responses_run_totals: dict[Window, int] | None = None,
) -> BackfillPlan:
    """The plan, from the probes' totals (pure; :func:`plan_backfill` does the probing).

    ``responses_run_totals``: each planned run's responses window total (None: responses not
    planned); the days' ``responses_window_total``, where probed, bound their runs' memory."""
    probes = {p.day: p.window_total for p in days}
    responses = (
        None
        if responses_run_totals is None
        else _Responses(
            dict(responses_run_totals),
            {p.day: p.responses_window_total for p in days if p.responses_window_total is not None},
        )
    )
    runs = [
        _run_plan(
            first,
            last,
            run_totals[first, last],
            _held(probes, first, last, assumptions.streaming),
            assumptions,
            latency_seconds,
            responses,
        )
        for first, last in _chunks([p.day for p in days], max_partitions_per_run)
    ]
    notes = []
    if responses is not None and responses.days:
        notes.append(
            f"responses probed per day for {len(responses.days):,} day(s), in runs whose responses would weigh"
            f" more than {REFINE_RESPONSES_BYTES / MiB:,.0f} MiB; elsewhere a run's busiest day of responses is"
            " bounded by its window's total"
        )
    plan = BackfillPlan(
        days,
        runs,
        max_partitions_per_run,
        replace(assumptions, latency_seconds=latency_seconds),
        probe_requests,
        memory_budget_bytes,
        notes=notes,
    )
    if memory_budget_bytes is None:
        return plan
    recommended, text = _recommend(probes, responses, assumptions, memory_budget_bytes)
    return replace(plan, recommended_max_partitions_per_run=recommended, recommendation=text)


def _recommend(
    probes: dict[dt.date, int], responses: _Responses | None, a: Assumptions, budget: int
) -> tuple[int | None, str]:
    """The largest ``max_partitions_per_run`` whose every run fits ``budget`` (None: all in one)."""
    days = sorted(probes)

    def need(first: dt.date, last: dt.date) -> int:
        held_responses = 0 if responses is None else responses.held(first, last, a.streaming)
        return _memory(a, _held(probes, first, last, a.streaming), held_responses)

    for size in range(len(days), 0, -1):
        if all(need(first, last) <= budget for first, last in _chunks(days, size)):
            chosen = None if size == len(days) else size
            label = "None (the whole range in one run)" if chosen is None else str(chosen)
            return chosen, f"max_partitions_per_run = {label} fits {budget / MiB:,.0f} MiB"
    busiest = max((need(d, d) for d in days), default=a.base_memory_bytes)
    return 1, (
        f"no split fits {budget / MiB:,.0f} MiB: the busiest day alone needs about {busiest / MiB:,.0f} MiB;"
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
    responses: bool = True,
) -> BackfillPlan:
    """Probe ``start..end`` (UTC days, both included) with ``limit=1`` requests, concurrently
    with the client's retries and rate budget, and plan the backfill.

    ``responses`` (default True, as the assets' option): plan the Responses API's sweep too,
    one more probe per planned run (and per day of a run with many responses); False plans
    chat completions alone and sends nothing to ``/v1/responses``.

    Raises:
        CloudglueConfigError: ``end`` before ``start``; the client's errors as they come.
    """
    if end < start:
        raise CloudglueConfigError(f"end {end.isoformat()} is before start {start.isoformat()}")
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    runs = _chunks(days, max_partitions_per_run)
    seconds: list[float] = []

    def probe(job: tuple[str, Window]) -> int:
        endpoint, (first, last) = job
        list_page = client.list_responses if endpoint == "responses" else client.list_chat_completions
        began = time.monotonic()
        total = list_page(limit=1, created_after=first - _ONE_DAY, created_before=last + _ONE_DAY).total
        seconds.append(time.monotonic() - began)
        return total

    def probe_all(jobs: list[tuple[str, Window]]) -> dict[tuple[str, Window], int]:
        with ThreadPoolExecutor(max_workers=client.max_concurrent_requests) as pool:
            return dict(zip(jobs, pool.map(probe, jobs)))

    jobs = [("chat", w) for w in sorted({(d, d) for d in days} | set(runs))]
    jobs += [("responses", w) for w in runs] if responses else []
    totals = probe_all(jobs)
    responses_runs = {w: totals["responses", w] for w in runs} if responses else None
    refine = [
        ("responses", (d, d))
        for (first, last), total in (responses_runs or {}).items()
        if assumptions.streaming and first != last and total * assumptions.bytes_per_response > REFINE_RESPONSES_BYTES
        for d in days
        if first <= d <= last
    ]
    if refine:  # a second round: only runs whose responses weigh in their memory need their days
        totals |= probe_all(refine)
    refined = {first for _, (first, _last) in refine}
    latency = assumptions.latency_seconds if assumptions.latency_seconds is not None else statistics.median(seconds)
    return plan_from_probes(
        [DayProbe(d, totals["chat", (d, d)], totals["responses", (d, d)] if d in refined else None) for d in days],
        {w: totals["chat", w] for w in runs},
        max_partitions_per_run=max_partitions_per_run,
        assumptions=assumptions,
        latency_seconds=latency,
        probe_requests=len(jobs) + len(refine),
        memory_budget_bytes=memory_budget_bytes,
        responses_run_totals=responses_runs,
    )
