"""Ready-made definitions, configured from environment variables.

Loaded by ``dagster dev -w workspace.yaml`` and by
``dagster asset materialize -m cloudglue_dagster.definitions``:

==========================  ===========================================  ==============================
variable                    meaning                                      default
==========================  ===========================================  ==============================
``CLOUDGLUE_API_KEY``       API key (read when a run starts; checked     required
                            at load too when set there)
``CLOUDGLUE_BASE_URL``      API root                                     ``https://api.cloudglue.dev/v1``
``CLOUDGLUE_START_DATE``    first daily partition (UTC date)             ``2026-01-01``
``CLOUDGLUE_DUCKDB_PATH``   DuckDB warehouse file                        ``cloudglue.duckdb`` (in the
                                                                         working directory)
``CLOUDGLUE_MAX_CONCURRENT_REQUESTS``  pages fetched at once            ``8``
``CLOUDGLUE_MAX_PARTITIONS_PER_RUN``   days per backfill run            unset: any range in one run
==========================  ===========================================  ==============================
"""

from __future__ import annotations

import os

import dagster as dg
import pydantic

from .assets import CloudglueAssets, build_cloudglue_assets
from .client import DEFAULT_BASE_URL
from .duckdb import CloudglueDuckDBIOManager
from .errors import CloudglueConfigError
from .resource import CloudglueResource
from .secrecy import display_url, validate_api_key

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
    """The Cloudglue assets, checks, job, schedule and sensors with a resource and a DuckDB I/O manager.

    Arguments left None come from the environment (see the module docstring). An invalid
    value fails here, when the code location loads, listing the environment variables read.
    """
    try:
        _check_key_if_set()
        assets, resources = _build(start_date, duckdb_path, base_url)
    except (CloudglueConfigError, pydantic.ValidationError) as exc:
        # The factory and the resource name their own field (start_date, base_url); a user
        # of these definitions set an environment variable, so name that too.
        read = ", ".join(f"{name}={display_url(os.environ[name])!r}" for name in _SETTINGS if os.environ.get(name))
        raise CloudglueConfigError(
            f"cloudglue_dagster.definitions: {exc}\nSettings read from the environment: {read or '(none)'}"
        ) from exc
    # In-process: a run is one sweep followed by steps that each need the
    # previous one, so a process per step (the default) buys no parallelism
    # and costs seconds of imports per step.
    return dg.Definitions.merge(
        assets.definitions(), dg.Definitions(resources=resources, executor=dg.in_process_executor)
    )


# Every variable the definitions read, except the API key (never echoed).
_SETTINGS = (
    "CLOUDGLUE_BASE_URL",
    "CLOUDGLUE_START_DATE",
    "CLOUDGLUE_DUCKDB_PATH",
    "CLOUDGLUE_MAX_CONCURRENT_REQUESTS",
    "CLOUDGLUE_MAX_PARTITIONS_PER_RUN",
)


def _build(
    start_date: str | None, duckdb_path: str | None, base_url: str | None
) -> tuple[CloudglueAssets, dict[str, object]]:
    assets = build_cloudglue_assets(
        start_date=start_date or os.environ.get("CLOUDGLUE_START_DATE", DEFAULT_START_DATE),
        max_partitions_per_run=_env_int("CLOUDGLUE_MAX_PARTITIONS_PER_RUN"),
    )
    concurrency = _env_int("CLOUDGLUE_MAX_CONCURRENT_REQUESTS")
    resources: dict[str, object] = {
        "cloudglue": CloudglueResource(
            api_key=dg.EnvVar("CLOUDGLUE_API_KEY"),
            base_url=base_url or os.environ.get("CLOUDGLUE_BASE_URL", DEFAULT_BASE_URL),
            **({} if concurrency is None else {"max_concurrent_requests": concurrency}),
        ),
        "io_manager": CloudglueDuckDBIOManager(
            database=duckdb_path or os.environ.get("CLOUDGLUE_DUCKDB_PATH", DEFAULT_DUCKDB_PATH),
            schema=DUCKDB_SCHEMA,
        ),
    }
    return assets, resources


def _check_key_if_set() -> None:
    """A key set where the definitions load is checked now (a pasted newline fails here, not
    in a run); an unset one may be set only where runs execute, so it is left to them."""
    if "CLOUDGLUE_API_KEY" not in os.environ:
        return
    try:
        validate_api_key(os.environ["CLOUDGLUE_API_KEY"])
    except CloudglueConfigError as exc:
        raise CloudglueConfigError(f"environment variable CLOUDGLUE_API_KEY is unusable: {exc}") from None


def _env_int(name: str) -> int | None:
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise CloudglueConfigError(f"environment variable {name} must be an integer, got {text!r}") from None


defs = build_definitions()
