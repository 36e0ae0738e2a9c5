"""How the assets' steps fail, retry and stop: the Dagster side of :func:`cloudglue_dagster.errors.is_transient`.

Dagster applies an op's ``RetryPolicy`` to every exception *and to interrupts*: SIGTERM or
SIGINT during a step with a policy (the UI's *Terminate*, Ctrl-C) becomes a step retry, and the
run goes on. So the assets carry no Dagster retry policy. Instead :func:`step_errors` asks for
a retry (``dg.RetryRequested``, timed by the factory's ``retry_policy``) only for transient
errors; a permanent error fails the step at once; an interrupt ends the run.

**Where a step retry waits: inside the next attempt.** Dagster waits out a
``RetryRequested(seconds_to_wait=...)`` between attempts, outside any step. The in-process
executor does it in one ``time.sleep`` (``ActiveExecution.sleep_til_ready``) during which a
SIGTERM or SIGINT is only noted (``capture_interrupts``) and nothing reads the run's status:
a stop took effect when the retried attempt started, after the rest of the delay (up to a
minute for the default policy's first retry, four for its third). The multiprocess executor
notices a signal between steps, but not a run marked CANCELING (the UI's *Terminate* of a run
no signal reaches). So :func:`step_errors` asks Dagster for an *immediate* retry (no
``seconds_to_wait``) and the retried attempt waits before it reads the API
(:func:`wait_for_step_retry`). Inside a step, in the process that runs it under either
executor, Dagster raises an interrupt at once (``raise_execution_interrupts``), and the wait
reads the run's status every second (:meth:`TerminationWatch.sleep`): a stop during the wait
ends the run within seconds, and the retried attempt fetches nothing. Dagster's own wait offers no way in: its executors take no
hook there, and nothing can end that ``time.sleep`` early (a signal sent to the process, by a
thread or from outside, meets Dagster's handler, which only notes it).

The delay is chosen once. :func:`retry_delay` follows Dagster's ``RetryPolicy.calculate_delay``
(its backoff, then its jitter rule), but draws the jitter's random number from (run id, step
key, retry number) instead of ``random()``: the attempt that asks for the retry logs the number
the next attempt waits. The wait counts from the time the retry was requested (the step's
STEP_UP_FOR_RETRY event), so the next attempt's start-up is part of it.

What this costs: while it waits, the retried attempt holds its step's slot of a concurrency
pool (Dagster frees it between attempts), so the other runs of that pool, the same account's,
wait too; the UI shows the step running, its log saying how long it waits; and under the
multiprocess executor the next attempt's process starts at the beginning of the wait (a few
seconds), so a stop in those seconds takes effect once it has started (Dagster's own wait
noticed a signal at once there). Waiting in the attempt that failed would avoid that, but there
the I/O manager may still hold the warehouse's connection, and its write lock, for the delay.

A run can also be marked CANCELING without any signal reaching its process (the UI's
*Terminate* on a run started by ``dagster asset materialize``): :class:`TerminationWatch`
polls the run's status while the sweep runs, during a retry's wait and before anything is
written.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import dagster as dg

from cloudglue_dagster.api.transport import Logger
from cloudglue_dagster.errors import CloudglueError, is_transient

__all__ = [
    "RunTerminatedError",
    "TerminationWatch",
    "policy_delay",
    "retry_delay",
    "step_errors",
    "terminated_status",
    "wait_for_step_retry",
]

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


def retry_delay(policy: dg.RetryPolicy, retry_number: int, *, run_id: str, step_key: str) -> float:
    """Seconds from the request of step retry ``retry_number + 1`` (``retry_number`` = retries
    so far) to that attempt reading the API: :func:`policy_delay` with its random number drawn
    from ``(run_id, step_key, retry_number)``, so every call for one retry of one step of one
    run gives the same delay (module docstring)."""
    return policy_delay(policy, retry_number, _uniform(f"{run_id}/{step_key}/{retry_number}"))


def policy_delay(policy: dg.RetryPolicy, retry_number: int, draw: float) -> float:
    """Seconds Dagster's ``policy.calculate_delay(retry_number + 1)`` gives when its
    ``random()`` returns ``draw`` (in [0, 1)): the backoff (exponential: ``(2**n - 1) * delay``),
    then the jitter (FULL: ``draw * backoff``; PLUS_MINUS: ``backoff +- delay``)."""
    base = float(policy.delay or 0)
    backoff = float(policy._replace(jitter=None).calculate_delay(retry_number + 1))
    if policy.jitter is dg.Jitter.FULL:
        return draw * backoff
    if policy.jitter is dg.Jitter.PLUS_MINUS:
        return backoff + ((2 * (draw * base)) - base)
    return backoff


def _uniform(seed: str) -> float:
    """A number in [0, 1) that depends only on ``seed``, spread like ``random.random()``."""
    return int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big") / 2**64


def _step_key(context: dg.AssetExecutionContext) -> str:
    # Through op_execution_context (what context.get_step_execution_context() calls): typed,
    # where the asset context's copy of the method is not.
    return context.op_execution_context.get_step_execution_context().step.key


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
    masked log (:class:`~cloudglue_dagster.api.secrecy.MaskedLog`).

    The retry is asked for at once; the next attempt waits the delay logged here before it
    reads the API (:func:`wait_for_step_retry`, module docstring)."""
    try:
        yield
    except CloudglueError as exc:
        said = f"{exc} {stored()}" if stored is not None else str(exc)
        if is_transient(exc) and retry_policy is not None:
            (log or context.log).warning(f"{said} {_retry_plan(context, retry_policy)}")
            raise dg.RetryRequested(max_retries=retry_policy.max_retries) from exc
        raise dg.Failure(description=said, allow_retries=False) from exc


