"""``text_storage``: what the tables keep of the API's texts, under each setting, and its hostile inputs.

The frames come from the emulator's records over real HTTP; the runs are real Dagster runs into
a real DuckDB file. The CLI runs that grep DAGSTER_HOME are in test_text_storage_runs.py.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
from support.pipeline import Pipeline, assert_tables_unchanged, read_table, stored_tables

from cloudglue_dagster import (
    CloudglueClient,
    CloudglueConfigError,
    TextRewriteError,
    build_cloudglue_assets,
    text_hash,
)
from cloudglue_dagster.emulator import Dataset, Emulator
from cloudglue_dagster.emulator.responses import ResponsesDataset
from cloudglue_dagster.tables.frames import CHAT_COMPLETIONS_COLUMNS, chat_completions_frame, chat_messages_frame
from cloudglue_dagster.tables.spend import RESPONSES_COLUMNS
from cloudglue_dagster.tables.texts import (
    STRUCTURE_KEYS,
    TextPolicy,
    stored_texts,
)

KEY = "k3y-for-the-text-hashes-0123456789"
HEX64 = re.compile(r"[0-9a-f]{64}")
TEXT_COLUMNS = ["prompt", "response", "filter", "payload_messages", "choices"]
JSON_COLUMNS = ["filter", "payload_messages", "choices"]
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")


@pytest.fixture(scope="module")
def chat() -> pd.DataFrame:
    """Three days of the emulator's completions, as chat_completions_frame builds them."""
    with Emulator(Dataset(dt.date(2026, 1, 1), dt.date(2026, 1, 3), per_day=60, seed=4), api_key="emulator-key") as emu:
        client = CloudglueClient("emulator-key", emu.base_url)
        records = list(
            client.iter_chat_completions(created_after=dt.date(2025, 12, 31), created_before=dt.date(2026, 1, 4))
        )
    return chat_completions_frame(records)


def json_leaves(value: Any, key: str | None = None) -> list[tuple[str | None, Any]]:
    """Every (key, string or null value) of a JSON value."""
    if isinstance(value, list):
        return [leaf for item in value for leaf in json_leaves(item, key)]
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in json_leaves(v, k)]
    return [(key, value)] if value is None or isinstance(value, str) else []


def skeleton(cell: Any) -> Any:
    """A JSON cell with its texts blanked: what every setting must keep."""
    if cell is None or cell is pd.NA:
        return None

    def blank(value: Any, key: str | None = None) -> Any:
        if isinstance(value, list):
            return [blank(v, key) for v in value]
        if isinstance(value, dict):
            return {k: blank(v, k) for k, v in value.items()}
        text = value is None or isinstance(value, str)  # "none" stores a text as null
        return "<text>" if text and key not in STRUCTURE_KEYS else value

    return blank(json.loads(cell))


def test_the_hash_is_hmac_sha256_of_the_text_under_the_key_as_hex() -> None:
    text = "Where does the speaker mention the launch? café 東京"
    expected = hmac.new(KEY.encode(), text.encode(), "sha256").hexdigest()
    assert text_hash(text, KEY) == text_hash(text, KEY.encode()) == expected
    assert text_hash(text, f"  {KEY}\n") == expected  # a key read from a file keeps its line break
    assert text_hash(text, KEY + "x") != expected and text_hash(text + " ", KEY) != expected
    assert HEX64.fullmatch(text_hash("\ud800 a lone surrogate, which JSON can carry", KEY))


def test_full_storage_without_a_hook_returns_the_same_frame(chat: pd.DataFrame) -> None:
    assert stored_texts(chat, CHAT_COMPLETIONS_COLUMNS, TextPolicy()) is chat


