"""Fault injection: which request fails, and how.

Each eligible request gets a sequence number ``n`` (0, 1, 2, ...). Whether it
is faulted, and with which kind, is a pure function of ``(fault_seed, n)``,
so a sequential client sees the same faults on every run.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable

__all__ = [
    "ALL_FAULT_KINDS",
    "FAULT_KINDS",
    "MALFORMED_BODIES",
    "FaultPlan",
    "html_error_page",
    "json_error",
    "validate_kinds",
]

#: Every fault the emulator can inject:
#:
#: * ``429``: JSON ``{"error": "Rate limit reached"}`` with ``Retry-After``
#: * ``500``: JSON error
#: * ``502_html``: an HTML proxy error page (``text/html``)
#: * ``503``: JSON or HTML body, with ``Retry-After``
#: * ``drop``: the connection is closed without any response
#: * ``truncated``: 200 with the full ``Content-Length`` but part of the body
#: * ``malformed``: 200 ``application/json`` whose body is not JSON
#: * ``slow``: a normal answer after ``slow_seconds`` (read-timeout tests)
FAULT_KINDS: tuple[str, ...] = ("429", "500", "502_html", "503", "drop", "truncated", "malformed", "slow")

#: Alias of :data:`FAULT_KINDS` (the default of ``Emulator(fault_kinds=...)``).
ALL_FAULT_KINDS: tuple[str, ...] = FAULT_KINDS

#: Bodies served by the ``malformed`` fault (picked deterministically).
MALFORMED_BODIES: tuple[bytes, ...] = (
    b'{"object": "list", "data": [',
    b"<html><body>Service temporarily unavailable</body></html>",
    b"",
    b'{"object": "list", "data": [], "total": 0, "limit": 50, "offset": 0}}',
)


def html_error_page(status: int, reason: str) -> bytes:
    """An nginx-like HTML error page, as a proxy in front of the API sends."""
    return (
        f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()


def json_error(message: str) -> bytes:
    """Body ``{"error": message}``."""
    return json.dumps({"error": message}).encode()


def validate_kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    """Check fault kinds against :data:`FAULT_KINDS`; return them as a tuple."""
    out = tuple(kinds)
    unknown = [k for k in out if k not in FAULT_KINDS]
    if unknown:
        raise ValueError(f"unknown fault kind(s) {unknown}; expected some of {FAULT_KINDS}")
    return out


class FaultPlan:
    """Deterministic, thread-safe fault decisions with per-kind counters."""

    def __init__(self, rate: float = 0.0, seed: int = 0, kinds: Iterable[str] = FAULT_KINDS) -> None:
        self.rate = rate
        self.seed = seed
        self.kinds = kinds  # validated by the setter
        self._lock = threading.Lock()
        self._n = 0
        self.injected: dict[str, int] = {k: 0 for k in FAULT_KINDS}

    @property
    def rate(self) -> float:
        """Probability in ``[0, 1]`` that a request is faulted."""
        return self._rate

    @rate.setter
    def rate(self, value: float) -> None:
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError("fault_rate must be within [0, 1]")
        self._rate = float(value)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The fault kinds drawn from (uniformly)."""
        return self._kinds

    @kinds.setter
    def kinds(self, value: Iterable[str]) -> None:
        kinds = validate_kinds(value)
        if not kinds:
            raise ValueError("fault_kinds must not be empty")
        self._kinds = kinds

    @staticmethod
    def draw(seed: int, n: int) -> tuple[float, int]:
        """Uniform ``u`` in [0, 1) and a 64-bit integer, from ``(seed, n)``."""
        h = hashlib.sha256(f"cloudglue-emulator-fault:{seed}:{n}".encode()).digest()
        return int.from_bytes(h[:8], "big") / 2**64, int.from_bytes(h[8:16], "big")

    def next(self) -> tuple[str | None, int]:
        """Decide the fault of the next request: ``(kind or None, variant bits)``."""
        with self._lock:
            n = self._n
            self._n += 1
            rate, seed, kinds = self._rate, self.seed, self._kinds
        if rate <= 0.0:
            return None, 0
        u, bits = self.draw(seed, n)
        if u >= rate:
            return None, 0
        kind = kinds[bits % len(kinds)]
        with self._lock:
            self.injected[kind] += 1
        return kind, bits // len(kinds)

    def reset(self) -> None:
        """Restart the sequence at request 0 and zero the counters."""
        with self._lock:
            self._n = 0
            self.injected = {k: 0 for k in FAULT_KINDS}
