"""One client's request budget: how many requests may be in flight, and when.

Standard library only. A 429 means the account, not the request, is over its
rate: so it pauses every request of the client (honouring ``Retry-After``)
and halves the concurrency; a run of successes then raises it again by one
(additive increase, multiplicative decrease, as TCP does).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from cloudglue_dagster.errors import CloudglueError

__all__ = ["Throttle", "ThrottleClosed"]


class ThrottleClosed(CloudglueError):
    """A request waited for a slot of a throttle that was closed."""


class Throttle:
    """Adaptive concurrency limit plus a shared pause, for the threads of one client.

    Args:
        max_concurrency: the ceiling (``max_concurrent_requests``).
        recover_after: consecutive successes that raise the limit by one.
    """

    def __init__(self, max_concurrency: int, recover_after: int = 20) -> None:
        self.max_concurrency = max_concurrency
        self.recover_after = recover_after
        self._limit = max_concurrency
        self._in_flight = 0
        self._successes = 0
        self._pause_until = 0.0
        self._closed = False
        self._cond = threading.Condition()
        self.rate_limited = 0
        """How many 429s this client received."""
        self.lowest_limit = max_concurrency
        """The lowest concurrency the client fell to."""

    @property
    def limit(self) -> int:
        """Requests currently allowed in flight."""
        return self._limit

    @contextmanager
    def slot(self, cancel: threading.Event | None = None) -> Iterator[None]:
        """Hold one in-flight slot; waits for a free slot and for any shared pause to end.

        Raises:
            ThrottleClosed: :meth:`close` was called, or ``cancel`` set, while waiting.
        """
        with self._cond:
            while True:
                if self._closed or (cancel is not None and cancel.is_set()):
                    raise ThrottleClosed("the request was stopped while it waited for a slot")
                wait = self._pause_until - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait if cancel is None else min(wait, 0.1))
                elif self._in_flight < self._limit:
                    break
                else:
                    self._cond.wait(None if cancel is None else 0.1)
            self._in_flight += 1
        try:
            yield
        finally:
            with self._cond:
                self._in_flight -= 1
                self._cond.notify_all()

    def close(self) -> None:
        """Wake every waiting request and make it give up (the client is closing)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def succeeded(self) -> None:
        """Record a success; after ``recover_after`` in a row, allow one more request in flight."""
        with self._cond:
            self._successes += 1
            if self._successes >= self.recover_after and self._limit < self.max_concurrency:
                self._limit += 1
                self._successes = 0
                self._cond.notify_all()

    def throttled(self, pause_seconds: float) -> int:
        """Record a 429: pause every request for ``pause_seconds`` and halve the limit
        (once per pause: the answers to requests already in flight do not halve it again).

        Returns the new limit.
        """
        with self._cond:
            now = time.monotonic()
            self.rate_limited += 1
            self._successes = 0
            # Requests already in flight when the first 429 came back will get
            # 429s too: halve once per pause, not once per answer.
            if now >= self._pause_until:
                self._limit = max(1, self._limit // 2)
                self.lowest_limit = min(self.lowest_limit, self._limit)
            self._pause_until = max(self._pause_until, now + pause_seconds)
            self._cond.notify_all()
            return self._limit
