"""The asset factory: daily UTC partitions of chat completions, their messages and token usage.

:func:`build_cloudglue_assets` checks its options (:mod:`.options`), asks the translator for
each table's spec (:mod:`.translator`), and builds one multi-asset over every table: one step
that fetches each day once and writes every table of it together (:mod:`.steps`). The job,
schedule and sensors come from :mod:`.automation`.
"""

import datetime as dt
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
from pydantic import Field

from cloudglue_dagster.api.days import DEFAULT_MAX_HELD_BYTES
from cloudglue_dagster.internals import UnresolvedAssetJobDefinition
from cloudglue_dagster.planner.job import build_plan_job
from cloudglue_dagster.tables.prices import ModelPrice
from cloudglue_dagster.tables.spend import LLM_USAGE_COLUMNS
from cloudglue_dagster.tables.streams import TableTarget
from cloudglue_dagster.tables.texts import TextStorage

from .automation import Automation, build_automation
from .guards import ALLOW_SHRINK_TAG, ShrinkGuard
from .llm_usage import build_llm_usage_asset, build_llm_usage_check
from .masking import Masker
from .options import DEFAULT_POOL, DEFAULT_RETRY_POLICY, DEFAULT_SHRINK_GUARD, AssetOptions
from .specs import check_specs, full_spec, table_specs
from .steps import CHAT, RESPONSES, StepSettings, TablesStep, sources_for, tables_for
from .text_storage import DEFAULT_TEXT_HASH_KEY
from .translator import CloudglueTranslator
from .usage_checks import build_collection_usage_check, build_usage_check

__all__ = [
    "DEFAULT_POOL",
    "DEFAULT_RETRY_POLICY",
    "DEFAULT_SHRINK_GUARD",
    "CloudglueAssets",
    "CloudglueRunConfig",
    "build_cloudglue_assets",
]


class CloudglueRunConfig(dg.Config):
    """Run config of the assets' step (Launchpad, ``--config-json``, ``run_config=``)."""

    allow_shrink: bool = Field(
        default=False,
        description=(
            "Write days the shrink guard refuses (days that would lose most of their stored rows):"
            " for completions that really were deleted upstream. Same as the run tag"
            f" {ALLOW_SHRINK_TAG}=true."
        ),
    )