@pytest.mark.parametrize("storage", ["hash", "none"])
def test_every_text_is_replaced_and_everything_else_is_kept(chat: pd.DataFrame, storage: str) -> None:
    stored = stored_texts(chat, CHAT_COMPLETIONS_COLUMNS, TextPolicy(storage, KEY.encode()))  # type: ignore[arg-type]
    assert list(stored.dtypes) == list(chat.dtypes) and len(stored) == len(chat)
    others = [c for c in chat.columns if c not in TEXT_COLUMNS]
    pd.testing.assert_frame_equal(stored[others], chat[others])
    for column in ("prompt", "response"):
        before, after = chat[column], stored[column]
        if storage == "none":
            assert after.isna().all()
        else:
            assert after.isna().equals(before.isna())
            assert [text_hash(t, KEY) for t in before.dropna()] == list(after.dropna())
    for column in JSON_COLUMNS:
        assert [skeleton(c) for c in stored[column]] == [skeleton(c) for c in chat[column]], column
        texts = [
            v for cell in stored[column].dropna() for k, v in json_leaves(json.loads(cell)) if k not in STRUCTURE_KEYS
        ]
        assert texts, column
        assert all(v is None for v in texts) if storage == "none" else all(HEX64.fullmatch(v) for v in texts), column
    assert chat["filter"].notna().any() and (chat["message_count"] > 1).any()


def test_hashed_texts_join_across_columns_and_tables(chat: pd.DataFrame) -> None:
    """The prompt column, the prompt's message in payload_messages and chat_messages' content
    hold the same value for the same text; chat_messages keeps its rows, roles and positions."""
    stored = stored_texts(chat, CHAT_COMPLETIONS_COLUMNS, TextPolicy("hash", KEY.encode()))
    messages, plain = chat_messages_frame(stored), chat_messages_frame(chat)
    assert len(messages) == len(plain)
    kept = ["date", "completion_id", "source", "position", "choice_index", "role"]
    pd.testing.assert_frame_equal(messages[kept], plain[kept])
    assert messages["content"].tolist() == [text_hash(t, KEY) for t in plain["content"]]
    assert messages["name"].isna().equals(plain["name"].isna()) and plain["name"].notna().any()
    last_user = messages[messages["role"] == "user"].groupby("completion_id")["content"].last()
    assert (stored.set_index("id")["prompt"].loc[last_user.index] == last_user).all()


def test_a_rewrite_hook_applies_to_every_text_once_and_alike_in_every_column(chat: pd.DataFrame) -> None:
    """The hook sees every text of the text columns (each distinct text once a day) and its
    answer is what is stored: in prompt, in payload_messages and so in chat_messages."""
    seen: list[str] = []

    def redact(text: str) -> str:
        seen.append(text)
        return "[redacted] " + text[:3]

    stored = stored_texts(chat, CHAT_COMPLETIONS_COLUMNS, TextPolicy(rewrite=redact))
    assert len(seen) == len(set(seen))
    assert set(stored["prompt"].dropna()) == {"[redacted] " + t[:3] for t in chat["prompt"].dropna()}
    messages = chat_messages_frame(stored)
    assert messages["content"].str.startswith("[redacted] ").all()
    assert (messages.loc[messages["name"].notna(), "name"].str.startswith("[redacted] ")).all()
    leaves = [v for c in stored["filter"].dropna() for k, v in json_leaves(json.loads(c)) if k not in STRUCTURE_KEYS]
    assert leaves and all(v.startswith("[redacted] ") for v in leaves)
    # With hash, the hook's answer is what is hashed.
    hashed = stored_texts(chat, CHAT_COMPLETIONS_COLUMNS, TextPolicy("hash", KEY.encode(), redact))
    assert set(hashed["prompt"].dropna()) == {text_hash("[redacted] " + t[:3], KEY) for t in chat["prompt"].dropna()}


def test_a_hook_redacting_e_mail_addresses_keeps_the_rest_of_the_text() -> None:
    frame = pd.DataFrame({c.name: pd.array([], dtype=c.dtype) for c in RESPONSES_COLUMNS})
    frame = pd.concat(
        [frame, pd.DataFrame({"id": ["resp_1", "resp_2"], "instructions": ["Write to ana@example.com today.", None]})],
        ignore_index=True,
    ).astype({c.name: c.dtype for c in RESPONSES_COLUMNS})
    stored = stored_texts(frame, RESPONSES_COLUMNS, TextPolicy(rewrite=lambda t: EMAIL.sub("<email>", t)))
    assert stored["instructions"].tolist()[0] == "Write to <email> today."
    assert stored["instructions"].isna().tolist() == [False, True]


def test_a_hook_returning_none_stores_null_and_one_returning_a_non_text_fails_naming_the_row(
    chat: pd.DataFrame,
) -> None:
    stored = stored_texts(chat, CHAT_COMPLETIONS_COLUMNS, TextPolicy(rewrite=lambda t: None))
    assert stored["prompt"].isna().all() and stored["response"].isna().all()
    with pytest.raises(TextRewriteError, match=r"must return a str or None, got int .* column 'prompt' of row '"):
        stored_texts(chat, CHAT_COMPLETIONS_COLUMNS, TextPolicy(rewrite=lambda t: 42))  # type: ignore[arg-type,return-value]


