"""Synthetic chat-completion records (content and JSON).

Everything is drawn from seeded :class:`random.Random` generators (and, for
realistic texts, SHAKE-128 streams), so the output is a pure function of the
seed. Records follow the ``ChatCompletionList.data[]`` schema of the Cloudglue
spec, and deliberately cover its optional parts: absent usage fields, absent
``temperature`` / ``filter`` / ``name``, a few unknown extra fields, and
awkward text (unicode, quotes, backslashes, newlines, multi-KB contents).

Two kinds of text (:data:`TEXT_MODES`): ``realistic`` (every completion's
messages and choices are its own texts, generated when the record is served;
see :mod:`.text`) and ``compact`` (bodies drawn from a pool of 256, so texts
repeat and a warehouse of them compresses far better than real data does).
Both give the same ids, times, models, usage and extra fields for a seed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any, NamedTuple, TypeVar

from .text import SPECIAL_SENTENCES, TextMaker, placeholder, skeleton

__all__ = [
    "MODELS",
    "TEXT_MODES",
    "Generated",
    "LazyBody",
    "RecordFactory",
    "collection_pool",
    "make_body",
    "new_uuid",
]

#: Kinds of generated text: ``realistic`` (distinct texts per completion) or ``compact`` (a pool).
TEXT_MODES: tuple[str, ...] = ("realistic", "compact")

#: Model names used by generated records.
MODELS: tuple[str, ...] = ("nimbus-001", "nimbus-002", "nimbus-002-mini", "gpt-4o-mini")
_MODEL_BAG = ("nimbus-001",) * 9 + ("nimbus-002",) * 5 + ("nimbus-002-mini",) * 4 + ("gpt-4o-mini",) * 2
_MODEL_JSON = {m: m.encode() for m in MODELS}

_PLAIN = (
    "What happens in the second half of the video?",
    "Summarize the key points the speaker makes about onboarding.",
    "The presenter walks through the quarterly numbers and takes questions.",
    "Which clips mention the product launch?",
    "In the cooking segment the chef explains how to temper chocolate.",
    "Two people discuss the results of the experiment near the end.",
    "List every scene where a whiteboard is visible.",
    "The interview covers hiring, remote work and team rituals.",
    "Find the moment the demo fails and what the speaker says next.",
    "The drone footage shows the coastline at sunset.",
    "Give me timestamps for each product mention.",
    "The lecture introduces gradient descent with a simple example.",
)
_SPEAKERS = ("Ana", "Bruno", "Chen Wei", "Dana", "Élodie", "Farah", "Gonçalo", "Hiro")
_NAMES = ("ana", "bruno", "ops-bot", "analyst_7")


_T = TypeVar("_T")


def _pick(rng: random.Random, seq: Sequence[_T]) -> _T:
    """``rng.choice`` without its rejection sampling (several times faster)."""
    return seq[int(rng.random() * len(seq))]


def _int(rng: random.Random, lo: int, hi: int) -> int:
    """Integer in ``lo..hi`` inclusive (fast ``randint``)."""
    return lo + int(rng.random() * (hi - lo + 1))


_UUID_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_UUID_SET = (0x8000 << 48) | (4 << 76)


def new_uuid(rng: random.Random) -> str:
    """A version-4 UUID string drawn from ``rng`` (deterministic).

    The same string as ``str(uuid.UUID(int=rng.getrandbits(128), version=4))``, three times
    cheaper (day generation draws one per record).
    """
    h = "%032x" % (rng.getrandbits(128) & _UUID_CLEAR | _UUID_SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def collection_pool(rng: random.Random, size: int = 8) -> list[str]:
    """A pool of collection ids that records reuse, like a real workspace."""
    return [new_uuid(rng) for _ in range(size)]


def _sentence(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return _pick(rng, SPECIAL_SENTENCES)
    return _pick(rng, _PLAIN)


def _text(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(_sentence(rng) for _ in range(_int(rng, lo, hi)))


def _long_text(rng: random.Random) -> str:
    """A multi-KB content (2-8 KB), with paragraphs and special characters."""
    target = _int(rng, 2_000, 8_000)
    parts: list[str] = []
    size = 0
    n = 0
    while size < target:
        n += 1
        para = f"{n}. " + _text(rng, 3, 6)
        parts.append(para)
        size += len(para.encode()) + 2
    return "\n\n".join(parts)


def _usage(rng: random.Random) -> tuple[int | None, int | None, int | None, bytes]:
    """``(prompt_tokens, completion_tokens, total_tokens, usage JSON)``; None = field absent.

    The JSON is what ``json.dumps`` gives for the dict (same key order), formatted directly
    because day generation draws one per record.
    """
    draw = rng.random
    prompt = 40 + int(draw() * 5_961)  # _int(rng, 40, 6_000), inlined: one per record
    completion = 1 + int(draw() * 1_500)  # _int(rng, 1, 1_500)
    total = prompt + completion
    u = draw()
    if u < 0.82:
        if rng.random() < 0.03:
            cached = _int(rng, 0, prompt)
            return (
                prompt,
                completion,
                total,
                (
                    b'{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d,'
                    b'"prompt_tokens_details":{"cached_tokens":%d}}' % (prompt, completion, total, cached)
                ),
            )
        return (
            prompt,
            completion,
            total,
            (b'{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}' % (prompt, completion, total)),
        )
    if u < 0.89:
        return None, None, None, b"{}"
    if u < 0.95:
        return None, None, total, b'{"total_tokens":%d}' % total
    return prompt, completion, None, b'{"prompt_tokens":%d,"completion_tokens":%d}' % (prompt, completion)


def _filter(rng: random.Random) -> dict[str, Any] | None:
    u = rng.random()
    if u < 0.6:
        return None
    if u < 0.82:
        return {
            "metadata": [
                {
                    "path": "speaker",
                    "operator": "Equal",
                    "valueText": _pick(rng, _SPEAKERS),
                    "scope": _pick(rng, ("file", "segment")),
                }
            ]
        }
    if u < 0.9:
        return {
            "video_info": [
                {
                    "path": "duration_seconds",
                    "operator": "LessThan",
                    "valueText": str(_pick(rng, (60, 300, 600, 3600))),
                    "scope": "file",
                }
            ]
        }
    if u < 0.95:
        return {"file": [{"path": "filename", "operator": "Like", "valueText": "%.mp4"}]}
    return {
        "metadata": [{"path": "tags", "operator": "ContainsAny", "valueTextArray": ["demo", "launch", "café"]}],
        "file": [{"path": "bytes", "operator": "GreaterThan", "valueText": "1048576"}],
    }


def _messages(rng: random.Random, placeholders: bool = False) -> list[dict[str, Any]]:
    """1-4 messages, optional system first, alternating, ending with a user turn.

    With ``placeholders``, contents are :func:`.text.placeholder` strings (no text drawn).
    """
    n = _int(rng, 1, 4)
    msgs: list[dict[str, Any]] = []
    has_system = n > 1 and rng.random() < 0.4
    if has_system:
        rest = placeholder("system") if placeholders else _text(rng, 0, 1)
        msgs.append({"role": "system", "content": ("You answer questions about videos. " + rest).strip()})
    turns = n - len(msgs)
    # Alternate so that the last turn is the user's.
    for i in range(turns):
        role = "user" if (turns - 1 - i) % 2 == 0 else "assistant"
        msg: dict[str, Any] = {"role": role, "content": placeholder(role) if placeholders else _text(rng, 1, 3)}
        if role == "user" and rng.random() < 0.15:
            msg["name"] = _pick(rng, _NAMES)
        msgs.append(msg)
    return msgs


def make_body(rng: random.Random, collections: list[str], placeholders: bool = False) -> dict[str, Any]:
    """``choices`` and ``payload`` of one synthetic completion.

    With ``placeholders``, every message and choice content is a :func:`.text.placeholder`
    (which choices are long is then decided per record, when the texts are drawn).
    """
    choices: list[dict[str, Any]] = []
    for i in range(1 if rng.random() < 0.85 else 2):
        long = rng.random() < 0.025
        if placeholders:
            content = placeholder("choice")
        else:
            content = _long_text(rng) if long else _text(rng, 1, 4)
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if rng.random() < 0.1:
            message["name"] = "nimbus"
        choices.append({"index": i, "message": message})
    payload: dict[str, Any] = {"messages": _messages(rng, placeholders)}
    if rng.random() < 0.7:
        payload["temperature"] = _pick(rng, (0.0, 0.2, 0.5, 0.7, 1, 1.3))
    flt = _filter(rng)
    if flt is not None:
        payload["filter"] = flt
    k = _int(rng, 1, min(3, len(collections)))
    first = int(rng.random() * len(collections))
    payload["collections"] = [collections[(first + 3 * i) % len(collections)] for i in range(k)]
    return {"choices": choices, "payload": payload}


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class LazyBody:
    """A completion's ``choices``, ``payload`` and closing, rendered on demand (nothing kept).

    ``render()`` costs about 5 microseconds of CPU for a 1.4 KB completion; see :class:`.text.TextMaker`.
    """

    __slots__ = ("_maker", "_skeleton", "_key", "_end")

    def __init__(self, maker: TextMaker, skel: Any, key: bytes, end: bytes) -> None:
        self._maker, self._skeleton, self._key, self._end = maker, skel, key, end

    def render(self) -> bytes:
        """The JSON bytes: ``"choices":[...],"payload":{...}`` + extra fields + ``}``."""
        return self._maker.body(self._skeleton, self._key) + self._end


class Generated(NamedTuple):
    """A generated record: facts for ground truth, and its JSON around ``created_at``.

    The record's JSON is ``head + <created_at> + tail`` (+ ``body.render()`` when
    ``body`` is set: realistic texts are generated when the record is served).
    """

    id: str
    model: str
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    head: bytes
    tail: bytes
    body: LazyBody | None = None


class RecordFactory:
    """Fast record generator for one seed.

    Each record draws its id, model, usage, body and optional extra field from
    the day's generator. Bodies come from a pool of 256 drawn once per seed,
    which covers every shape of the optional fields:

    * ``text="compact"``: the pool holds whole pre-serialized bodies, so texts
      repeat across records (cheapest; the emulator's behaviour before realistic texts);
    * ``text="realistic"`` (default): the pool holds skeletons (structure, roles,
      names, filters, collections) whose texts are generated per record when it is
      served, from ``(seed, id)``: distinct, 1.4 KB a completion on average.

    Both modes consume the day's generator identically: ids, times, models,
    usage and extra fields are the same for a seed.
    """

    def __init__(self, seed: int, pool_size: int = 256, extra_fields: bool = True, text: str = "realistic") -> None:
        if text not in TEXT_MODES:
            raise ValueError(f"unknown text mode {text!r}; expected one of {TEXT_MODES}")
        rng = random.Random(f"cloudglue-emulator:bodies:{seed}")
        collections = collection_pool(rng)
        self.extra_fields = extra_fields
        self.text = text
        self._pool_size = pool_size
        self._bodies: list[bytes] = []
        self._skeletons: list[Any] = []
        if text == "compact":
            self._bodies = [_dumps(make_body(rng, collections))[1:-1] for _ in range(pool_size)]
        else:
            skeletons = [skeleton(_dumps(make_body(rng, collections, True))[1:-1]) for _ in range(pool_size)]
            self._maker = TextMaker(seed, skeletons)
            self._skeletons = [self._maker.compiled(i) for i in range(pool_size)]

    def make(self, rng: random.Random) -> Generated:
        """Draw one record from ``rng``."""
        rid = new_uuid(rng)
        model = _MODEL_BAG[int(rng.random() * len(_MODEL_BAG))]
        prompt, completion, total, usage = _usage(rng)
        pick = int(rng.random() * self._pool_size)
        extra = b""
        if self.extra_fields and rng.random() < 0.05:
            extra = b',"system_fingerprint":"fp_%010x"' % rng.getrandbits(40)
        key = rid.encode()
        head = b'{"id":"%s","created_at":' % key
        body: LazyBody | None = None
        if self._bodies:
            tail = b',"object":"chat.completion","model":"%s","usage":%s,%s%s}' % (
                _MODEL_JSON[model],
                usage,
                self._bodies[pick],
                extra,
            )
        else:
            tail = b',"object":"chat.completion","model":"%s","usage":%s,' % (_MODEL_JSON[model], usage)
            body = LazyBody(self._maker, self._skeletons[pick], key, extra + b"}")
        return Generated(rid, model, prompt, completion, total, head, tail, body)
