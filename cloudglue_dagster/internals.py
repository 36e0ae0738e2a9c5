"""Dagster's internal names this package needs: the one module that imports them.

Each has no public equivalent in Dagster 1.13 (checked against ``dagster``'s exports,
``dagster.components``, ``dagster_duckdb``, ``dagster_duckdb_pandas``, ``dagster_deltalake``
and ``dagster_shared.serdes``'s package exports). A Dagster release that moves one breaks this
file alone: ``tests/test_package.py`` holds every other module to Dagster's public API.

- ``UnresolvedAssetJobDefinition``: the type of what ``dg.define_asset_job`` returns (the job
  of :class:`~cloudglue_dagster.CloudglueAssets`, the late-data sensor's target).
- ``PartitionLoadingContext``: the context ``PartitionsDefinition.validate_partition_key``
  takes; its override gives an unknown partition's error its reason (``assets/partitions.py``).
- ``AssetCheckEvaluationTargetMaterializationData``: ties a check evaluation reported by the
  step to the partition's materialization (``assets/checks.py``).
- ``DbClient``, ``DbIOManager``, ``DbTypeHandler``, ``TableSlice``,
  ``TablePartitionDimension``, ``static_where_clause``: the base of Dagster's database I/O
  managers, which the DuckDB and Delta Lake ones here extend. ``dagster_duckdb``,
  ``dagster_duckdb_pandas`` and ``dagster_deltalake`` import them from the same module.
- ``pack_value``, ``is_whitelisted_for_serdes_object``: Dagster's serialized form, walked to
  mask the API key inside metadata values (``assets/masking.py``); ``dagster_shared.serdes``
  exports the first, only its module the second.

Where a public name exists it is used instead, at its use: ``dg.TimeWindow``,
``dg.partition_loading_context``, ``dg.DagsterUnknownPartitionError``, ``dg.deserialize_value``.
"""

from __future__ import annotations

from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluationTargetMaterializationData
from dagster._core.definitions.partitions.context import PartitionLoadingContext
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from dagster._core.storage.db_io_manager import (
    DbClient,
    DbIOManager,
    DbTypeHandler,
    TablePartitionDimension,
    TableSlice,
    static_where_clause,
)
from dagster_shared.serdes import pack_value
from dagster_shared.serdes.serdes import is_whitelisted_for_serdes_object

__all__ = [
    "AssetCheckEvaluationTargetMaterializationData",
    "DbClient",
    "DbIOManager",
    "DbTypeHandler",
    "PartitionLoadingContext",
    "TablePartitionDimension",
    "TableSlice",
    "UnresolvedAssetJobDefinition",
    "is_whitelisted_for_serdes_object",
    "pack_value",
    "static_where_clause",
]
