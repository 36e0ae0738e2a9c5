"""``CloudglueComponent``: one Cloudglue account's assets, configured from a ``defs.yaml``.

.. code-block:: yaml

    type: cloudglue_dagster.CloudglueComponent
    attributes:
      account:
        api_key_env_var: CLOUDGLUE_API_KEY   # the variable's NAME; the key itself never goes in YAML
      start_date: "2026-01-01"
      io_manager:
        duckdb_path: warehouse.duckdb

Several accounts in one code location are several components (one folder, or
one YAML document, each), each with its own ``key_prefix``: the prefix names
the assets, the resource, the I/O manager, the DuckDB schema, the job, the
schedule, the sensors and the concurrency pool, so nothing is shared.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import dagster as dg
from dagster.components.utils.translation import TranslationFn, TranslationFnResolver
from pydantic import Field

from cloudglue_dagster.assets.factory import build_cloudglue_assets
from cloudglue_dagster.assets.guards import ShrinkGuard
from cloudglue_dagster.assets.options import DEFAULT_SHRINK_GUARD, AssetOptions, option_doc
from cloudglue_dagster.assets.partitions import account_name
from cloudglue_dagster.assets.translator import CloudglueTranslator, CloudglueTranslatorData
from cloudglue_dagster.bounds import bounds_of
from cloudglue_dagster.environment import API_KEY, TEXT_HASH_KEY
from cloudglue_dagster.errors import CloudglueConfigError
from cloudglue_dagster.io_managers.duckdb import CloudglueDuckDBIOManager
from cloudglue_dagster.resource import CloudglueResource
from cloudglue_dagster.tables.prices import ModelPrice
from cloudglue_dagster.tables.texts import TextStorage

from .imports import imported_function
from .scaffolder import CloudglueScaffolder

__all__ = ["CloudglueAccount", "CloudglueComponent", "DuckDBStorage", "Price"]

_ENV_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _resource_setting(name: str) -> Any:
    """A :class:`CloudglueAccount` field for the resource's field ``name``: unset (None) takes
    the resource's default; the description is the resource's, with its bounds and default."""
    field = CloudglueResource.model_fields[name]
    bounds = bounds_of(field)
    allowed = "" if bounds is None else f" Allowed: {bounds.text(byte_units=name.endswith('_bytes'))}."
    default = f"{field.default:g}" if isinstance(field.default, float) else field.default
    unset = "" if default is None else f" Unset: the resource's default, {default}."  # None: its doc says
    return Field(default=None, description=f"{field.description}{allowed}{unset}")


_NOT_IN_YAML = {
    "retry_policy": "a dg.RetryPolicy, a Python object: the factory's default applies",
    "translator": "a Python object: YAML has translation (and a subclass get_asset_spec) instead",
    "storage_kind": "not offered in YAML: the factory's default applies",
    "pool": "not offered in YAML: the factory's default applies",
    "max_held_bytes": "not offered in YAML: the factory's default applies",
    "text_hash_key": "YAML names the variable holding it instead: text_hash_key_env_var",
}
"""The factory's options a component does not take, and why."""

_UNSET: Any = object()


def _option(name: str, *, default: Any = _UNSET, default_factory: Any = None, note: str = "") -> Any:
    """The YAML key of the factory option ``name``: its doc is the option's (with None spelt
    null, as YAML does) then ``note``; its default is the option's unless given."""
    field = AssetOptions.model_fields[name]
    doc = re.sub(r"\bNone\b", "null", option_doc(name))
    description = f"{doc} {note}".strip()
    if default_factory is not None:
        return Field(default_factory=default_factory, description=description)
    if default is _UNSET and field.is_required():
        return Field(description=description)
    return Field(default=field.default if default is _UNSET else default, description=description)


class CloudglueAccount(dg.Model):
    """The account: its API key (through an environment variable) and connection settings.

    Fields left unset take :class:`CloudglueResource`'s defaults.
    """

    api_key_env_var: str = Field(
        description=(
            "NAME of the environment variable holding the API key, e.g. CLOUDGLUE_API_KEY. It is read"
            " when a run starts; the UI shows the name, never the key. Do not put the key in YAML."
        )
    )
    # The resource's settings: type, bounds, default and doc are its fields' (resource.py).
    base_url: str | None = _resource_setting("base_url")
    max_concurrent_requests: int | None = _resource_setting("max_concurrent_requests")
    max_retries: int | None = _resource_setting("max_retries")
    timeout_seconds: float | None = _resource_setting("timeout_seconds")
    request_deadline_seconds: float | None = _resource_setting("request_deadline_seconds")
    max_response_bytes: int | None = _resource_setting("max_response_bytes")
    max_window_records: int | None = _resource_setting("max_window_records")

    def resource_settings(self) -> dict[str, Any]:
        """The resource's settings given here (unset ones are left to its defaults)."""
        names = [name for name in type(self).model_fields if name in CloudglueResource.model_fields]
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


