"""Dagster integration for the Cloudglue API.

The public API, imported on first use (PEP 562): ``import cloudglue_dagster`` alone, or
importing the emulator (whose pytest plugin every pytest session of an environment with this
package loads), costs no import of Dagster, pandas or DuckDB.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .assets import CloudglueAssets, CloudglueRunConfig, build_cloudglue_assets
    from .client import DEFAULT_BASE_URL, CloudglueClient, RetryPolicy
    from .component import CloudglueComponent
    from .duckdb import CloudglueDuckDBIOManager
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
        WindowTooLargeError,
        is_transient,
    )
    from .frames import ModelPrice
    from .guards import ShrinkGuard, ShrinkRefusedError
    from .models import ChatCompletion, ChatCompletionPage, ChatMessage, Choice, Usage
    from .resource import CloudglueResource
    from .translator import CloudglueTranslator, CloudglueTranslatorData

_HOME = {
    "DEFAULT_BASE_URL": "client",
    "AuthenticationError": "errors",
    "BadRequestError": "errors",
    "ChatCompletion": "models",
    "ChatCompletionPage": "models",
    "ChatMessage": "models",
    "CloudglueAssets": "assets",
    "Choice": "models",
    "CloudglueClient": "client",
    "CloudglueComponent": "component",
    "CloudglueConfigError": "errors",
    "CloudglueDuckDBIOManager": "duckdb",
    "CloudglueError": "errors",
    "CloudglueHTTPError": "errors",
    "CloudglueRequestError": "errors",
    "CloudglueUnreachableError": "errors",
    "CloudglueResource": "resource",
    "CloudglueRunConfig": "assets",
    "CloudglueTranslator": "translator",
    "CloudglueTranslatorData": "translator",
    "HeldTooMuchError": "errors",
    "InconsistentResponseError": "errors",
    "InvalidResponseError": "errors",
    "ModelPrice": "frames",
    "NotFoundError": "errors",
    "ResponseTooLargeError": "errors",
    "RetriesExhaustedError": "errors",
    "RetryPolicy": "client",
    "ShrinkGuard": "guards",
    "ShrinkRefusedError": "guards",
    "Usage": "models",
    "WindowTooLargeError": "errors",
    "build_cloudglue_assets": "assets",
    "is_transient": "errors",
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
    "HeldTooMuchError",
    "InconsistentResponseError",
    "InvalidResponseError",
    "ModelPrice",
    "NotFoundError",
    "ResponseTooLargeError",
    "RetriesExhaustedError",
    "RetryPolicy",
    "ShrinkGuard",
    "ShrinkRefusedError",
    "Usage",
    "WindowTooLargeError",
    "build_cloudglue_assets",
    "is_transient",
]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
