"""The sweep's rules as plain functions: the widest reading of the dates asked, how far
``total`` may grow during one read, and the bound on a window's ``total``.

The same rules against real servers (loopback, the emulator behind a lying proxy) and through
the Dagster CLI are in ``tests/test_hostile.py``."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from cloudglue_dagster.api.models import ChatCompletion, ChatCompletionPage
from cloudglue_dagster.api.parsing import parse_completion
from cloudglue_dagster.api.sweep import (
    DEFAULT_MAX_WINDOW_RECORDS,
    page_problem,
    total_growth_limit,
    window_bounds,
)
from cloudglue_dagster.emulator.timeutil import BOUNDARY_READINGS, window_ms
from cloudglue_dagster.errors import WindowTooLargeError, is_transient

UTC = dt.timezone.utc
WINDOW = ("2026-05-02", "2026-05-06")


def completion(cid: str, created_at: Any) -> ChatCompletion:
    """A minimal record; ``created_at`` as the API sends it (epoch ms, epoch s or ISO-8601)."""
    return parse_completion(
        {
            "id": cid,
            "created_at": created_at,
            "object": "chat.completion",
            "model": "m",
            "usage": {},
            "choices": [],
            "payload": {"messages": []},
        }
    )


def page_of(*records: ChatCompletion, total: int | None = None, offset: int = 0) -> ChatCompletionPage:
    return ChatCompletionPage(records, len(records) if total is None else total, 100, offset)


def ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


# -- the widest reading of the dates asked ------------------------------------------------------


def test_the_dates_asked_hold_at_most_from_created_after_midnight_to_the_day_after_created_before() -> None:
    low, high = window_bounds(*WINDOW)
    assert (low, high) == (dt.datetime(2026, 5, 2, tzinfo=UTC), dt.datetime(2026, 5, 7, tzinfo=UTC))
    assert window_bounds(None, "2026-05-06") == (None, high)
    assert window_bounds("2026-05-02", None) == (low, None)
    assert window_bounds(None, None) == (None, None)


@pytest.mark.parametrize("reading", BOUNDARY_READINGS)
def test_every_boundary_reading_the_emulator_offers_lies_within_the_widest_one(reading: str) -> None:
    """An honest server, whatever its reading, never lists a record the rule refuses."""
    low, high = window_bounds(*WINDOW)
    assert low is not None and high is not None
    lo_ms, hi_ms = window_ms(dt.date(2026, 5, 2), dt.date(2026, 5, 6), reading)
    assert lo_ms is not None and hi_ms is not None
    assert ms(low) <= lo_ms and hi_ms <= ms(high)


def test_a_record_inside_the_widest_reading_is_no_problem_up_to_its_edges() -> None:
    edges = [
        completion("first", ms(dt.datetime(2026, 5, 2, tzinfo=UTC))),
        completion("last", ms(dt.datetime(2026, 5, 6, 23, 59, 59, 999000, tzinfo=UTC))),
        completion("iso", "2026-05-06T23:59:59.999999Z"),
        completion("zoned", "2026-05-07T01:00:00+02:00"),  # 23:00 UTC: compared in UTC
        completion("seconds", dt.datetime(2026, 5, 4, 12, tzinfo=UTC).timestamp()),
    ]
    assert page_problem(page_of(*edges), 0, 100, WINDOW) is None


@pytest.mark.parametrize(
    ("created_at", "shown"),
    [
        (-5, "1969-12-31T23:59:55+00:00"),
        (ms(dt.datetime(2026, 5, 1, 23, 59, 59, 999000, tzinfo=UTC)), "2026-05-01T23:59:59.999000+00:00"),
        (ms(dt.datetime(2026, 5, 7, tzinfo=UTC)), "2026-05-07T00:00:00+00:00"),
        ("2026-05-07T02:00:00+02:00", "2026-05-07T00:00:00+00:00"),
    ],
)
def test_a_record_outside_the_widest_reading_is_a_page_problem_naming_it_its_time_and_the_dates(
    created_at: Any, shown: str
) -> None:
    records = [completion("a", ms(dt.datetime(2026, 5, 4, tzinfo=UTC))), completion("stray", created_at)]
    problem = page_problem(page_of(*records, total=40, offset=20), 20, 100, WINDOW)
    assert problem == (
        f"offset 20: completion 'stray' created_at {shown} lies outside the dates asked"
        " (created_after=2026-05-02 created_before=2026-05-06, which hold at most"
        " [2026-05-02T00:00:00Z, 2026-05-07T00:00:00Z) under any reading)"
    )


def test_unbounded_dates_bound_nothing_on_their_side() -> None:
    early, late = completion("early", -5), completion("late", ms(dt.datetime(2999, 1, 1, tzinfo=UTC)))
    assert page_problem(page_of(early, late), 0, 100) is None
    assert page_problem(page_of(early, late), 0, 100, (None, None)) is None
    assert page_problem(page_of(early), 0, 100, (None, "2026-05-06")) is None
    assert page_problem(page_of(late), 0, 100, ("2026-05-02", None)) is None
    assert "'late' created_at 2999-01-01" in str(page_problem(page_of(late), 0, 100, (None, "2026-05-06")))
    assert "[..., 2026-05-07T00:00:00Z)" in str(page_problem(page_of(late), 0, 100, (None, "2026-05-06")))
    assert "[2026-05-02T00:00:00Z, ...)" in str(page_problem(page_of(early), 0, 100, ("2026-05-02", None)))


def test_the_other_page_problems_are_unchanged_and_come_first() -> None:
    stray = completion("stray", -5)
    assert page_problem(page_of(stray, stray), 0, 100, WINDOW) == "offset 0: id 'stray' twice in one page"
    assert page_problem(page_of(stray, total=0), 0, 100, WINDOW) == (
        "offset 0: 1 records, but total 0 leaves 0 after this offset"
    )


# -- how far total may grow during one read -------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "limit"), [(0, 1_000), (1, 1_001), (250, 1_375), (10_000, 16_000), (1_000_001, 1_501_001)]
)
def test_a_read_accepts_a_total_up_to_half_again_its_first_plus_a_thousand(first: int, limit: int) -> None:
    assert total_growth_limit(first) == limit


# -- the bound on a window's total ---------------------------------------------------------------


def test_the_default_bound_on_a_window_is_ten_million_completions() -> None:
    assert DEFAULT_MAX_WINDOW_RECORDS == 10_000_000


def test_a_window_too_large_is_permanent_and_its_message_names_the_figure_the_window_and_the_fix() -> None:
    error = WindowTooLargeError(
        created_after="2026-05-02", created_before=None, total=10**9, offset=0, max_window_records=10_000_000
    )
    assert not is_transient(error)
    message = str(error)
    assert "total=1,000,000,000" in message and "max_window_records=10,000,000" in message
    assert "created_after=2026-05-02 created_before=-" in message
    assert "max_partitions_per_run" in message and "raise max_window_records" in message
    assert "stored" not in message  # the client cannot know what its caller stored
    assert (error.total, error.offset, error.max_window_records) == (10**9, 0, 10_000_000)