@dataclass(frozen=True)
class CloudglueAssets:
    """What :func:`build_cloudglue_assets` returns.

    Attributes:
        assets_def: the multi-asset of the chat completions' tables (one step; a run may select
            any of them).
        keys: table name -> asset key (``chat_completions``, ``chat_messages``,
            ``token_usage``, ``collection_usage`` with ``collection_usage=True``, and
            ``responses`` and ``llm_usage`` unless ``responses=False``).
        asset_checks: the token_usage check (and the collection_usage and llm_usage ones), to
            list in your definitions (the chat_completions, chat_messages and responses checks
            are part of their steps and run with them).
        freshness_checks: one freshness check per table (empty when disabled).
        partitions_def: the daily UTC partitions every table shares.
        job: a job materializing every table (one partition or a range per run).
        plan_job: ``<account>_plan_backfill``, which plans a backfill (:mod:`cloudglue_dagster.planner.job`).
        schedule: runs ``job`` daily for the day that just ended (stopped by default).
        sensors: the freshness-check sensor and the late-data sensor, those
            enabled (both stopped by default).
        op_name: the step's name, ``<account>__tables`` (what run config addresses).
        responses_assets_def: the multi-asset of ``responses`` (its own step,
            ``<account>__responses``); None with ``responses=False``.
        llm_usage_assets_def: the ``llm_usage`` asset; None with ``responses=False``.
    """

    assets_def: dg.AssetsDefinition
    keys: Mapping[str, dg.AssetKey]
    asset_checks: tuple[dg.AssetChecksDefinition, ...]
    freshness_checks: tuple[dg.AssetChecksDefinition, ...]
    partitions_def: dg.DailyPartitionsDefinition
    job: UnresolvedAssetJobDefinition
    schedule: dg.ScheduleDefinition
    sensors: tuple[dg.SensorDefinition, ...]
    plan_job: dg.JobDefinition
    op_name: str
    responses_assets_def: dg.AssetsDefinition | None = None
    llm_usage_assets_def: dg.AssetsDefinition | None = None

    @property
    def assets(self) -> tuple[dg.AssetsDefinition, ...]:
        """The assets to list in your definitions: the chat completions' step, and the
        responses' step and ``llm_usage`` when built."""
        optional = (self.responses_assets_def, self.llm_usage_assets_def)
        return (self.assets_def, *(a for a in optional if a is not None))

    def definitions(self, executor: dg.ExecutorDefinition | None = dg.in_process_executor) -> dg.Definitions:
        """Assets, checks, jobs, schedule and sensors (no resources) as ``dg.Definitions``, to merge into yours.

        Args:
            executor: the code location's executor, in process by default: a run is one
                step that fetches and writes every table, then its checks, so a process per
                step (Dagster's default executor) buys no parallelism and costs seconds of
                start-up per step (docs/operations.md, "Executors"). ``None`` leaves the choice
                to your definitions: pass it when they set their own executor, which
                ``dg.Definitions.merge`` would otherwise refuse as a second one.
        """
        return dg.Definitions(
            assets=list(self.assets),
            asset_checks=[*self.asset_checks, *self.freshness_checks],
            jobs=[self.job, self.plan_job],
            schedules=[self.schedule],
            sensors=list(self.sensors),
            executor=executor,
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
    prices: Mapping[str, ModelPrice | Sequence[ModelPrice]] | None = None,
    freshness_deadline_hour: int | None = 6,
    late_data_lookback_days: int | None = 7,
    late_data_interval_seconds: int = 3600,
    translator: CloudglueTranslator | None = None,
    collection_usage: bool = False,
    max_held_bytes: int = DEFAULT_MAX_HELD_BYTES,
    responses: bool = True,
    in_progress_limit_hours: int | None = 24,
    text_storage: TextStorage = "full",
    text_hash_key: str = DEFAULT_TEXT_HASH_KEY,
    text_rewrite: Callable[[str], str | None] | None = None,
) -> CloudglueAssets:
    """Build the Cloudglue assets, their checks, a job, a daily schedule and sensors.

    Partitions are UTC days from ``start_date`` to yesterday: today is still receiving
    completions, so it is never a partition. Every bad value fails here, at definition load,
    with a :class:`CloudglueConfigError` naming the option and the value.

    Args:
        start_date: First daily partition: a UTC day that has ended, written YYYY-MM-DD (or a
            date).
        key_prefix: Asset key prefix: the keys are <prefix>/chat_completions,
            <prefix>/chat_messages and <prefix>/token_usage. Joined with '_', it also names the
            job, schedule, sensors and pool, so each account (each prefix) of a code location
            has its own.
        group_name: Asset group shown in the UI.
        resource_key: Key of the CloudglueResource in your definitions.
        io_manager_key: Key of the pandas I/O manager storing the tables. It must honour the
            partition_expr metadata (the DuckDB, Snowflake and BigQuery pandas I/O managers do).
        max_partitions_per_run: Days per run of a backfill. None: any range in one run, with one
            paged sweep (what `dg launch --partition-range` and `dagster asset materialize
            --partition-range` need); a number caps the days of a run, bounding its memory
            (ranges are then backfills from the UI, run by the daemon). Must be >= 1 or None.
        retry_policy: Step retries for transient failures only (an API outage that outlasted
            the client's own retries, a window that kept changing); None disables them. The
            default: 3 retries, after about 30, 90 and 210 s. Applied by the assets themselves,
            which carry no Dagster retry policy: Dagster would also retry permanent errors and
            turn a termination (SIGTERM, SIGINT, the UI's Terminate) into a retry. Each retry
            waits its delay at its own start, where a termination stops it.
        shrink_guard: Refuse to replace a day that would lose more than max_loss_fraction of the
            rows the warehouse holds for it (days of at least min_stored_rows); the run writes
            its other days and fails naming every refused day. Run config allow_shrink: true (or
            the run tag cloudglue/allow_shrink=true) accepts the loss. None: no guard.
        storage_kind: The storage kind shown in the UI next to cloudglue and pandas.
        schedule_hour: UTC hour at which the daily schedule (stopped by default) materializes
            the day that just ended. Must be 0..23.
        pool: Dagster concurrency pool of the step (it calls the API), so runs materializing in
            parallel (a multi-run backfill) share a limit: `dagster instance concurrency set
            cloudglue 2`. The default, {key_prefix}, is the key prefix joined with '_'
            (cloudglue): one pool per account. None: no pool.
        prices: Model name -> ModelPrice (USD per million input and output tokens), or a list of
            them, each in force from its effective_from UTC day: each day is costed at the prices
            in force that day. Fills the cost columns of token_usage, responses and llm_usage,
            which are always there and null for a model without a price.
        freshness_deadline_hour: UTC hour by which the day that just ended must be loaded (a
            freshness check per asset, severity WARN, plus a stopped sensor evaluating them
            between runs). After schedule_hour, the same day (..23). None: no freshness checks.
        late_data_lookback_days: How many recent UTC days the late-data sensor (stopped by
            default) watches for completions that arrived after the day was loaded. None: no
            such sensor. Must be >= 1 or None.
        late_data_interval_seconds: Seconds between two evaluations of the late-data sensor;
            each costs one API request per watched, loaded day. Must be >= 30.
        translator: A CloudglueTranslator (subclass) giving each table's key, group,
            description, owners, tags, kinds, code version and automation condition.
            key_prefix, group_name and storage_kind feed its default; the job, schedule, sensors
            and pool keep the key_prefix names whatever keys it gives.
        collection_usage: Also build <prefix>/collection_usage: token usage per UTC day,
            collection and model, with a check that it sums to token_usage.
        max_held_bytes: The most completion JSON, in bytes, a sweep may hold in memory while it
            waits for days to be complete (default 512 MiB, about 2.3 GiB of memory); past it
            the run fails with HeldTooMuchError instead of being killed for its memory. Must be
            >= 1048576 (1 MiB).
        responses: Also build <prefix>/responses (one row per response of the Responses API, GET
            /v1/responses) and <prefix>/llm_usage (LLM spend per UTC day, source and model across
            chat completions and responses), with their checks. An account with no responses
            costs one request per run and gets empty partitions.
        in_progress_limit_hours: How long a response may stay in_progress: a day stored while it
            held in_progress responses is read again (by a sensor, stopped by default) until none
            remain or the newest of them is older than this; responses in_progress longer are
            reported by the responses check (a warning) instead of being read again forever.
            None: no such sensor. Must be >= 1 or None.
        text_storage: What the tables, and everything the runs put into Dagster (previews,
            metadata, logs), keep of the API's texts (prompts, answers, message names, filter
            values, instructions): 'full', the texts; 'hash', each text's HMAC-SHA256 under
            text_hash_key, so equal texts still join and count; 'none', null. Counts, tokens,
            ids, models, roles and the column types are the same under every setting. It
            applies to the days a run writes: re-load older days to apply it to them.
        text_hash_key: The secret key of text_storage='hash' (16 characters or more; a keyed
            hash, unlike a bare SHA-256, cannot be matched against guessed short texts by anyone
            without it): a dg.EnvVar, read when a run starts, by default
            dg.EnvVar('CLOUDGLUE_TEXT_HASH_KEY'). Keep it the same across runs: hashes under
            another key do not join.
        text_rewrite: A function applied to each text before it is stored (under 'full') or
            hashed (under 'hash'), e.g. to redact e-mail addresses; returning None stores null.
            Ignored under 'none'. None: texts as the API sent them.
    """
    # Every argument by name: the signature is AssetOptions' fields, in order, with their
    # defaults and types, and the Args above are their docs (tests/test_options.py holds both).
    options = AssetOptions.of(**locals())
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
    specs = table_specs(options)
    keys = {table: spec.key for table, spec in specs.items()}
    assets_def = _step_asset(options, specs, CHAT)
    checks = [
        build_usage_check(
            chat_key=keys[CHAT],
            usage_key=keys["token_usage"],
            partitions_def=options.partitions_def,
            name=options.name,
            resource_key=options.resource_key,
        )
    ]
    if options.collection_usage:
        checks.append(
            build_collection_usage_check(
                collections_key=keys["collection_usage"],
                usage_key=keys["token_usage"],
                partitions_def=options.partitions_def,
                name=options.name,
                resource_key=options.resource_key,
            )
        )
    responses_def = llm_usage_def = None
    if options.responses:
        responses_def = _step_asset(options, specs, RESPONSES)
        llm_usage_def = _llm_usage_asset(options, specs)
        checks.append(
            build_llm_usage_check(
                llm_usage_key=keys["llm_usage"],
                usage_key=keys["token_usage"],
                responses_key=keys[RESPONSES],
                partitions_def=options.partitions_def,
                prices=options.price_list,
                name=options.name,
                resource_key=options.resource_key,
            )
        )
    built = [a for a in (assets_def, responses_def, llm_usage_def) if a is not None]
    automation: Automation = build_automation(options, built, keys)
    return CloudglueAssets(
        assets_def=assets_def,
        keys=keys,
        asset_checks=tuple(checks),
        freshness_checks=automation.freshness_checks,
        partitions_def=options.partitions_def,
        job=automation.job,
        schedule=automation.schedule,
        sensors=automation.sensors,
        plan_job=build_plan_job(
            name=options.name,
            chat_key=keys[CHAT],
            first_day=options.first_day,
            resource_key=options.resource_key,
            max_partitions_per_run=options.max_partitions_per_run,
            responses=options.responses,
        ),
        op_name=_op_name(options),
        responses_assets_def=responses_def,
        llm_usage_assets_def=llm_usage_def,
    )


