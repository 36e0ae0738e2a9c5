"""The asset factory: daily UTC partitions of chat completions, their messages and token usage.

:func:`build_cloudglue_assets` checks its options (:mod:`.options`), asks the translator for
each table's spec (:mod:`.translator`), and wires the three assets to their steps
(:mod:`.steps`); the job, schedule and sensors come from :mod:`.automation`.
"""

import datetime as dt
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from .automation import Automation, build_automation
from .checks import chat_check_specs, messages_check_specs
from .days import UTCDay
from .frames import (
    ACCOUNTING_COLUMNS,
    CHAT_COMPLETIONS_COLUMNS,
    CHAT_MESSAGES_COLUMNS,
    COLLECTION_SOURCE_COLUMNS,
    COLLECTION_USAGE_COLUMNS,
    MESSAGE_SOURCE_COLUMNS,
    TOKEN_USAGE_COLUMNS,
    Column,
    ModelPrice,
    empty_frame,
)
from .guards import ShrinkGuard
from .metadata import column_schema
from .options import DEFAULT_POOL, AssetOptions
from .plan_job import build_plan_job
from .steps import (
    ChatCompletionsStep,
    ChatMessagesStep,
    CollectionUsageStep,
    TokenUsageStep,
    frame_days,
    output_days,
    run_days,
)
from .streams import DAY_BY_DAY_INPUT, DayFrames
from .translator import CloudglueTranslator, CloudglueTranslatorData, asset_spec_for, check_distinct_keys
from .usage_checks import build_collection_usage_check, build_usage_check

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

MESSAGE_SOURCE_COLUMN_NAMES = [c.name for c in MESSAGE_SOURCE_COLUMNS]

_PARTITION_EXPR = {
    "chat_completions": "created_at",
    "chat_messages": "date",
    "token_usage": "date",
    "collection_usage": "date",
}
_COLUMNS: dict[str, Sequence[Column]] = {
    "chat_completions": CHAT_COMPLETIONS_COLUMNS,
    "chat_messages": CHAT_MESSAGES_COLUMNS,
    "token_usage": TOKEN_USAGE_COLUMNS,
    "collection_usage": COLLECTION_USAGE_COLUMNS,
}


@dataclass(frozen=True)
class CloudglueAssets:
    """What :func:`build_cloudglue_assets` returns.

    Attributes:
        chat_completions, chat_messages, token_usage: the three assets.
        collection_usage: the fourth, with ``collection_usage=True``; else None.
        asset_checks: the token_usage check (and the collection_usage one), to list in
            your definitions (the chat_completions and chat_messages checks are part
            of those assets and run with them).
        freshness_checks: one freshness check per asset (empty when disabled).
        partitions_def: the daily UTC partitions all three share.
        job: a job materializing all three (one partition or a range per run).
        plan_job: ``<account>_plan_backfill``, which plans a backfill (:mod:`.plan_job`).
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
    collection_usage: dg.AssetsDefinition | None = None
    plan_job: dg.JobDefinition | None = None

    @property
    def assets(self) -> tuple[dg.AssetsDefinition, ...]:
        extra = () if self.collection_usage is None else (self.collection_usage,)
        return (self.chat_completions, self.chat_messages, self.token_usage, *extra)

    def definitions(self) -> dg.Definitions:
        """Assets, checks, job, schedule and sensors (no resources) as ``dg.Definitions``, to merge into yours."""
        return dg.Definitions(
            assets=list(self.assets),
            asset_checks=[*self.asset_checks, *self.freshness_checks],
            jobs=[self.job, *([self.plan_job] if self.plan_job is not None else [])],
            schedules=[self.schedule],
            sensors=list(self.sensors),
        )


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
    translator: CloudglueTranslator | None = None,
    collection_usage: bool = False,
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
            Each retry waits its delay at its own start, where a termination stops it.
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
        translator: a :class:`CloudglueTranslator` (subclass) giving each table's key,
            group, description, owners, tags, kinds, code version and automation
            condition (see :mod:`.translator`). ``key_prefix``, ``group_name`` and
            ``storage_kind`` feed its default; the job, schedule, sensors and pool
            keep the ``key_prefix`` names whatever keys it gives.

    Partitions are UTC days from ``start_date`` to yesterday: today is still
    receiving completions, so it is never a partition.
    """
    options = AssetOptions.of(
        start_date=start_date,
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
        translator=CloudglueTranslator() if translator is None else translator,
        collection_usage=collection_usage,
    )
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
        return _build(options)


def _build(options: AssetOptions) -> CloudglueAssets:
    specs = _specs(options)
    chat = _chat_completions_asset(options, specs["chat_completions"])
    messages = _chat_messages_asset(options, specs["chat_messages"], chat.key)
    usage = _usage_asset(options, specs["token_usage"], chat.key, "token_usage")
    checks = [
        build_usage_check(
            chat_key=chat.key, usage_key=usage.key, partitions_def=options.partitions_def, name=options.name
        )
    ]
    collections = None
    if options.collection_usage:
        collections = _usage_asset(options, specs["collection_usage"], chat.key, "collection_usage")
        checks.append(
            build_collection_usage_check(
                collections_key=collections.key,
                usage_key=usage.key,
                partitions_def=options.partitions_def,
                name=options.name,
            )
        )
    assets = [chat, messages, usage, *([collections] if collections is not None else [])]
    automation: Automation = build_automation(options, assets)
    return CloudglueAssets(
        chat_completions=chat,
        chat_messages=messages,
        token_usage=usage,
        collection_usage=collections,
        asset_checks=tuple(checks),
        freshness_checks=automation.freshness_checks,
        partitions_def=options.partitions_def,
        job=automation.job,
        schedule=automation.schedule,
        sensors=automation.sensors,
        plan_job=build_plan_job(
            name=options.name,
            chat_key=chat.key,
            first_day=options.first_day,
            resource_key=options.resource_key,
            max_partitions_per_run=options.max_partitions_per_run,
        ),
    )


