"""CloudglueTranslator: the one override point for keys, groups, owners, tags, kinds, automation."""

from __future__ import annotations

import datetime as dt
import inspect
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster.components.testing import create_defs_folder_sandbox
from support.pipeline import TEST_KEY, Pipeline, read_table

from cloudglue_dagster import (
    CloudglueComponent,
    CloudglueConfigError,
    CloudglueTranslator,
    CloudglueTranslatorData,
    build_cloudglue_assets,
)
from cloudglue_dagster.emulator import Dataset, Emulator

DAYS = (dt.date(2026, 3, 2), dt.date(2026, 3, 3))
TYPE = "cloudglue_dagster.CloudglueComponent"


class TeamTranslator(CloudglueTranslator):
    """What a data team typically changes: its own key layout, owners, tags and kinds."""

    def get_asset_spec(self, data: CloudglueTranslatorData) -> dg.AssetSpec:
        spec = super().get_asset_spec(data)
        return spec.replace_attributes(
            key=dg.AssetKey(["raw", "video", f"cg_{data.table}"]),
            group_name="raw_video",
            owners=["team:ml-platform"],
            kinds={"cloudglue", "duckdb"},
            automation_condition=dg.AutomationCondition.on_missing(),
            # Trying to drop what the assets need: the factory merges it back.
            metadata={"partition_expr": "wrong", "team_note": "owned by ml-platform"},
        ).merge_attributes(tags={"domain": "video"})


def specs_of(built) -> dict[str, dg.AssetSpec]:
    return {spec.key.path[-1]: spec for asset in built.assets for spec in asset.specs}


def test_the_default_translator_keeps_the_documented_keys_and_kinds() -> None:
    specs = specs_of(build_cloudglue_assets(start_date="2026-01-01", key_prefix=["acme", "cg"], group_name="g"))
    assert sorted(specs) == ["chat_completions", "chat_messages", "llm_usage", "responses", "token_usage"]
    chat = specs["chat_completions"]
    assert chat.key == dg.AssetKey(["acme", "cg", "chat_completions"])
    assert chat.group_name == "g" and chat.kinds == {"cloudglue", "pandas", "duckdb"}
    assert chat.automation_condition is None and not chat.owners


def test_a_translator_changes_keys_owners_tags_kinds_and_automation_but_not_the_contract() -> None:
    built = build_cloudglue_assets(start_date="2026-01-01", translator=TeamTranslator())
    specs = specs_of(built)
    assert sorted(specs) == [
        "cg_chat_completions",
        "cg_chat_messages",
        "cg_llm_usage",
        "cg_responses",
        "cg_token_usage",
    ]
    chat = specs["cg_chat_completions"]
    assert chat.key == dg.AssetKey(["raw", "video", "cg_chat_completions"])
    assert chat.group_name == "raw_video" and chat.owners == ["team:ml-platform"]
    assert chat.tags["domain"] == "video" and chat.kinds == {"cloudglue", "duckdb"}
    assert isinstance(chat.automation_condition, dg.AutomationCondition)
    assert chat.metadata["team_note"] == "owned by ml-platform"
    assert chat.metadata["partition_expr"] == "created_at"  # merged after the translator's spec
    assert specs["cg_token_usage"].metadata["partition_expr"] == "date"
    assert {c.name for c in chat.metadata["dagster/column_schema"].columns} >= {"id", "created_at", "model"}
    assert chat.partitions_def == built.partitions_def
    # The downstream tables read the renamed upstream; the job keeps the account's name.
    assert {d.asset_key for d in specs["cg_chat_messages"].deps} == {chat.key}
    assert {d.asset_key for d in specs["cg_token_usage"].deps} == {chat.key}
    assert {d.asset_key for d in specs["cg_llm_usage"].deps} == {specs["cg_token_usage"].key, specs["cg_responses"].key}
    assert specs["cg_llm_usage"].owners == ["team:ml-platform"] and specs["cg_llm_usage"].tags["domain"] == "video"
    assert built.job.name == "cloudglue_daily"


# What the factory adds to a translator's spec: the daily partitions, the dependencies on
# chat_completions, skippable (a run may select any table), and these metadata keys.
FACTORY_METADATA = {"partition_expr", "dagster/column_schema", "dagster/io_manager_key"}
FACTORY_OWNED = {
    "deps",
    "partitions_def",
    "skippable",
    "metadata",
    "freshness_policy",
}  # a policy the translator sets wins


@pytest.mark.parametrize("translator", [CloudglueTranslator(), TeamTranslator()], ids=["default", "team"])
def test_the_built_assets_are_the_translators_specs_plus_what_the_factory_owns(translator) -> None:
    """Every attribute the translator sets reaches the multi-asset unchanged (it is built from the
    specs, not copied field by field); the factory adds only its own."""
    built = build_cloudglue_assets(start_date="2026-01-01", translator=translator, collection_usage=True)
    attributes = set(inspect.signature(dg.AssetSpec.replace_attributes).parameters) - {"self"}
    assert FACTORY_OWNED <= attributes
    by_key = {spec.key: spec for asset in built.assets for spec in asset.specs}
    assert len(by_key) == len(built.keys) == 6
    keys = built.keys
    deps = {
        "chat_completions": set(),
        "responses": set(),
        "llm_usage": {keys["token_usage"], keys["responses"]},
    }
    for table, key in built.keys.items():
        wanted = translator.get_asset_spec(CloudglueTranslatorData(table, ("cloudglue",), "cloudglue", "duckdb"))
        got = by_key[key]
        for attribute in sorted(attributes - FACTORY_OWNED):
            assert getattr(got, attribute) == getattr(wanted, attribute), (table, attribute)
        added = set(got.metadata) - set(wanted.metadata)
        assert added <= FACTORY_METADATA, table
        mine = {k: v for k, v in wanted.metadata.items() if k not in FACTORY_METADATA}
        assert {k: got.metadata[k] for k in mine} == mine, table
        # llm_usage is its own asset (not part of a step that may skip an output): never skipped.
        assert got.partitions_def == built.partitions_def and got.skippable == (table != "llm_usage")
        assert {d.asset_key for d in got.deps} == deps.get(table, {keys["chat_completions"]}), table
        owner = next(a for a in built.assets if key in a.keys)
        assert owner.get_io_manager_key_for_asset_key(key) == "io_manager"


