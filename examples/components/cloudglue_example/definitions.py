"""The code location: every component under defs/, plus what they share.

Load it with ``dagster dev -m cloudglue_example.definitions`` (or ``dg dev``) from
``examples/components``; check it with ``dagster definitions validate -m cloudglue_example.definitions``.
"""

from pathlib import Path

import dagster as dg

from cloudglue_dagster import CloudglueDuckDBIOManager


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
        dg.Definitions(
            resources={
                # The research account stores its tables through this one (io_manager_key: warehouse).
                # No fixed schema: each account's tables go to the schema named after its key prefix.
                "warehouse": CloudglueDuckDBIOManager(database="warehouse.duckdb"),
            },
            # A run is one API sweep followed by steps that each need the previous one:
            # separate processes per step would only add start-up time.
            executor=dg.in_process_executor,
        ),
    )
