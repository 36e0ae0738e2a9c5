"""``CloudglueTranslator``: the one override point for how the tables appear in Dagster.

:func:`~cloudglue_dagster.build_cloudglue_assets` asks the translator for each table's
:class:`dagster.AssetSpec`: its key, group, description, owners, tags, kinds, code version
and automation condition. What the assets need to work is merged in afterwards, so an
override cannot drop it: the ``partition_expr`` and ``dagster/column_schema`` metadata, the
daily UTC partitions, the backfill policy and the dependencies between the tables.

.. code-block:: python

    class MyTranslator(CloudglueTranslator):
        def get_asset_spec(self, data: CloudglueTranslatorData) -> dg.AssetSpec:
            spec = super().get_asset_spec(data)
            return spec.replace_attributes(owners=["team:ml-platform"]).merge_attributes(
                tags={"domain": "video"}
            )


    assets = build_cloudglue_assets(start_date="2026-01-01", translator=MyTranslator())
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import dagster as dg

from cloudglue_dagster.errors import CloudglueConfigError

__all__ = ["TABLES", "CloudglueTranslator", "CloudglueTranslatorData", "asset_spec_for", "check_distinct_keys"]

TABLES = ("chat_completions", "chat_messages", "token_usage", "collection_usage", "responses", "llm_usage")
"""The tables, in the order the factory builds them (each after those it reads);
``collection_usage`` only when asked for, ``responses`` and ``llm_usage`` unless turned off."""

_DESCRIPTIONS = {
    "chat_completions": (
        "Every Cloudglue chat completion created in the partition's UTC day, one row per"
        " completion (GET /v1/chat/completions). A range of days is fetched in one paged sweep"
        " and written a day at a time."
    ),
    "chat_messages": (
        "One row per message of each completion: the prompt's messages, then the answer's choices,"
        " from chat_completions' JSON columns (payload_messages, choices), built with it."
    ),
    "token_usage": (
        "Token usage per UTC day and model, summed from chat_completions over the completions"
        " that report each count (unreported counts stay null, never zero), with its cost in USD"
        " for the models given a price (null for the others)."
    ),
    "collection_usage": (
        "Token usage per UTC day, collection (payload.collections) and model: a completion naming k"
        " collections is split evenly over them in whole tokens, one naming none goes to a null"
        " collection, so summed over collections each day and model equals token_usage."
    ),
    "responses": (
        "Every response of Cloudglue's Responses API created in the partition's UTC day, one row per"
        " response (GET /v1/responses): status, model, instructions, token usage and cost. A day"
        " stored while some responses were in_progress is read again until none remain."
    ),
    "llm_usage": (
        "LLM spend per UTC day, source (chat_completions or responses) and model: requests, input,"
        " output and total tokens, and cost in USD, summed from token_usage and responses."
    ),
}


@dataclass(frozen=True)
class CloudglueTranslatorData:
    """What the translator knows about one table when it is asked for its spec.

    Attributes:
        table: ``chat_completions``, ``chat_messages``, ``token_usage``, ``collection_usage``,
            ``responses`` or ``llm_usage``.
        key_prefix: the factory's ``key_prefix`` (the account), as a tuple.
        group_name: the factory's ``group_name``.
        storage_kind: the factory's ``storage_kind`` (``duckdb`` by default).
    """

    table: str
    key_prefix: tuple[str, ...]
    group_name: str
    storage_kind: str

    @property
    def account(self) -> str:
        """The key prefix joined with ``_``, the name of the account's job, sensors and pool."""
        return "_".join(self.key_prefix)


class CloudglueTranslator:
    """Turns each table into an :class:`dagster.AssetSpec`; subclass and override
    :meth:`get_asset_spec` to change keys, groups, owners, tags, kinds or automation."""

    def get_asset_spec(self, data: CloudglueTranslatorData) -> dg.AssetSpec:
        """The spec of ``data.table``.

        Default: key ``<key_prefix>/<table>``, the factory's group, kinds ``cloudglue``,
        ``pandas`` and the storage kind, the table's description; no owners, tags or
        automation condition (the daily schedule and the sensors drive the assets).
        """
        return dg.AssetSpec(
            key=dg.AssetKey([*data.key_prefix, data.table]),
            group_name=data.group_name,
            kinds={"cloudglue", "pandas", data.storage_kind},
            description=_DESCRIPTIONS[data.table],
        )


def asset_spec_for(translator: CloudglueTranslator, data: CloudglueTranslatorData) -> dg.AssetSpec:
    """The translator's spec for ``data``, refused when it sets what the factory owns."""
    spec = translator.get_asset_spec(data)
    if not isinstance(spec, dg.AssetSpec):
        raise CloudglueConfigError(
            f"{type(translator).__name__}.get_asset_spec must return a dg.AssetSpec for {data.table},"
            f" got {type(spec).__name__}"
        )
    owned = {
        "deps": bool(list(spec.deps)),
        "partitions_def": spec.partitions_def is not None,
        "skippable": spec.skippable,
    }
    if any(owned.values()):
        names = ", ".join(name for name, is_set in owned.items() if is_set)
        raise CloudglueConfigError(
            f"The spec of {data.table} sets {names}: build_cloudglue_assets owns the daily partitions and"
            " the dependencies between the tables. Change keys, group, description, owners, tags, kinds,"
            " code_version or automation_condition only."
        )
    return spec


def check_distinct_keys(keys: Mapping[str, dg.AssetKey]) -> None:
    """Refuse a translator that gives two tables (table -> key) the same key."""
    if len(set(keys.values())) != len(keys):
        named = ", ".join(f"{table}={key.to_user_string()}" for table, key in keys.items())
        raise CloudglueConfigError(f"The translator gave two tables the same asset key: {named}")
