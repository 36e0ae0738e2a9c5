"""How the assets' steps fail, retry and stop: the Dagster side of :func:`.errors.is_transient`.

Dagster applies an op's ``RetryPolicy`` to every exception *and to interrupts*: SIGTERM or
SIGINT during a step with a policy (the UI's *Terminate*, Ctrl-C) becomes a step retry, and the
run goes on. So the assets carry no Dagster retry policy. Instead :func:`step_errors` asks for
a retry (``dg.RetryRequested``, timed by the factory's ``retry_policy``) only for transient
errors; a permanent error fails the step at once; an interrupt ends the run.

A run can also be marked CANCELING without any signal reaching its process (the UI's
*Terminate* on a run started by ``dagster asset materialize``): :class:`TerminationWatch`
polls the run's status while the sweep runs and before anything is written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import dagster as dg

from .errors import CloudglueError, is_transient
from .transport import Logger

__all__ = ["RunTerminatedError", "TerminationWatch", "retry_delay", "step_errors", "terminated_status"]

T = TypeVar("T")

_TERMINATED = (dg.DagsterRunStatus.CANCELING, dg.DagsterRunStatus.CANCELED)


def terminated_status(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRunStatus | None:
    """The run's status if it was terminated (CANCELING: the UI's Terminate; CANCELED), else None."""
    # Asked for every day written: an id-only query (2.6 ms on SQLite) instead of reading and
    # deserializing the run (5.9 ms); the run itself only once it was terminated.
    if not instance.get_run_ids(filters=dg.RunsFilter(run_ids=[run_id], statuses=list(_TERMINATED)), limit=1):
        return None
    run = instance.get_run_by_id(run_id)
    return run.status if run is not None and run.status in _TERMINATED else None


def retry_delay(policy: dg.RetryPolicy, retry_number: int) -> float:
    """Seconds before step retry ``retry_number + 1`` (``retry_number`` = retries so far),
    exactly as Dagster computes it for ``policy`` (exponential: ``(2**n - 1) * delay``)."""
    return float(policy.calculate_delay(retry_number + 1))


@contextmanager
def step_errors(
    context: dg.AssetExecutionContext,
    retry_policy: dg.RetryPolicy | None,
    stored: Callable[[], str] | None = None,
    log: Logger | None = None,
) -> Iterator[None]:
    """Transient :class:`CloudglueError` -> a step retry per ``retry_policy`` (or a failure
    when it is None); any other :class:`CloudglueError` -> ``dg.Failure`` that Dagster never
    retries. Interrupts and other exceptions pass through unchanged: the assets carry no
    Dagster retry policy, so nothing else is ever retried.

    ``stored`` says what the step has stored so far; it ends the failure's message (and the
    retry's log line), so the error and the log agree on what was kept. ``log`` (default
    ``context.log``) gets the retry's warning, which quotes the error: the step gives its
    masked log (:class:`~cloudglue_dagster.secrecy.MaskedLog`)."""
    try:
        yield
    except CloudglueError as exc:
        said = f"{exc} {stored()}" if stored is not None else str(exc)
        if is_transient(exc) and retry_policy is not None:
            (log or context.log).warning(
                f"{said} Step retry {context.retry_number + 1} of {retry_policy.max_retries} in"
                f" {retry_delay(retry_policy, context.retry_number):.0f}s."
            )
            raise dg.RetryRequested(
                max_retries=retry_policy.max_retries,
                seconds_to_wait=retry_delay(retry_policy, context.retry_number),
            ) from exc
        raise dg.Failure(description=said, allow_retries=False) from exc


class RunTerminatedError(CloudglueError):
    """The run was terminated (marked CANCELING or CANCELED) while the step ran; the step
    wrote nothing more after that (days it had committed before stay). Permanent."""


class TerminationWatch:
    """Raises :class:`RunTerminatedError` once the run is CANCELING or CANCELED.

    Args:
        context: the step's context (its instance and run id).
        every: seconds between two status reads while :meth:`watch` iterates. Default 1.
    """

    def __init__(self, context: dg.AssetExecutionContext, every: float = 1.0) -> None:
        self._instance = context.instance
        self._run_id = context.run.run_id
        self._every = every
        self._next = time.monotonic() + every

    def check(self) -> None:
        """Read the run's status now; raise if it was terminated."""
        status = terminated_status(self._instance, self._run_id)
        if status is not None:
            raise RunTerminatedError(
                f"Run {self._run_id} was terminated ({status.value}); this step stopped. The days"
                " it had committed are kept; no other day was written."
            )

    def poll(self) -> None:
        """:meth:`check`, if ``every`` seconds have passed since the last read.

        A status read costs a query of Dagster's run storage (5-20 ms on SQLite): reading it
        for every day of a range cost seconds. Nothing is lost by skipping some: the I/O manager
        reads it again before a write commits (a range's first commit, then at least every
        :data:`~cloudglue_dagster.duckdb.day_store.STATUS_EVERY_SECONDS`)."""
        if time.monotonic() >= self._next:
            self.check()
            self._next = time.monotonic() + self._every

    def watch(self, items: Iterable[T]) -> Iterator[T]:
        """``items``, checking the run's status at most every ``every`` seconds."""
        for item in items:
            self.poll()
            yield item
