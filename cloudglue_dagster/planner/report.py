"""A :class:`~cloudglue_dagster.planner.plan.BackfillPlan` as text or markdown: per day, per run, totals, assumptions.

A plan of chat completions alone (``responses=False``) prints as it did before the Responses
API was planned; a plan of both adds each run's responses window and requests, and the totals
per endpoint.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .plan import BackfillPlan

__all__ = ["report_lines"]

_MiB = 1024**2


def _table(header: Sequence[str], rows: Sequence[Sequence[object]], markdown: bool) -> list[str]:
    if markdown:
        return [
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
            *("| " + " | ".join(map(str, r)) + " |" for r in rows),
        ]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    return ["  ".join(str(x).rjust(w) for x, w in zip(r, widths)) for r in (header, *rows)]


def report_lines(plan: BackfillPlan, *, markdown: bool) -> list[str]:
    """The report's lines (markdown: headings and tables for the UI's metadata)."""
    a = plan.assumptions
    both = plan.plans_responses
    first, last = plan.days[0].day, plan.days[-1].day
    lines = [f"{'## ' if markdown else ''}Backfill plan: {first}..{last} ({len(plan.days)} UTC days)", ""]
    lines += _table(
        ["day", "one-day window", "one-day requests"],
        [(p.day, f"{p.window_total:,}", max(1, math.ceil(p.window_total / a.page_size))) for p in plan.days],
        markdown,
    )
    lines += ["", f"{len(plan.runs)} run(s) (max_partitions_per_run = {plan.max_partitions_per_run}):", ""]
    if both:
        header = ["run", "days", "window completions", "completion requests", "window responses", "response requests"]
    else:
        header = ["run", "days", "window completions", "requests"]
    lines += _table(
        [*header, "est. seconds", "est. peak memory"],
        [
            (
                f"{r.first}..{r.last}",
                r.days,
                f"{r.window_total:,}",
                f"{r.requests:,}",
                *((f"{r.responses_window_total or 0:,}", f"{r.responses_requests:,}") if both else ()),
                f"{r.seconds:,.1f}",
                f"{r.peak_memory_bytes / _MiB:,.0f} MiB",
            )
            for r in plan.runs
        ],
        markdown,
    )
    split = f": {plan.completion_requests:,} chat completions + {plan.responses_requests:,} responses" if both else ""
    lines += [
        "",
        f"Total: {plan.requests:,} requests (exact, for honest answers{split}), about {plan.seconds:,.0f} s with the"
        f" runs one after another, at most about {plan.peak_memory_bytes / _MiB:,.0f} MiB per run; planned with"
        f" {plan.probe_requests:,} limit=1 requests.",
    ]
    if plan.recommendation:
        lines += [f"Memory budget: {plan.recommendation}."]
    lines += [f"Note: {note}." for note in plan.notes]
    responses = (
        f" Responses: {a.cpu_seconds_per_response * 1000:.2f} ms of work and {a.bytes_per_response:,} bytes"
        " each (the work the completions' figure, an upper bound; the memory measured, rounded up), their"
        " sweep's API time and work added to the completions'."
        if both
        else ""
    )
    lines += [
        "",
        f"Assumptions: {a.latency_seconds:.3f} s per request (the probes' median unless given),"
        f" {a.concurrency} requests at once, {a.page_size} per page; the run's own work"
        f" {a.cpu_seconds_per_day:.2f} s per day + {a.cpu_seconds_per_completion * 1000:.2f} ms per completion"
        f" received, {a.run_overhead_seconds:.1f} s of start-up per run, API time and work added;"
        f" {a.base_memory_bytes / _MiB:,.0f} MiB + {a.bytes_per_completion:,} bytes per completion held;"
        f" a run holds {'its busiest day (day-by-day commits)' if a.streaming else 'all its days (the whole range)'}."
        " A day's window includes some of its neighbours' completions under some readings of the API's"
        f" dates, so memory errs on the high side.{responses}",
    ]
    return lines
