"""HTTP side of ``GET /v1/responses`` and ``DELETE /v1/responses/{id}``.

The server (:mod:`.server`) routes here after the checks both endpoints share (404, 405,
latency, auth); the list then goes through the same fault plan as chat completions, while a
DELETE is never faulted (it is a test's way to change the data, as much as an endpoint).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING
from urllib.parse import unquote

from .faults import json_error
from .replies import BadRequest, Reply, list_body, page_params
from .response_records import STATUSES
from .timeutil import window_ms

if TYPE_CHECKING:
    from .server import Emulator

__all__ = ["RESPONSES_ENDPOINT", "delete_response", "list_responses", "responses_route"]

#: The responses list's path.
RESPONSES_ENDPOINT = "/v1/responses"
_ITEM_PREFIX = RESPONSES_ENDPOINT + "/"
_STATUS_ERROR = "status must be one of " + ", ".join(STATUSES)


def responses_route(path: str) -> tuple[str, str | None] | None:
    """``(the method allowed, a response id or None)`` of a path of this endpoint, else None.

    ``/v1/responses`` takes GET (the list); ``/v1/responses/{id}`` takes DELETE (the
    single GET is not emulated).
    """
    if path == RESPONSES_ENDPOINT:
        return "GET", None
    if path.startswith(_ITEM_PREFIX):
        rid = unquote(path[len(_ITEM_PREFIX) :])
        if rid and "/" not in rid:
            return "DELETE", rid
    return None


def list_responses(emu: Emulator, query: dict[str, str]) -> Reply:
    """One page of responses: the chat list's paging, dates, order and cap, plus ``status``.

    ``created_at`` is rendered in ``emu.responses_timestamp_unit``.
    """
    try:
        page = page_params(query, emu.max_page_size)
        status = query.get("status")
        if status is not None and status not in STATUSES:
            raise BadRequest(_STATUS_ERROR)
    except BadRequest as exc:
        return Reply(400, json_error(str(exc)))
    lo, hi = window_ms(page.after, page.before, emu.boundary)
    total, data = emu.responses.select(lo, hi, page.offset, page.limit, emu.order, emu.responses_timestamp_unit, status)
    return Reply(200, list_body(total, page.limit, page.offset, data))


def delete_response(emu: Emulator, response_id: str) -> Reply:
    """Delete a response: 200 ``{"id", "object": "response", "deleted": true}``, or 404."""
    if not emu.responses.delete(response_id):
        return Reply(404, json_error("Response not found"))
    body = json.dumps({"id": response_id, "object": "response", "deleted": True}, ensure_ascii=False)
    return Reply(200, body.encode())
