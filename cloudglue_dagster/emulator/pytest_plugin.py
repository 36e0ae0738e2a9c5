"""Pytest fixtures for tests that need a running emulator.

Registered through the ``pytest11`` entry point, so any project with
``cloudglue-dagster`` installed gets:

* ``cloudglue_emulator``: a running :class:`Emulator` over a small data set
  (3 days from 2026-01-01, ~50 per day, seed 0), key ``emulator-key``.
* ``cloudglue_emulator_factory``: ``make(**kwargs) -> Emulator``; kwargs are
  :class:`Dataset` arguments (``start``, ``end``, ``per_day``, ``seed``,
  ``empty_days``, ``counts``, ...) and/or :class:`Emulator` options
  (``dataset=`` to pass a ready data set, ``boundary``, ``fault_rate``, ...).
  Responses (``GET /v1/responses``) come over the same days and seed unless
  ``responses=`` passes a :class:`ResponsesDataset`; ``responses_per_day``,
  ``in_progress_rate`` and ``settle_after_seconds`` shape them, and
  ``responses_timestamp_unit`` renders them. Every emulator made is stopped at
  teardown.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from typing import Any

import pytest

from .data import Dataset
from .responses import ResponsesDataset
from .server import Emulator

__all__ = ["DEFAULT_TEST_DATASET", "cloudglue_emulator", "cloudglue_emulator_factory"]

#: Dataset arguments of the fixtures' default data set.
DEFAULT_TEST_DATASET: dict[str, Any] = {
    "start": date(2026, 1, 1),
    "end": date(2026, 1, 3),
    "per_day": 50,
    "seed": 0,
}

_DATASET_ARGS = frozenset(inspect.signature(Dataset).parameters) - {"self"}
# Options of the default ResponsesDataset (its days and seed are the chat data set's).
_RESPONSES_ARGS = {
    "responses_per_day": "per_day",
    "in_progress_rate": "in_progress_rate",
    "settle_after_seconds": "settle_after_seconds",
}


def _make_emulator(kwargs: dict[str, Any]) -> Emulator:
    ds_args = {k: kwargs.pop(k) for k in list(kwargs) if k in _DATASET_ARGS}
    dataset = kwargs.pop("dataset", None)
    if dataset is not None and ds_args:
        raise TypeError(f"pass either dataset= or Dataset arguments, not both: {sorted(ds_args)}")
    if dataset is None:
        merged = {**DEFAULT_TEST_DATASET, **ds_args}
        if "start" in ds_args and "end" not in ds_args:
            merged["end"] = merged["start"] + timedelta(days=2)
        dataset = Dataset(**merged)
    resp_args = {_RESPONSES_ARGS[k]: kwargs.pop(k) for k in list(kwargs) if k in _RESPONSES_ARGS}
    if resp_args:
        if kwargs.get("responses") is not None:
            raise TypeError(f"pass either responses= or its options, not both: {sorted(resp_args)}")
        resp_args.setdefault("per_day", max(1, dataset.per_day // 4) if dataset.per_day else 0)
        resp_args.setdefault("extra_fields", dataset.extra_fields)
        kwargs["responses"] = ResponsesDataset(dataset.start, dataset.end, seed=dataset.seed, **resp_args)
    return Emulator(dataset, **kwargs).start()


@pytest.fixture
def cloudglue_emulator_factory() -> Iterator[Callable[..., Emulator]]:
    """Factory of running emulators, all stopped at teardown."""
    made: list[Emulator] = []

    def make(**kwargs: Any) -> Emulator:
        emu = _make_emulator(dict(kwargs))
        made.append(emu)
        return emu

    yield make
    for emu in made:
        emu.stop()


@pytest.fixture
def cloudglue_emulator(cloudglue_emulator_factory: Callable[..., Emulator]) -> Emulator:
    """A running emulator over the default small data set (see module doc)."""
    return cloudglue_emulator_factory()
