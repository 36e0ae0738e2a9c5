"""cloudglue/chat_messages: one row per prompt message and per choice, from chat_completions' stored JSON."""

from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd
import pytest
from support.pipeline import TEST_KEY, day_range

from cloudglue_dagster.api.parsing import parse_completion
from cloudglue_dagster.assets.checks import duplicate_message_keys, message_count_mismatches
from cloudglue_dagster.assets.steps import tables_for
from cloudglue_dagster.emulator import Dataset, Emulator
from cloudglue_dagster.tables.frames import (
    CHAT_MESSAGES_COLUMNS,
    MESSAGE_SOURCE_COLUMNS,
    chat_completions_frame,
    chat_messages_frame,
    empty_frame,
)

DAY = 1767225600000  # 2026-01-01T00:00:00Z in ms
FIRST, LAST = dt.date(2026, 3, 1), dt.date(2026, 3, 5)


def completion(id: str, at_ms: int, messages: list[dict], choices: list[dict]):
    return parse_completion(
        {
            "id": id,
            "created_at": at_ms,
            "object": "chat.completion",
            "model": "m",
            "usage": {},
            "choices": choices,
            "payload": {"messages": messages, "collections": []},
        }
    )


def rows(frame: pd.DataFrame) -> list[tuple]:
    return [tuple(None if pd.isna(v) else v for v in r) for r in frame.itertuples(index=False, name=None)]


def test_one_row_per_prompt_message_then_per_choice() -> None:
    chat = chat_completions_frame(
        [
            completion("b", DAY + 86_400_000 - 1, [{"role": "user", "content": "late ✓"}], []),
            completion(
                "a",
                DAY,
                [{"role": "system", "content": "be brief"}, {"role": "user", "content": 'say "hi"\n', "name": "zoë"}],
                [
                    {"index": 1, "message": {"role": "assistant", "content": "second"}},
                    {"index": 0, "message": {"role": "assistant", "content": "first", "name": "bot"}},
                ],
            ),
            completion("c", DAY + 86_400_000, [], []),  # next day, nothing to list
        ]
    )
    messages = chat_messages_frame(chat[[c.name for c in MESSAGE_SOURCE_COLUMNS]])
    day = pd.Timestamp("2026-01-01")
    assert rows(messages) == [
        (day, "a", "prompt", 0, None, "system", None, "be brief"),
        (day, "a", "prompt", 1, None, "user", "zoë", 'say "hi"\n'),
        (day, "a", "choice", 0, 1, "assistant", None, "second"),  # positions follow the API's order
        (day, "a", "choice", 1, 0, "assistant", "bot", "first"),
        (day, "b", "prompt", 0, None, "user", None, "late ✓"),
    ]
    expected = [(c.name, c.dtype) for c in CHAT_MESSAGES_COLUMNS]
    assert [(n, str(t)) for n, t in messages.dtypes.items()] == expected
    empty = chat_messages_frame(chat.iloc[:0])
    assert (
        [(n, str(t)) for n, t in empty.dtypes.items()]
        == expected
        == [(n, str(t)) for n, t in empty_frame(CHAT_MESSAGES_COLUMNS).dtypes.items()]
    )


def test_the_vectorised_reading_equals_the_cell_by_cell_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from cloudglue_dagster.tables import frames

    dataset = Dataset(FIRST, LAST, per_day=40, seed=5)
    chat = chat_completions_frame(parse_completion(r) for d in dataset.days for r in dataset.records(d))
    chat = chat[[c.name for c in MESSAGE_SOURCE_COLUMNS]]
    slow = frames.typed_frame(frames._message_columns_cell_by_cell(chat), CHAT_MESSAGES_COLUMNS)
    monkeypatch.setattr(frames, "_message_columns_cell_by_cell", None)  # the fast path must not need it
    fast = chat_messages_frame(chat)
    pd.testing.assert_frame_equal(fast, slow, check_exact=True)
    assert len(fast) == sum(
        len(r["payload"].get("messages") or []) + len(r["choices"]) for d in dataset.days for r in dataset.records(d)
    )