def _retry_plan(context: dg.AssetExecutionContext, policy: dg.RetryPolicy) -> str:
    """What the step does next, for the log: retry n of N and its delay, or none left."""
    done = context.retry_number
    if done >= policy.max_retries:
        return f"No step retry left ({policy.max_retries} used): the step fails."
    delay = retry_delay(policy, done, run_id=context.run.run_id, step_key=_step_key(context))
    return (
        f"Step retry {done + 1} of {policy.max_retries} in {delay:.1f}s: the next attempt starts now and"
        " waits that long before it reads the API (a Terminate or Ctrl-C during the wait ends the run)."
    )


def wait_for_step_retry(
    context: dg.AssetExecutionContext, retry_policy: dg.RetryPolicy | None, termination: TerminationWatch
) -> None:
    """In a step retry's attempt, wait until its delay (:func:`retry_delay`) has passed since
    the retry was requested; at once in a first attempt, or with ``retry_policy`` None.

    Call it before the step first reads the API. A SIGTERM or SIGINT during the wait raises
    Dagster's interrupt at once; a run marked CANCELING raises :class:`RunTerminatedError`
    within ``termination``'s ``every`` seconds (1 by default)."""
    if retry_policy is None or context.retry_number == 0:
        return
    left, delay = _retry_wait(context, retry_policy)
    if left > 0:
        context.log.info(
            f"Step retry {context.retry_number} of {retry_policy.max_retries}: waiting {left:.1f}s before"
            f" reading the API, until {delay:.1f}s after the retry was requested."
        )
    termination.sleep(left)


def _retry_wait(context: dg.AssetExecutionContext, policy: dg.RetryPolicy) -> tuple[float, float]:
    """Seconds this attempt has still to wait, and the retry's whole delay (both in seconds)."""
    run_id, step_key = context.run.run_id, _step_key(context)
    delay = retry_delay(policy, context.retry_number - 1, run_id=run_id, step_key=step_key)
    requested = _retry_request(context.instance, run_id, step_key)
    if requested is None:  # not recorded (never seen): the whole delay from now
        return delay, delay
    if requested.get_dagster_event().step_retry_data.seconds_to_wait:
        return 0.0, delay  # Dagster waited already: a retry policy of its own asked for this attempt
    # The event's time is wall-clock; capped by the delay should two hosts' clocks differ.
    return min(delay, requested.timestamp + delay - time.time()), delay


def _retry_request(instance: dg.DagsterInstance, run_id: str, step_key: str) -> dg.EventLogEntry | None:
    """The step's latest STEP_UP_FOR_RETRY event in the run (None if there is none)."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY, ascending=False
    ).records
    for record in records:
        entry = record.event_log_entry
        if entry.step_key == step_key and entry.dagster_event is not None:
            return entry
    return None


class RunTerminatedError(CloudglueError):
    """The run was terminated (marked CANCELING or CANCELED) while the step ran; the step
    wrote nothing more after that (days it had committed before stay). Permanent."""


class TerminationWatch:
    """Raises :class:`RunTerminatedError` once the run is CANCELING or CANCELED.

    Args:
        context: the step's context (its instance and run id).
        every: seconds between two status reads while :meth:`watch` iterates or
            :meth:`sleep` waits. Default 1.
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

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` (none if <= 0), reading the run's status first and then every
        ``every`` seconds; raise :class:`RunTerminatedError` once it was terminated.

        In a step's main thread Dagster raises a SIGTERM or SIGINT as an interrupt at once,
        ending the sleep: neither waits for the next status read."""
        until = time.monotonic() + seconds
        self.check()
        while (left := until - time.monotonic()) > 0:
            time.sleep(min(left, self._every))
            self.check()

    def poll(self) -> None:
        """:meth:`check`, if ``every`` seconds have passed since the last read.

        A status read costs a query of Dagster's run storage (5-20 ms on SQLite): reading it
        for every day of a range cost seconds. Nothing is lost by skipping some: the I/O manager
        reads it again before a write commits (a range's first commit, then at least every
        :data:`~cloudglue_dagster.io_managers.duckdb.day_store.STATUS_EVERY_SECONDS`)."""
        if time.monotonic() >= self._next:
            self.check()
            self._next = time.monotonic() + self._every

    def watch(self, items: Iterable[T]) -> Iterator[T]:
        """``items``, checking the run's status at most every ``every`` seconds."""
        for item in items:
            self.poll()
            yield item
