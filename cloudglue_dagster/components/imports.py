"""A Python function named in YAML by its import path (``package.module:function``)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from cloudglue_dagster.errors import CloudglueConfigError

__all__ = ["imported_function"]


def imported_function(path: str, option: str) -> Callable[..., Any]:
    """The function at ``path``: ``package.module:function`` (or ``package.module.function``),
    imported now, so a typo fails when the definitions load.

    Raises:
        CloudglueConfigError: naming ``option``, the path and what went wrong.
    """
    module_name, sep, attribute = path.strip().partition(":")
    if not sep:
        module_name, _, attribute = module_name.rpartition(".")
    if not module_name or not attribute:
        raise CloudglueConfigError(f"{option} must be an import path, 'my_package.module:function'; got {path!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CloudglueConfigError(f"{option}: cannot import {module_name!r} (from {path!r}): {exc}") from None
    function = module
    for part in attribute.split("."):
        function = getattr(function, part, None)  # type: ignore[assignment]
        if function is None:
            raise CloudglueConfigError(f"{option}: {module_name!r} has no {attribute!r} (from {path!r})")
    if not callable(function):
        raise CloudglueConfigError(f"{option}: {path!r} is a {type(function).__name__}, not a function")
    return function