def test_json_this_package_does_not_write_is_read_cell_by_cell() -> None:
    """Stored JSON from elsewhere: a non-string content is kept as its JSON, an item that is
    not an object is skipped, a choice without a message or an index gets nulls, a null cell
    lists nothing."""
    chat = pd.DataFrame(
        {
            "id": pd.Series(["a", "b", "c"], dtype="string"),
            "created_at": pd.to_datetime([DAY, DAY + 1, DAY + 2], unit="ms", utc=True),
            "payload_messages": pd.Series(
                ['[{"role":"user","content":[{"type":"text","text":"hé"}]},"junk",{"role":"user"}]', None, "[]"],
                dtype="string",
            ),
            "choices": pd.Series(
                [
                    '[{"index":0},{"message":null},{"index":1.0,"message":{"role":"assistant","content":7}}]',
                    '[{"index":3,"message":{"role":"assistant","content":"ok","name":null}}]',
                    "[]",
                ],
                dtype="string",
            ),
        }
    )
    day = pd.Timestamp("2026-01-01")
    assert rows(chat_messages_frame(chat)) == [
        (day, "a", "prompt", 0, None, "user", None, '[{"type":"text","text":"hé"}]'),
        (day, "a", "prompt", 1, None, "user", None, None),
        (day, "a", "choice", 0, 0, None, None, None),
        (day, "a", "choice", 1, None, None, None, None),
        (day, "a", "choice", 2, 1, "assistant", None, "7"),
        (day, "b", "choice", 0, 3, "assistant", None, "ok"),
    ]


def test_message_check_rules() -> None:
    chat = chat_completions_frame(
        [
            completion(
                "a",
                DAY,
                [{"role": "user", "content": "q"}],
                [{"index": 0, "message": {"role": "assistant", "content": "r"}}],
            ),
            completion("b", DAY + 1, [{"role": "user", "content": "q"}], []),
        ]
    )
    messages = chat_messages_frame(chat)
    assert duplicate_message_keys(messages) == [] and message_count_mismatches(messages, chat) == []
    doubled = pd.concat([messages, messages.iloc[:1]], ignore_index=True)
    assert duplicate_message_keys(doubled) == ["a/prompt/0"]
    assert message_count_mismatches(doubled, chat) == ["a"]
    assert message_count_mismatches(messages[messages["completion_id"] != "b"], chat) == ["b"]  # rows missing
    assert message_count_mismatches(messages, chat[chat["id"] == "a"]) == ["b"]  # rows of an unknown completion
    assert message_count_mismatches(messages.iloc[:0], chat.iloc[:0]) == []


def test_message_check_rules_judge_rows_no_completion_names_and_counts_chat_does_not_know() -> None:
    chat = chat_completions_frame(
        [
            completion("a", DAY, [{"role": "user", "content": "q"}], []),
            completion("b", DAY + 1, [{"role": "user", "content": "q"}], []),
            completion("c", DAY + 2, [{"role": "user", "content": "q"}], []),
        ]
    )
    messages = chat_messages_frame(chat)
    orphan = pd.concat([messages, messages.iloc[:1]], ignore_index=True)
    orphan.loc[3, "completion_id"] = pd.NA  # a row that names no completion
    orphan.loc[2, "source"] = "tool"  # neither prompt nor choice: c now lacks its prompt row
    unknown = chat.copy()
    unknown.loc[1, "message_count"] = pd.NA  # b's count is not known: nothing to match
    assert message_count_mismatches(orphan, unknown) == ["<NA>", "b", "c"]
    assert duplicate_message_keys(orphan) == []  # the copied row now has a key of its own
    # A completion held twice (a listing that repeated it) is judged by its last row.
    twice = pd.concat([chat, chat.iloc[:1].assign(message_count=2)], ignore_index=True)
    assert message_count_mismatches(messages, twice) == ["a"]


