"""The column contract and the pure shaping functions (no Dagster, no HTTP)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from cloudglue_dagster.api.parsing import parse_completion, parse_page
from cloudglue_dagster.assets.checks import (
    chat_check_outcomes,
    duplicate_ids,
    inconsistent_totals,
    negative_token_rows,
    rows_outside,
)
from cloudglue_dagster.assets.metadata import frame_metadata
from cloudglue_dagster.assets.usage_checks import usage_against_recorded
from cloudglue_dagster.tables.frames import (
    CHAT_COMPLETIONS_COLUMNS,
    CHAT_MESSAGES_COLUMNS,
    COLLECTION_USAGE_COLUMNS,
    TOKEN_USAGE_COLUMNS,
    chat_completions_frame,
    conform,
    empty_frame,
)
from cloudglue_dagster.tables.spend import LLM_USAGE_COLUMNS, RESPONSES_COLUMNS  # noqa: E402
from cloudglue_dagster.tables.usage import token_usage_frame

TABLES_PAGE = Path(__file__).resolve().parents[1] / "docs" / "tables.md"


def completion(id: str, at_ms: int, model: str = "m1", usage: dict | None = None, **payload: object):
    raw = {
        "id": id,
        "created_at": at_ms,
        "object": "chat.completion",
        "model": model,
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15} if usage is None else usage,
        "choices": [
            {"index": 1, "message": {"role": "assistant", "content": "second"}},
            {"index": 0, "message": {"role": "assistant", "content": "first ✓", "name": "bot"}},
        ],
        "payload": {
            "messages": [
                {"role": "user", "content": "earlier question"},
                {"role": "assistant", "content": "earlier answer"},
                {"role": "user", "content": 'last "question"\n?'},
            ],
            "collections": ["c1", "c2"],
            **payload,
        },
    }
    return parse_completion(raw)


DAY = 1767225600000  # 2026-01-01T00:00:00Z in ms


def dtypes(frame: pd.DataFrame) -> list[tuple[str, str]]:
    return [(name, str(dtype)) for name, dtype in frame.dtypes.items()]


def test_empty_and_full_frames_have_identical_columns_and_dtypes() -> None:
    full = chat_completions_frame([completion("a", DAY), completion("b", DAY + 1, usage={}, temperature=0.3)])
    empty = chat_completions_frame([])
    assert dtypes(full) == dtypes(empty) == [(c.name, c.dtype) for c in CHAT_COMPLETIONS_COLUMNS]
    assert (
        dtypes(token_usage_frame(full)) == dtypes(token_usage_frame(empty)) == dtypes(empty_frame(TOKEN_USAGE_COLUMNS))
    )


def test_all_null_optional_columns_keep_their_dtypes() -> None:
    frame = chat_completions_frame([completion("a", DAY, usage={})])
    assert frame["prompt_tokens"].isna().all() and str(frame["prompt_tokens"].dtype) == "Int64"
    assert frame["temperature"].isna().all() and str(frame["temperature"].dtype) == "Float64"
    assert frame["filter"].isna().all() and str(frame["filter"].dtype) == "string"


def test_chat_row_content() -> None:
    flt = {"metadata": [{"path": "speaker", "operator": "Equal", "valueText": "Zoë"}]}
    row = chat_completions_frame([completion("a", DAY + 5, temperature=0.7, filter=flt)]).iloc[0]
    assert row["id"] == "a"
    assert row["created_at"] == pd.Timestamp("2026-01-01T00:00:00.005Z")
    assert row["prompt"] == 'last "question"\n?'  # last user message
    assert row["response"] == "first ✓"  # choice with the lowest index
    assert (row["message_count"], row["choice_count"]) == (3, 2)
    assert row["temperature"] == 0.7
    assert json.loads(row["collections"]) == ["c1", "c2"]
    assert json.loads(row["filter"]) == flt
    assert json.loads(row["payload_messages"])[2] == {"role": "user", "content": 'last "question"\n?'}
    assert json.loads(row["choices"])[1] == {
        "index": 0,
        "message": {"role": "assistant", "content": "first ✓", "name": "bot"},
    }
    assert "Zoë" in row["filter"]  # unicode kept readable, not \\u-escaped


def test_rows_sorted_by_time_then_id() -> None:
    frame = chat_completions_frame([completion("b", DAY + 2), completion("c", DAY + 1), completion("a", DAY + 2)])
    assert frame["id"].tolist() == ["c", "a", "b"]


def test_ties_on_created_at_are_ordered_by_id_and_equal_keys_keep_their_order() -> None:
    import random

    rng = random.Random(5)
    keys = [(DAY + rng.randrange(4), rng.choice("abcdef")) for _ in range(300)]  # many ties, some on both keys
    frame = chat_completions_frame(completion(i, at, model=f"m{n}") for n, (at, i) in enumerate(keys))
    expected = sorted(range(len(keys)), key=lambda n: keys[n])  # stable
    assert frame["model"].tolist() == [f"m{n}" for n in expected]
    assert frame.index.equals(pd.RangeIndex(len(keys)))
    reference = frame.sample(frac=1, random_state=1).sort_values(["created_at", "id"], kind="stable")
    assert frame["id"].tolist() == reference["id"].tolist()


def raw_completion(id: str, at_ms: int, **payload: object) -> dict:
    return {
        "id": id,
        "created_at": at_ms,
        "object": "chat.completion",
        "model": "m1",
        "usage": {"total_tokens": 1},
        "choices": [{"index": 0, "message": {"role": "assistant", "content": 'Zoë "✓"\n\\ 🎬', "name": "bot"}}],
        "payload": {"messages": [{"role": "user", "content": "q\u2028é"}], "collections": ["c1"], **payload},
    }


@pytest.mark.parametrize(
    "dumps",
    [lambda v: json.dumps(v, ensure_ascii=False, separators=(",", ":")), lambda v: json.dumps(v, indent=1)],
    ids=["compact", "indented-ascii"],
)
def test_the_json_columns_are_the_same_text_from_bytes_or_from_decoded_json(dumps) -> None:
    """Whichever path parsed the page, and however the API spaced or escaped it, the JSON
    columns hold json's compact spelling of the API's values, unicode unescaped."""
    records = [
        raw_completion("a", DAY, filter={"metadata": [{"valueText": "Zoë", "n": 2.5e-07}]}),
        raw_completion("b", DAY + 1, temperature=1, unknown={"x": [1.0]}),
    ]
    body = dumps({"object": "list", "data": records, "total": 2, "limit": 100, "offset": 0}).encode()
    from_bytes = chat_completions_frame(parse_page(body).data)
    from_dicts = chat_completions_frame(parse_completion(r) for r in json.loads(body)["data"])
    pd.testing.assert_frame_equal(from_bytes, from_dicts, check_exact=True)
    spell = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    for row, record in zip(from_bytes.itertuples(), records):
        assert row.choices == spell(record["choices"]) and row.payload_messages == spell(record["payload"]["messages"])
        assert row.collections == '["c1"]' and row.prompt == "q\u2028é" and row.response == 'Zoë "✓"\n\\ 🎬'
    assert from_bytes["filter"].tolist()[0] == '{"metadata":[{"valueText":"Zoë","n":2.5e-07}]}'
    assert pd.isna(from_bytes["filter"].tolist()[1])


def test_token_usage_never_invents_values() -> None:
    chat = chat_completions_frame(
        [
            completion("a", DAY, "m1", {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}),
            completion("b", DAY + 1, "m1", {"total_tokens": 7}),
            completion("c", DAY + 2, "m1", {}),
            completion("d", DAY + 3, "m2", {}),
            completion("e", DAY + 86_400_000, "m1", {"prompt_tokens": 1}),  # next day
        ]
    )
    usage = token_usage_frame(chat)
    rows = {(r.date.date().isoformat(), r.model): r for r in usage.itertuples()}
    m1 = rows[("2026-01-01", "m1")]
    assert (m1.completions, m1.prompt_tokens, m1.completion_tokens, m1.total_tokens, m1.completions_without_usage) == (
        3,
        10,
        5,
        22,
        1,
    )
    m2 = rows[("2026-01-01", "m2")]
    assert m2.completions == 1 and m2.completions_without_usage == 1
    assert pd.isna(m2.prompt_tokens) and pd.isna(m2.total_tokens)  # nobody reported: null, not 0
    nxt = rows[("2026-01-02", "m1")]
    assert nxt.prompt_tokens == 1 and pd.isna(nxt.completion_tokens)
    assert usage["date"].tolist() == sorted(usage["date"].tolist())


def test_utc_days_do_not_follow_local_offsets() -> None:
    """23:59:59.999 and 00:00:00.000 fall on their own UTC days."""
    chat = chat_completions_frame([completion("a", DAY - 1), completion("b", DAY)])
    assert [d.date().isoformat() for d in token_usage_frame(chat)["date"]] == ["2025-12-31", "2026-01-01"]


def test_conform_restores_contract_from_storage_types() -> None:
    chat = chat_completions_frame([completion("a", DAY, usage={})])
    stored = chat.copy()
    stored["created_at"] = stored["created_at"].dt.tz_localize(None)  # naive UTC, as some stores return
    stored["prompt_tokens"] = stored["prompt_tokens"].astype("float64")  # NaN floats
    stored = stored[list(reversed(stored.columns))].assign(extra=1)
    restored = conform(stored, CHAT_COMPLETIONS_COLUMNS)
    pd.testing.assert_frame_equal(restored, chat)
    with pytest.raises(ValueError, match="lacks contract column"):
        conform(stored.drop(columns=["model"]), CHAT_COMPLETIONS_COLUMNS)


# -- check rules ----------------------------------------------------------------


def test_check_rules() -> None:
    chat = chat_completions_frame(
        [
            completion("a", DAY),
            completion("a", DAY + 1),
            completion("n", DAY + 2, usage={"prompt_tokens": -1}),
            completion("t", DAY + 3, usage={"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 4}),
            completion("p", DAY + 4, usage={"prompt_tokens": 1, "total_tokens": 4}),  # incomplete: not judged
        ]
    )
    assert duplicate_ids(chat) == ["a"]
    assert negative_token_rows(chat)["id"].tolist() == ["n"]
    assert inconsistent_totals(chat)["id"].tolist() == ["t"]
    start = pd.Timestamp("2026-01-01T00:00:00.001Z")
    assert rows_outside(chat, start, start + pd.Timedelta(days=1)) == 1


def test_token_rules_compare_counts_exactly_however_large_and_fractions_as_they_are() -> None:
    big = 2**62
    chat = chat_completions_frame(
        [
            completion("exact", DAY, usage={"prompt_tokens": big, "completion_tokens": 1, "total_tokens": big + 1}),
            # As floats both sides would be 2**62: only integer arithmetic sees the difference.
            completion("off", DAY + 1, usage={"prompt_tokens": big, "completion_tokens": 1, "total_tokens": big + 2}),
            completion("null", DAY + 2, usage={"prompt_tokens": None, "completion_tokens": 1, "total_tokens": -5}),
        ]
    )
    assert inconsistent_totals(chat)["id"].tolist() == ["off"]
    assert negative_token_rows(chat)["id"].tolist() == ["null"]
    # A user's frame of float counts is compared as floats: 1.5 + 1 is 2.5, not 2.
    floats = pd.DataFrame(
        {"id": ["f", "g"], "prompt_tokens": [1.5, 1.0], "completion_tokens": [1.0, -0.5], "total_tokens": [2.5, 2.5]}
    )
    assert inconsistent_totals(floats)["id"].tolist() == ["g"]
    assert negative_token_rows(floats)["id"].tolist() == ["g"]


def test_check_rules_that_find_nothing_return_no_rows_with_the_frames_columns() -> None:
    chat = chat_completions_frame([completion("a", DAY), completion("b", DAY + 1)])
    for rows in (negative_token_rows(chat), inconsistent_totals(chat)):
        assert rows.empty and list(rows.columns) == list(chat.columns)


def test_a_days_metadata_counts_its_models_and_unreported_usage_and_previews_its_first_rows() -> None:
    chat = chat_completions_frame(
        [
            completion("a", DAY, "m2"),
            completion("b", DAY + 1, "m1", usage={}),
            completion("c", DAY + 2, "m1", usage={"total_tokens": 3}),
            *(completion(f"d{i}", DAY + 3 + i, "m1") for i in range(3)),
        ]
    )
    chat.loc[5, "model"] = pd.NA
    chat.loc[0, "prompt"] = "a | b"
    md = frame_metadata(chat, columns=CHAT_COMPLETIONS_COLUMNS, preview_columns=("id", "model", "prompt"))
    assert md["completions_by_model"].data == {"m1": 4, "m2": 1}  # the null model left out
    assert (md["models"].text, md["model_count"].value) == ("m1, m2", 2)
    assert md["completions_without_usage"].value == 1  # "c" reports one count of three
    assert md["preview"].md_str.splitlines() == [
        "| id | model | prompt |",
        "|---|---|---|",
        "| a | m2 | a \\| b |",
        '| b | m1 | last "question" ? |',
        '| c | m1 | last "question" ? |',
        '| d0 | m1 | last "question" ? |',
        '| d1 | m1 | last "question" ? |',
        "",
        "_5 of 6 rows_",
    ]


def test_a_usage_days_metadata_names_its_models_and_counts_their_completions() -> None:
    chat = chat_completions_frame(
        [completion("a", DAY, "m2"), completion("b", DAY + 1, "m1"), completion("c", DAY + 2, "m1")]
    )
    chat.loc[0, "model"] = pd.NA  # a completion without a model: its own row, left out of the counts
    md = frame_metadata(token_usage_frame(chat), columns=TOKEN_USAGE_COLUMNS, preview_columns=("model",))
    assert (md["models"].text, md["model_count"].value) == ("m1", 1)
    assert md["completions_by_model"].data == {"m1": 2}


def test_usage_against_recorded_totals() -> None:
    chat = chat_completions_frame(
        [completion("a", DAY), completion("b", DAY + 1, usage={}), completion("c", DAY + 2, "m2")]
    )
    usage = token_usage_frame(chat)
    recorded = {
        "dagster/partition_row_count": 3,
        "prompt_tokens": 20,
        "completion_tokens": 10,
        "total_tokens": 30,
        "completions_without_usage": 1,
        "completions_by_model": {"m1": 2, "m2": 1},
    }
    assert usage_against_recorded(usage, recorded) == []
    drifted = dict(recorded, total_tokens=31, completions_by_model={"m1": 3})
    assert {m["column"] for m in usage_against_recorded(usage, drifted)} == {"total_tokens", "completions_by_model"}
    assert usage_against_recorded(usage, None)[0]["column"] == "chat_completions"


def test_chat_check_outcomes_per_day() -> None:
    chat = chat_completions_frame(
        [completion("a", DAY), completion("a", DAY + 1), completion("n", DAY + 86_400_000, usage={"prompt_tokens": -1})]
    )
    start = pd.Timestamp("2026-01-01T00:00:00Z")
    days = [("2026-01-01", chat.iloc[:2]), ("2026-01-02", chat.iloc[2:])]
    outcomes = chat_check_outcomes(chat, start, start + pd.Timedelta(days=2), days)["rows_valid"]
    assert outcomes["2026-01-01"].metadata["failed_rules"] == "ids_unique"
    assert outcomes["2026-01-02"].metadata["failed_rules"] == "tokens_non_negative"
    assert outcomes["2026-01-01"].metadata["created_at_in_partition"] == "passed"
    assert not outcomes["2026-01-01"].passed and outcomes["2026-01-01"].severity == dg.AssetCheckSeverity.ERROR
    narrow = chat_check_outcomes(chat, start, start + pd.Timedelta(days=1), days[:1])["rows_valid"]
    assert "created_at_in_partition" in narrow["2026-01-01"].metadata["failed_rules"]  # a row outside the window


# -- docs/tables.md documents the contract ----------------------------------------


@pytest.mark.parametrize(
    ("table", "columns"),
    [
        ("chat_completions", CHAT_COMPLETIONS_COLUMNS),
        ("token_usage", TOKEN_USAGE_COLUMNS),
        ("chat_messages", CHAT_MESSAGES_COLUMNS),
        ("collection_usage", COLLECTION_USAGE_COLUMNS),
        ("responses", RESPONSES_COLUMNS),
        ("llm_usage", LLM_USAGE_COLUMNS),
    ],
)
def test_the_tables_page_documents_the_contract(table: str, columns) -> None:
    text = TABLES_PAGE.read_text()
    section = text.split(f"<!-- contract:{table} -->", 1)[1].split("<!-- /contract -->", 1)[0]
    documented = re.findall(r"^\| `([a-z_]+)` \| `([^`]+)` \|", section, flags=re.M)
    assert documented == [(c.name, c.dtype) for c in columns]
