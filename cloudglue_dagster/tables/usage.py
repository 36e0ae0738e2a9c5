"""The sums: token usage per (UTC day, model) and per (UTC day, collection, model), with costs.

pandas only, no Dagster. Both take a ``chat_completions`` frame (its accounting columns; the
``collections`` column too for the second) and return a frame of their contract in
:mod:`cloudglue_dagster.tables.frames`.

Attribution to collections. A completion names zero or more collections
(``payload.collections``; a name given twice counts once). One naming none is attributed to
``collection = null``. One naming k collections is split evenly: each gets 1/k of the
completion (``attributed_completions``) and 1/k of each token count in whole tokens, the
remainder going one token each to the first collections in id order (11 tokens over three
collections: 4, 4, 3). So nothing is counted twice and nothing is lost: summed over
collections, every (day, model) gives exactly token_usage's tokens and completions (the
``completions`` column still counts each completion once per collection it names, for "how
many runs touched this collection"). Costs are the attributed tokens times the model's price.
"""

from __future__ import annotations

from typing import cast

import msgspec
import numpy as np
import pandas as pd

from .frames import COLLECTION_USAGE_COLUMNS, TOKEN_FIELDS, TOKEN_USAGE_COLUMNS, empty_frame, utc_day
from .prices import Prices, cost_columns

__all__ = ["collection_usage_frame", "token_usage_frame"]


def token_usage_frame(chat_completions: pd.DataFrame, prices: Prices | None = None) -> pd.DataFrame:
    """Token usage per (UTC day, model) from a ``chat_completions`` frame.

    Sums skip unreported counts (a model-day where no completion reported a
    field gets null, never zero); ``completions_without_usage`` counts the
    completions that reported none of them. Sorted by date then model.

    ``prices`` (model name -> :class:`ModelPrice`) fills the cost columns, in
    USD; a model without a price, or a count nobody reported, gets a null cost.
    """
    if chat_completions.empty:
        return empty_frame(TOKEN_USAGE_COLUMNS)
    frame = pd.DataFrame(
        {
            "date": utc_day(chat_completions["created_at"]),
            "model": chat_completions["model"].astype("string"),
            **{f: chat_completions[f].astype("Int64") for f in TOKEN_FIELDS},
        }
    )
    frame["no_usage"] = frame[list(TOKEN_FIELDS)].isna().all(axis=1).astype("Int64")
    grouped = frame.groupby(["date", "model"], sort=True, dropna=False)
    usage = pd.DataFrame(
        {
            "completions": grouped.size(),
            **{f: grouped[f].sum(min_count=1) for f in TOKEN_FIELDS},
            "completions_without_usage": grouped["no_usage"].sum(),
        }
    ).reset_index()
    usage = usage.assign(**_costs(usage, prices or {}))
    return usage.astype({c.name: c.dtype for c in TOKEN_USAGE_COLUMNS})[[c.name for c in TOKEN_USAGE_COLUMNS]]


def _costs(usage: pd.DataFrame, prices: Prices) -> dict[str, pd.Series]:
    """The cost columns of a usage frame (a completion's prompt tokens are its input), each
    row at its model's price on its day."""
    return cost_columns(usage["model"], usage["date"], usage["prompt_tokens"], usage["completion_tokens"], prices)


_COLLECTIONS = msgspec.json.Decoder(list[str] | None)


def _collection_lists(cells: pd.Series) -> list[list[str]]:
    """Each row's distinct collection ids, sorted; [] for none (or an unreadable cell)."""
    out = []
    for cell in cells.tolist():
        try:
            names = _COLLECTIONS.decode(cell) if isinstance(cell, str) else None
        except msgspec.DecodeError:
            names = None
        out.append(sorted(set(names)) if names else [])
    return out


def collection_usage_frame(chat_completions: pd.DataFrame, prices: Prices | None = None) -> pd.DataFrame:
    """Usage per (UTC day, collection, model) under the module's attribution rule.

    Sorted by date, collection (null last), model. Summed over collections, each
    (date, model) equals :func:`token_usage_frame`'s ``completions`` (as
    ``attributed_completions``) and token sums; unreported counts stay null.
    """
    if chat_completions.empty:
        return empty_frame(COLLECTION_USAGE_COLUMNS)
    lists = _collection_lists(chat_completions["collections"])
    k = np.array([max(len(names), 1) for names in lists], dtype=np.int64)
    rows = np.repeat(np.arange(len(lists)), k)  # one row per (completion, collection)
    position = np.arange(len(rows)) - np.repeat(np.cumsum(k) - k, k)  # 0..k-1 within a completion
    shares = np.repeat(k, k)
    named: list[str | None] = [name for names in lists for name in (names if names else [None])]
    frame = pd.DataFrame(
        {
            "date": utc_day(chat_completions["created_at"]).to_numpy()[rows],
            "collection": pd.array(named, dtype="string"),
            "model": chat_completions["model"].astype("string").to_numpy()[rows],
            "attributed_completions": 1.0 / shares,
        }
    )
    for field in TOKEN_FIELDS:
        # An Int64 column's .array is an IntegerArray; pandas-stubs type it as any ExtensionArray.
        tokens = cast("pd.arrays.IntegerArray", chat_completions[field].astype("Int64").array)[rows]
        frame[field] = tokens // shares + (pd.array(position, dtype="Int64") < tokens % shares).astype("Int64")
    grouped = frame.groupby(["date", "collection", "model"], sort=True, dropna=False)
    usage = pd.DataFrame(
        {
            "completions": grouped.size(),
            "attributed_completions": grouped["attributed_completions"].sum(),
            **{f: grouped[f].sum(min_count=1) for f in TOKEN_FIELDS},
        }
    ).reset_index()
    usage = usage.assign(**_costs(usage, prices or {}))
    usage = usage.astype({c.name: c.dtype for c in COLLECTION_USAGE_COLUMNS})[
        [c.name for c in COLLECTION_USAGE_COLUMNS]
    ]
    return usage.sort_values(["date", "collection", "model"], na_position="last", kind="stable", ignore_index=True)
