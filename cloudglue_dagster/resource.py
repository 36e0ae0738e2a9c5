"""The Dagster resource: configuration only, it hands out a configured client."""

from __future__ import annotations

import os
from typing import Any

import dagster as dg
from pydantic import ConfigDict, Field, field_validator, model_validator

from cloudglue_dagster.api.client import (
    DEFAULT_BASE_URL,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_REQUEST_DEADLINE,
    MAX_PAGE_SIZE,
    MIN_RESPONSE_BYTES,
    CloudglueClient,
    validate_base_url,
)
from cloudglue_dagster.api.secrecy import display_url, validate_api_key
from cloudglue_dagster.api.sweep import DEFAULT_MAX_WINDOW_RECORDS

from .bounds import bounds_of, check_bounds, is_integer_field
from .environment import BASE_URL, note_read, warn_misspelt_variables
from .errors import CloudglueConfigError

# dg.EnvVar.int's class, without importing it from a private module.
_IntEnvVar = type(dg.EnvVar.int("_"))

__all__ = ["CloudglueResource"]


# Unparametrized, as Dagster's own resources: subscripting this pydantic model at run time
# would make a new model class for one type checker's sake.
class CloudglueResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Connection settings for the Cloudglue API.

    Every field accepts an environment variable: ``dg.EnvVar("NAME")`` for text,
    ``dg.EnvVar.int("NAME")`` for integers (Dagster has no float source, so the three
    timeouts take numbers). The UI then shows the variable's name, and its value is checked
    wherever it is set: when the definitions load, and again when a run starts, by an
    error that names the variable. Invalid values are refused with a message that names the
    field and the value, except the API key's, which is never shown: not in the resource's
    ``repr``, not in logs or errors.

    ``base_url`` left unset reads ``CLOUDGLUE_BASE_URL`` where the run executes (else the real
    API), and a run's log names the host it calls and where that came from.

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
    base_url: str | None = Field(
        default=None,
        validate_default=True,
        description=(
            "API root, including the version. https:// required; http:// is accepted only for"
            " loopback hosts (the local emulator). Unset (None): the environment variable"
            " CLOUDGLUE_BASE_URL where the run executes, else https://api.cloudglue.dev/v1."
        ),
    )
    # Each numeric field's bounds are its Field's ge/le/gt: the one place they are written
    # (bounds.py reads them for the messages, the component and the docs' tests).
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
        description="Completions requested per page. The most, 100, means fewest requests.",
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
        le=2**40,  # 1 TiB: only a typo goes past it
        description=(
            "Largest response body accepted, in bytes counted after decompression (a page of 100"
            " completions is about 150 KB; the default is 128 MiB). A larger body, or a"
            " Content-Length announcing one, fails the step at once (ResponseTooLargeError), having"
            " held at most this much per request in flight: a gzip bomb cannot exhaust memory."
        ),
    )
    max_window_records: int = Field(
        default=DEFAULT_MAX_WINDOW_RECORDS,
        ge=1,
        le=1_000_000_000,
        description=(
            "The largest total a window (the run's days padded by a day each side) may announce;"
            " above it, on any page, the sweep stops at once with WindowTooLargeError (permanent)."
            " Every id is held to de-duplicate (~165 bytes each: ~1.6 GB at the default of"
            " 10,000,000) and each 100 cost a request. Prefer max_partitions_per_run to raising it."
        ),
    )

    @field_validator("*", mode="wrap")
    @classmethod
    def _check(cls, value: Any, handler: Any, info: Any) -> Any:
        # An EnvVar arrives here as itself, both when the definitions load and when a run
        # starts (Dagster rebuilds the resource from the loaded one first): its value is
        # checked wherever it is set, and the error names the variable. It skips pydantic's
        # own validation, whose bounds would be compared with the EnvVar object, not its value.
        variable = _variable_of(value)
        if variable is None:
            return handler(_checked(info.field_name, value))
        note_read(variable)  # e.g. CLOUDGLUE_KEY: read, so not a misspelt CLOUDGLUE_API_KEY
        _check_variable(info.field_name, value, variable)
        return value

    @model_validator(mode="after")
    def _warn_misspelt(self) -> CloudglueResource:
        # Where the definitions load (once per name): after the fields noted their variables.
        warn_misspelt_variables()
        return self

    def resolved_base_url(self) -> str:
        """The API root runs call: ``base_url``, else ``CLOUDGLUE_BASE_URL`` here, else the real API.

        Raises:
            CloudglueConfigError: ``CLOUDGLUE_BASE_URL`` is set to an invalid URL (the message
                names the variable).
        """
        return self._base_url_and_source()[0]

    def _base_url_and_source(self) -> tuple[str, str]:
        if self.base_url is not None:
            return self.base_url, "base_url"
        from_environment = _base_url_from_environment()
        return (from_environment, BASE_URL) if from_environment else (DEFAULT_BASE_URL, "the default")

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Names the API host in the run's log, and any misspelt ``CLOUDGLUE_*`` variable."""
        if context.log is None:
            return
        warn_misspelt_variables(log=context.log)
        url, source = self._base_url_and_source()
        context.log.info(f"Cloudglue API: {display_url(url)} (from {source})")

    def get_client(self, logger: Any | None = None) -> CloudglueClient:
        """A client configured from this resource's fields.

        Args:
            logger: where retries are reported, e.g. ``context.log``.
        """
        return CloudglueClient(
            api_key=self.api_key,
            base_url=self.resolved_base_url(),
            connect_timeout=self.connect_timeout_seconds,
            read_timeout=self.timeout_seconds,
            request_deadline=self.request_deadline_seconds,
            max_response_bytes=self.max_response_bytes,
            max_window_records=self.max_window_records,
            max_retries=self.max_retries,
            max_concurrent_requests=self.max_concurrent_requests,
            logger=logger,
        )