def _specs(options: AssetOptions) -> dict[str, dg.AssetSpec]:
    specs = {
        table: asset_spec_for(
            options.translator,
            CloudglueTranslatorData(table, options.key_prefix, options.group_name, options.storage_kind),
        )
        for table in options.tables
    }
    check_distinct_keys({table: spec.key for table, spec in specs.items()})
    return specs


def _asset_arguments(options: AssetOptions, spec: dg.AssetSpec, table: str) -> dict[str, Any]:
    """``@dg.asset`` arguments: the translator's spec, then what the assets need on top of it."""
    return {
        "key": spec.key,
        "description": spec.description,
        "group_name": spec.group_name,
        "owners": spec.owners,
        "tags": {k: v for k, v in spec.tags.items() if not k.startswith("dagster/kind/")},
        "kinds": spec.kinds,
        "code_version": spec.code_version,
        "automation_condition": spec.automation_condition,
        "freshness_policy": spec.freshness_policy,
        # Merged last, so a spec cannot drop what the I/O manager and the UI read.
        "metadata": {
            **spec.metadata,
            "partition_expr": _PARTITION_EXPR[table],
            "dagster/column_schema": column_schema(_COLUMNS[table]),
        },
        "partitions_def": options.partitions_def,
        "backfill_policy": options.backfill_policy,
        "io_manager_key": options.io_manager_key,
        # No retry_policy: see run_control (step_errors applies it to transient errors only).
    }


def _day_input(key: dg.AssetKey, columns: Sequence[str]) -> dg.AssetIn:
    """Load only ``columns`` of ``key``, one day at a time where the I/O manager can."""
    return dg.AssetIn(key=key, metadata={"columns": list(columns), DAY_BY_DAY_INPUT: True})


def _as_days(chat_completions: Any, days: Sequence[UTCDay]) -> DayFrames:
    """chat_completions as DayFrames: ours come so; other I/O managers hand over the range."""
    if isinstance(chat_completions, DayFrames):
        return chat_completions
    return frame_days(chat_completions, "created_at", days)


def _chat_completions_asset(options: AssetOptions, spec: dg.AssetSpec) -> dg.AssetsDefinition:
    partitions = options.partitions_def

    @dg.asset(
        **_asset_arguments(options, spec, "chat_completions"),
        required_resource_keys={options.resource_key},
        pool=options.resolved_pool,
        check_specs=chat_check_specs(spec.key, partitions),
    )
    def chat_completions(context: dg.AssetExecutionContext) -> Iterator[dg.Output | dg.AssetCheckEvaluation]:
        step = ChatCompletionsStep(
            context,
            key=spec.key,
            partitions_def=partitions,
            resource=getattr(context.resources, options.resource_key),
            retry_policy=options.retry_policy,
            shrink_guard=options.shrink_guard,
        )
        # Our I/O manager commits each day as the sweep completes it; checks and run figures after.
        yield output_days(context, options.io_manager_key, step.stream(), empty_frame(CHAT_COMPLETIONS_COLUMNS))
        yield from step.report()

    return chat_completions


def _chat_messages_asset(options: AssetOptions, spec: dg.AssetSpec, chat_key: dg.AssetKey) -> dg.AssetsDefinition:
    partitions = options.partitions_def

    @dg.asset(
        **_asset_arguments(options, spec, "chat_messages"),
        ins={"chat_completions": _day_input(chat_key, MESSAGE_SOURCE_COLUMN_NAMES)},
        check_specs=messages_check_specs(spec.key, partitions),
    )
    def chat_messages(
        context: dg.AssetExecutionContext, chat_completions: Any
    ) -> Iterator[dg.Output | dg.AssetCheckEvaluation]:
        chat = _as_days(chat_completions, run_days(context, partitions))
        step = ChatMessagesStep(context, key=spec.key, chat=chat, retry_policy=options.retry_policy)
        yield output_days(context, options.io_manager_key, step.stream(), empty_frame(CHAT_MESSAGES_COLUMNS))
        yield from step.report()

    return chat_messages


def _usage_asset(options: AssetOptions, spec: dg.AssetSpec, chat_key: dg.AssetKey, table: str) -> dg.AssetsDefinition:
    """token_usage or collection_usage: sums of each day of chat_completions."""
    partitions = options.partitions_def
    step_class, source_columns = _USAGE_STEPS[table]

    @dg.asset(
        **_asset_arguments(options, spec, table),
        ins={"chat_completions": _day_input(chat_key, source_columns)},
    )
    def usage(context: dg.AssetExecutionContext, chat_completions: Any) -> Iterator[dg.Output | dg.AssetObservation]:
        # chat_completions: DayFrames from our I/O manager, a DataFrame of the range from others.
        chat = _as_days(chat_completions, run_days(context, partitions))
        step = step_class(context, key=spec.key, chat=chat, retry_policy=options.retry_policy, prices=options.prices)
        yield output_days(context, options.io_manager_key, step.stream(), empty_frame(_COLUMNS[table]))
        yield from step.report()

    return usage


_USAGE_STEPS: dict[str, tuple[type[TokenUsageStep], list[str]]] = {
    "token_usage": (TokenUsageStep, [c.name for c in ACCOUNTING_COLUMNS]),
    "collection_usage": (CollectionUsageStep, [c.name for c in COLLECTION_SOURCE_COLUMNS]),
}