def test_assets_under_translated_keys_materialize_exactly(tmp_path: Path) -> None:
    with Emulator(Dataset(DAYS[0], DAYS[1], per_day=25, seed=3), api_key=TEST_KEY) as emu:
        pipeline = Pipeline(emu, tmp_path / "w.duckdb", "2026-03-01", translator=TeamTranslator())
        result = pipeline.materialize(DAYS[0].isoformat(), DAYS[1].isoformat())
        assert result.success
        assert all(c.passed for c in result.get_asset_check_evaluations())
        # The DuckDB I/O manager names each table after its key's last part.
        chat = read_table(pipeline.database, "cg_chat_completions")
        assert set(chat["id"]) == {i for d in DAYS for i in emu.ground_truth(d).ids}
        usage = read_table(pipeline.database, "cg_token_usage")
        assert int(usage["total_tokens"].sum()) == sum(emu.ground_truth(d).total_tokens for d in DAYS)
        assert len(read_table(pipeline.database, "cg_chat_messages")) > len(chat)


class Returns(CloudglueTranslator):
    def __init__(self, make) -> None:
        self.make = make

    def get_asset_spec(self, data: CloudglueTranslatorData):
        return self.make(super().get_asset_spec(data), data)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda spec, data: spec.replace_attributes(deps=["elsewhere"]), "sets deps"),
        (
            lambda spec, data: spec.replace_attributes(partitions_def=dg.StaticPartitionsDefinition(["a"])),
            "sets partitions_def",
        ),
        (lambda spec, data: spec.replace_attributes(key="same"), "the same asset key"),
        (lambda spec, data: {"key": "a dict"}, "must return a dg.AssetSpec for chat_completions"),
    ],
    ids=["deps", "partitions", "one-key-for-all", "not-a-spec"],
)
def test_a_translator_that_breaks_the_wiring_is_refused_at_load(make, message: str) -> None:
    with pytest.raises(CloudglueConfigError, match=message):
        build_cloudglue_assets(start_date="2026-01-01", translator=Returns(make))


def test_a_translator_that_is_not_one_is_refused() -> None:
    with pytest.raises(CloudglueConfigError, match="translator must be a CloudglueTranslator, got function"):
        build_cloudglue_assets(start_date="2026-01-01", translator=lambda data: None)  # type: ignore[arg-type]


def test_the_component_translation_attribute_templates_each_table(tmp_path: Path) -> None:
    attributes = {
        "account": {"api_key_env_var": "K"},
        "start_date": "2026-01-01",
        "key_prefix": "acme",
        "translation": {
            "key": "raw/{{ account }}_{{ table }}",
            "owners": ["team:video"],
            "tags": {"domain": "video"},
            "group_name": "raw",
            "description": "{{ spec.description }} (Acme)",
        },
    }
    with create_defs_folder_sandbox() as sandbox:
        folder = sandbox.defs_folder_path / "acme"
        folder.mkdir()
        (folder / "defs.yaml").write_text(yaml.safe_dump({"type": TYPE, "attributes": attributes}))
        with sandbox.build_all_defs() as defs:
            specs = {s.key.to_user_string(): s for a in defs.assets or [] for s in a.specs}
            assert sorted(specs) == [
                f"raw/acme_{t}" for t in ("chat_completions", "chat_messages", "llm_usage", "responses", "token_usage")
            ]
            chat = specs["raw/acme_chat_completions"]
            assert chat.owners == ["team:video"] and chat.tags["domain"] == "video" and chat.group_name == "raw"
            assert chat.description.startswith("Every Cloudglue chat completion") and chat.description.endswith(
                "(Acme)"
            )
            assert chat.metadata["partition_expr"] == "created_at"
            assert "dagster/column_schema" in chat.metadata
            assert defs.resolve_job_def("acme_daily") is not None


def test_a_component_subclass_overrides_get_asset_spec() -> None:
    class Tagged(CloudglueComponent):
        def get_asset_spec(self, data: CloudglueTranslatorData) -> dg.AssetSpec:
            return super().get_asset_spec(data).merge_attributes(tags={"table": data.table})

    from dagster.components.testing.utils import component_defs

    component = Tagged.model_validate({"account": {"api_key_env_var": "K"}, "start_date": "2026-01-01"})
    defs = component_defs(component=component)
    tags = {s.key.path[-1]: s.tags.get("table") for a in defs.assets or [] for s in a.specs}
    assert tags == {t: t for t in ("chat_completions", "chat_messages", "token_usage", "responses", "llm_usage")}