def test_a_failing_hook_fails_without_showing_the_text_unless_texts_are_stored_anyway(chat: pd.DataFrame) -> None:
    def quoting(text: str) -> str:
        raise ValueError(f"cannot redact {text!r}")

    with pytest.raises(TextRewriteError) as hashed:
        stored_texts(chat, CHAT_COMPLETIONS_COLUMNS, TextPolicy("hash", KEY.encode(), quoting))
    first = chat["prompt"].dropna().iloc[0]
    assert "ValueError" in str(hashed.value) and "not shown" in str(hashed.value)
    assert first[:20] not in str(hashed.value) and hashed.value.__cause__ is None and hashed.value.__suppress_context__
    with pytest.raises(TextRewriteError) as full:
        stored_texts(chat, CHAT_COMPLETIONS_COLUMNS, TextPolicy("full", None, quoting))
    assert isinstance(full.value.__cause__, ValueError)


def test_a_json_cell_that_is_not_json_is_one_text(chat: pd.DataFrame) -> None:
    broken = chat.head(3).assign(filter=pd.array(["{not json", None, '{"a": "b"}'], dtype="string"))
    stored = stored_texts(broken, CHAT_COMPLETIONS_COLUMNS, TextPolicy("hash", KEY.encode()))
    assert stored["filter"].tolist()[0] == text_hash("{not json", KEY) and stored["filter"].isna().tolist()[1]
    assert json.loads(stored["filter"].tolist()[2]) == {"a": text_hash("b", KEY)}


# -- the options: checked at load, the key never shown ---------------------------------------------


def build(**options: Any) -> Any:
    return build_cloudglue_assets(start_date="2026-01-01", **options)


def test_a_bad_setting_fails_at_load_naming_the_choices() -> None:
    with pytest.raises(CloudglueConfigError, match=r"text_storage must be one of full, hash, none; got 'hashed'"):
        build(text_storage="hashed")
    with pytest.raises(CloudglueConfigError, match=r"text_rewrite must be a function .* got str"):
        build(text_rewrite="my_module:redact")


def test_a_short_key_fails_at_load_without_being_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(CloudglueConfigError, match=r"the hash key \(text_hash_key\) has 9 characters") as literal:
        build(text_storage="hash", text_hash_key="short-key")
    assert "short-key" not in str(literal.value)
    monkeypatch.setenv("MY_TEXT_KEY", "tiny-secret")
    with pytest.raises(CloudglueConfigError, match=r"environment variable MY_TEXT_KEY\) has 11 characters") as env:
        build(text_storage="hash", text_hash_key=dg.EnvVar("MY_TEXT_KEY"))
    assert "tiny-secret" not in str(env.value)
    build(text_storage="full", text_hash_key=dg.EnvVar("MY_TEXT_KEY"))  # not used: not checked


def test_a_variable_name_given_as_the_key_is_refused_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEAM_TEXT_HASH_KEY", KEY)
    with pytest.raises(CloudglueConfigError, match=r"pass dg.EnvVar\('TEAM_TEXT_HASH_KEY'\)"):
        build(text_storage="hash", text_hash_key="TEAM_TEXT_HASH_KEY")


def test_the_key_is_in_no_repr_and_in_no_definition(monkeypatch: pytest.MonkeyPatch) -> None:
    from cloudglue_dagster.assets.options import AssetOptions

    options = AssetOptions.of(start_date="2026-01-01", text_storage="hash", text_hash_key=KEY)
    assert KEY not in repr(options) and KEY not in repr(options.text_settings)
    assert KEY not in repr(options.text_settings.policy())
    defs = build(text_storage="hash", text_hash_key=KEY).definitions()
    specs = [spec for a in defs.assets or [] for spec in a.specs]  # type: ignore[union-attr]
    assert specs and all(KEY not in repr(spec) for spec in specs)