def _variable_of(value: Any) -> str | None:
    """The name of the environment variable ``value`` stands for, or None."""
    if isinstance(value, dg.EnvVar):
        return value.env_var_name
    if isinstance(value, _IntEnvVar):
        return value.name
    return None


def _checked(field: str, value: Any) -> Any:
    """``value`` for ``field`` checked (and normalised), or a config error naming the field."""
    if field == "api_key":
        validate_api_key(value)
        return value
    if field == "base_url":
        if value is None:
            _base_url_from_environment()  # set where the definitions load: checked now
            return None
        return validate_base_url(value)
    info = CloudglueResource.model_fields[field]
    if bounds_of(info) is not None:
        return check_bounds(field, info, value)
    return value


def _check_variable(field: str, value: Any, variable: str) -> None:
    """An EnvVar given for ``field``: the right kind for it, and its value checked if set here.

    Unset, it is left to where runs execute (Dagster then names the missing variable)."""
    info = CloudglueResource.model_fields[field]
    if info.annotation is float:
        raise CloudglueConfigError(
            f"{field} takes a number of seconds, not an environment variable ({variable}): Dagster"
            " reads environment variables into text and integer fields only (it has no float"
            f" source). Give a number, e.g. {field}=float(os.environ[{variable!r}])."
        )
    integer = is_integer_field(info)
    if integer and not isinstance(value, _IntEnvVar):
        raise CloudglueConfigError(
            f"{field} is an integer: give dg.EnvVar.int({variable!r}), not dg.EnvVar({variable!r})"
        )
    text = os.environ.get(variable)
    if text is None:
        return
    try:
        if integer and not text.strip().lstrip("+-").isdigit():
            raise CloudglueConfigError(f"{field} must be an integer, got {text!r}")
        _checked(field, int(text) if integer else text)
    except CloudglueConfigError as exc:
        raise CloudglueConfigError(f"environment variable {variable} (for {field}): {exc}") from None


def _base_url_from_environment() -> str | None:
    """``CLOUDGLUE_BASE_URL`` checked, or None when it is unset or empty."""
    text = os.environ.get(BASE_URL, "").strip()
    if not text:
        return None
    try:
        return validate_base_url(text)
    except CloudglueConfigError as exc:
        raise CloudglueConfigError(
            f"environment variable {BASE_URL} (read because base_url is not set): {exc}"
        ) from None