class DuckDBStorage(dg.Model):
    """A :class:`CloudglueDuckDBIOManager` this component creates for its tables."""

    duckdb_path: str = Field(
        description="DuckDB file; a relative path is relative to the working directory of the Dagster process."
    )
    schema_: str | None = Field(
        default=None,
        alias="schema",  # `schema` is taken on pydantic models
        description="Schema of the tables. Default: the key prefix joined with '_' (cloudglue).",
    )


class ShrinkGuardModel(dg.Model):
    """When a replace that removes most of a stored day is refused (see ``ShrinkGuard``)."""

    max_loss_fraction: float = Field(
        default=DEFAULT_SHRINK_GUARD.max_loss_fraction,
        description="Share of a day's stored rows a replace may remove (0..1, 1 excluded).",
    )
    min_stored_rows: int = Field(
        default=DEFAULT_SHRINK_GUARD.min_stored_rows, description="Days with fewer stored rows are not guarded."
    )


class Price(dg.Model):
    """A model's price in USD per million tokens."""

    input_per_million: float = Field(description="USD per million input tokens (a completion's prompt tokens).")
    output_per_million: float = Field(description="USD per million output tokens (a completion's completion tokens).")
    effective_from: str | None = Field(
        default=None,
        description="The first UTC day this price is in force, 'YYYY-MM-DD'; unset: since always. List a model's prices to change it over time.",
    )

    def price(self) -> ModelPrice:
        """This price as the factory takes it."""
        return ModelPrice(self.input_per_million, self.output_per_million, self.effective_from)  # type: ignore[arg-type]  # a str is read as a date


