"""A job for real multi-process runs of the assets, configured from the environment.

``ReconstructableJob.for_file(<this file>, "daily_job")`` lets ``dg.execute_job`` run it, re-execute it and retry
its steps in subprocesses, as a deployment would. Environment: ``STREAM_BASE_URL`` (the API,
usually a test proxy), ``STREAM_DUCKDB`` (the warehouse file), ``STREAM_START`` (the first
partition), ``STREAM_KEY`` (the API key), ``STREAM_RETRY_DELAY`` (seconds before a step retry; default 2).
"""

from __future__ import annotations

import os

import dagster as dg

from cloudglue_dagster import CloudglueDuckDBIOManager, CloudglueResource, build_cloudglue_assets


def definitions() -> dg.Definitions:
    built = build_cloudglue_assets(
        start_date=os.environ["STREAM_START"],
        retry_policy=dg.RetryPolicy(max_retries=2, delay=float(os.environ.get("STREAM_RETRY_DELAY", "2"))),
        freshness_deadline_hour=None,
        late_data_lookback_days=None,
        responses=False,  # the chat completions' step alone: the test counts its requests
    )
    return dg.Definitions.merge(
        # A step per process, as a deployment with Dagster's default executor runs it; each step
        # process then reads this file's environment afresh.
        built.definitions(executor=dg.multiprocess_executor),
        dg.Definitions(
            resources={
                "cloudglue": CloudglueResource(
                    api_key=os.environ["STREAM_KEY"],
                    base_url=os.environ["STREAM_BASE_URL"],
                    max_retries=1,
                    page_size=10,
                    max_concurrent_requests=2,
                ),
                "io_manager": CloudglueDuckDBIOManager(database=os.environ["STREAM_DUCKDB"], schema="cloudglue"),
            }
        ),
    )


def daily_job() -> dg.JobDefinition:
    return definitions().resolve_job_def("cloudglue_daily")
