"""Each table's asset spec: the translator's, then what the step and the UI need on top of it.

The translator (:mod:`.translator`) gives a table's key, group, owners, tags, kinds...; here the
factory's part is merged in last, so a translator cannot drop it: the daily partitions,
``partition_expr``, the column schema (described for the run's ``text_storage``), the deps, the
I/O manager and Dagster's freshness policy from ``freshness_deadline_hour``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import dagster as dg

from cloudglue_dagster.tables.frames import Column

from .checks import chat_check_specs, messages_check_specs
from .metadata import column_schema
from .options import AssetOptions
from .response_checks import responses_check_specs
from .steps import CHAT, RESPONSES
from .translator import CloudglueTranslatorData, asset_spec_for, check_distinct_keys

__all__ = ["check_specs", "full_spec", "table_specs"]


def table_specs(options: AssetOptions) -> dict[str, dg.AssetSpec]:
    """The translator's spec of each table the account builds; two tables given one key fail here."""
    specs = {
        table: asset_spec_for(
            options.resolved_translator,
            CloudglueTranslatorData(table, options.prefix, options.group_name, options.storage_kind),
        )
        for table in options.tables
    }
    check_distinct_keys({table: spec.key for table, spec in specs.items()})
    return specs


def check_specs(source: str, keys: Mapping[str, dg.AssetKey], options: AssetOptions) -> list[dg.AssetCheckSpec]:
    """The checks ``source``'s step evaluates itself (its tables' ``rows_valid``)."""
    if source == RESPONSES:
        return responses_check_specs(keys[RESPONSES], options.partitions_def)
    return chat_check_specs(keys[CHAT], options.partitions_def) + messages_check_specs(
        keys["chat_messages"], options.partitions_def
    )


def full_spec(
    options: AssetOptions,
    spec: dg.AssetSpec,
    partition_expr: str,
    columns: Sequence[Column],
    deps: Sequence[dg.AssetKey],
) -> dg.AssetSpec:
    """The translator's spec, then what the step needs on top of it (merged last, so a spec
    cannot drop what the I/O manager and the UI read)."""
    return spec.replace_attributes(
        metadata={
            **spec.metadata,
            "partition_expr": partition_expr,
            "dagster/column_schema": column_schema(columns),
        },
        deps=list(deps),
        partitions_def=options.partitions_def,
        skippable=True,
        freshness_policy=spec.freshness_policy or _freshness_policy(options),
    ).with_io_manager_key(options.io_manager_key)


def _freshness_policy(options: AssetOptions) -> dg.FreshnessPolicy | None:
    """Dagster's freshness policy from ``freshness_deadline_hour``: a materialization each UTC day
    between the schedule's hour and the deadline (the daily run loads the day that just ended
    then). None without a deadline. A translator's own policy wins."""
    deadline = options.freshness_deadline_hour
    if deadline is None:
        return None
    return dg.FreshnessPolicy.cron(
        deadline_cron=f"0 {deadline} * * *",
        lower_bound_delta=dt.timedelta(hours=deadline - options.schedule_hour),
        timezone="UTC",
    )
