"""What counts as a secret leaking: the forms a leak could give it, searched as bytes."""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import dagster as dg
from dagster_shared.serdes.serdes import serialize_value

FRAGMENT = 16
"""Characters of a secret that are a leak on their own: a text cut short (a 40-character
preview cell, a 60-character repr) can keep a part of it."""


def hostile_key() -> str:
    """A key with every character an escape changes (quotes, backslash, slash, plus), so that
    each escaped form (repr, JSON, URL) differs from the raw one; new for every test."""
    return f"sk-cg/live+'q\"\\-{secrets.token_hex(16)}"


def encodings(secret: str) -> list[bytes]:
    """``secret`` as a leak could show it: raw, repr- and JSON-escaped, URL-encoded, and the
    middle of its base64 (standard and URL-safe) at each of the three alignments."""
    forms = {secret, repr(secret)[1:-1], json.dumps(secret)[1:-1], quote(secret, safe=""), quote_plus(secret)}
    for pad in ("", "x", "xx"):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            forms.add(encode((pad + secret).encode()).decode()[3:-3])
    return [f.encode() for f in forms if len(f) >= 12]


def fragments(secret: str) -> list[bytes]:
    """Every run of :data:`FRAGMENT` characters of ``secret``, raw."""
    return [secret[i : i + FRAGMENT].encode() for i in range(len(secret) - FRAGMENT + 1)]


def assert_no_encoding(text: str | bytes, secret: str, where: str) -> None:
    data = text if isinstance(text, bytes) else text.encode()
    leaked = [form for form in encodings(secret) if form in data]
    assert not leaked, f"the secret leaked into {where} as {leaked[0][:12]!r}..."


def assert_no_leak(text: str | bytes, secret: str, where: str) -> None:
    """Neither an encoding (:func:`encodings`) nor a fragment of ``secret`` is in ``text``."""
    assert_no_encoding(text, secret, where)
    data = text if isinstance(text, bytes) else text.encode()
    cut = [form for form in fragments(secret) if form in data]
    assert not cut, f"a part of the secret leaked into {where}: {cut[0][:8]!r}..."


def what_the_run_left(
    done: subprocess.CompletedProcess[bytes], home: Path
) -> tuple[list[Any], list[tuple[str, bytes]]]:
    """The run's event log, and everything the run left to be read, each with where it is:
    the CLI's output, the raw bytes of every file under DAGSTER_HOME (compute logs, SQLite run
    and event storage), each event serialized (log lines; the metadata of materializations,
    observations and check evaluations; a failure's error with its cause chain)."""
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        (run,) = instance.get_runs()
        records = list(instance.all_logs(run.run_id))
    finally:
        instance.dispose()
    left = [("the CLI's stdout", done.stdout), ("the CLI's stderr", done.stderr)]
    left += [(str(p.relative_to(home)), p.read_bytes()) for p in sorted(home.rglob("*")) if p.is_file()]
    left += [(f"event {i} ({r.user_message[:40]!r})", serialize_value(r).encode()) for i, r in enumerate(records)]
    for record in records:
        materialization = record.asset_materialization
        if materialization is not None:
            where = f"the metadata of {materialization.asset_key.to_user_string()} {materialization.partition}"
            left.append((where, serialize_value(materialization.metadata).encode()))
    return records, left
