"""Dagster integration for the Cloudglue API."""

from .assets import CloudglueAssets, build_cloudglue_assets
from .client import DEFAULT_BASE_URL, CloudglueClient, RetryPolicy
from .component import CloudglueComponent
from .errors import (
    AuthenticationError,
    BadRequestError,
    CloudglueConfigError,
    CloudglueError,
    CloudglueHTTPError,
    CloudglueRequestError,
    InconsistentResponseError,
    InvalidResponseError,
    NotFoundError,
    RetriesExhaustedError,
    is_transient,
)
from .frames import ModelPrice
from .guards import ShrinkGuard
from .io_manager import CloudglueDuckDBIOManager
from .models import ChatCompletion, ChatCompletionPage, ChatMessage, Choice, Usage
from .resource import CloudglueResource

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
    "CloudglueResource",
    "InconsistentResponseError",
    "InvalidResponseError",
    "ModelPrice",
    "NotFoundError",
    "RetriesExhaustedError",
    "RetryPolicy",
    "ShrinkGuard",
    "Usage",
    "build_cloudglue_assets",
    "is_transient",
]
