"""Synthetic responses (``GET /v1/responses`` items): drawing them and serializing them.

Everything is a pure function of the seed (and of a record's id): ids, times, models,
statuses, usage and the ``instructions`` texts (drawn by :class:`.text.TextMaker` each time a
record is served, so nothing of them is kept). A record's status and usage are its *state*,
replaced whole when it changes, so a reader on another thread sees a consistent pair.
"""

from __future__ import annotations

import json
import random
import threading
from operator import attrgetter
from typing import Any

from .content import MODELS
from .data import _with_created_at
from .text import TextMaker, placeholder, skeleton
from .timeutil import DAY_MS, render_created_at

__all__ = ["COUNTS", "ORDER_KEY", "STATUSES", "Resp", "ResponseFactory", "State"]

#: Statuses of a response (the SDK's enum).
STATUSES: tuple[str, ...] = ("in_progress", "completed", "failed", "cancelled")
#: The counts of a response's ``usage``.
COUNTS: tuple[str, ...] = ("input_tokens", "output_tokens", "total_tokens")

#: A record's state: ``(status, usage)``; usage None means the key is absent.
State = tuple[Any, Any]

#: The records' order: (created_at, id).
ORDER_KEY = attrgetter("at_ms", "sort_id")
_MODEL_BAG = tuple(m for m, weight in zip(MODELS, (9, 5, 4, 2)) for _ in range(weight))
_SENTINEL = "\x00cloudglue-emulator-created-at\x00"
_SENTINEL_JSON = json.dumps(_SENTINEL).encode()
_EXTRA = b',"background":false,"service_tier":"default"'  # fields the SDK's model does not know
# Instructions as JSON around a drawn text: plain, after a fixed preamble with newlines,
# with quotes, or before a bulleted list (the texts add unicode, escapes and more).
_INSTRUCTIONS = (
    placeholder("system"),
    "You answer questions about the videos in this collection.\nCite timestamps.\n\n" + placeholder("system"),
    'Answer in the user\'s language; quote speakers "verbatim". ' + placeholder("user"),
    placeholder("user") + "\n- one bullet per clip\n- say \u201cunknown\u201d when unsure",
)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class Resp:
    """One response: canonical time (epoch ms), current state, and what its JSON is made of."""

    __slots__ = ("at_ms", "sort_id", "id", "model", "state", "instr", "extra", "raw", "orig", "render_ts")

    def __init__(self, at_ms: int, sort_id: str, rid: str | None, model: Any, state: State) -> None:
        self.at_ms = at_ms  # canonical time: placement, filtering, ordering
        self.sort_id = sort_id  # tie-breaker of the order, and the key of the texts and usage
        self.id = rid
        self.model = model
        self.state = state  # replaced whole, never mutated
        self.instr: int | None = None  # generated: index into _INSTRUCTIONS; -1: null; None: absent
        self.extra = b""
        self.raw: dict[str, Any] | None = None  # injected: the record as given
        self.orig: State | None = None  # injected: the state it was given with
        self.render_ts = True  # False: an injected record's own created_at is served verbatim


