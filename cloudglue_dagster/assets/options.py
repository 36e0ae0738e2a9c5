"""The factory's options: the one place each is written, checked once at definition load.

:class:`AssetOptions` holds each option of :func:`~cloudglue_dagster.build_cloudglue_assets`:
its name, type, default, bounds (``Field(ge=..., le=...)``) and doc. The others read it:

- the factory's signature and docstring are this model written out for readers and IDEs
  (``tests/test_options.py`` holds them equal to it, as it holds docs/configuration.md's
  tables against the lists they show);
- :class:`~cloudglue_dagster.CloudglueComponent` takes each YAML key's default and description
  from here (:func:`option_doc`), and passes every option it has under its own name;
- :mod:`cloudglue_dagster.definitions` reads the options it sets from the environment by name.

Every bad value fails at definition load with a :class:`CloudglueConfigError` naming the option
and the value; the checks are ours, not pydantic's (``model_construct``), so values are kept as
given (a translator, a ``dg.RetryPolicy``, a prices mapping are not copied or coerced).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from typing import Any

import dagster as dg
from pydantic import BaseModel, ConfigDict, Field

from cloudglue_dagster.api.days import DEFAULT_MAX_HELD_BYTES
from cloudglue_dagster.bounds import bounds_of, check_bounds, is_integer_field, is_optional_field
from cloudglue_dagster.errors import CloudglueConfigError
from cloudglue_dagster.tables.prices import ModelPrice, Prices, check_prices
from cloudglue_dagster.tables.texts import TextStorage

from .guards import ShrinkGuard
from .partitions import CloudglueDailyPartitionsDefinition, account_name
from .text_storage import DEFAULT_TEXT_HASH_KEY, TextSettings
from .translator import TABLES, CloudglueTranslator

__all__ = [
    "DEFAULT_POOL",
    "DEFAULT_RETRY_POLICY",
    "DEFAULT_SHRINK_GUARD",
    "AssetOptions",
    "option_doc",
    "parse_start_date",
]

DEFAULT_POOL = "{key_prefix}"
"""The default concurrency pool: ``{key_prefix}`` stands for the key prefix
joined with ``_`` (``cloudglue`` by default), so each account has its own."""

DEFAULT_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
"""Step retries for transient errors only (an API outage that outlasted the client's own
retries): Dagster's exponential backoff, (2**n - 1) x 30 s, so about 30, 90 and 210 s, each
+-30 s of jitter (see :func:`.run_control.retry_delay`)."""

DEFAULT_SHRINK_GUARD = ShrinkGuard()
"""Refuse a replace that removes more than half of a stored day of 20 rows or more."""


def parse_start_date(start_date: str | dt.date) -> dt.date:
    """``start_date`` as a date: ``YYYY-MM-DD`` or a date, a UTC day that has ended."""
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


class AssetOptions(BaseModel):
    """:func:`~cloudglue_dagster.build_cloudglue_assets`'s options: each one's type, default, bounds and doc.

    Build it with :meth:`of`, which checks every value. The fields are the factory's
    arguments as given; what the build uses is derived from them (:attr:`first_day`,
    :attr:`prefix`, :attr:`resolved_translator`, :attr:`price_list`, ...).
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    start_date: str | dt.date = Field(
        description="First daily partition: a UTC day that has ended, written YYYY-MM-DD (or a date)."
    )
    key_prefix: str | Sequence[str] = Field(
        default=("cloudglue",),
        description=(
            "Asset key prefix: the keys are <prefix>/chat_completions, <prefix>/chat_messages and"
            " <prefix>/token_usage. Joined with '_', it also names the job, schedule, sensors and"
            " pool, so each account (each prefix) of a code location has its own."
        ),
    )
    group_name: str = Field(default="cloudglue", description="Asset group shown in the UI.")
    resource_key: str = Field(default="cloudglue", description="Key of the CloudglueResource in your definitions.")
    io_manager_key: str = Field(
        default="io_manager",
        description=(
            "Key of the pandas I/O manager storing the tables. It must honour the partition_expr"
            " metadata (the DuckDB, Snowflake and BigQuery pandas I/O managers do)."
        ),
    )
    max_partitions_per_run: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Days per run of a backfill. None: any range in one run, with one paged sweep (what"
            " `dg launch --partition-range` and `dagster asset materialize --partition-range` need);"
            " a number caps the days of a run, bounding its memory (ranges are then backfills from"
            " the UI, run by the daemon)."
        ),
    )
    retry_policy: dg.RetryPolicy | None = Field(
        default=DEFAULT_RETRY_POLICY,
        description=(
            "Step retries for transient failures only (an API outage that outlasted the client's own"
            " retries, a window that kept changing); None disables them. The default: 3 retries,"
            " after about 30, 90 and 210 s. Applied by the assets themselves, which carry no Dagster"
            " retry policy: Dagster would also retry permanent errors and turn a termination"
            " (SIGTERM, SIGINT, the UI's Terminate) into a retry. Each retry waits its delay at its"
            " own start, where a termination stops it."
        ),
    )
    shrink_guard: ShrinkGuard | None = Field(
        default=DEFAULT_SHRINK_GUARD,
        description=(
            "Refuse to replace a day that would lose more than max_loss_fraction of the rows the"
            " warehouse holds for it (days of at least min_stored_rows); the run writes its other"
            " days and fails naming every refused day. Run config allow_shrink: true (or the run tag"
            " cloudglue/allow_shrink=true) accepts the loss. None: no guard."
        ),
    )
    storage_kind: str = Field(
        default="duckdb", description="The storage kind shown in the UI next to cloudglue and pandas."
    )
    schedule_hour: int = Field(
        default=1,
        ge=0,
        le=23,
        description=("UTC hour at which the daily schedule (stopped by default) materializes the day that just ended."),
    )
    pool: str | None = Field(
        default=DEFAULT_POOL,
        description=(
            "Dagster concurrency pool of the step (it calls the API), so runs materializing in"
            " parallel (a multi-run backfill) share a limit: `dagster instance concurrency set"
            " cloudglue 2`. The default, {key_prefix}, is the key prefix joined with '_'"
            " (cloudglue): one pool per account. None: no pool."
        ),
    )
    prices: Mapping[str, ModelPrice | Sequence[ModelPrice]] | None = Field(
        default=None,
        description=(
            "Model name -> ModelPrice (USD per million input and output tokens), or a list of them,"
            " each in force from its effective_from UTC day: each day is costed at the prices in"
            " force that day. Fills the cost columns of token_usage, responses and llm_usage, which"
            " are always there and null for a model without a price."
        ),
    )
    freshness_deadline_hour: int | None = Field(
        default=6,
        description=(
            "UTC hour by which the day that just ended must be loaded (a freshness check per asset,"
            " severity WARN, plus a stopped sensor evaluating them between runs). After"
            " schedule_hour, the same day (..23). None: no freshness checks."
        ),
    )
    late_data_lookback_days: int | None = Field(
        default=7,
        ge=1,
        description=(
            "How many recent UTC days the late-data sensor (stopped by default) watches for"
            " completions that arrived after the day was loaded. None: no such sensor."
        ),
    )
    late_data_interval_seconds: int = Field(
        default=3600,
        ge=30,
        description=(
            "Seconds between two evaluations of the late-data sensor; each costs one API request"
            " per watched, loaded day."
        ),
    )
    translator: CloudglueTranslator | None = Field(
        default=None,
        description=(
            "A CloudglueTranslator (subclass) giving each table's key, group, description, owners,"
            " tags, kinds, code version and automation condition. key_prefix, group_name and"
            " storage_kind feed its default; the job, schedule, sensors and pool keep the"
            " key_prefix names whatever keys it gives."
        ),
    )
    collection_usage: bool = Field(
        default=False,
        description=(
            "Also build <prefix>/collection_usage: token usage per UTC day, collection and model,"
            " with a check that it sums to token_usage."
        ),
    )
    max_held_bytes: int = Field(
        default=DEFAULT_MAX_HELD_BYTES,
        ge=1 << 20,
        description=(
            "The most completion JSON, in bytes, a sweep may hold in memory while it waits for days"
            " to be complete (default 512 MiB, about 2.3 GiB of memory); past it the run fails with"
            " HeldTooMuchError instead of being killed for its memory."
        ),
    )

    responses: bool = Field(
        default=True,
        description=(
            "Also build <prefix>/responses (one row per response of the Responses API, GET"
            " /v1/responses) and <prefix>/llm_usage (LLM spend per UTC day, source and model across"
            " chat completions and responses), with their checks. An account with no responses"
            " costs one request per run and gets empty partitions."
        ),
    )
    in_progress_limit_hours: int | None = Field(
        default=24,
        ge=1,
        description=(
            "How long a response may stay in_progress: a day stored while it held in_progress"
            " responses is read again (by a sensor, stopped by default) until none remain or the"
            " newest of them is older than this; responses in_progress longer are reported by the"
            " responses check (a warning) instead of being read again forever. None: no such sensor."
        ),
    )

    text_storage: TextStorage = Field(
        default="full",
        description=(
            "What the tables, and everything the runs put into Dagster (previews, metadata, logs),"
            " keep of the API's texts (prompts, answers, message names, filter values, instructions):"
            " 'full', the texts; 'hash', each text's HMAC-SHA256 under text_hash_key, so equal texts"
            " still join and count; 'none', null. Counts, tokens, ids, models, roles and the column"
            " types are the same under every setting. It applies to the days a run writes: re-load"
            " older days to apply it to them."
        ),
    )
    text_hash_key: str = Field(
        default=DEFAULT_TEXT_HASH_KEY,
        repr=False,
        description=(
            "The secret key of text_storage='hash' (16 characters or more; a keyed hash, unlike a bare"
            " SHA-256, cannot be matched against guessed short texts by anyone without it): a"
            " dg.EnvVar, read when a run starts, by default dg.EnvVar('CLOUDGLUE_TEXT_HASH_KEY')."
            " Keep it the same across runs: hashes under another key do not join."
        ),
    )
    text_rewrite: Callable[[str], str | None] | None = Field(
        default=None,
        description=(
            "A function applied to each text before it is stored (under 'full') or hashed (under"
            " 'hash'), e.g. to redact e-mail addresses; returning None stores null. Ignored under"
            " 'none'. None: texts as the API sent them."
        ),
    )

    @classmethod
    def of(cls, **arguments: Any) -> AssetOptions:
        """The options, checked; raises :class:`CloudglueConfigError` naming the first bad one.

        ``arguments`` are the factory's, every option by name."""
        unknown = sorted(set(arguments) - set(cls.model_fields))
        if unknown:
            raise TypeError(f"unknown options: {', '.join(unknown)}")
        values = {
            name: _checked(name, field, arguments.get(name, field.default)) for name, field in cls.model_fields.items()
        }
        options = cls.model_construct(**values)
        options._check_together()
        return options

    def _check_together(self) -> None:
        self.text_settings.check()
        deadline = self.freshness_deadline_hour
        hours = bounds_of(type(self).model_fields["schedule_hour"])  # the same day: up to its last hour
        assert hours is not None and hours.le is not None
        last_hour = hours.le
        if deadline is not None and not self.schedule_hour < deadline <= last_hour:
            raise CloudglueConfigError(
                f"freshness_deadline_hour must be after schedule_hour ({self.schedule_hour}) on the same UTC"
                f" day (..{last_hour:g}), got {deadline}; None disables the freshness checks"
            )

    @property
    def first_day(self) -> dt.date:
        """The first partition: ``start_date``, which :meth:`of` turned into a date."""
        return self.start_date if isinstance(self.start_date, dt.date) else parse_start_date(self.start_date)

    @property
    def prefix(self) -> tuple[str, ...]:
        """The key prefix as a tuple of parts."""
        return (self.key_prefix,) if isinstance(self.key_prefix, str) else tuple(self.key_prefix)

    @property
    def resolved_translator(self) -> CloudglueTranslator:
        """``translator``, else the default one."""
        return CloudglueTranslator() if self.translator is None else self.translator

    @property
    def price_list(self) -> Prices:
        """``prices``, empty when None."""
        return dict(self.prices or {})

    @property
    def text_settings(self) -> TextSettings:
        """``text_storage``, ``text_hash_key`` and ``text_rewrite`` together."""
        return TextSettings(self.text_storage, self.text_hash_key, self.text_rewrite)

    @property
    def tables(self) -> tuple[str, ...]:
        """The tables this account builds, in build order."""
        optional = {"collection_usage": self.collection_usage, "responses": self.responses, "llm_usage": self.responses}
        return tuple(t for t in TABLES if optional.get(t, True))

    @property
    def name(self) -> str:
        """The account's name: the key prefix joined with ``_``."""
        return account_name(self.prefix)

    @property
    def resolved_pool(self) -> str | None:
        return None if self.pool is None else self.pool.replace(DEFAULT_POOL, self.name)

    @cached_property
    def partitions_def(self) -> CloudglueDailyPartitionsDefinition:
        return CloudglueDailyPartitionsDefinition(start_date=self.first_day.isoformat(), timezone="UTC")

    @property
    def backfill_policy(self) -> dg.BackfillPolicy:
        if self.max_partitions_per_run is None:
            return dg.BackfillPolicy.single_run()
        return dg.BackfillPolicy.multi_run(self.max_partitions_per_run)


