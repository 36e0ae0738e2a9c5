"""Ready-made definitions, configured from environment variables.

Loaded by ``dagster dev -w workspace.yaml`` and by
``dagster asset materialize -m cloudglue_dagster.definitions``:

==========================  ===========================================  ==============================
variable                    meaning                                      default
==========================  ===========================================  ==============================
``CLOUDGLUE_API_KEY``       API key (read when a run starts)             required
``CLOUDGLUE_BASE_URL``      API root                                     ``https://api.cloudglue.dev/v1``
``CLOUDGLUE_START_DATE``    first daily partition (UTC date)             ``2026-01-01``
``CLOUDGLUE_DUCKDB_PATH``   DuckDB warehouse file                        ``cloudglue.duckdb`` (in the
                                                                         working directory)
==========================  ===========================================  ==============================
"""

from __future__ import annotations

import os

import dagster as dg

from .assets import build_cloudglue_assets
from .client import DEFAULT_BASE_URL
from .io_manager import CloudglueDuckDBIOManager
from .resource import CloudglueResource

__all__ = ["DEFAULT_DUCKDB_PATH", "DEFAULT_START_DATE", "build_definitions", "defs"]

DEFAULT_START_DATE = "2026-01-01"
DEFAULT_DUCKDB_PATH = "cloudglue.duckdb"
DUCKDB_SCHEMA = "cloudglue"


def build_definitions(
    *,
    start_date: str | None = None,
    duckdb_path: str | None = None,
    base_url: str | None = None,
) -> dg.Definitions:
    """The Cloudglue assets, checks, job and schedule with a resource and a DuckDB I/O manager.

    Arguments left None come from the environment (see the module docstring).
    """
    assets = build_cloudglue_assets(start_date=start_date or os.environ.get("CLOUDGLUE_START_DATE", DEFAULT_START_DATE))
    resources = {
        "cloudglue": CloudglueResource(
            api_key=dg.EnvVar("CLOUDGLUE_API_KEY"),
            base_url=base_url or os.environ.get("CLOUDGLUE_BASE_URL", DEFAULT_BASE_URL),
        ),
        "io_manager": CloudglueDuckDBIOManager(
            database=duckdb_path or os.environ.get("CLOUDGLUE_DUCKDB_PATH", DEFAULT_DUCKDB_PATH),
            schema=DUCKDB_SCHEMA,
        ),
    }
    return dg.Definitions.merge(assets.definitions(), dg.Definitions(resources=resources))


defs = build_definitions()
