"""Fetching many pages at once, yielded in offset order, with a bounded lookahead.

Standard library only. The client's first read of a window (:mod:`.sweep`) fetches the pages
after the first through :func:`fan_out`, whatever the endpoint.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor

from .sweep import Fetch, Page, R

__all__ = ["LOOKAHEAD_PAGES", "fan_out"]

LOOKAHEAD_PAGES = 64
"""Pages a concurrent read keeps asked for ahead of its consumer (in flight, or finished and
waiting), or twice ``max_concurrent_requests`` if that is more. The requests go on while the
consumer builds and writes a day: at 25 ms a request, 8 at once, 64 pages are about 0.2 s of
fetching, longer than a day's work in a range run. With only twice the concurrency ahead, the
pool stood idle whenever a day was written: at 2 requests at once, a 180-day sweep took 43.0 s
with 4 pages ahead, 30.7 s with 16 and 29.0 s with 64 (CHANGELOG.md, 0.2.0). At most about
6,400 completions wait: ~9 MB of JSON, ~40 MB as records."""


def fan_out(
    fetch: Fetch[R],
    offsets: Iterable[int],
    *,
    concurrency: int,
    cancel: threading.Event,
    abort_in_flight: Callable[[], None],
) -> Generator[tuple[int, Page[R]], None, None]:
    """Fetch ``offsets`` concurrently, yielding ``(offset, page)`` in offset order.

    At most ``concurrency`` are in flight, and at most :data:`LOOKAHEAD_PAGES` (or twice the
    concurrency, if more) are asked for ahead of the consumer, however long the window: the
    pool goes on fetching while the consumer works on what it received. Stopping early (the
    sweep found a problem, or an interrupt) sets ``cancel``, cuts what is in flight
    (``abort_in_flight``) and drops what is queued, so the workers end at once.
    """
    window = max(LOOKAHEAD_PAGES, 2 * concurrency)
    pool = ThreadPoolExecutor(concurrency, thread_name_prefix="cloudglue")
    pending: deque[tuple[int, Future[Page[R]]]] = deque()
    finished = False
    try:
        for offset in offsets:
            pending.append((offset, pool.submit(fetch, offset)))
            if len(pending) >= window:
                offset_done, future = pending.popleft()
                yield offset_done, future.result()
        while pending:
            offset_done, future = pending.popleft()
            yield offset_done, future.result()
        finished = True
    finally:
        if not finished:
            cancel.set()
            abort_in_flight()
        pool.shutdown(wait=True, cancel_futures=True)
        cancel.clear()
