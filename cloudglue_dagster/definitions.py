"""Ready-made definitions, configured from environment variables.

Loaded by ``dagster dev -w workspace.yaml`` and by
``dagster asset materialize -m cloudglue_dagster.definitions``. The variables they read
(``CLOUDGLUE_API_KEY``, ``CLOUDGLUE_BASE_URL``, ``CLOUDGLUE_START_DATE``,
``CLOUDGLUE_DUCKDB_PATH``, ``CLOUDGLUE_MAX_CONCURRENT_REQUESTS``,
``CLOUDGLUE_MAX_PARTITIONS_PER_RUN``, ``CLOUDGLUE_RESPONSES``, ``CLOUDGLUE_TEXT_STORAGE``,
``CLOUDGLUE_TEXT_HASH_KEY``), with their meanings and defaults, are listed once:
:data:`cloudglue_dagster.environment.VARIABLES` (docs/configuration.md's table is held
against it by a test).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import dagster as dg
import pydantic
from pydantic.fields import FieldInfo

from cloudglue_dagster.api.secrecy import display_url
from cloudglue_dagster.assets.factory import CloudglueAssets, build_cloudglue_assets
from cloudglue_dagster.assets.options import AssetOptions
from cloudglue_dagster.io_managers.duckdb import CloudglueDuckDBIOManager

from .bounds import is_integer_field
from .environment import (
    API_KEY,
    DUCKDB_PATH,
    MAX_CONCURRENT_REQUESTS,
    MAX_PARTITIONS_PER_RUN,
    RESPONSES,
    START_DATE,
    TEXT_HASH_KEY,
    TEXT_STORAGE,
    VARIABLES,
)
from .errors import CloudglueConfigError
from .resource import CloudglueResource

__all__ = ["DEFAULT_DUCKDB_PATH", "DEFAULT_START_DATE", "build_definitions", "defs"]

DEFAULT_START_DATE = "2026-01-01"
DEFAULT_DUCKDB_PATH = "cloudglue.duckdb"
DUCKDB_SCHEMA = "cloudglue"
_SECRETS = (API_KEY, TEXT_HASH_KEY)
"""Variables never shown, not even in the error listing what was read."""


def build_definitions(
    *,
    start_date: str | None = None,
    duckdb_path: str | None = None,
    base_url: str | None = None,
) -> dg.Definitions:
    """The Cloudglue assets, checks, jobs, schedule and sensors with a resource and a DuckDB I/O manager.

    Arguments left None come from the environment (see the module docstring). An invalid
    value fails here, when the code location loads, listing the environment variables read;
    a set API key is checked here too (a pasted line break fails now, not in a run), an unset
    one is left to where runs execute. Runs are in process (the factory's default).
    """
    try:
        assets, resources = _build(start_date, duckdb_path, base_url)
    except (CloudglueConfigError, pydantic.ValidationError) as exc:
        # The factory and the resource name their own field (start_date, base_url); a user
        # of these definitions set an environment variable, so name those too.
        read = ", ".join(
            f"{v.name}={display_url(os.environ[v.name])!r}"
            for v in VARIABLES
            if v.name not in _SECRETS and os.environ.get(v.name)
        )
        raise CloudglueConfigError(
            f"cloudglue_dagster.definitions: {exc}\nSettings read from the environment: {read or '(none)'}"
        ) from exc
    return dg.Definitions.merge(assets.definitions(), dg.Definitions(resources=resources))


FACTORY_OPTIONS_FROM_ENVIRONMENT = {
    "start_date": START_DATE,
    "max_partitions_per_run": MAX_PARTITIONS_PER_RUN,
    "responses": RESPONSES,
    "text_storage": TEXT_STORAGE,
}
"""The factory options (:class:`~cloudglue_dagster.assets.options.AssetOptions`) set from the environment."""

RESOURCE_FIELDS_FROM_ENVIRONMENT = {"max_concurrent_requests": MAX_CONCURRENT_REQUESTS}
"""The :class:`CloudglueResource` fields set from the environment (besides the key and base URL)."""


def _build(
    start_date: str | None, duckdb_path: str | None, base_url: str | None
) -> tuple[CloudglueAssets, dict[str, object]]:
    options = {"start_date": DEFAULT_START_DATE, **_read(FACTORY_OPTIONS_FROM_ENVIRONMENT, AssetOptions.model_fields)}
    if start_date:
        options["start_date"] = start_date
    assets = build_cloudglue_assets(**options)
    resources: dict[str, object] = {
        "cloudglue": CloudglueResource(
            api_key=dg.EnvVar(API_KEY),  # checked here if set; always where the run executes
            base_url=base_url,  # None: the resource reads CLOUDGLUE_BASE_URL where the run executes
            **_read(RESOURCE_FIELDS_FROM_ENVIRONMENT, CloudglueResource.model_fields),
        ),
        "io_manager": CloudglueDuckDBIOManager(
            database=duckdb_path or os.environ.get(DUCKDB_PATH, DEFAULT_DUCKDB_PATH),
            schema=DUCKDB_SCHEMA,
        ),
    }
    return assets, resources


def _read(variables: Mapping[str, str], fields: Mapping[str, FieldInfo]) -> dict[str, Any]:
    """Each field of ``variables`` (field -> variable) whose variable is set, as its field's type;
    the bounds are the fields' own, checked where they are set."""
    values: dict[str, Any] = {}
    for field, name in variables.items():
        text = os.environ.get(name, "").strip()
        if text:
            if fields[field].annotation is bool:
                values[field] = _env_bool(name, text)
            else:
                values[field] = _env_int(name, text) if is_integer_field(fields[field]) else text
    return values


def _env_bool(name: str, text: str) -> bool:
    value = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(text.lower())
    if value is None:
        raise CloudglueConfigError(f"environment variable {name} must be true or false, got {text!r}")
    return value


def _env_int(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise CloudglueConfigError(f"environment variable {name} must be an integer, got {text!r}") from None


defs = build_definitions()
