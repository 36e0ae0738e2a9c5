"""Per-day record counts of the emulator's data sets, derived cheaply from the seed.

A data set knows how many records each of its days holds before any is generated, so
totals and full-day pages cost nothing; this module draws those counts.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from datetime import date

__all__ = ["derive_counts"]


def derive_counts(
    days: list[date],
    per_day: int,
    seed: int,
    empty_days: Iterable[date] | None,
    counts: Mapping[date, int],
    salt: str = "count",
) -> dict[date, int]:
    """Record count of each of ``days`` (consecutive, ascending), from ``(salt, seed, day)``.

    ``counts`` fixes some days; ``empty_days`` (if given) are exactly the empty ones, else
    about 1 day in 7 is, never the first or last, at least one when there are 7 days or
    more. Other days hold ~``per_day`` (busy ones up to ~2.5x, quiet ones down to ~0.25x).
    Shared by the chat completions' :class:`~.data.Dataset` (salt ``count``) and the
    responses' :class:`~.responses.ResponsesDataset` (another salt, so other counts).
    """
    start, end = days[0], days[-1]
    for d, c in counts.items():
        if not start <= d <= end:
            raise ValueError(f"counts: {d} is outside {start}..{end}")
        if c < 0:
            raise ValueError(f"counts: negative count for {d}")
    rngs = {d: random.Random(f"cloudglue-emulator:{salt}:{seed}:{d.isoformat()}") for d in days}
    if empty_days is not None:
        empty = set(empty_days)
        for d in empty:
            if not start <= d <= end:
                raise ValueError(f"empty_days: {d} is outside {start}..{end}")
    else:
        draws = {d: rngs[d].random() for d in days[1:-1]}
        empty = {d for d, u in draws.items() if u < 1 / 7}
        if not empty and len(days) >= 7:
            empty = {min(draws, key=draws.__getitem__)}
    out: dict[date, int] = {}
    for d in days:
        if d in counts:
            out[d] = counts[d]
        elif d in empty or per_day == 0:
            out[d] = 0
        else:
            r = rngs[d]
            u = r.random()
            if u < 0.10:
                factor = r.uniform(1.6, 2.5)  # busy day
            elif u < 0.25:
                factor = r.uniform(0.25, 0.6)  # quiet day
            else:
                factor = r.uniform(0.8, 1.2)
            out[d] = max(1, round(per_day * factor))
    return out
