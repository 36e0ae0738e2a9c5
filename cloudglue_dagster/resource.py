"""The Dagster resource: configuration only, it hands out a configured client."""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import ConfigDict, Field, field_validator

from .client import (
    DEFAULT_BASE_URL,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_REQUEST_DEADLINE,
    MAX_PAGE_SIZE,
    MIN_RESPONSE_BYTES,
    CloudglueClient,
    validate_base_url,
)
from .errors import CloudglueConfigError
from .secrecy import validate_api_key
from .sweep import DEFAULT_MAX_WINDOW_RECORDS

# (lowest, highest, integer?) of each numeric field. Checked by one validator, whose message
# names the value: pydantic's own would not, since inputs are hidden from errors (see below).
_BOUNDS: dict[str, tuple[float, float, bool]] = {
    "timeout_seconds": (0, float("inf"), False),
    "connect_timeout_seconds": (0, float("inf"), False),
    "request_deadline_seconds": (0, float("inf"), False),
    "max_retries": (0, 20, True),
    "page_size": (1, MAX_PAGE_SIZE, True),
    "max_concurrent_requests": (1, 64, True),
    "max_response_bytes": (MIN_RESPONSE_BYTES, 2**40, True),  # 1 TiB: only a typo goes past it
    "max_window_records": (1, 1_000_000_000, True),
}

__all__ = ["CloudglueResource"]


class CloudglueResource(dg.ConfigurableResource):
    """Connection settings for the Cloudglue API.

    Invalid values are refused when the definitions load, with a message that
    names the field and the value. The API key is never shown: not in the resource's
    ``repr``, not in logs or errors. Give it as an environment variable so the
    Dagster UI shows the variable's name, not the secret; its value is then checked
    (not empty, no control or non-ASCII character) when a run starts, and the run
    fails at once if it is unusable.

    Examples:
        .. code-block:: python

            import dagster as dg
            from cloudglue_dagster import CloudglueResource

            cloudglue = CloudglueResource(api_key=dg.EnvVar("CLOUDGLUE_API_KEY"))
    """

    # Pydantic would quote a refused input in its error, and an EnvVar's value (the key, or
    # a base_url with a password) is validated when a run starts: never echo inputs.
    model_config = ConfigDict(hide_input_in_errors=True)

    api_key: str = Field(
        repr=False,
        description=(
            "Cloudglue API key, sent as a bearer token. Set it with"
            " dg.EnvVar('CLOUDGLUE_API_KEY') so the secret stays out of code and out of the UI."
        ),
    )
    base_url: str = Field(
        default=DEFAULT_BASE_URL,
        description=(
            "API root, including the version. https:// required; http:// is accepted only for"
            " loopback hosts (the local emulator)."
        ),
    )
    timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Read timeout: seconds to wait for the server between bytes of a response.",
    )
    request_deadline_seconds: float = Field(
        default=DEFAULT_REQUEST_DEADLINE,
        gt=0,
        description=(
            "Seconds one attempt of a request may take in all, however slowly the server sends"
            " its bytes; past it the attempt fails and is retried like a timeout."
        ),
    )
    connect_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description=(
            "Seconds to wait for a TCP/TLS connection to the API. Until the API host has answered"
            " once (any HTTP status) in a step, a request stops trying to connect after about 25 s"
            " in all and fails with CloudglueUnreachableError (two attempts at the default)."
        ),
    )
    max_retries: int = Field(
        default=5,
        ge=0,
        le=20,
        description=(
            "Retries of one request after 429, 500, 502, 503, 504, dropped connections, timeouts"
            " and malformed bodies (exponential backoff with jitter; Retry-After honoured)."
            " 400, 401, 403 and 404 are never retried. A host that has never answered gets at most"
            " 2 quick retries of a refused connection, unknown host, TLS error or connect timeout,"
            " then the step fails with CloudglueUnreachableError, naming host:port and base_url."
        ),
    )
    page_size: int = Field(
        default=MAX_PAGE_SIZE,
        ge=1,
        le=MAX_PAGE_SIZE,
        description="Completions requested per page, 1..100. 100 means fewest requests.",
    )
    max_concurrent_requests: int = Field(
        default=8,
        ge=1,
        le=64,
        description=(
            "Pages fetched at once after the first page of a window (which tells how many there"
            " are). Ingestion is bound by request latency, so this is the main speed knob; lower it"
            " if the API rate-limits you."
        ),
    )

    max_response_bytes: int = Field(
        default=DEFAULT_MAX_RESPONSE_BYTES,
        ge=MIN_RESPONSE_BYTES,
        le=2**40,
        description=(
            "Largest response body accepted, in bytes counted after decompression (default"
            " 134217728 = 128 MiB; a page of 100 completions is about 150 KB). A larger body, or a"
            " Content-Length announcing one, fails the step at once (ResponseTooLargeError), having"
            " held at most this much per request in flight: a gzip bomb cannot exhaust memory."
        ),
    )
    max_window_records: int = Field(
        default=DEFAULT_MAX_WINDOW_RECORDS,
        description=(
            "The largest total a window (the run's days padded by a day each side) may announce;"
            " above it, on any page, the sweep stops at once with WindowTooLargeError (permanent)."
            " Every id is held to de-duplicate (~165 bytes each: ~1.6 GB at the default of"
            " 10,000,000) and each 100 cost a request. Prefer max_partitions_per_run to raising it."
        ),
    )

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        return validate_base_url(value)

    @field_validator("api_key")
    @classmethod
    def _check_api_key(cls, value: str) -> str:
        # At load an EnvVar arrives as its name; its value is checked here when a run starts.
        validate_api_key(value)
        return value

    @field_validator(*_BOUNDS, mode="before")
    @classmethod
    def _check_bounds(cls, value: Any, info: Any) -> Any:
        low, high, integer = _BOUNDS[info.field_name]
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or (integer and not float(value).is_integer()):
            kind = "an integer" if integer else "a number"
            raise CloudglueConfigError(f"{info.field_name} must be {kind}, got {value!r}")
        inside = low <= value <= high if integer else low < value < high
        if not inside:
            span = f"{low}..{high}" if integer else f"> {low:g}"
            raise CloudglueConfigError(f"{info.field_name} must be {span}, got {value!r}")
        return value

    def get_client(self, logger: Any | None = None) -> CloudglueClient:
        """A client configured from this resource's fields.

        Args:
            logger: where retries are reported, e.g. ``context.log``.
        """
        return CloudglueClient(
            api_key=self.api_key,
            base_url=self.base_url,
            connect_timeout=self.connect_timeout_seconds,
            read_timeout=self.timeout_seconds,
            request_deadline=self.request_deadline_seconds,
            max_response_bytes=self.max_response_bytes,
            max_window_records=self.max_window_records,
            max_retries=self.max_retries,
            max_concurrent_requests=self.max_concurrent_requests,
            logger=logger,
        )
