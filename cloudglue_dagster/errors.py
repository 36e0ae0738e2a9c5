"""The exceptions this package raises, all under :class:`CloudglueError`.

Standard library only, so records, client and assets share them. No message
built here ever contains the API key: the client redacts server text before
it reaches an exception (see ``client._redact``).
"""

from __future__ import annotations


class CloudglueError(Exception):
    """Base class of every error raised by cloudglue-dagster."""


class CloudglueConfigError(CloudglueError, ValueError):
    """A configuration value is invalid (bad base URL, page size, date...).

    Raised before any request is sent; the message names the offending value.
    """


class CloudglueHTTPError(CloudglueError):
    """The API answered with an HTTP error status.

    Attributes:
        status_code: the HTTP status the API answered.
        server_message: the ``error`` text of the JSON body, if there was one.
    """

    def __init__(self, message: str, *, status_code: int, server_message: str | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.server_message = server_message


class AuthenticationError(CloudglueHTTPError):
    """401 or 403: the API key is missing, wrong or lacks access. Never retried."""


class BadRequestError(CloudglueHTTPError):
    """400: the API rejected the request's parameters. Never retried."""


class NotFoundError(CloudglueHTTPError):
    """404: the endpoint does not exist at this base URL. Never retried."""


class RetriesExhaustedError(CloudglueError):
    """A request kept failing with retryable errors until ``max_retries`` ran out.

    Attributes:
        attempts: how many times the request was sent.
        last_status: the HTTP status of the last attempt, or None if it got no
            response at all (connection dropped, timeout).
        last_error: a one-line description of the last failure.
    """

    def __init__(self, message: str, *, attempts: int, last_status: int | None, last_error: str):
        super().__init__(message)
        self.attempts = attempts
        self.last_status = last_status
        self.last_error = last_error


class InvalidResponseError(CloudglueError):
    """The API answered 200 with a body that does not have the documented shape.

    Attributes:
        reason: what was wrong.
        completion_id: the id of the completion at fault, if known.
        field: the dotted path of the field at fault (``usage.total_tokens``,
            ``choices[0].message.content``), if known.
    """

    def __init__(self, reason: str, *, completion_id: str | None = None, field: str | None = None):
        where = []
        if completion_id is not None:
            where.append(f"completion {completion_id!r}")
        if field is not None:
            where.append(f"field {field!r}")
        message = f"Invalid response from the Cloudglue API: {reason}"
        if where:
            message += f" ({', '.join(where)})"
        super().__init__(message)
        self.reason = reason
        self.completion_id = completion_id
        self.field = field
