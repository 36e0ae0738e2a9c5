"""The asset factory: daily UTC partitions of chat completions, their messages and token usage."""

import datetime as dt
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pandas as pd
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from .checks import build_usage_check, chat_check_specs, messages_check_specs
from .days import UTCDay
from .errors import CloudglueConfigError
from .frames import (
    ACCOUNTING_COLUMNS,
    CHAT_COMPLETIONS_COLUMNS,
    CHAT_MESSAGES_COLUMNS,
    MESSAGE_SOURCE_COLUMNS,
    TOKEN_USAGE_COLUMNS,
    ModelPrice,
    empty_frame,
)
from .guards import ShrinkGuard
from .metadata import column_schema
from .partitions import account_name
from .producers import ChatCompletionsStep, ChatMessagesStep, frame_days, output_days, run_days, usage_by_day
from .run_control import TerminationWatch, step_errors
from .sensors import build_freshness, build_late_data_sensor
from .streams import DAY_BY_DAY_INPUT, DayFrames

__all__ = [
    "DEFAULT_POOL",
    "DEFAULT_RETRY_POLICY",
    "DEFAULT_SHRINK_GUARD",
    "CloudglueAssets",
    "build_cloudglue_assets",
]

DEFAULT_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
"""Step retries for transient errors only (an API outage that outlasted the client's own
retries): Dagster's exponential backoff, (2**n - 1) x 30 s, so about 30, 90 and 210 s, each
+-30 s of jitter (see :func:`.run_control.retry_delay`)."""

DEFAULT_SHRINK_GUARD = ShrinkGuard()
"""Refuse a replace that removes more than half of a stored day of 20 rows or more."""

DEFAULT_POOL = "{key_prefix}"
"""The default concurrency pool: ``{key_prefix}`` stands for the key prefix
joined with ``_`` (``cloudglue`` by default), so each account has its own."""

ACCOUNTING_COLUMN_NAMES = [c.name for c in ACCOUNTING_COLUMNS]
MESSAGE_SOURCE_COLUMN_NAMES = [c.name for c in MESSAGE_SOURCE_COLUMNS]


@dataclass(frozen=True)
class CloudglueAssets:
    """What :func:`build_cloudglue_assets` returns.

    Attributes:
        chat_completions, chat_messages, token_usage: the three assets.
        asset_checks: the token_usage check, to list in your definitions (the
            chat_completions and chat_messages checks are part of those assets
            and run with them).
        freshness_checks: one freshness check per asset (empty when disabled).
        partitions_def: the daily UTC partitions all three share.
        job: a job materializing all three (one partition or a range per run).
        schedule: runs ``job`` daily for the day that just ended (stopped by default).
        sensors: the freshness-check sensor and the late-data sensor, those
            enabled (both stopped by default).
    """

    chat_completions: dg.AssetsDefinition
    chat_messages: dg.AssetsDefinition
    token_usage: dg.AssetsDefinition
    asset_checks: tuple[dg.AssetChecksDefinition, ...]
    freshness_checks: tuple[dg.AssetChecksDefinition, ...]
    partitions_def: dg.DailyPartitionsDefinition
    job: UnresolvedAssetJobDefinition
    schedule: dg.ScheduleDefinition
    sensors: tuple[dg.SensorDefinition, ...]

    @property
    def assets(self) -> tuple[dg.AssetsDefinition, ...]:
        return (self.chat_completions, self.chat_messages, self.token_usage)

    def definitions(self) -> dg.Definitions:
        """Assets, checks, job, schedule and sensors (no resources) as ``dg.Definitions``, to merge into yours."""
        return dg.Definitions(
            assets=list(self.assets),
            asset_checks=[*self.asset_checks, *self.freshness_checks],
            jobs=[self.job],
            schedules=[self.schedule],
            sensors=list(self.sensors),
        )


def _day_input(columns: Sequence[str]) -> dict[str, Any]:
    """Input metadata: load only ``columns``, one day at a time where the I/O manager can."""
    return {"columns": list(columns), DAY_BY_DAY_INPUT: True}


def _as_days(chat_completions: Any, days: Sequence[UTCDay]) -> DayFrames:
    if isinstance(chat_completions, DayFrames):
        return chat_completions
    return frame_days(chat_completions, "created_at", days)


