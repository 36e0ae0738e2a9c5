"""Deprecated path (until 0.3.0): the Delta Lake warehouse is :mod:`cloudglue_dagster.io_managers.deltalake`."""

import warnings

from cloudglue_dagster.io_managers.deltalake import CloudglueDeltaLakeIOManager

__all__ = ["CloudglueDeltaLakeIOManager"]

warnings.warn(
    "cloudglue_dagster.deltalake moved to cloudglue_dagster.io_managers.deltalake in 0.2.0; the old path goes in 0.3.0.",
    DeprecationWarning,
    stacklevel=2,
)