@pytest.fixture
def emu():
    with Emulator(
        Dataset(FIRST, LAST, per_day=30, seed=11, empty_days=[dt.date(2026, 3, 4)]), api_key=TEST_KEY
    ) as server:
        yield server


def expected_rows(emu: Emulator, day: dt.date) -> set[tuple]:
    out = set()
    for raw in emu.records(day):
        for i, m in enumerate(raw["payload"].get("messages") or []):
            out.add((raw["id"], "prompt", i, None, m["role"], m.get("name"), m["content"]))
        for i, c in enumerate(raw["choices"]):
            m = c["message"]
            out.add((raw["id"], "choice", i, c["index"], m["role"], m.get("name"), m["content"]))
    return out


def test_messages_equal_the_api_records_per_day(emu: Emulator, pipeline_factory) -> None:
    pipeline = pipeline_factory(emu, "2026-03-01")
    result = pipeline.materialize("2026-03-02", "2026-03-05")
    assert result.success
    table = pipeline.table("chat_messages")
    days = day_range(dt.date(2026, 3, 2), dt.date(2026, 3, 5))
    metadata = {
        e.partition: {k: v.value for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
        if e.asset_key.path[-1] == "chat_messages"
    }
    for day in days:
        got = table[table["date"] == pd.Timestamp(day)].drop(columns="date")
        assert set(rows(got)) == expected_rows(emu, day), day
        assert len(got) == len(expected_rows(emu, day))  # no duplicates
        assert metadata[day.isoformat()]["dagster/partition_row_count"] == len(got)
        assert metadata[day.isoformat()]["completions"] == got["completion_id"].nunique()
    assert metadata["2026-03-04"]["dagster/partition_row_count"] == 0  # the empty day
    checks = {
        (c.check_name, c.partition): c.passed
        for c in result.get_asset_check_evaluations()
        if c.asset_key == pipeline.built.keys["chat_messages"]
    }
    assert checks == {("rows_valid", d.isoformat()): True for d in days}


def test_chat_messages_partitions_on_date_and_depends_on_chat_completions(pipeline_factory, emu: Emulator) -> None:
    built = pipeline_factory(emu, "2026-03-01").built
    spec = built.assets_def.specs_by_key[built.keys["chat_messages"]]
    assert spec.metadata["partition_expr"] == "date"
    assert {d.asset_key for d in spec.deps} == {built.keys["chat_completions"]}
    # Run alone, it reads only its source columns of the stored chat_completions.
    assert list(tables_for({})["chat_messages"].source_columns) == [c.name for c in MESSAGE_SOURCE_COLUMNS]


def test_counts_check_flags_the_day_whose_stored_completions_disagree(emu: Emulator, pipeline_factory) -> None:
    pipeline = pipeline_factory(emu, "2026-03-01")
    assert pipeline.materialize("2026-03-02", "2026-03-03").success
    conn = duckdb.connect(str(pipeline.database))
    victim = conn.execute(
        "SELECT id FROM cloudglue.chat_completions WHERE created_at >= '2026-03-03' LIMIT 1"
    ).fetchone()[0]
    conn.execute("UPDATE cloudglue.chat_completions SET message_count = message_count + 1 WHERE id = ?", [victim])
    conn.close()
    # chat_messages alone: built from the chat_completions rows stored, as they are now.
    result = pipeline.materialize("2026-03-02", "2026-03-03", selection=[pipeline.built.keys["chat_messages"]])
    outcomes = {(c.check_name, c.partition): c for c in result.get_asset_check_evaluations()}
    bad = outcomes[("rows_valid", "2026-03-03")]
    assert not bad.passed and bad.metadata["counts_match_chat_completions.examples"].value == victim
    assert bad.metadata["failed_rules"].value == "counts_match_chat_completions"  # the keys are still unique
    assert outcomes[("rows_valid", "2026-03-02")].passed