def option_doc(name: str) -> str:
    """An option's doc as the factory's docstring and the component show it: its description,
    then its bounds (``Must be >= 1 or None.``) when it has some."""
    field = AssetOptions.model_fields[name]
    bounds = bounds_of(field)
    if bounds is None:
        return str(field.description)
    shown = bounds.text(byte_units=name.endswith("_bytes"))
    return f"{field.description} Must be {shown}{' or None' if is_optional_field(field) else ''}."


def _checked(name: str, field: Any, value: Any) -> Any:
    """``value`` for the option ``name`` checked (numbers against ``field``'s type and bounds)."""
    if is_integer_field(field) or bounds_of(field) is not None:
        return check_bounds(name, field, value)
    if name == "start_date":
        return parse_start_date(value)
    if name == "key_prefix":
        prefix = (value,) if isinstance(value, str) else tuple(value) if isinstance(value, Sequence) else ()
        if not prefix or not all(isinstance(p, str) and p for p in prefix):
            raise CloudglueConfigError(f"key_prefix must be one or more non-empty strings, got {value!r}")
        return prefix
    if name == "prices" and value is not None:
        check_prices(value)
    if name in _INSTANCES and value is not None and not isinstance(value, _INSTANCES[name][0]):
        label = _INSTANCES[name][1]
        raise CloudglueConfigError(f"{name} must be a {label}, got {type(value).__name__}")
    return value


# Options that take an instance of a class (None: the default): the class and how errors name it.
_INSTANCES: dict[str, tuple[type, str]] = {
    "retry_policy": (dg.RetryPolicy, "dg.RetryPolicy or None"),
    "shrink_guard": (ShrinkGuard, "ShrinkGuard or None"),
    "translator": (CloudglueTranslator, "CloudglueTranslator"),
}