_STEP_TABLES = {
    CHAT: ("chat_completions", "chat_messages", "token_usage", "collection_usage"),
    RESPONSES: ("responses",),
}
"""Each step's tables, by its source table: the chat completions' step writes the first four."""


def _op_name(options: AssetOptions, source: str = CHAT) -> str:
    return f"{options.name}__tables" if source == CHAT else f"{options.name}__{source}"


def _step_asset(options: AssetOptions, all_specs: Mapping[str, dg.AssetSpec], source: str) -> dg.AssetsDefinition:
    """One multi-asset over every table of ``source``'s step: a run may select any of them
    (``can_subset``)."""
    tables = tables_for(options.price_list, options.in_progress_limit_hours, options.text_storage)
    specs = {t: spec for t, spec in all_specs.items() if t in _STEP_TABLES[source]}
    keys = {table: spec.key for table, spec in specs.items()}
    deps = {t: [] if t == source else [keys[source]] for t in specs}
    full = {
        t: full_spec(options, spec, tables[t].partition_expr, tables[t].columns, deps[t]) for t, spec in specs.items()
    }
    settings = StepSettings(
        keys=keys,
        source=sources_for(options.price_list)[source],
        targets={t: TableTarget(t, tuple(spec.key.path), dict(spec.metadata)) for t, spec in full.items()},
        tables=tables,
        partitions_def=options.partitions_def,
        resource_key=options.resource_key,
        io_manager_key=options.io_manager_key,
        retry_policy=options.retry_policy,
        shrink_guard=options.shrink_guard,
        max_held_bytes=options.max_held_bytes,
        op_name=_op_name(options, source),
        texts=options.text_settings,
    )

    @dg.multi_asset(
        name=settings.op_name,
        specs=list(full.values()),
        check_specs=check_specs(source, keys, options),
        can_subset=True,
        backfill_policy=options.backfill_policy,
        pool=options.resolved_pool,
        required_resource_keys={options.resource_key},
        # No retry_policy: see run_control (step_errors applies it to transient errors only).
    )
    def tables_step(
        context: dg.AssetExecutionContext, config: CloudglueRunConfig
    ) -> Iterator[dg.Output[Any] | dg.AssetCheckEvaluation | dg.AssetObservation]:
        tag = context.run.tags.get(ALLOW_SHRINK_TAG, "").strip().lower() == "true"
        # The key the run resolved: a server may send it back in its data (masking.py).
        masker = Masker.of(getattr(context.resources, options.resource_key))
        with masker.errors():
            yield from TablesStep(context, settings, allow_shrink=config.allow_shrink or tag, masker=masker).outputs()

    return tables_step


def _llm_usage_asset(options: AssetOptions, specs: Mapping[str, dg.AssetSpec]) -> dg.AssetsDefinition:
    keys = {table: spec.key for table, spec in specs.items()}
    spec = full_spec(options, specs["llm_usage"], "date", LLM_USAGE_COLUMNS, [])  # its inputs are its deps
    return build_llm_usage_asset(
        spec=spec,
        io_manager_key=options.io_manager_key,
        usage_key=keys["token_usage"],
        responses_key=keys[RESPONSES],
        partitions_def=options.partitions_def,
        backfill_policy=options.backfill_policy,
        prices=options.price_list,
        name=options.name,
        resource_key=options.resource_key,
    )
