"""Numeric bounds, written once: in a pydantic field (``Field(ge=..., le=..., gt=...)``), read here.

The resource's fields and the factory's options (:class:`~cloudglue_dagster.assets.options.AssetOptions`)
declare their bounds where they declare their type, default and doc. Everything else that needs
a bound reads it from that field: the check below (whose message names the field and the value:
pydantic's own would not, since the resource hides inputs from its errors), the component's
descriptions and the docs' tables (held against the fields by tests).

No Dagster, no pandas: pydantic only.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass
from typing import Any

from pydantic.fields import FieldInfo

from .errors import CloudglueConfigError

__all__ = ["Bounds", "bounds_of", "check_bounds", "is_integer_field", "is_optional_field"]

_BINARY_UNITS = ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB"))


@dataclass(frozen=True)
class Bounds:
    """A field's bounds: ``ge``/``le`` inclusive, ``gt``/``lt`` exclusive; None where unbounded."""

    ge: float | None = None
    le: float | None = None
    gt: float | None = None
    lt: float | None = None

    def holds(self, value: float) -> bool:
        """Whether ``value`` is within the bounds."""
        return (
            (self.ge is None or value >= self.ge)
            and (self.le is None or value <= self.le)
            and (self.gt is None or value > self.gt)
            and (self.lt is None or value < self.lt)
        )

    def text(self, *, byte_units: bool = False) -> str:
        """The bounds as the messages and docs write them: ``1..64``, ``>= 30``, ``> 0``.

        ``byte_units`` adds the binary unit of a round number (``>= 1048576 (1 MiB)``)."""

        def show(number: float) -> str:
            shown = f"{number:g}" if isinstance(number, float) else str(number)
            for size, unit in _BINARY_UNITS if byte_units else ():
                if number >= size and number % size == 0:
                    return f"{shown} ({int(number // size)} {unit})"
            return shown

        if self.ge is not None and self.le is not None:
            return f"{show(self.ge)}..{show(self.le)}"
        signs = ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
        return " and ".join(f"{sign} {show(n)}" for sign, n in signs if n is not None)


def bounds_of(field: FieldInfo) -> Bounds | None:
    """The bounds declared in ``field``'s metadata (``Field(ge=..., le=..., gt=..., lt=...)``), or None."""
    # pydantic keeps them as annotated_types' Ge, Le, Gt, Lt (or an Interval holding several).
    found: dict[str, float] = {}
    for item in field.metadata:
        for name in ("ge", "le", "gt", "lt"):
            if getattr(item, name, None) is not None:
                found[name] = getattr(item, name)
    return Bounds(**found) if found else None


def _value_types(field: FieldInfo) -> tuple[type, ...]:
    """The field's annotation without ``None``: ``int | None`` -> ``(int,)``."""
    annotation = field.annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return tuple(a for a in typing.get_args(annotation) if a is not type(None))
    return (annotation,) if isinstance(annotation, type) else ()


def is_optional_field(field: FieldInfo) -> bool:
    """Whether ``field`` takes None (its annotation is ``X | None``)."""
    annotation = field.annotation
    return (isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union) and type(
        None
    ) in typing.get_args(annotation)


def is_integer_field(field: FieldInfo) -> bool:
    """Whether ``field`` holds an integer (``int`` or ``int | None``)."""
    return _value_types(field) == (int,)


def check_bounds(name: str, field: FieldInfo, value: Any) -> Any:
    """``value`` for the numeric field ``name`` checked against ``field``'s type and bounds.

    Returns it, an integral float as an int for an integer field (as pydantic would). None is
    accepted where the field takes it.

    Raises:
        CloudglueConfigError: naming the field, what it takes and the value.
    """
    optional = is_optional_field(field)
    if value is None and optional:
        return None
    integer = is_integer_field(field)
    bounds = bounds_of(field)
    span = "" if bounds is None else f" {bounds.text(byte_units=name.endswith('_bytes'))}"
    or_none = " or None" if optional else ""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or (integer and not float(value).is_integer()):
        kind = "an integer" if integer else "a number"
        raise CloudglueConfigError(f"{name} must be {kind}{span}{or_none}, got {value!r}")
    if integer:
        value = int(value)
    if not math.isfinite(value):
        raise CloudglueConfigError(f"{name} must be a finite number{span}{or_none}, got {value!r}")
    if bounds is not None and not bounds.holds(value):
        raise CloudglueConfigError(f"{name} must be{span}{or_none}, got {value!r}")
    return value