def _parse_start_date(start_date: str | dt.date) -> dt.date:
    if isinstance(start_date, dt.datetime):
        start_date = start_date.date()
    if isinstance(start_date, str):
        try:
            start_date = dt.date.fromisoformat(start_date)
        except ValueError:
            raise CloudglueConfigError(f"start_date must be 'YYYY-MM-DD', got {start_date!r}") from None
    today = dt.datetime.now(dt.timezone.utc).date()
    if start_date >= today:
        raise CloudglueConfigError(
            f"start_date {start_date.isoformat()} is not in the past: the first daily partition must be a"
            f" UTC day that has ended (today is {today.isoformat()} UTC)."
        )
    return start_date


def build_cloudglue_assets(
    *,
    start_date: str | dt.date,
    key_prefix: str | Sequence[str] = ("cloudglue",),
    group_name: str = "cloudglue",
    resource_key: str = "cloudglue",
    io_manager_key: str = "io_manager",
    max_partitions_per_run: int | None = None,
    retry_policy: dg.RetryPolicy | None = DEFAULT_RETRY_POLICY,
    shrink_guard: ShrinkGuard | None = DEFAULT_SHRINK_GUARD,
    storage_kind: str = "duckdb",
    schedule_hour: int = 1,
    pool: str | None = DEFAULT_POOL,
    prices: Mapping[str, ModelPrice] | None = None,
    freshness_deadline_hour: int | None = 6,
    late_data_lookback_days: int | None = 7,
    late_data_interval_seconds: int = 3600,
) -> CloudglueAssets:
    """Build the Cloudglue assets, their checks, a job, a daily schedule and sensors.

    Args:
        start_date: first partition, a UTC date in the past (``YYYY-MM-DD``).
        key_prefix: asset key prefix; the keys are ``<prefix>/chat_completions``,
            ``<prefix>/chat_messages`` and ``<prefix>/token_usage``. Joined with
            ``_``, it also names the job, schedule and sensors, so each account
            (each prefix) of a code location has its own.
        group_name: asset group shown in the UI.
        resource_key: key of the :class:`CloudglueResource` in your definitions.
        io_manager_key: key of the pandas I/O manager storing the tables.
            It must honour the ``partition_expr`` metadata (DuckDB, Snowflake
            and BigQuery pandas I/O managers do).
        max_partitions_per_run: None (default) backfills any range in one run
            with one paged sweep; a number caps the days per run, bounding a
            run's memory.
        retry_policy: step retries for transient failures only (an API outage
            that outlasted the client's own retries, a window that kept changing);
            None disables them. Applied by the assets themselves, which carry no
            Dagster retry policy: Dagster would also retry permanent errors and
            turn a termination (SIGTERM, SIGINT, the UI's Terminate) into a retry.
        shrink_guard: refuse, before writing, a replace that would remove more
            than ``max_loss_fraction`` of a stored day's rows (days of at least
            ``min_stored_rows``); the run tag ``cloudglue/allow_shrink=true``
            accepts it. None: no guard.
        storage_kind: the storage kind shown in the UI next to ``cloudglue``
            and ``pandas``.
        schedule_hour: UTC hour at which the daily schedule materializes the
            day that just ended.
        pool: Dagster concurrency pool of the step that calls the API, so
            runs materializing in parallel (a multi-run backfill) share a
            limit: ``dagster instance concurrency set cloudglue 2``. The
            default, ``{key_prefix}``, is the key prefix joined with ``_``
            (``cloudglue``): one pool per account. None: no pool.
        prices: model name -> :class:`ModelPrice` (USD per million input and
            output tokens). Fills token_usage's cost columns, which are always
            there and null for a model without a price.
        freshness_deadline_hour: UTC hour by which the day that just ended must
            be loaded (a freshness check per asset, severity WARN, plus a
            stopped sensor evaluating them between runs). After
            ``schedule_hour``, the same day. None: no freshness checks.
        late_data_lookback_days: how many recent UTC days the late-data sensor
            (stopped by default) watches for completions that arrived after
            the day was loaded. None: no such sensor.
        late_data_interval_seconds: seconds between two evaluations of that
            sensor; each costs one API request per watched, loaded day.

    Partitions are UTC days from ``start_date`` to yesterday: today is still
    receiving completions, so it is never a partition.
    """
    # Single-run backfills and partitioned checks are what this integration is
    # built on; Dagster labels them beta/preview. Time-partition freshness
    # checks are labelled superseded by FreshnessPolicy, which only looks at
    # the latest materialization: a backfill of old days would pass it while
    # yesterday is missing. Silence those for our own definitions only, so
    # every code location load is not a wall of warnings.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        warnings.simplefilter("ignore", dg.PreviewWarning)
        warnings.simplefilter("ignore", dg.SupersessionWarning)
        return _build(
            first_day=_parse_start_date(start_date),
            key_prefix=key_prefix,
            group_name=group_name,
            resource_key=resource_key,
            io_manager_key=io_manager_key,
            max_partitions_per_run=max_partitions_per_run,
            retry_policy=retry_policy,
            shrink_guard=shrink_guard,
            storage_kind=storage_kind,
            schedule_hour=schedule_hour,
            pool=pool,
            prices=dict(prices or {}),
            freshness_deadline_hour=freshness_deadline_hour,
            late_data_lookback_days=late_data_lookback_days,
            late_data_interval_seconds=late_data_interval_seconds,
        )


