"""The factory's options, checked once: every bad value fails at definition load with its fix."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import dagster as dg

from cloudglue_dagster.api.days import DEFAULT_MAX_HELD_BYTES
from cloudglue_dagster.errors import CloudglueConfigError
from cloudglue_dagster.tables.frames import ModelPrice

from .guards import ShrinkGuard
from .partitions import CloudglueDailyPartitionsDefinition, account_name
from .translator import TABLES, CloudglueTranslator

__all__ = ["DEFAULT_POOL", "AssetOptions", "parse_start_date"]

DEFAULT_POOL = "{key_prefix}"
"""The default concurrency pool: ``{key_prefix}`` stands for the key prefix
joined with ``_`` (``cloudglue`` by default), so each account has its own."""


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


def _prefix(key_prefix: str | Sequence[str]) -> tuple[str, ...]:
    prefix = (key_prefix,) if isinstance(key_prefix, str) else tuple(key_prefix)
    if not prefix or not all(isinstance(p, str) and p for p in prefix):
        raise CloudglueConfigError(f"key_prefix must be one or more non-empty strings, got {key_prefix!r}")
    return prefix


def _instance(name: str, value: object, kind: type, label: str) -> None:
    if value is not None and not isinstance(value, kind):
        raise CloudglueConfigError(f"{name} must be a {label} or None, got {type(value).__name__}")


@dataclass(frozen=True)
class AssetOptions:
    """:func:`~cloudglue_dagster.build_cloudglue_assets`'s arguments, validated (see its docstring)."""

    first_day: dt.date
    key_prefix: tuple[str, ...]
    group_name: str
    resource_key: str
    io_manager_key: str
    max_partitions_per_run: int | None
    retry_policy: dg.RetryPolicy | None
    shrink_guard: ShrinkGuard | None
    storage_kind: str
    schedule_hour: int
    pool: str | None
    prices: Mapping[str, ModelPrice]
    freshness_deadline_hour: int | None
    late_data_lookback_days: int | None
    late_data_interval_seconds: int
    translator: CloudglueTranslator
    collection_usage: bool = False
    max_held_bytes: int = DEFAULT_MAX_HELD_BYTES

    @property
    def tables(self) -> tuple[str, ...]:
        """The tables this account builds, in build order."""
        return tuple(t for t in TABLES if t != "collection_usage" or self.collection_usage)

    @property
    def name(self) -> str:
        """The account's name: the key prefix joined with ``_``."""
        return account_name(self.key_prefix)

    @property
    def resolved_pool(self) -> str | None:
        return None if self.pool is None else self.pool.replace(DEFAULT_POOL, self.name)

    @classmethod
    def of(cls, *, start_date: str | dt.date, key_prefix: str | Sequence[str], **options: object) -> AssetOptions:
        """Checked options; raises :class:`CloudglueConfigError` naming the first bad one."""
        built = cls(first_day=parse_start_date(start_date), key_prefix=_prefix(key_prefix), **options)  # type: ignore[arg-type]
        built._check()
        return built

    def _check(self) -> None:
        if self.max_partitions_per_run is not None and self.max_partitions_per_run < 1:
            raise CloudglueConfigError(
                f"max_partitions_per_run must be >= 1 or None, got {self.max_partitions_per_run}"
            )
        if not 0 <= self.schedule_hour <= 23:
            raise CloudglueConfigError(f"schedule_hour must be 0..23, got {self.schedule_hour}")
        deadline = self.freshness_deadline_hour
        if deadline is not None and not self.schedule_hour < deadline <= 23:
            raise CloudglueConfigError(
                f"freshness_deadline_hour must be after schedule_hour ({self.schedule_hour}) on the same UTC"
                f" day (..23), got {deadline}; None disables the freshness checks"
            )
        if self.late_data_lookback_days is not None and self.late_data_lookback_days < 1:
            raise CloudglueConfigError(
                f"late_data_lookback_days must be >= 1 or None, got {self.late_data_lookback_days}"
            )
        if self.late_data_interval_seconds < 30:
            raise CloudglueConfigError(
                f"late_data_interval_seconds must be >= 30, got {self.late_data_interval_seconds}"
            )
        held = self.max_held_bytes
        if isinstance(held, bool) or not isinstance(held, int) or held < 1 << 20:
            raise CloudglueConfigError(f"max_held_bytes must be an integer >= 1048576 (1 MiB), got {held!r}")
        for model, price in self.prices.items():
            if not isinstance(price, ModelPrice):
                raise CloudglueConfigError(f"prices[{model!r}] must be a ModelPrice, got {type(price).__name__}")
        _instance("retry_policy", self.retry_policy, dg.RetryPolicy, "dg.RetryPolicy")
        _instance("shrink_guard", self.shrink_guard, ShrinkGuard, "ShrinkGuard")
        if not isinstance(self.translator, CloudglueTranslator):
            raise CloudglueConfigError(
                f"translator must be a CloudglueTranslator, got {type(self.translator).__name__}"
            )

    @cached_property
    def partitions_def(self) -> CloudglueDailyPartitionsDefinition:
        return CloudglueDailyPartitionsDefinition(start_date=self.first_day.isoformat(), timezone="UTC")

    @property
    def backfill_policy(self) -> dg.BackfillPolicy:
        if self.max_partitions_per_run is None:
            return dg.BackfillPolicy.single_run()
        return dg.BackfillPolicy.multi_run(self.max_partitions_per_run)
