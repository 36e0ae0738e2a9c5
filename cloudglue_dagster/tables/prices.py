"""Model prices, and prices that change over time: each UTC day costed at the prices in force then.

pandas and numpy, no Dagster. A model's price is one :class:`ModelPrice` (in force always) or a
list of them, each in force from its ``effective_from`` UTC day until the next one's. Every
cost column of every table is :func:`cost_columns`: a row's tokens times the price its model had
on the row's UTC day. So re-running an old day costs it as before, whatever today's price.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cloudglue_dagster.errors import CloudglueConfigError

__all__ = ["ModelPrice", "Prices", "check_prices", "cost_columns", "price_history"]


@dataclass(frozen=True)
class ModelPrice:
    """A model's list price in USD per million tokens: ``input_per_million`` for input (a
    completion's prompt tokens, a response's input tokens), ``output_per_million`` for output.

    ``effective_from``: the first UTC day it is in force (a date or ``YYYY-MM-DD``); None, the
    default: since always. Give a model a list of prices to change its price over time.

    Raises:
        CloudglueConfigError: a price is negative, NaN or infinite, or the day is not a date.
    """

    input_per_million: float
    output_per_million: float
    effective_from: dt.date | None = None

    def __post_init__(self) -> None:
        for name in ("input_per_million", "output_per_million"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise CloudglueConfigError(f"ModelPrice.{name} must be a finite number >= 0, got {value!r}")
        day: object = self.effective_from  # as given: a str is accepted too
        if isinstance(day, dt.datetime):
            raise CloudglueConfigError(f"ModelPrice.effective_from must be a UTC day, not a datetime ({day!r})")
        if isinstance(day, str):
            try:
                object.__setattr__(self, "effective_from", dt.date.fromisoformat(day.strip()))
            except ValueError:
                raise CloudglueConfigError(f"ModelPrice.effective_from must be 'YYYY-MM-DD', got {day!r}") from None
        elif day is not None and not isinstance(day, dt.date):
            raise CloudglueConfigError(f"ModelPrice.effective_from must be a date or None, got {day!r}")


Prices = Mapping[str, ModelPrice | Sequence[ModelPrice]]
"""Model name -> its price, or its prices over time (each with its ``effective_from``)."""


def price_history(price: ModelPrice | Sequence[ModelPrice]) -> list[ModelPrice]:
    """A model's prices, oldest first (one in force always comes first)."""
    prices = [price] if isinstance(price, ModelPrice) else list(price)
    return sorted(prices, key=lambda p: p.effective_from or dt.date.min)


def check_prices(prices: object, name: str = "prices") -> None:
    """Refuse what is not a price list: each model's value a :class:`ModelPrice` or a non-empty
    list of them, whose ``effective_from`` days differ (one of them at most None)."""
    if not isinstance(prices, Mapping):
        raise CloudglueConfigError(f"{name} must map model names to ModelPrice, got {type(prices).__name__}")
    for model, price in prices.items():
        listed = [price] if isinstance(price, ModelPrice) else price
        if isinstance(listed, (str, bytes)) or not isinstance(listed, Sequence) or not listed:
            raise CloudglueConfigError(
                f"{name}[{model!r}] must be a ModelPrice or a list of them, got {type(price).__name__}"
            )
        for item in listed:
            if not isinstance(item, ModelPrice):
                raise CloudglueConfigError(f"{name}[{model!r}] must be a ModelPrice, got {type(item).__name__}")
        days = [p.effective_from for p in listed]
        if len(set(days)) != len(days):
            raise CloudglueConfigError(
                f"{name}[{model!r}] gives two prices from the same day: each effective_from must differ"
            )


def _per_token(models: pd.Series, days: pd.Series, prices: Prices, side: str) -> pd.Series:
    """USD per token of each row's model on the row's UTC day (null: no price in force)."""
    out = np.full(len(models), np.nan)
    names = np.array([None if pd.isna(m) else str(m) for m in models.tolist()], dtype=object)
    stamps = pd.to_datetime(days).to_numpy(dtype="datetime64[D]")
    for model, price in prices.items():
        rows = np.flatnonzero(names == model)
        if not len(rows):
            continue
        history = price_history(price)
        starts = np.array([p.effective_from or dt.date.min for p in history], dtype="datetime64[D]")
        values = np.array([getattr(p, f"{side}_per_million") / 1e6 for p in history])
        index = np.searchsorted(starts, stamps[rows], side="right") - 1  # the last price started by then
        known = index >= 0
        out[rows[known]] = values[index[known]]
    return pd.Series(pd.array(out, dtype="Float64"), index=models.index).mask(np.isnan(out))


def cost_columns(
    models: pd.Series, days: pd.Series, inputs: pd.Series, outputs: pd.Series, prices: Prices
) -> dict[str, pd.Series]:
    """``input_cost``, ``output_cost`` and ``total_cost`` in USD of each row's input and output
    tokens at the price its model had on the row's UTC day (``days``): null where no price is in
    force, or a count is null."""
    input_cost = inputs.astype("Float64") * _per_token(models, days, prices, "input")
    output_cost = outputs.astype("Float64") * _per_token(models, days, prices, "output")
    # Sum only when both halves are known: a partial total would pass for a full one.
    return {"input_cost": input_cost, "output_cost": output_cost, "total_cost": input_cost + output_cost}
