"""The Responses API's records, tables and rules, as plain functions (no server, no Dagster run).

The endpoint end to end (the emulator, the client, the assets) is in tests/test_responses.py.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pandas as pd
import pytest

from cloudglue_dagster.api.responses import (
    Response,
    ResponseUsage,
    decode_responses_page,
    parse_responses_page,
    response_size,
)
from cloudglue_dagster.assets.in_progress import InProgressDay, days_to_reread, watched_days
from cloudglue_dagster.assets.llm_usage import llm_usage_mismatches
from cloudglue_dagster.assets.response_checks import in_progress_metadata, responses_check_outcomes, stuck_in_progress
from cloudglue_dagster.errors import InvalidResponseError
from cloudglue_dagster.tables.frames import chat_completions_frame
from cloudglue_dagster.tables.prices import ModelPrice
from cloudglue_dagster.tables.spend import LLM_USAGE_COLUMNS, RESPONSES_COLUMNS, llm_usage_frame, responses_frame
from cloudglue_dagster.tables.usage import token_usage_frame

UTC = dt.timezone.utc
DAY = dt.datetime(2026, 3, 2, tzinfo=UTC)


def _item(rid: str, seconds: int, **fields: Any) -> dict[str, Any]:
    item = {
        "id": rid,
        "object": "response",
        "status": "completed",
        "created_at": seconds,
        "model": "nimbus-001",
        "instructions": "Answer from the video.",
        "usage": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
    }
    item.update(fields)
    return {k: v for k, v in item.items() if v is not ...}


def _page(*items: dict[str, Any], total: int | None = None) -> bytes:
    body = {"object": "list", "data": list(items), "total": len(items) if total is None else total, "limit": 100}
    return json.dumps({**body, "offset": 0}).encode()


def test_a_page_in_integer_seconds_is_read_by_the_fast_path_in_utc() -> None:
    start = int(DAY.timestamp())
    page = decode_responses_page(_page(_item("resp_1", start), _item("resp_2", start + 86399)))
    assert page is not None and page.total == 2
    assert [r.created_at for r in page.data] == [DAY, DAY + dt.timedelta(seconds=86399)]
    assert page.data[0].usage == ResponseUsage(10, 5, 15)


def test_milliseconds_and_iso_strings_are_read_as_for_completions() -> None:
    ms = int(DAY.timestamp() * 1000) + 1
    page = parse_responses_page(_page(_item("a", ms), _item("b", "2026-03-02T00:00:00Z")))
    assert [r.created_at for r in page.data] == [DAY + dt.timedelta(milliseconds=1), DAY]


def test_optional_fields_may_be_missing_and_an_unknown_status_is_kept() -> None:
    body = _page(_item("a", 1772409600, usage=..., instructions=..., model=..., status="queued", extra={"x": 1}))
    for page in (decode_responses_page(body), parse_responses_page(json.loads(body))):
        assert page is not None
        (record,) = page.data
        assert (record.status, record.model, record.instructions) == ("queued", None, None)
        assert record.usage == ResponseUsage()


def test_the_fast_and_careful_paths_build_the_same_records() -> None:
    body = _page(
        _item("a", 1772409600, usage={"input_tokens": 3}),
        _item("b", 1772409601, status="in_progress", usage=None),
        _item("c", 1772409602, instructions='é "quoted"\nline'),
    )
    fast = decode_responses_page(body)
    assert fast is not None
    assert parse_responses_page(json.loads(body)) == fast


def test_an_integral_float_token_count_takes_the_careful_path_and_is_read() -> None:
    body = _page(_item("a", 1772409600, usage={"input_tokens": 3.0}))
    assert decode_responses_page(body) is None
    assert parse_responses_page(body).data[0].usage.input_tokens == 3


@pytest.mark.parametrize(
    ("item", "field"),
    [
        (_item("", 1772409600), "data[0].id"),
        (_item("r", ...), "created_at"),
        (_item("r", "yesterday"), "created_at"),
        (_item("r", 1772409600, status=7), "status"),
        (_item("r", 1772409600, usage={"input_tokens": "3"}), "usage.input_tokens"),
        (_item("r", 1772409600, usage={"input_tokens": 2**70}), "usage.input_tokens"),
        (_item("r", 1772409600, usage=[1]), "usage"),
    ],
)
def test_a_malformed_item_is_refused_naming_the_response_and_the_field(item: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidResponseError) as info:
        parse_responses_page(_page(item))
    assert info.value.field == field
    if item["id"]:
        assert "response 'r'" in str(info.value)


def test_a_response_counts_its_instructions_toward_what_a_sweep_holds() -> None:
    short = Response("a", DAY, "completed", "m", None, ResponseUsage())
    long = Response("a", DAY, "completed", "m", "x" * 10_000, ResponseUsage())
    assert response_size(long) - response_size(short) == 10_000


def _responses(*rows: tuple[str, int, str | None, str | None, int | None, int | None]) -> pd.DataFrame:
    records = [
        Response(
            rid,
            DAY + dt.timedelta(seconds=s),
            status,
            model,
            "i",
            ResponseUsage(i, o, None if i is None else i + (o or 0)),
        )
        for rid, s, status, model, i, o in rows
    ]
    return responses_frame(records, {"m1": ModelPrice(1.0, 2.0)})


def test_the_responses_frame_keeps_the_contract_and_prices_each_row() -> None:
    frame = _responses(("b", 5, "completed", "m1", 1_000_000, 500_000), ("a", 5, "in_progress", "m2", None, None))
    assert list(frame.columns) == [c.name for c in RESPONSES_COLUMNS]
    assert [str(t) for t in frame.dtypes] == [c.dtype for c in RESPONSES_COLUMNS]
    assert frame["id"].tolist() == ["a", "b"]  # created_at, then id
    assert frame["total_cost"].tolist()[1] == pytest.approx(2.0)
    assert frame["total_cost"].isna().tolist() == [True, False]  # m2 has no price
    assert list(responses_frame([]).columns) == [c.name for c in RESPONSES_COLUMNS]


def test_llm_usage_holds_token_usage_renamed_and_the_sums_of_responses() -> None:
    from cloudglue_dagster.api.models import ChatCompletion, CompletionJSON, Usage

    chat = chat_completions_frame(
        [
            ChatCompletion(
                "c1", DAY, "m1", Usage(100, 20, 120), (), (), None, None, (), CompletionJSON("[]", "[]", "[]", None)
            ),
            ChatCompletion("c2", DAY, "m1", Usage(), (), (), None, None, (), CompletionJSON("[]", "[]", "[]", None)),
        ]
    )
    prices = {"m1": ModelPrice(1.0, 2.0)}
    usage = token_usage_frame(chat, prices)
    responses = _responses(
        ("r1", 1, "completed", "m1", 7, 3),
        ("r2", 2, "in_progress", "m1", None, None),
        ("r3", 3, "failed", None, 1, None),
    )
    frame = llm_usage_frame(usage, responses, prices)
    assert list(frame.columns) == [c.name for c in LLM_USAGE_COLUMNS]
    rows = {(r.source, None if pd.isna(r.model) else r.model): r for r in frame.itertuples()}
    chat_row = rows[("chat_completions", "m1")]
    assert (chat_row.requests, chat_row.input_tokens, chat_row.output_tokens, chat_row.total_tokens) == (
        2,
        100,
        20,
        120,
    )
    assert chat_row.requests_without_usage == 1 and chat_row.in_progress == 0
    assert chat_row.total_cost == pytest.approx(usage["total_cost"].iloc[0])
    m1 = rows[("responses", "m1")]
    assert (m1.requests, m1.input_tokens, m1.output_tokens, m1.total_tokens, m1.in_progress) == (2, 7, 3, 10, 1)
    assert m1.requests_without_usage == 1
    assert m1.total_cost == pytest.approx((7 * 1.0 + 3 * 2.0) / 1e6)
    nameless = rows[("responses", None)]
    assert nameless.requests == 1 and pd.isna(nameless.output_tokens) and pd.isna(nameless.total_cost)
    assert llm_usage_mismatches(frame, frame) == []


def test_llm_usage_of_a_day_with_no_requests_is_empty_with_the_contract() -> None:
    frame = llm_usage_frame(token_usage_frame(chat_completions_frame([])), responses_frame([]))
    assert frame.empty and list(frame.columns) == [c.name for c in LLM_USAGE_COLUMNS]


def test_the_llm_usage_comparison_names_a_changed_count_and_a_missing_row() -> None:
    responses = _responses(("r1", 1, "completed", "m1", 7, 3))
    expected = llm_usage_frame(token_usage_frame(chat_completions_frame([])), responses)
    stored = expected.copy()
    stored.loc[0, "requests"] = 5
    assert [m["column"] for m in llm_usage_mismatches(stored, expected)] == ["requests"]
    assert [m["column"] for m in llm_usage_mismatches(stored.iloc[:0], expected)] == ["row"]


def test_a_response_in_progress_past_the_limit_is_stuck_and_warns() -> None:
    frame = _responses(("a", 0, "in_progress", "m1", None, None), ("b", 3600, "in_progress", "m1", None, None))
    now = DAY + dt.timedelta(hours=24, minutes=30)
    assert stuck_in_progress(frame, now, 24)["id"].tolist() == ["a"]
    assert stuck_in_progress(frame, now, None).empty
    outcome = responses_check_outcomes(
        frame,
        pd.Timestamp(DAY),
        pd.Timestamp(DAY + dt.timedelta(days=1)),
        [("2026-03-02", frame)],
        now=now,
        limit_hours=24,
    )["rows_valid"]["2026-03-02"]
    assert not outcome.passed and outcome.severity.value == "WARN"
    assert outcome.metadata["failed_rules"] == "no_stuck_in_progress"
    metadata = in_progress_metadata(frame)
    assert metadata["in_progress"].value == 2
    assert metadata["in_progress_newest"].value == (DAY + dt.timedelta(hours=1)).timestamp()


def test_a_day_is_read_again_until_its_newest_in_progress_response_passes_the_limit() -> None:
    newest = DAY + dt.timedelta(hours=20)
    days = {
        "early": InProgressDay(1, newest + dt.timedelta(hours=2), 3, newest),
        "late": InProgressDay(2, newest + dt.timedelta(hours=25), 3, newest),
        "done": InProgressDay(3, newest + dt.timedelta(hours=2), 0, None),
    }
    assert days_to_reread(days, 24) == ["early"]
    assert watched_days(24) == 3 and watched_days(72) == 5
