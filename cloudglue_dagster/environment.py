"""The ``CLOUDGLUE_*`` environment variables: the one list of them, and the warning for a misspelt one.

No Dagster, no pandas: :mod:`.definitions`, :mod:`.resource`, the factory and the planner read
their variables through this module, and docs/configuration.md's table is held against
:data:`VARIABLES` by a test.
"""

from __future__ import annotations

import difflib
import os
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "API_KEY",
    "BASE_URL",
    "DUCKDB_PATH",
    "MAX_CONCURRENT_REQUESTS",
    "MAX_PARTITIONS_PER_RUN",
    "RESPONSES",
    "START_DATE",
    "TEXT_HASH_KEY",
    "TEXT_STORAGE",
    "VARIABLES",
    "CloudglueEnvironmentWarning",
    "Variable",
    "misspelt_variables",
    "note_read",
    "warn_misspelt_variables",
]

API_KEY = "CLOUDGLUE_API_KEY"
BASE_URL = "CLOUDGLUE_BASE_URL"
START_DATE = "CLOUDGLUE_START_DATE"
DUCKDB_PATH = "CLOUDGLUE_DUCKDB_PATH"
MAX_CONCURRENT_REQUESTS = "CLOUDGLUE_MAX_CONCURRENT_REQUESTS"
MAX_PARTITIONS_PER_RUN = "CLOUDGLUE_MAX_PARTITIONS_PER_RUN"
RESPONSES = "CLOUDGLUE_RESPONSES"
TEXT_STORAGE = "CLOUDGLUE_TEXT_STORAGE"
TEXT_HASH_KEY = "CLOUDGLUE_TEXT_HASH_KEY"


@dataclass(frozen=True)
class Variable:
    """One variable the package reads: its name, what it sets, its default and who reads it."""

    name: str
    meaning: str
    default: str
    read_by: str


VARIABLES: tuple[Variable, ...] = (
    Variable(
        API_KEY,
        "API key; read when a run starts (checked when the definitions load too, if set there), never shown",
        "required",
        "`cloudglue_dagster.definitions`, the planner, the emulator (the key it accepts); your own code through `dg.EnvVar`",
    ),
    Variable(
        BASE_URL,
        "API root, with the version (`http://` only for loopback hosts, e.g. the emulator)",
        "`https://api.cloudglue.dev/v1`",
        "`CloudglueResource` (when its `base_url` is not set, where the run executes), the planner",
    ),
    Variable(
        START_DATE,
        "first daily partition (a past UTC date, `YYYY-MM-DD`)",
        "`2026-01-01`",
        "`cloudglue_dagster.definitions`",
    ),
    Variable(
        DUCKDB_PATH,
        "DuckDB warehouse file",
        "`cloudglue.duckdb` in the working directory",
        "`cloudglue_dagster.definitions`",
    ),
    Variable(
        MAX_CONCURRENT_REQUESTS,
        "pages fetched at once (1..64)",
        "`8`",
        "`cloudglue_dagster.definitions`",
    ),
    Variable(
        MAX_PARTITIONS_PER_RUN,
        "days per backfill run (>= 1)",
        "unset: any range in one run",
        "`cloudglue_dagster.definitions`",
    ),
    Variable(
        RESPONSES,
        "build `responses` and `llm_usage` (the Responses API): `true` or `false`",
        "`true`",
        "`cloudglue_dagster.definitions`",
    ),
    Variable(
        TEXT_STORAGE,
        "what the tables and Dagster keep of prompts and answers: `full`, `hash` or `none`",
        "`full`",
        "`cloudglue_dagster.definitions`",
    ),
    Variable(
        TEXT_HASH_KEY,
        'the secret key of `text_storage="hash"` (16 characters or more); read when a run starts'
        " (checked when the definitions load too, if set there), never shown",
        "required with `hash`",
        "the factory's default `text_hash_key` (`dg.EnvVar`), so every code location",
    ),
)

_PREFIX = "CLOUDGLUE_"
_SIMILAR = 0.8
"""difflib's ratio above which an unknown name is taken for a misspelling of a known one:
``CLOUDGLUE_BASEURL`` (0.97) and ``CLOUDGLUE_DUCKDB_PAHT`` (0.95) are, while a second
account's ``CLOUDGLUE_RESEARCH_API_KEY`` (0.74 to ``CLOUDGLUE_API_KEY``) is not."""


class CloudglueEnvironmentWarning(UserWarning):
    """A ``CLOUDGLUE_*`` variable is set that the package does not read, and looks like one it does."""


_lock = threading.Lock()
_warned: set[str] = set()
_read_here: set[str] = set()


def note_read(name: str) -> None:
    """Note that this process reads ``name`` (a ``dg.EnvVar`` given to :class:`CloudglueResource`,
    a component's ``api_key_env_var``): it is then never taken for a misspelling."""
    with _lock:
        _read_here.add(name)


def misspelt_variables(environ: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """``(set name, known name it resembles)`` for each variable that looks like a misspelling.

    Only names starting with ``CLOUDGLUE_`` (in any case) are looked at, and only those close to
    a known one are reported, so other variables of the same family (a second account's key)
    stay quiet. Known: :data:`VARIABLES` and what :func:`note_read` was told.
    """
    environ = os.environ if environ is None else environ
    with _lock:
        known = {v.name for v in VARIABLES} | _read_here
    found = []
    for name in sorted(environ):
        if name in known or not name.upper().startswith(_PREFIX):
            continue
        close = difflib.get_close_matches(name.upper(), sorted(known), n=1, cutoff=_SIMILAR)
        if close:
            found.append((name, close[0]))
    return found


def warn_misspelt_variables(log: Any | None = None) -> list[str]:
    """Warn about each misspelt ``CLOUDGLUE_*`` variable; returns the messages.

    With ``log`` (a run's ``context.log``, so the UI shows it) every call warns; without it the
    warning goes to Python's :mod:`warnings` (the command line shows it when definitions load),
    once per name and process.
    """
    messages = []
    for name, known in misspelt_variables():
        if log is None:
            with _lock:
                if name in _warned:
                    continue
                _warned.add(name)
        message = (
            f"Environment variable {name} is set but cloudglue_dagster does not read it: did you mean {known}?"
            f" ({known} is {'set' if known in os.environ else 'not set'}.)"
        )
        messages.append(message)
        if log is not None:
            log.warning(message)
        else:
            warnings.warn(message, CloudglueEnvironmentWarning, stacklevel=3)
    return messages
