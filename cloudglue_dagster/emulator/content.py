"""Synthetic chat-completion records (content and JSON).

Everything is drawn from seeded :class:`random.Random` generators, so the
output is a pure function of the seed. Records follow the
``ChatCompletionList.data[]`` schema of the Cloudglue spec, and deliberately
cover its optional parts: absent usage fields, absent ``temperature`` /
``filter`` / ``name``, a few unknown extra fields, and awkward text (unicode,
quotes, backslashes, newlines, multi-KB contents).
"""

from __future__ import annotations

import json
import random
import uuid
from typing import Any, NamedTuple

__all__ = ["MODELS", "Generated", "RecordFactory", "collection_pool", "make_body", "new_uuid"]

#: Model names used by generated records.
MODELS: tuple[str, ...] = ("nimbus-001", "nimbus-002", "nimbus-002-mini", "gpt-4o-mini")
_MODEL_BAG = ("nimbus-001",) * 9 + ("nimbus-002",) * 5 + ("nimbus-002-mini",) * 4 + ("gpt-4o-mini",) * 2

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
_SPECIAL = (
    'She said "ship it" and the room laughed.',
    "Café, déjà vu, naïve résumé, jalapeño, Ångström.",
    "视频里的人在厨房做饭，然后讨论了预算。",
    "動画の要約：会議は十時に始まりました。",
    "회의 요약: 다음 주에 출시합니다.",
    "Great demo 🎬🍳👍 — really 🔥!",
    "Family emoji 👨‍👩‍👧‍👦 and flags 🇵🇹🇯🇵.",
    "Path on disk: C:\\videos\\2026\\clip_01.mp4 and regex \\d+\\.mp4",
    "Line one\nLine two\n\tindented line three\r\nwindows line",
    "JSON-ish text: {\"key\": [1, 2, 3], \"nested\": {\"a\": null}}",
    "Greek: Σύνοψη βίντεο. Russian: Краткое содержание. Arabic: ملخص الفيديو.",
    "Separators\u2028inside\u2029text and a zero\u200bwidth space.",
    "Math: ∑ x² ≤ ∞, arrows → ⇒, quotes ‘single’ “double”.",
    "Tab\tseparated\tvalues and a trailing backslash \\",
)
_SPEAKERS = ("Ana", "Bruno", "Chen Wei", "Dana", "Élodie", "Farah", "Gonçalo", "Hiro")
_NAMES = ("ana", "bruno", "ops-bot", "analyst_7")


def _pick(rng: random.Random, seq: tuple[Any, ...] | list[Any]) -> Any:
    """``rng.choice`` without its rejection sampling (several times faster)."""
    return seq[int(rng.random() * len(seq))]


def _int(rng: random.Random, lo: int, hi: int) -> int:
    """Integer in ``lo..hi`` inclusive (fast ``randint``)."""
    return lo + int(rng.random() * (hi - lo + 1))


def new_uuid(rng: random.Random) -> str:
    """A version-4 UUID string drawn from ``rng`` (deterministic)."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def collection_pool(rng: random.Random, size: int = 8) -> list[str]:
    """A pool of collection ids that records reuse, like a real workspace."""
    return [new_uuid(rng) for _ in range(size)]


def _sentence(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return _pick(rng, _SPECIAL)
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


def _usage(rng: random.Random) -> dict[str, Any]:
    prompt = _int(rng, 40, 6_000)
    completion = _int(rng, 1, 1_500)
    u = rng.random()
    if u < 0.82:
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        if rng.random() < 0.03:
            usage["prompt_tokens_details"] = {"cached_tokens": _int(rng, 0, prompt)}
        return usage
    if u < 0.89:
        return {}
    if u < 0.95:
        return {"total_tokens": prompt + completion}
    return {"prompt_tokens": prompt, "completion_tokens": completion}


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
        "metadata": [
            {"path": "tags", "operator": "ContainsAny", "valueTextArray": ["demo", "launch", "café"]}
        ],
        "file": [{"path": "bytes", "operator": "GreaterThan", "valueText": "1048576"}],
    }


def _messages(rng: random.Random) -> list[dict[str, Any]]:
    """1-4 messages, optional system first, alternating, ending with a user turn."""
    n = _int(rng, 1, 4)
    msgs: list[dict[str, Any]] = []
    has_system = n > 1 and rng.random() < 0.4
    if has_system:
        msgs.append({"role": "system", "content": ("You answer questions about videos. " + _text(rng, 0, 1)).strip()})
    turns = n - len(msgs)
    # Alternate so that the last turn is the user's.
    for i in range(turns):
        role = "user" if (turns - 1 - i) % 2 == 0 else "assistant"
        msg: dict[str, Any] = {"role": role, "content": _text(rng, 1, 3)}
        if role == "user" and rng.random() < 0.15:
            msg["name"] = _pick(rng, _NAMES)
        msgs.append(msg)
    return msgs


def make_body(rng: random.Random, collections: list[str]) -> dict[str, Any]:
    """``choices`` and ``payload`` of one synthetic completion."""
    choices: list[dict[str, Any]] = []
    for i in range(1 if rng.random() < 0.85 else 2):
        content = _long_text(rng) if rng.random() < 0.025 else _text(rng, 1, 4)
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if rng.random() < 0.1:
            message["name"] = "nimbus"
        choices.append({"index": i, "message": message})
    payload: dict[str, Any] = {"messages": _messages(rng)}
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


class Generated(NamedTuple):
    """A generated record: facts for ground truth, and its JSON around ``created_at``.

    The record's JSON is ``head + <created_at> + tail``.
    """

    id: str
    model: str
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    head: bytes
    tail: bytes


class RecordFactory:
    """Fast record generator for one seed.

    Contents (``choices`` and ``payload``) are drawn once into a pool of
    pre-serialized bodies; each record then only draws its id, model, usage,
    body and optional extra field. That keeps generating a 1,000-record day
    at a few milliseconds while covering every shape of the optional fields.
    """

    def __init__(self, seed: int, pool_size: int = 256, extra_fields: bool = True) -> None:
        rng = random.Random(f"cloudglue-emulator:bodies:{seed}")
        collections = collection_pool(rng)
        self.extra_fields = extra_fields
        self._bodies: list[bytes] = [_dumps(make_body(rng, collections))[1:-1] for _ in range(pool_size)]

    def make(self, rng: random.Random) -> Generated:
        """Draw one record from ``rng``."""
        rid = new_uuid(rng)
        model = _MODEL_BAG[int(rng.random() * len(_MODEL_BAG))]
        usage = _usage(rng)
        body = self._bodies[int(rng.random() * len(self._bodies))]
        extra = b""
        if self.extra_fields and rng.random() < 0.05:
            extra = b',"system_fingerprint":"fp_%010x"' % rng.getrandbits(40)
        head = b'{"id":"%s","created_at":' % rid.encode()
        tail = b',"object":"chat.completion","model":"%s","usage":%s,%s%s}' % (
            model.encode(), _dumps(usage), body, extra,
        )
        return Generated(
            rid,
            model,
            usage.get("prompt_tokens"),
            usage.get("completion_tokens"),
            usage.get("total_tokens"),
            head,
            tail,
        )