@dg.scaffold_with(CloudglueScaffolder)
class CloudglueComponent(dg.Component, dg.Resolvable, dg.Model):
    """Daily UTC partitions of one Cloudglue account's chat completions, messages and token usage.

    Builds what :func:`build_cloudglue_assets` builds (assets, checks, job,
    schedule, sensors) plus a :class:`CloudglueResource` reading the API key
    from ``account.api_key_env_var`` and, with ``io_manager``, a DuckDB I/O
    manager. Without ``io_manager`` the tables go to the I/O manager under
    ``io_manager_key`` (default ``io_manager``), which you define.
    """

    # The factory's options keep their names here; each one's default and doc come from
    # AssetOptions (assets/options.py), `note` saying what YAML adds. Options left out of YAML:
    # _NOT_IN_YAML. tests/test_options.py holds this list against the model.
    account: CloudglueAccount = Field(description="API key variable and connection settings.")
    start_date: str = _option("start_date", note="Quote it in YAML: '2026-01-01'.")
    key_prefix: str | list[str] = _option(
        "key_prefix",
        default="cloudglue",
        note="Here it also names the resource and the default schema and group: give each account its own.",
    )
    group_name: str | None = _option("group_name", default=None, note="Default: the key prefix joined with '_'.")
    resource_key: str | None = _option(
        "resource_key", default=None, note="The component creates it. Default: the key prefix joined with '_'."
    )
    io_manager: DuckDBStorage | None = Field(
        default=None,
        description="Create a DuckDB I/O manager for the tables (under io_manager_key, or '<resource_key>_io_manager').",
    )
    io_manager_key: str | None = _option(
        "io_manager_key",
        default=None,
        note=(
            "The one created by io_manager, or one you define. Default: '<resource_key>_io_manager' with"
            " io_manager, else 'io_manager'."
        ),
    )
    max_partitions_per_run: int | None = _option("max_partitions_per_run")
    schedule_hour: int = _option("schedule_hour")
    freshness_deadline_hour: int | None = _option("freshness_deadline_hour")
    late_data_lookback_days: int | None = _option("late_data_lookback_days")
    late_data_interval_seconds: int = _option("late_data_interval_seconds")
    prices: dict[str, Price | list[Price]] | None = _option(
        "prices",
        note=(
            "In YAML: {model: {input_per_million: ..., output_per_million: ...}}, or a list of them with"
            " effective_from: 'YYYY-MM-DD' to change a price over time."
        ),
    )
    collection_usage: bool = _option("collection_usage")
    responses: bool = _option("responses")
    in_progress_limit_hours: int | None = _option("in_progress_limit_hours")
    text_storage: TextStorage = _option("text_storage")
    text_hash_key_env_var: str = Field(
        default=TEXT_HASH_KEY,
        description=(
            "NAME of the environment variable holding the secret key of text_storage: hash (16"
            " characters or more), read when a run starts. Do not put the key in YAML."
        ),
    )
    text_rewrite: str | None = _option(
        "text_rewrite",
        note="In YAML: the function's import path, 'my_package.redact:redact_emails', imported when the definitions load.",
    )
    translation: (
        Annotated[
            TranslationFn[CloudglueTranslatorData],
            TranslationFnResolver[CloudglueTranslatorData](
                lambda data: {"table": data.table, "account": data.account, "data": data}
            ),
        ]
        | None
    ) = Field(
        default=None,
        description=(
            "Asset attributes for each table (key, group_name, description, owners, tags, kinds,"
            " code_version, automation_condition), templated with {{ table }} (chat_completions,"
            " chat_messages, token_usage, collection_usage, responses, llm_usage), {{ account }} and"
            " {{ spec }}; partitions, partition_expr and"
            " the column schema are kept whatever it says."
        ),
    )
    in_process: bool = Field(
        default=True,
        description=(
            "Set the code location's executor to Dagster's in-process one (what the factory's"
            " definitions() do): a run is one step then its checks, so a process per step only adds"
            " start-up time. false: leave the executor to your definitions (needed when they set one)."
        ),
    )
    shrink_guard: ShrinkGuardModel | None = _option(
        "shrink_guard",
        default_factory=ShrinkGuardModel,
        note="In YAML: {max_loss_fraction: ..., min_stored_rows: ...}.",
    )

    @classmethod
    def get_spec(cls) -> dg.ComponentTypeSpec:
        return dg.ComponentTypeSpec(
            description=(
                "Daily UTC partitions of a Cloudglue account's chat completions, messages, token usage,"
                " responses and LLM spend."
            ),
            tags=["cloudglue"],
            produces=["asset", "asset_check", "job", "schedule", "sensor", "resource"],
        )

    @property
    def name(self) -> str:
        """The key prefix joined with ``_``: the default of every per-account name."""
        return account_name(self.key_prefix)

    def get_asset_spec(self, data: CloudglueTranslatorData) -> dg.AssetSpec:
        """The spec of one table: :class:`CloudglueTranslator`'s, then ``translation``.

        Override in a subclass for what YAML cannot say; the factory still merges the
        partitions, ``partition_expr`` and the column schema in afterwards.
        """
        spec = CloudglueTranslator().get_asset_spec(data)
        return spec if self.translation is None else self.translation(spec, data)

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        for name, value, example in (
            ("account.api_key_env_var", self.account.api_key_env_var, API_KEY),
            ("text_hash_key_env_var", self.text_hash_key_env_var, TEXT_HASH_KEY),
        ):
            if not _ENV_VAR_NAME.fullmatch(value):
                # Never echo the value: a key pasted here by mistake must not reach a log.
                raise CloudglueConfigError(
                    f"{name} must be the NAME of an environment variable (letters, digits and"
                    f" underscores, e.g. {example}), not the key itself"
                )
        resource_key = self.resource_key or self.name
        io_manager_key = self.io_manager_key or (f"{resource_key}_io_manager" if self.io_manager else "io_manager")
        # Every option this component has, under its own name; then those YAML spells otherwise.
        arguments: dict[str, Any] = {
            name: getattr(self, name) for name in AssetOptions.model_fields if name in type(self).model_fields
        }
        arguments.update(
            group_name=self.group_name or self.name,
            resource_key=resource_key,
            io_manager_key=io_manager_key,
            prices={
                m: p.price() if isinstance(p, Price) else [q.price() for q in p] for m, p in (self.prices or {}).items()
            },
            shrink_guard=None
            if self.shrink_guard is None
            else ShrinkGuard(self.shrink_guard.max_loss_fraction, self.shrink_guard.min_stored_rows),
            translator=_ComponentTranslator(self),
            text_hash_key=dg.EnvVar(self.text_hash_key_env_var),
            text_rewrite=None if self.text_rewrite is None else imported_function(self.text_rewrite, "text_rewrite"),
        )
        built = build_cloudglue_assets(**arguments)
        account = self.account
        resources: dict[str, object] = {
            resource_key: CloudglueResource(api_key=dg.EnvVar(account.api_key_env_var), **account.resource_settings())
        }
        if self.io_manager is not None:
            resources[io_manager_key] = CloudglueDuckDBIOManager(
                database=self.io_manager.duckdb_path, schema=self.io_manager.schema_ or self.name
            )
        executor = dg.in_process_executor if self.in_process else None
        return dg.Definitions.merge(built.definitions(executor=executor), dg.Definitions(resources=resources))


class _ComponentTranslator(CloudglueTranslator):
    """Asks the component, so a subclass's ``get_asset_spec`` and the YAML both apply."""

    def __init__(self, component: CloudglueComponent) -> None:
        self.component = component

    def get_asset_spec(self, data: CloudglueTranslatorData) -> dg.AssetSpec:
        return self.component.get_asset_spec(data)
