"""The factory's ``text_storage`` options, checked at definition load and resolved when a run starts.

The rewriting itself is :mod:`cloudglue_dagster.tables.texts` (no Dagster). Here: the hash
key as Dagster passes secrets, a ``dg.EnvVar`` read where the run executes
(``CLOUDGLUE_TEXT_HASH_KEY`` by default), never in the definitions, their metadata or a repr;
a set variable is checked when the definitions load too, so a short key fails then, not in a run.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import dagster as dg

from cloudglue_dagster.environment import TEXT_HASH_KEY, note_read
from cloudglue_dagster.errors import CloudglueConfigError
from cloudglue_dagster.tables.texts import TextPolicy, TextRewrite, TextStorage, check_hash_key, check_storage

__all__ = ["DEFAULT_TEXT_HASH_KEY", "TextSettings"]

DEFAULT_TEXT_HASH_KEY = dg.EnvVar(TEXT_HASH_KEY)
"""The default ``text_hash_key``: the environment variable ``CLOUDGLUE_TEXT_HASH_KEY``."""

_ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]*")


@dataclass(frozen=True)
class TextSettings:
    """``text_storage``, ``text_hash_key`` and ``text_rewrite`` as the factory was given them.

    Attributes:
        storage: ``full``, ``hash`` or ``none``.
        key: a ``dg.EnvVar`` naming the variable that holds the hash key, or the key itself.
        rewrite: the hook applied to each text before it is stored (None: none).
    """

    storage: TextStorage = "full"
    key: str = field(default=DEFAULT_TEXT_HASH_KEY, repr=False)
    rewrite: TextRewrite | None = None

    def check(self) -> None:
        """At definition load: raise :class:`CloudglueConfigError` for a bad value, never
        showing the key. An unset variable is left to where runs execute."""
        check_storage(self.storage)
        if self.rewrite is not None and not callable(self.rewrite):
            raise CloudglueConfigError(
                f"text_rewrite must be a function of a text (str -> str or None), got {type(self.rewrite).__name__}"
            )
        if not isinstance(self.key, str):
            raise CloudglueConfigError(f"text_hash_key must be a dg.EnvVar or a str, got {type(self.key).__name__}")
        if isinstance(self.key, dg.EnvVar):
            note_read(self.key.env_var_name)  # read here: never taken for a misspelt CLOUDGLUE_* name
        elif self.storage == "hash" and _ENV_NAME.fullmatch(self.key) and self.key in os.environ:
            raise CloudglueConfigError(
                f"text_hash_key is the name of the environment variable {self.key}, not a key: pass"
                f" dg.EnvVar({self.key!r}) to read it where runs execute"
            )
        value, where = self._key()
        if self.storage == "hash" and value is not None:
            check_hash_key(value, where)

    def policy(self) -> TextPolicy:
        """When a run starts: the policy with the key read (from its variable, here).

        Raises:
            CloudglueConfigError: ``hash`` without a key, or with one too short.
        """
        if self.storage != "hash":
            return TextPolicy(self.storage, None, self.rewrite)
        value, where = self._key()
        if value is None:
            raise CloudglueConfigError(
                f"text_storage='hash' needs its key, and the {where} is not set where this run executes."
                " Set it to a random secret (python -c 'import secrets; print(secrets.token_hex(32))'), the"
                " same for every run: texts hashed with another key do not join with these."
            )
        check_hash_key(value, where)
        return TextPolicy("hash", value.strip().encode(), self.rewrite)

    def _key(self) -> tuple[str | None, str]:
        """The key's value (None: its variable is unset or empty) and where it comes from, as
        messages name it."""
        if isinstance(self.key, dg.EnvVar):
            return self.key.get_value() or None, f"environment variable {self.key.env_var_name}"
        return self.key, "text_hash_key"