def _build(
    *,
    first_day: dt.date,
    key_prefix: str | Sequence[str],
    group_name: str,
    resource_key: str,
    io_manager_key: str,
    max_partitions_per_run: int | None,
    retry_policy: dg.RetryPolicy | None,
    shrink_guard: ShrinkGuard | None,
    storage_kind: str,
    schedule_hour: int,
    pool: str | None,
    prices: dict[str, ModelPrice],
    freshness_deadline_hour: int | None,
    late_data_lookback_days: int | None,
    late_data_interval_seconds: int,
) -> CloudglueAssets:
    prefix = [key_prefix] if isinstance(key_prefix, str) else list(key_prefix)
    if not prefix or not all(isinstance(p, str) and p for p in prefix):
        raise CloudglueConfigError(f"key_prefix must be one or more non-empty strings, got {key_prefix!r}")
    name = account_name(prefix)
    if max_partitions_per_run is not None and max_partitions_per_run < 1:
        raise CloudglueConfigError(f"max_partitions_per_run must be >= 1 or None, got {max_partitions_per_run}")
    if not 0 <= schedule_hour <= 23:
        raise CloudglueConfigError(f"schedule_hour must be 0..23, got {schedule_hour}")
    if freshness_deadline_hour is not None and not schedule_hour < freshness_deadline_hour <= 23:
        raise CloudglueConfigError(
            f"freshness_deadline_hour must be after schedule_hour ({schedule_hour}) on the same UTC day"
            f" (..23), got {freshness_deadline_hour}; None disables the freshness checks"
        )
    if late_data_lookback_days is not None and late_data_lookback_days < 1:
        raise CloudglueConfigError(f"late_data_lookback_days must be >= 1 or None, got {late_data_lookback_days}")
    if late_data_interval_seconds < 30:
        raise CloudglueConfigError(f"late_data_interval_seconds must be >= 30, got {late_data_interval_seconds}")
    for model, price in prices.items():
        if not isinstance(price, ModelPrice):
            raise CloudglueConfigError(f"prices[{model!r}] must be a ModelPrice, got {type(price).__name__}")
    if retry_policy is not None and not isinstance(retry_policy, dg.RetryPolicy):
        raise CloudglueConfigError(f"retry_policy must be a dg.RetryPolicy or None, got {type(retry_policy).__name__}")
    if shrink_guard is not None and not isinstance(shrink_guard, ShrinkGuard):
        raise CloudglueConfigError(f"shrink_guard must be a ShrinkGuard or None, got {type(shrink_guard).__name__}")
    if pool is not None:
        pool = pool.replace(DEFAULT_POOL, name)
    partitions = dg.DailyPartitionsDefinition(start_date=first_day.isoformat(), timezone="UTC")
    backfill_policy = (
        dg.BackfillPolicy.single_run()
        if max_partitions_per_run is None
        else dg.BackfillPolicy.multi_run(max_partitions_per_run)
    )
    shared = {  # what the three assets have in common
        "partitions_def": partitions,
        "backfill_policy": backfill_policy,
        "group_name": group_name,
        "kinds": {"cloudglue", "pandas", storage_kind},
        "io_manager_key": io_manager_key,
        # No retry_policy here: see run_control (step_errors applies it to transient errors).
    }
    chat_key = dg.AssetKey([*prefix, "chat_completions"])
    messages_key = dg.AssetKey([*prefix, "chat_messages"])
    usage_key = dg.AssetKey([*prefix, "token_usage"])

    @dg.asset(
        key=chat_key,
        **shared,
        required_resource_keys={resource_key},
        pool=pool,
        check_specs=chat_check_specs(chat_key, partitions),
        description=(
            "Every Cloudglue chat completion created in the partition's UTC day, one row per"
            " completion (GET /v1/chat/completions). A range of days is fetched in one paged sweep"
            " and written a day at a time."
        ),
        metadata={
            "partition_expr": "created_at",
            "dagster/column_schema": column_schema(CHAT_COMPLETIONS_COLUMNS),
        },
    )
    def chat_completions(context: dg.AssetExecutionContext) -> Iterator[dg.Output | dg.AssetCheckEvaluation]:
        step = ChatCompletionsStep(
            context,
            key=chat_key,
            partitions_def=partitions,
            resource=getattr(context.resources, resource_key),
            retry_policy=retry_policy,
            shrink_guard=shrink_guard,
        )
        # Our I/O manager commits each day as the sweep completes it; the checks report after.
        yield output_days(context, io_manager_key, step.stream(), empty_frame(CHAT_COMPLETIONS_COLUMNS))
        yield from step.checks()

    @dg.asset(
        key=usage_key,
        ins={"chat_completions": dg.AssetIn(key=chat_key, metadata=_day_input(ACCOUNTING_COLUMN_NAMES))},
        **shared,
        description=(
            "Token usage per UTC day and model, summed from chat_completions over the completions"
            " that report each count (unreported counts stay null, never zero), with its cost in USD"
            " for the models given a price (null for the others)."
        ),
        metadata={
            "partition_expr": "date",
            "dagster/column_schema": column_schema(TOKEN_USAGE_COLUMNS),
        },
    )
    def token_usage(context: dg.AssetExecutionContext, chat_completions: Any) -> pd.DataFrame:
        # chat_completions: DayFrames from our I/O manager, a DataFrame of the range from others.
        with step_errors(context, retry_policy):
            TerminationWatch(context).check()
        chat = _as_days(chat_completions, run_days(context, partitions))
        return usage_by_day(context, chat, ACCOUNTING_COLUMNS, prices)

    @dg.asset(
        key=messages_key,
        ins={"chat_completions": dg.AssetIn(key=chat_key, metadata=_day_input(MESSAGE_SOURCE_COLUMN_NAMES))},
        **shared,
        check_specs=messages_check_specs(messages_key, partitions),
        description=(
            "One row per message of each completion: the prompt's messages, then the answer's choices,"
            " from chat_completions' stored JSON (payload_messages, choices)."
        ),
        metadata={
            "partition_expr": "date",
            "dagster/column_schema": column_schema(CHAT_MESSAGES_COLUMNS),
        },
    )
    def chat_messages(
        context: dg.AssetExecutionContext, chat_completions: Any
    ) -> Iterator[dg.Output | dg.AssetCheckEvaluation]:
        chat = _as_days(chat_completions, run_days(context, partitions))
        step = ChatMessagesStep(context, key=messages_key, chat=chat, retry_policy=retry_policy)
        yield output_days(context, io_manager_key, step.stream(), empty_frame(CHAT_MESSAGES_COLUMNS))
        yield from step.checks()

    usage_check = build_usage_check(chat_key=chat_key, usage_key=usage_key, partitions_def=partitions)
    job = dg.define_asset_job(
        name=f"{name}_daily",
        selection=dg.AssetSelection.assets(chat_key, messages_key, usage_key),
        description="Materializes Cloudglue chat completions, messages and token usage for a day (or a range).",
    )
    schedule = dg.build_schedule_from_partitioned_job(
        job,
        hour_of_day=schedule_hour,
        description=f"Each day at {schedule_hour:02d}:00 UTC, loads the UTC day that just ended.",
    )
    freshness_checks: Sequence[dg.AssetChecksDefinition] = ()
    sensors: list[dg.SensorDefinition] = []
    if freshness_deadline_hour is not None:
        freshness_checks, freshness_sensor = build_freshness(
            assets=[chat_completions, chat_messages, token_usage],
            deadline_hour=freshness_deadline_hour,
            sensor_name=f"{name}_freshness_sensor",
        )
        sensors.append(freshness_sensor)
    if late_data_lookback_days is not None:
        sensors.append(
            build_late_data_sensor(
                name=f"{name}_late_data_sensor",
                job=job,
                chat_key=chat_key,
                partitions_def=partitions,
                resource_key=resource_key,
                lookback_days=late_data_lookback_days,
                minimum_interval_seconds=late_data_interval_seconds,
            )
        )
    return CloudglueAssets(
        chat_completions=chat_completions,
        chat_messages=chat_messages,
        token_usage=token_usage,
        asset_checks=(usage_check,),
        freshness_checks=tuple(freshness_checks),
        partitions_def=partitions,
        job=job,
        schedule=schedule,
        sensors=tuple(sensors),
    )