def test_the_column_schema_says_what_each_text_column_holds() -> None:
    built = build(text_storage="hash")
    spec = next(s for s in built.assets_def.specs if s.key == built.keys["chat_completions"])
    described = {c.name: c.description for c in spec.metadata["dagster/column_schema"].columns}
    assert described["prompt"].endswith("Under text_storage='hash': its HMAC-SHA256 (64 hex digits).")
    assert "each text in it replaced by its HMAC-SHA256" in described["payload_messages"]
    assert "text_storage" not in described["id"]
    full = next(s for s in build().assets_def.specs if s.key == built.keys["chat_completions"])
    assert all("text_storage" not in c.description for c in full.metadata["dagster/column_schema"].columns)


# -- real runs -------------------------------------------------------------------------------------


def assert_prompts_hashed(
    chat: pd.DataFrame, emu: Emulator, days: list[dt.date], rewrite: Callable[[str], str] = str
) -> None:
    """``chat`` holds every completion of ``days`` once, its ``prompt`` the keyed hash of its
    last user message as served (after ``rewrite``)."""
    served = {r["id"]: r for d in days for r in emu.dataset.records(d, "ms")}
    assert sorted(chat["id"]) == sorted(served)
    for row in chat.itertuples():
        users = [m["content"] for m in served[row.id]["payload"]["messages"] if m["role"] == "user"]
        assert row.prompt == text_hash(rewrite(users[-1]), KEY)


FIRST, LAST = dt.date(2026, 3, 1), dt.date(2026, 3, 2)
ALL_TABLES = ("chat_completions", "chat_messages", "token_usage", "responses", "llm_usage")


@pytest.fixture(scope="module")
def emu() -> Any:
    before, after = FIRST - dt.timedelta(days=1), LAST + dt.timedelta(days=1)
    responses = ResponsesDataset(before, after, per_day=6, seed=5, empty_days=())
    dataset = Dataset(before, after, per_day=12, seed=5, empty_days=())
    with Emulator(dataset, responses=responses, api_key="sk-cloudglue-test-0123456789abcdef") as running:
        yield running


