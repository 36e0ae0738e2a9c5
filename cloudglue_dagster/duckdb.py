"""Deprecated path (until 0.3.0): the DuckDB warehouse is :mod:`cloudglue_dagster.io_managers.duckdb`.

Importing this module warns once and gives the same names; ``cloudglue_dagster.CloudglueDuckDBIOManager``
needs no change.
"""

import warnings

from cloudglue_dagster.io_managers.duckdb import *  # noqa: F403
from cloudglue_dagster.io_managers.duckdb import __all__  # noqa: F401

warnings.warn(
    "cloudglue_dagster.duckdb moved to cloudglue_dagster.io_managers.duckdb in 0.2.0; the old path goes in 0.3.0.",
    DeprecationWarning,
    stacklevel=2,
)
