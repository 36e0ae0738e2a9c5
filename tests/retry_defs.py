"""A code location for ``tests/test_step_retries.py``, loaded by the real CLI with ``-f``.

The bundled definitions' assets (``cloudglue_dagster.definitions``) with what those tests vary
taken from the environment:

=====================  ==========================================================  ==================
variable               meaning                                                     default
=====================  ==========================================================  ==================
``CLOUDGLUE_*``        as for the bundled definitions (key, base URL, start date,   (required)
                       DuckDB path)
``RETRY_EXECUTOR``     ``in_process`` (what the bundled definitions use) or         ``in_process``
                       ``multiprocess`` (Dagster's default: a user's code location)
``RETRY_DELAY``        the step retry policy's base delay, in seconds: 3 retries,   unset: the factory's
                       exponential backoff, the jitter of ``RETRY_JITTER``          ``DEFAULT_RETRY_POLICY``
``RETRY_JITTER``       ``PLUS_MINUS`` (the default policy's), ``FULL`` or ``none``   ``PLUS_MINUS``
``RETRY_MAX_RETRIES``  the policy's step retries                                    ``3``
``CLIENT_RETRIES``     the client's retries of one request (an outage then          ``1``
                       outlasts them in about a second)
=====================  ==========================================================  ==================
"""

from __future__ import annotations

import os

import dagster as dg

from cloudglue_dagster import CloudglueDuckDBIOManager, CloudglueResource, build_cloudglue_assets
from cloudglue_dagster.assets.factory import DEFAULT_RETRY_POLICY


def retry_policy() -> dg.RetryPolicy:
    if "RETRY_DELAY" not in os.environ:
        return DEFAULT_RETRY_POLICY
    jitter = os.environ.get("RETRY_JITTER", "PLUS_MINUS")
    return dg.RetryPolicy(
        max_retries=int(os.environ.get("RETRY_MAX_RETRIES", "3")),
        delay=float(os.environ["RETRY_DELAY"]),
        backoff=dg.Backoff.EXPONENTIAL,
        jitter=None if jitter == "none" else dg.Jitter[jitter],
    )


assets = build_cloudglue_assets(
    start_date=os.environ["CLOUDGLUE_START_DATE"],
    retry_policy=retry_policy(),
    freshness_deadline_hour=None,
    late_data_lookback_days=None,
    responses=False,  # the chat completions' step alone: the test counts its requests and retries
)

executor = dg.multiprocess_executor if os.environ.get("RETRY_EXECUTOR") == "multiprocess" else dg.in_process_executor

defs = dg.Definitions.merge(
    assets.definitions(executor=executor),
    dg.Definitions(
        resources={
            "cloudglue": CloudglueResource(
                api_key=dg.EnvVar("CLOUDGLUE_API_KEY"),
                base_url=os.environ["CLOUDGLUE_BASE_URL"],
                max_retries=int(os.environ.get("CLIENT_RETRIES", "1")),
                max_concurrent_requests=2,
            ),
            "io_manager": CloudglueDuckDBIOManager(database=os.environ["CLOUDGLUE_DUCKDB_PATH"], schema="cloudglue"),
        },
    ),
)
