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
from typing import Annotated

import dagster as dg
from dagster.components.utils.translation import TranslationFn, TranslationFnResolver
from pydantic import Field

from cloudglue_dagster.assets.factory import build_cloudglue_assets
from cloudglue_dagster.assets.guards import ShrinkGuard
from cloudglue_dagster.assets.partitions import account_name
from cloudglue_dagster.assets.translator import CloudglueTranslator, CloudglueTranslatorData
from cloudglue_dagster.errors import CloudglueConfigError
from cloudglue_dagster.io_managers.duckdb import CloudglueDuckDBIOManager
from cloudglue_dagster.resource import CloudglueResource
from cloudglue_dagster.tables.frames import ModelPrice

from .scaffolder import CloudglueScaffolder

__all__ = ["CloudglueAccount", "CloudglueComponent", "DuckDBStorage", "Price"]

_ENV_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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
    base_url: str | None = Field(
        default=None,
        description=(
            "API root, with the version. Unset: CLOUDGLUE_BASE_URL where the run executes,"
            " else https://api.cloudglue.dev/v1."
        ),
    )
    max_concurrent_requests: int | None = Field(default=None, description="Pages fetched at once (1..64; 8).")
    max_retries: int | None = Field(default=None, description="Retries of one request (0..20; 5).")
    timeout_seconds: float | None = Field(default=None, description="Read timeout in seconds (60).")
    request_deadline_seconds: float | None = Field(
        default=None, description="Seconds one attempt of a request may take in all (120)."
    )
    max_response_bytes: int | None = Field(
        default=None,
        description="Largest response body accepted, in bytes after decompression (134217728 = 128 MiB).",
    )
    max_window_records: int | None = Field(
        default=None, description="Largest total a window may announce before the sweep refuses it (10000000)."
    )


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
        default=0.5, description="Share of a day's stored rows a replace may remove (0..1)."
    )
    min_stored_rows: int = Field(default=20, description="Days with fewer stored rows are not guarded.")


class Price(dg.Model):
    """A model's price in USD per million tokens."""

    input_per_million: float = Field(description="USD per million prompt tokens.")
    output_per_million: float = Field(description="USD per million completion tokens.")


@dg.scaffold_with(CloudglueScaffolder)
class CloudglueComponent(dg.Component, dg.Resolvable, dg.Model):
    """Daily UTC partitions of one Cloudglue account's chat completions, messages and token usage.

    Builds what :func:`build_cloudglue_assets` builds (assets, checks, job,
    schedule, sensors) plus a :class:`CloudglueResource` reading the API key
    from ``account.api_key_env_var`` and, with ``io_manager``, a DuckDB I/O
    manager. Without ``io_manager`` the tables go to the I/O manager under
    ``io_manager_key`` (default ``io_manager``), which you define.
    """

    account: CloudglueAccount = Field(description="API key variable and connection settings.")
    start_date: str = Field(description="First daily partition, a past UTC date 'YYYY-MM-DD' (quote it in YAML).")
    key_prefix: str | list[str] = Field(
        default="cloudglue",
        description=(
            "Asset key prefix. Joined with '_', it also names the resource, the job, schedule and sensors,"
            " the pool and the default schema and group: give each account its own."
        ),
    )
    group_name: str | None = Field(default=None, description="Asset group. Default: the key prefix joined with '_'.")
    resource_key: str | None = Field(
        default=None, description="Key of the CloudglueResource created. Default: the key prefix joined with '_'."
    )
    io_manager: DuckDBStorage | None = Field(
        default=None,
        description="Create a DuckDB I/O manager for the tables (under io_manager_key, or '<resource_key>_io_manager').",
    )
    io_manager_key: str | None = Field(
        default=None,
        description=(
            "Key of the I/O manager storing the tables: the one created by io_manager, or one you define"
            " (a pandas I/O manager honouring partition_expr). Default: '<resource_key>_io_manager' with"
            " io_manager, else 'io_manager'."
        ),
    )
    max_partitions_per_run: int | None = Field(
        default=None,
        description=(
            "Days per backfill run; unset: any range in one run, which `dg launch --partition-range`"
            " needs (with it set, ranges are backfills from the UI, run by the daemon)."
        ),
    )
    schedule_hour: int = Field(default=1, description="UTC hour of the daily run (its schedule is stopped by default).")
    freshness_deadline_hour: int | None = Field(
        default=6, description="UTC hour by which yesterday must be loaded (freshness checks); null: none."
    )
    late_data_lookback_days: int | None = Field(
        default=7, description="Recent UTC days the late-data sensor watches (stopped by default); null: no sensor."
    )
    late_data_interval_seconds: int = Field(default=3600, description="Seconds between two late-data sensor ticks.")
    prices: dict[str, Price] | None = Field(
        default=None, description="Model name -> price per million tokens, for token_usage's cost columns."
    )
    collection_usage: bool = Field(
        default=False,
        description=(
            "Also build <prefix>/collection_usage: token usage per day, collection and model, with a check"
            " that it sums to token_usage."
        ),
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
            " chat_messages, token_usage), {{ account }} and {{ spec }}; partitions, partition_expr and"
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
    shrink_guard: ShrinkGuardModel | None = Field(
        default_factory=ShrinkGuardModel,
        description=(
            "Refuse a replace that removes more than max_loss_fraction of a stored day's rows (run tag"
            " cloudglue/allow_shrink=true accepts it); null: no guard."
        ),
    )

    @classmethod
    def get_spec(cls) -> dg.ComponentTypeSpec:
        return dg.ComponentTypeSpec(
            description="Daily UTC partitions of a Cloudglue account's chat completions, messages and token usage.",
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
        if not _ENV_VAR_NAME.fullmatch(self.account.api_key_env_var):
            # Never echo the value: a key pasted here by mistake must not reach a log.
            raise CloudglueConfigError(
                "account.api_key_env_var must be the NAME of an environment variable (letters, digits and"
                " underscores, e.g. CLOUDGLUE_API_KEY), not the API key itself"
            )
        resource_key = self.resource_key or self.name
        io_manager_key = self.io_manager_key or (f"{resource_key}_io_manager" if self.io_manager else "io_manager")
        built = build_cloudglue_assets(
            start_date=self.start_date,
            key_prefix=self.key_prefix,
            group_name=self.group_name or self.name,
            resource_key=resource_key,
            io_manager_key=io_manager_key,
            max_partitions_per_run=self.max_partitions_per_run,
            schedule_hour=self.schedule_hour,
            prices={m: ModelPrice(p.input_per_million, p.output_per_million) for m, p in (self.prices or {}).items()},
            freshness_deadline_hour=self.freshness_deadline_hour,
            late_data_lookback_days=self.late_data_lookback_days,
            late_data_interval_seconds=self.late_data_interval_seconds,
            shrink_guard=None
            if self.shrink_guard is None
            else ShrinkGuard(self.shrink_guard.max_loss_fraction, self.shrink_guard.min_stored_rows),
            translator=_ComponentTranslator(self),
            collection_usage=self.collection_usage,
        )
        account = self.account
        optional = {
            "max_concurrent_requests": account.max_concurrent_requests,
            "max_retries": account.max_retries,
            "timeout_seconds": account.timeout_seconds,
            "request_deadline_seconds": account.request_deadline_seconds,
            "max_response_bytes": account.max_response_bytes,
            "max_window_records": account.max_window_records,
        }
        resources: dict[str, object] = {
            resource_key: CloudglueResource(
                api_key=dg.EnvVar(account.api_key_env_var),
                base_url=account.base_url,
                **{k: v for k, v in optional.items() if v is not None},
            )
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
