"""Cutting a listing into UTC days: a day is handed on once the sorted listing has passed it."""

import datetime as dt

from cloudglue_dagster.api.days import CompleteDay, DayAssembler, ReopenedDay, UTCDay, assemble
from cloudglue_dagster.api.parsing import parse_completion

UTC = dt.timezone.utc


def _days(first: dt.date, n: int) -> list[UTCDay]:
    out = []
    for i in range(n):
        start = dt.datetime.combine(first + dt.timedelta(days=i), dt.time(), UTC)
        out.append(UTCDay(start.date().isoformat(), start, start + dt.timedelta(days=1)))
    return out


def _completion(cid: str, day: str, hour: int):
    at = dt.datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)
    return parse_completion(
        {
            "id": cid,
            "created_at": int(at.timestamp() * 1000),
            "object": "chat.completion",
            "model": "m",
            "usage": {},
            "choices": [],
            "payload": {"messages": []},
        }
    )


DAYS = _days(dt.date(2026, 3, 1), 4)  # 03-01 .. 03-04


def _feed(assembler: DayAssembler, completions) -> list[list]:
    """What each completion made complete, as (kind, key, ids) tuples."""
    out = []
    for c in completions:
        out.append(
            [
                ("day", i.day.key, [x.id for x in i.completions])
                if isinstance(i, CompleteDay)
                else ("reopen", i.day.key)
                for i in assembler.add(c)
            ]
        )
    return out


def test_a_newest_first_listing_hands_each_day_on_once_the_next_older_day_starts():
    listing = [
        _completion("d4b", "2026-03-04", 20),
        _completion("d4a", "2026-03-04", 3),
        _completion("d2b", "2026-03-02", 9),  # 03-03 has nothing: it is complete (empty) now
        _completion("d2a", "2026-03-02", 1),
        _completion("d1a", "2026-03-01", 5),
    ]
    assembler = DayAssembler(DAYS)
    steps = _feed(assembler, listing)
    assert steps[0] == [] and steps[1] == []
    assert steps[2] == [("day", "2026-03-03", []), ("day", "2026-03-04", ["d4b", "d4a"])]
    assert steps[4] == [("day", "2026-03-02", ["d2b", "d2a"])]
    assert [(d.day.key, [c.id for c in d.completions]) for d in assembler.finish()] == [("2026-03-01", ["d1a"])]
    assert assembler.sorted and assembler.peak_open <= 2 and not assembler.reopened


def test_an_oldest_first_listing_is_followed_too_and_ties_do_not_break_the_order():
    listing = [
        _completion("a", "2026-03-01", 5),
        _completion("b", "2026-03-01", 5),
        _completion("c", "2026-03-01", 6),
        _completion("d", "2026-03-03", 1),
    ]
    assembler = DayAssembler(DAYS)
    steps = _feed(assembler, listing)
    assert steps[3] == [("day", "2026-03-01", ["a", "b", "c"]), ("day", "2026-03-02", [])]
    assert [d.day.key for d in assembler.finish()] == ["2026-03-03", "2026-03-04"]
    assert assembler.sorted


def test_once_the_listing_breaks_its_order_every_day_handed_on_reopens_and_nothing_more_is_handed_on_early():
    """The first record out of order shows the order the early days were closed on does not
    hold: all of them are reopened at once (not only the day that record belongs to), and
    from then on everything is held to the end."""
    listing = [
        _completion("x", "2026-03-02", 5),
        _completion("y", "2026-03-04", 5),  # oldest first, so 03-01..03-03 are complete
        _completion("z", "2026-03-01", 5),  # against that order: every day handed on is suspect
        _completion("w", "2026-03-03", 5),  # already reopened
        _completion("v", "2026-03-04", 1),  # no longer sorted: 03-04 is held, not reopened
    ]
    assembler = DayAssembler(DAYS)
    steps = _feed(assembler, listing)
    assert steps[1] == [("day", "2026-03-01", []), ("day", "2026-03-02", ["x"]), ("day", "2026-03-03", [])]
    assert steps[2] == [("reopen", "2026-03-01"), ("reopen", "2026-03-02"), ("reopen", "2026-03-03")]
    assert steps[3] == [] and steps[4] == []
    assert not assembler.sorted
    assert {d.day.key: [c.id for c in d.completions] for d in assembler.finish()} == {"2026-03-04": ["y", "v"]}
    assert [d.key for d in assembler.reopened] == ["2026-03-01", "2026-03-02", "2026-03-03"]


def test_a_record_listed_out_of_place_early_closes_no_day_for_good():
    """The oldest record listed second (a hostile or broken listing) passes every day between
    it and the first; the next record shows the order is broken, and each of those days is
    reopened before a later failure could leave it emptied."""
    listing = [
        _completion("n1", "2026-03-04", 5),
        _completion("old", "2026-03-01", 5),  # jumps over 03-03 and 03-02: both "complete"
        _completion("n2", "2026-03-04", 4),
    ]
    assembler = DayAssembler(DAYS)
    steps = _feed(assembler, listing)
    assert [kind for kind, *_ in steps[1]] == ["day", "day", "day"]  # 03-04, 03-03, 03-02 closed
    assert sorted(key for kind, key, *_ in steps[2] if kind == "reopen") == ["2026-03-02", "2026-03-03", "2026-03-04"]


def test_a_late_record_of_a_day_handed_on_reopens_it_and_its_other_records_wait_for_the_reread():
    listing = [
        _completion("d4", "2026-03-04", 5),
        _completion("d3", "2026-03-03", 5),  # 03-04 handed on
        _completion("late", "2026-03-04", 1),  # out of order: 03-04 must be read again
        _completion("late2", "2026-03-04", 0),
        _completion("d1", "2026-03-01", 5),
    ]
    items = list(assemble(listing, DAYS))
    reopened = [i for i in items if isinstance(i, ReopenedDay)]
    assert [(r.day.key, r.completion_id) for r in reopened] == [("2026-03-04", "late")]
    handed = [i.day.key for i in items if isinstance(i, CompleteDay)]
    assert handed.count("2026-03-04") == 1  # only the first, incomplete hand-on; the re-read brings it again
    assert sorted(handed) == ["2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04"]


def test_holding_days_to_the_end_never_reopens_one():
    listing = [
        _completion("d4", "2026-03-04", 5),
        _completion("d3", "2026-03-03", 5),
        _completion("l", "2026-03-04", 1),
    ]
    assembler = DayAssembler(DAYS, early=False)
    assert _feed(assembler, listing) == [[], [], []]
    finished = {d.day.key: sorted(c.id for c in d.completions) for d in assembler.finish()}
    assert finished["2026-03-04"] == ["d4", "l"] and not assembler.reopened


def test_completions_outside_the_run_days_are_ignored():
    days = [DAYS[0], DAYS[2]]  # 03-02 was committed earlier and is skipped on purpose
    items = list(assemble([_completion("skip", "2026-03-02", 5), _completion("keep", "2026-03-01", 5)], days))
    assert {i.day.key: [c.id for c in i.completions] for i in items} == {"2026-03-01": ["keep"], "2026-03-03": []}
