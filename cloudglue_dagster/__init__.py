"""Dagster integration for the Cloudglue API."""

from .client import DEFAULT_BASE_URL, CloudglueClient, RetryPolicy
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
from .models import ChatCompletion, ChatCompletionPage, ChatMessage, Choice, Usage
from .resource import CloudglueResource

__all__ = [
    "DEFAULT_BASE_URL",
    "AuthenticationError",
    "BadRequestError",
    "ChatCompletion",
    "ChatCompletionPage",
    "ChatMessage",
    "Choice",
    "CloudglueClient",
    "CloudglueConfigError",
    "CloudglueError",
    "CloudglueHTTPError",
    "CloudglueResource",
    "InvalidResponseError",
    "NotFoundError",
    "RetriesExhaustedError",
    "RetryPolicy",
    "Usage",
]
