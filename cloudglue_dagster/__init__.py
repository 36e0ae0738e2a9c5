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
    InvalidResponseError,
    NotFoundError,
    RetriesExhaustedError,
)
from .frames import ModelPrice
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
    "CloudglueResource",
    "InvalidResponseError",
    "ModelPrice",
    "NotFoundError",
    "RetriesExhaustedError",
    "RetryPolicy",
    "Usage",
    "build_cloudglue_assets",
]
