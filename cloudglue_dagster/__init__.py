"""Dagster integration for the Cloudglue API.

The public API, imported on first use (PEP 562): ``import cloudglue_dagster`` alone, or
importing the emulator (whose pytest plugin every pytest session of an environment with this
package loads), costs no import of Dagster, pandas or DuckDB.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cloudglue_dagster.api.client import DEFAULT_BASE_URL, CloudglueClient, HTTPRetryPolicy
    from cloudglue_dagster.api.models import ChatCompletion, ChatCompletionPage, ChatMessage, Choice, Usage
    from cloudglue_dagster.assets.factory import CloudglueAssets, CloudglueRunConfig, build_cloudglue_assets
    from cloudglue_dagster.assets.guards import ShrinkGuard, ShrinkRefusedError
    from cloudglue_dagster.assets.translator import CloudglueTranslator, CloudglueTranslatorData
    from cloudglue_dagster.components.component import CloudglueComponent
    from cloudglue_dagster.io_managers.duckdb import CloudglueDuckDBIOManager
    from cloudglue_dagster.tables.prices import ModelPrice
    from cloudglue_dagster.tables.texts import text_hash

    from .errors import (
        AuthenticationError,
        BadRequestError,
        CloudglueConfigError,
        CloudglueError,
        CloudglueHTTPError,
        CloudglueRequestError,
        CloudglueUnreachableError,
        HeldTooMuchError,
        InconsistentResponseError,
        InvalidResponseError,
        NotFoundError,
        ResponseTooLargeError,
        RetriesExhaustedError,
        TextRewriteError,
        WindowTooLargeError,
        is_transient,
    )
    from .resource import CloudglueResource

_HOME = {
    "DEFAULT_BASE_URL": "api.client",
    "AuthenticationError": "errors",
    "BadRequestError": "errors",
    "ChatCompletion": "api.models",
    "ChatCompletionPage": "api.models",
    "ChatMessage": "api.models",
    "CloudglueAssets": "assets.factory",
    "Choice": "api.models",
    "CloudglueClient": "api.client",
    "CloudglueComponent": "components.component",
    "CloudglueConfigError": "errors",
    "CloudglueDuckDBIOManager": "io_managers.duckdb",
    "CloudglueError": "errors",
    "CloudglueHTTPError": "errors",
    "CloudglueRequestError": "errors",
    "CloudglueUnreachableError": "errors",
    "CloudglueResource": "resource",
    "CloudglueRunConfig": "assets.factory",
    "CloudglueTranslator": "assets.translator",
    "CloudglueTranslatorData": "assets.translator",
    "HTTPRetryPolicy": "api.client",
    "HeldTooMuchError": "errors",
    "InconsistentResponseError": "errors",
    "InvalidResponseError": "errors",
    "ModelPrice": "tables.prices",
    "NotFoundError": "errors",
    "ResponseTooLargeError": "errors",
    "RetriesExhaustedError": "errors",
    "ShrinkGuard": "assets.guards",
    "ShrinkRefusedError": "assets.guards",
    "TextRewriteError": "errors",
    "Usage": "api.models",
    "WindowTooLargeError": "errors",
    "build_cloudglue_assets": "assets.factory",
    "is_transient": "errors",
    "text_hash": "tables.texts",
}
"""Each public name -> the module that defines it."""

__all__ = [
    "DEFAULT_BASE_URL",
    "AuthenticationError",
    "BadRequestError",
    "ChatCompletion",
    "ChatCompletionPage",
    "ChatMessage",
    "CloudglueAssets",
    "Choice",
    "CloudglueClient",
    "CloudglueComponent",
    "CloudglueConfigError",
    "CloudglueDuckDBIOManager",
    "CloudglueError",
    "CloudglueHTTPError",
    "CloudglueRequestError",
    "CloudglueUnreachableError",
    "CloudglueResource",
    "CloudglueRunConfig",
    "CloudglueTranslator",
    "CloudglueTranslatorData",
    "HTTPRetryPolicy",
    "HeldTooMuchError",
    "InconsistentResponseError",
    "InvalidResponseError",
    "ModelPrice",
    "NotFoundError",
    "ResponseTooLargeError",
    "RetriesExhaustedError",
    "ShrinkGuard",
    "ShrinkRefusedError",
    "TextRewriteError",
    "Usage",
    "WindowTooLargeError",
    "build_cloudglue_assets",
    "is_transient",
    "text_hash",
]


_RENAMED = {"RetryPolicy"}
"""Deprecated names (each kept for one release, with a ``DeprecationWarning``): see
:func:`cloudglue_dagster.api.client.deprecated_name`."""


def __getattr__(name: str) -> Any:
    if name in _RENAMED:  # not cached: each use warns
        from cloudglue_dagster.api.client import deprecated_name

        return deprecated_name(__name__, name)
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
