"""A second code location for ``tests/test_production.py``: the assets under the key prefix
``capped`` (so its pool is ``capped``), at most ``CAPPED_DAYS_PER_RUN`` days a run, fetching
``CAPPED_CONCURRENCY`` pages at once from ``CAPPED_BASE_URL`` into ``CAPPED_DUCKDB_PATH``."""

import os

import dagster as dg

from cloudglue_dagster import CloudglueDuckDBIOManager, CloudglueResource, build_cloudglue_assets

assets = build_cloudglue_assets(
    start_date=os.environ["CLOUDGLUE_START_DATE"],
    key_prefix="capped",
    max_partitions_per_run=int(os.environ["CAPPED_DAYS_PER_RUN"]),
)

defs = dg.Definitions.merge(
    assets.definitions(),
    dg.Definitions(
        resources={
            "cloudglue": CloudglueResource(
                api_key=dg.EnvVar("CLOUDGLUE_API_KEY"),
                base_url=os.environ["CAPPED_BASE_URL"],
                max_concurrent_requests=int(os.environ["CAPPED_CONCURRENCY"]),
            ),
            "io_manager": CloudglueDuckDBIOManager(database=os.environ["CAPPED_DUCKDB_PATH"], schema="cloudglue"),
        },
        executor=dg.in_process_executor,
    ),
)