class ResponseFactory:
    """Draws a day's responses and serializes any response, for one seed (thread-safe)."""

    def __init__(self, seed: int, extra_fields: bool = True) -> None:
        self.seed = seed
        self.extra_fields = extra_fields
        self._lock = threading.Lock()
        self._maker: TextMaker | None = None
        self._compiled: list[Any] = []

    def final_usage(self, sort_id: str) -> dict[str, int]:
        """A completed response's usage: all three counts (total = input + output), from ``(seed, id)``."""
        r = random.Random(f"cloudglue-emulator:responses:usage:{self.seed}:{sort_id}")
        inp = 120 + int(r.random() * 12_000)
        out = 1 + int(r.random() * 2_500)
        return {"input_tokens": inp, "output_tokens": out, "total_tokens": inp + out}

    def _texts(self) -> tuple[TextMaker, list[Any]]:
        """The text maker, built on first use (the languages' corpora cost ~0.1 s once a process)."""
        with self._lock:
            if self._maker is None:
                skeletons = [skeleton(_dumps({"instructions": text})[1:-1]) for text in _INSTRUCTIONS]
                maker = TextMaker(self.seed, skeletons)
                self._compiled = [maker.compiled(i) for i in range(len(skeletons))]
                self._maker = maker
            return self._maker, self._compiled

    def generate(self, day_start_ms: int, day_key: str, n: int, in_progress_rate: float) -> list[Resp]:
        """The ``n`` responses of the day starting at ``day_start_ms``, sorted by (created_at, id).

        With ``n >= 2`` one is at 00:00:00.000 and one at 23:59:59.999; ``round(rate * n)`` of
        them, picked from their own seed string, are ``in_progress`` (no usage).
        """
        if n == 0:
            return []
        self._texts()
        rng = random.Random(f"cloudglue-emulator:responses:day:{self.seed}:{day_key}")
        offsets = [int(rng.random() * DAY_MS) for _ in range(n)]
        if n >= 2:
            offsets[0], offsets[1] = 0, DAY_MS - 1
        k = round(in_progress_rate * n)
        picker = random.Random(f"cloudglue-emulator:responses:in-progress:{self.seed}:{day_key}")
        running = set(picker.sample(range(n), k)) if k else set()
        out = []
        for i, off in enumerate(offsets):
            rid = f"resp_{rng.getrandbits(96):024x}"
            model = _MODEL_BAG[int(rng.random() * len(_MODEL_BAG))]
            u, v, w, x = rng.random(), rng.random(), rng.random(), rng.random()  # drawn always: stable streams
            status = "failed" if u < 0.03 else "cancelled" if u < 0.05 else "completed"
            usage: dict[str, int] | None = self.final_usage(rid)
            if i in running:
                status, usage = "in_progress", None
            elif status != "completed" and usage is not None:
                if v < 1 / 3:
                    usage = None
                elif v < 2 / 3:  # partial: one count missing
                    del usage[COUNTS[int(v * 9) % 3]]
            rec = Resp(day_start_ms + off, rid, rid, model, (status, usage))
            rec.instr = None if w < 0.10 else -1 if w < 0.15 else int(w * 1000) % len(_INSTRUCTIONS)
            if self.extra_fields and x < 0.05:
                rec.extra = _EXTRA
            out.append(rec)
        out.sort(key=ORDER_KEY)
        return out

    def render(self, rec: Resp, state: State, unit: str) -> bytes:
        """Compact JSON of ``rec`` in ``state`` with ``created_at`` in ``unit``.

        Keys in the SDK's order (id, object, status, created_at, model, instructions, usage);
        an injected record is served as given, with its status and usage replaced once changed.
        """
        status, usage = state
        if rec.raw is not None:
            out = rec.raw
            if state is not rec.orig:
                out = dict(out, status=status)
                out.pop("usage", None)
                if usage is not None:
                    out["usage"] = usage
            if not rec.render_ts:
                return _dumps(out)
            head, tail = _dumps(_with_created_at(out, _SENTINEL)).split(_SENTINEL_JSON, 1)
            return head + render_created_at(rec.at_ms, unit) + tail
        key = rec.sort_id.encode()
        parts = [
            b'{"id":"%s","object":"response","status":"%s","created_at":' % (key, status.encode()),
            render_created_at(rec.at_ms, unit),
            b',"model":"%s"' % rec.model.encode(),
        ]
        if rec.instr == -1:
            parts.append(b',"instructions":null')
        elif rec.instr is not None:
            maker, compiled = self._texts()
            parts += (b",", maker.body(compiled[rec.instr], key))
        if usage is not None:
            parts += (b',"usage":', _dumps(usage))
        parts += (rec.extra, b"}")
        return b"".join(parts)