def test_a_hash_run_without_its_key_fails_at_once_before_any_request(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLOUDGLUE_TEXT_HASH_KEY", raising=False)
    database = tmp_path / "w.duckdb"
    assert Pipeline(emu, database, FIRST.isoformat(), responses=True).materialize(FIRST.isoformat()).success
    stored = stored_tables(database, ALL_TABLES)
    pipeline = Pipeline(emu, database, FIRST.isoformat(), text_storage="hash", responses=True)
    before = len(emu.request_log)
    result = pipeline.materialize(FIRST.isoformat(), raise_on_error=False)
    assert not result.success
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failures
    for failure in failures:
        message = failure.step_failure_data.error.to_string()
        assert "CloudglueConfigError" in message and "CLOUDGLUE_TEXT_HASH_KEY is not set" in message
    assert len(emu.request_log) == before
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert_tables_unchanged(stored, database)


@pytest.mark.parametrize("fails_on", [1, 10])
def test_a_failing_hook_fails_the_run_at_once_and_leaves_every_table_as_it_was(
    emu: Emulator, tmp_path: Path, fails_on: int
) -> None:
    """A hook failing on its first text fails both steps; one failing on the tenth text of the
    chat completions' step fails it in the middle of the day. Either way no day is written half
    rewritten: every table holds what it held, and the error is not retried."""
    responses = fails_on == 1  # each step calls the hook: the tenth text is the chat step's alone
    tables = ALL_TABLES if responses else ALL_TABLES[:3]
    database = tmp_path / "w.duckdb"
    assert Pipeline(emu, database, FIRST.isoformat(), responses=responses).materialize(FIRST.isoformat()).success
    stored = stored_tables(database, tables)
    seen: list[str] = []

    def failing(text: str) -> str:
        seen.append(text)
        if len(seen) >= fails_on:
            raise ValueError(f"cannot redact {text!r}")
        return text.upper()

    pipeline = Pipeline(emu, database, FIRST.isoformat(), text_rewrite=failing, responses=responses)
    result = pipeline.materialize(FIRST.isoformat(), raise_on_error=False)
    assert not result.success and len(seen) >= fails_on
    failures = [
        e.step_failure_data.error.to_string() for e in result.all_events if e.event_type_value == "STEP_FAILURE"
    ]
    assert len(failures) == (2 if responses else 1)
    assert all("TextRewriteError" in m and "text_rewrite raised ValueError" in m for m in failures)
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert_tables_unchanged(stored, database)


def test_re_loading_a_day_stored_in_full_under_hash_rewrites_its_texts_and_keeps_its_rows(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUDGLUE_TEXT_HASH_KEY", KEY)
    database = tmp_path / "w.duckdb"
    assert Pipeline(emu, database, FIRST.isoformat(), responses=True).materialize(FIRST.isoformat()).success
    full = stored_tables(database, ALL_TABLES)
    hashed = Pipeline(emu, database, FIRST.isoformat(), text_storage="hash", responses=True)
    assert hashed.materialize(FIRST.isoformat()).success  # the shrink guard sees the same row counts
    now = stored_tables(database, ALL_TABLES)
    for table in ALL_TABLES:
        assert len(now[table]) == len(full[table]), table
    assert sorted(now["chat_completions"]["prompt"]) == sorted(
        text_hash(t, KEY) for t in full["chat_completions"]["prompt"]
    )
    assert sorted(now["chat_messages"]["content"]) == sorted(
        text_hash(t, KEY) for t in full["chat_messages"]["content"]
    )
    kept = ["id", "created_at", "model", "prompt_tokens", "completion_tokens", "total_tokens", "message_count"]
    pd.testing.assert_frame_equal(
        now["chat_completions"][kept].sort_values("id", ignore_index=True),
        full["chat_completions"][kept].sort_values("id", ignore_index=True),
    )
    pd.testing.assert_frame_equal(now["token_usage"], full["token_usage"])
    pd.testing.assert_frame_equal(now["llm_usage"], full["llm_usage"])


def test_a_run_of_the_derived_tables_alone_needs_no_key(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUDGLUE_TEXT_HASH_KEY", KEY)
    pipeline = Pipeline(emu, tmp_path / "w.duckdb", FIRST.isoformat(), text_storage="hash")
    assert pipeline.materialize(FIRST.isoformat()).success
    monkeypatch.delenv("CLOUDGLUE_TEXT_HASH_KEY")
    token_usage = [pipeline.built.keys["chat_messages"], pipeline.built.keys["token_usage"]]
    assert pipeline.materialize(FIRST.isoformat(), selection=token_usage).success
    contents = pipeline.table("chat_messages")["content"]
    assert len(contents) and contents.str.fullmatch(HEX64.pattern).all()


# -- YAML and the bundled definitions ------------------------------------------------------------

REDACT_MODULE = """
import re

EMAIL = re.compile(r"[\\w.+-]+@[\\w-]+\\.[\\w.]+")


def redact_emails(text):
    return EMAIL.sub("<email>", text)
"""


def test_yaml_hashes_with_the_named_variable_after_the_imported_hook(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster.components.testing import create_defs_folder_sandbox

    (tmp_path / "team_redact.py").write_text(REDACT_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("ACME_KEY", "sk-cloudglue-test-0123456789abcdef")
    monkeypatch.setenv("ACME_TEXT_KEY", KEY)
    database = tmp_path / "w.duckdb"
    attributes = {
        "account": {"api_key_env_var": "ACME_KEY", "base_url": emu.base_url},
        "start_date": FIRST.isoformat(),
        "io_manager": {"duckdb_path": str(database)},
        "text_storage": "hash",
        "text_hash_key_env_var": "ACME_TEXT_KEY",
        "text_rewrite": "team_redact:redact_emails",
    }
    with create_defs_folder_sandbox() as sandbox:
        folder = sandbox.defs_folder_path / "acme"
        folder.mkdir()
        (folder / "defs.yaml").write_text(
            json.dumps({"type": "cloudglue_dagster.CloudglueComponent", "attributes": attributes})
        )
        with sandbox.build_all_defs() as defs:
            job = defs.resolve_job_def("cloudglue_daily")
            assert job.execute_in_process(
                instance=dg.DagsterInstance.ephemeral(), partition_key=FIRST.isoformat()
            ).success
    import team_redact  # type: ignore[import-not-found]

    assert_prompts_hashed(read_table(database, "chat_completions"), emu, [FIRST], team_redact.redact_emails)
    instructions = read_table(database, "responses")["instructions"].dropna()
    assert len(instructions) and instructions.str.fullmatch(HEX64.pattern).all()


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        (
            {"text_hash_key_env_var": "sk-9f8e7d6c5b4a39281706"},
            "text_hash_key_env_var must be the NAME of an environment",
        ),
        ({"text_rewrite": "no_such_team_module:redact"}, "text_rewrite: cannot import 'no_such_team_module'"),
        ({"text_rewrite": "json:no_such_function"}, "text_rewrite: 'json' has no 'no_such_function'"),
        ({"text_rewrite": "json:__doc__"}, "is a str, not a function"),
        ({"text_rewrite": "redact"}, "text_rewrite must be an import path"),
    ],
)
def test_yaml_mistakes_fail_at_load_naming_the_key(attributes: dict[str, Any], message: str) -> None:
    from dagster.components.testing.utils import component_defs

    from cloudglue_dagster import CloudglueComponent

    component = CloudglueComponent.model_validate(
        {"account": {"api_key_env_var": "K"}, "start_date": "2026-01-01", "text_storage": "hash", **attributes}
    )
    with pytest.raises(CloudglueConfigError) as failure:
        component_defs(component=component)
    assert message in str(failure.value)
    assert "sk-9f8e7d6c5b4a39281706" not in str(failure.value)


def test_yaml_refuses_a_setting_that_is_not_one_of_the_three() -> None:
    from pydantic import ValidationError

    from cloudglue_dagster import CloudglueComponent

    with pytest.raises(ValidationError, match="text_storage"):
        CloudglueComponent.model_validate(
            {"account": {"api_key_env_var": "K"}, "start_date": "2026-01-01", "text_storage": "hashed"}
        )


def test_the_bundled_definitions_read_the_setting_and_never_show_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from cloudglue_dagster import definitions as definitions_module

    monkeypatch.setenv("CLOUDGLUE_TEXT_STORAGE", "none")
    defs = definitions_module.build_definitions()
    spec = next(s for a in defs.assets or [] for s in a.specs if s.key.path[-1] == "chat_completions")  # type: ignore[union-attr]
    assert any("text_storage='none'" in (c.description or "") for c in spec.metadata["dagster/column_schema"].columns)
    monkeypatch.setenv("CLOUDGLUE_TEXT_STORAGE", "hash")
    monkeypatch.setenv("CLOUDGLUE_TEXT_HASH_KEY", "short-secret")
    with pytest.raises(CloudglueConfigError) as short:
        definitions_module.build_definitions()
    assert "CLOUDGLUE_TEXT_HASH_KEY) has 12 characters" in str(short.value)
    assert "CLOUDGLUE_TEXT_STORAGE='hash'" in str(short.value)  # the settings read are listed...
    assert "short-secret" not in str(short.value)  # ...but not the key
    monkeypatch.setenv("CLOUDGLUE_TEXT_STORAGE", "HASHED")
    with pytest.raises(CloudglueConfigError, match="text_storage must be one of full, hash, none; got 'HASHED'"):
        definitions_module.build_definitions()


def test_every_text_column_is_a_string_and_the_tables_page_lists_each_under_every_setting() -> None:
    from cloudglue_dagster.tables.frames import CHAT_MESSAGES_COLUMNS

    contracts = {
        "chat_completions": CHAT_COMPLETIONS_COLUMNS,
        "chat_messages": CHAT_MESSAGES_COLUMNS,
        "responses": RESPONSES_COLUMNS,
    }
    marked = [f"{table}.{c.name}" for table, columns in contracts.items() for c in columns if c.text]
    assert all(c.dtype == "string" for columns in contracts.values() for c in columns if c.text)
    page = (Path(__file__).resolve().parents[1] / "docs" / "tables.md").read_text()
    section = page.split("<!-- texts -->", 1)[1].split("<!-- /texts -->", 1)[0]
    rows = re.findall(r"^\| `([a-z_.]+)` \| (.+) \| (.+) \| (.+) \|$", section, flags=re.M)
    assert [r[0] for r in rows] == marked
    for name, _full, hashed, none in rows:
        assert "HMAC-SHA256" in hashed or "hashed" in hashed, name
        assert "null" in none, name


def test_another_io_manager_gets_the_rewritten_rows_too(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through a stock pandas I/O manager (the whole range handed over at the end, not streamed
    by day) the tables hold what they hold through ours."""
    from dagster_duckdb_pandas import DuckDBPandasIOManager

    monkeypatch.setenv("CLOUDGLUE_TEXT_HASH_KEY", KEY)
    pipeline = Pipeline(emu, tmp_path / "w.duckdb", FIRST.isoformat(), text_storage="hash", responses=True)
    pipeline.resources["io_manager"] = DuckDBPandasIOManager(database=str(pipeline.database), schema="cloudglue")
    assert pipeline.materialize(FIRST.isoformat(), LAST.isoformat()).success
    assert_prompts_hashed(pipeline.table("chat_completions"), emu, [FIRST, LAST])
    assert pipeline.table("chat_messages")["content"].str.fullmatch(HEX64.pattern).all()
    instructions = pipeline.table("responses")["instructions"].dropna()
    assert len(instructions) and instructions.str.fullmatch(HEX64.pattern).all()


def test_json_nested_as_deep_as_the_api_parser_takes_is_rewritten_and_deeper_fails_clearly(chat: pd.DataFrame) -> None:
    """A message may carry fields the API adds later, nested as deep as a page's parser takes
    (about 990 levels): the texts in them are rewritten without recursion. A cell deeper than
    this process can decode fails naming the row and the column, not with a RecursionError."""
    from cloudglue_dagster import InvalidResponseError

    deep: Any = "a text nested deep"
    for _ in range(900):
        deep = [deep]
    cell = json.dumps([{"role": "user", "content": "hello there", "extra": deep}])
    frame = chat.head(1).assign(payload_messages=pd.array([cell], dtype="string"))
    stored = stored_texts(frame, CHAT_COMPLETIONS_COLUMNS, TextPolicy("hash", KEY.encode()))
    assert stored["payload_messages"].iloc[0].count("[") == cell.count("[")
    assert text_hash("a text nested deep", KEY) in stored["payload_messages"].iloc[0]
    assert "a text nested deep" not in stored["payload_messages"].iloc[0]
    too_deep = frame.assign(payload_messages=pd.array(["[" * 5000 + "]" * 5000], dtype="string"))
    with pytest.raises(InvalidResponseError, match=r"nests too deep .*completion '.*', field 'payload_messages'"):
        stored_texts(too_deep, CHAT_COMPLETIONS_COLUMNS, TextPolicy("hash", KEY.encode()))


def test_json_that_only_pythons_parser_reads_keeps_its_structure(chat: pd.DataFrame) -> None:
    """The careful parser keeps what msgspec refuses (a lone surrogate escape, Infinity, a
    number out of a double's range): such a cell is read and written back by json, its texts
    rewritten, its structure kept, so chat_messages still has its rows."""
    cells = [
        json.dumps([{"role": "user", "content": "a lone \ud800 surrogate"}], ensure_ascii=False),
        '[{"role":"user","content":"an infinite score","score":Infinity}]',
        '[{"role":"user","content":"a huge one","score":1e400}]',
    ]
    frame = chat.head(3).assign(
        payload_messages=pd.array(cells, dtype="string"), message_count=pd.array([1, 1, 1], dtype="Int64")
    )
    stored = stored_texts(frame, CHAT_COMPLETIONS_COLUMNS, TextPolicy("hash", KEY.encode()))
    contents = ["a lone \ud800 surrogate", "an infinite score", "a huge one"]
    assert [json.loads(c)[0]["content"] for c in stored["payload_messages"]] == [text_hash(t, KEY) for t in contents]
    assert [json.loads(c)[0].get("score") for c in stored["payload_messages"]] == [None, float("inf"), float("inf")]
    messages = chat_messages_frame(stored)
    prompts = messages[messages["source"] == "prompt"]
    assert prompts["content"].tolist() == [text_hash(t, KEY) for t in contents]


def test_a_hash_key_variable_of_your_own_naming_is_not_taken_for_a_misspelling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cloudglue_dagster.environment import misspelt_variables

    monkeypatch.setenv("CLOUDGLUE_TEXT_HASHKEY", KEY)  # close to CLOUDGLUE_TEXT_HASH_KEY
    assert ("CLOUDGLUE_TEXT_HASHKEY", "CLOUDGLUE_TEXT_HASH_KEY") in misspelt_variables()
    build(text_storage="hash", text_hash_key=dg.EnvVar("CLOUDGLUE_TEXT_HASHKEY"))
    assert "CLOUDGLUE_TEXT_HASHKEY" not in [name for name, _ in misspelt_variables()]
