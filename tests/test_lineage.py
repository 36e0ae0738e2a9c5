"""Dagster's own conventions on the assets: column lineage, per-model numbers, freshness policies.

The lineage table is held against the column contracts; real runs against the emulator carry
``dagster/column_lineage`` and ``by_model/...`` numbers on each partition's materialization; the
bundled definitions give every asset a ``FreshnessPolicy``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from support.pipeline import TEST_KEY, Pipeline

from cloudglue_dagster import CloudglueTranslator, CloudglueTranslatorData, ModelPrice, build_cloudglue_assets
from cloudglue_dagster.definitions import build_definitions
from cloudglue_dagster.emulator import Dataset, Emulator, ResponsesDataset
from cloudglue_dagster.tables.frames import (
    CHAT_COMPLETIONS_COLUMNS,
    CHAT_MESSAGES_COLUMNS,
    COLLECTION_USAGE_COLUMNS,
    TOKEN_USAGE_COLUMNS,
)
from cloudglue_dagster.tables.lineage import LINEAGE
from cloudglue_dagster.tables.spend import LLM_USAGE_COLUMNS, RESPONSES_COLUMNS

CONTRACTS = {
    "chat_completions": CHAT_COMPLETIONS_COLUMNS,
    "chat_messages": CHAT_MESSAGES_COLUMNS,
    "token_usage": TOKEN_USAGE_COLUMNS,
    "collection_usage": COLLECTION_USAGE_COLUMNS,
    "responses": RESPONSES_COLUMNS,
    "llm_usage": LLM_USAGE_COLUMNS,
}
DAY = dt.date(2026, 3, 2)


@pytest.mark.parametrize("table", sorted(LINEAGE))
def test_the_lineage_names_every_column_of_a_derived_table_and_only_columns_that_exist(table: str) -> None:
    assert set(LINEAGE[table]) == {c.name for c in CONTRACTS[table]}
    for column, sources in LINEAGE[table].items():
        for source, name in sources:
            assert name in {c.name for c in CONTRACTS[source]}, (table, column, source, name)
    assert set(LINEAGE) == set(CONTRACTS) - {"chat_completions", "responses"}  # the API's tables have none


def _materializations(result: dg.ExecuteInProcessResult, table: str) -> dict[str, dict[str, Any]]:
    return {
        str(e.partition): e.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.asset_key.path[-1] == table
    }


def test_derived_tables_carry_column_lineage_and_usage_tables_per_model_numbers(tmp_path: Path) -> None:
    responses = ResponsesDataset(DAY, DAY, per_day=20, seed=3)
    with Emulator(Dataset(DAY, DAY, per_day=30, seed=3), responses=responses, api_key=TEST_KEY) as emu:
        prices = {"nimbus-001": ModelPrice(1.0, 2.0)}
        pipeline = Pipeline(emu, tmp_path / "w.duckdb", "2026-03-01", responses=True, prices=prices)
        result = pipeline.materialize(DAY.isoformat())
        assert result.success
        keys = pipeline.built.keys
        usage = _materializations(result, "token_usage")[DAY.isoformat()]
        lineage = usage["dagster/column_lineage"].value
        assert [(d.asset_key, d.column_name) for d in lineage.deps_by_column["prompt_tokens"]] == [
            (keys["chat_completions"], "prompt_tokens")
        ]
        truth = emu.ground_truth(DAY)
        for model, count in truth.by_model.items():
            assert usage[f"by_model/{model}/requests"].value == count
        assert usage["by_model/nimbus-001/cost_usd"].value > 0
        assert "by_model/nimbus-002/cost_usd" not in usage  # no price, no cost figure
        assert sum(usage[f"by_model/{m}/total_tokens"].value for m in truth.by_model) == truth.total_tokens

        spend = _materializations(result, "llm_usage")[DAY.isoformat()]
        sources = {d.asset_key for deps in spend["dagster/column_lineage"].value.deps_by_column.values() for d in deps}
        assert sources == {keys["token_usage"], keys["responses"]}
        answered = emu.responses_ground_truth(DAY)
        for model, count in answered.by_model.items():
            if model is not None:
                assert spend[f"by_model/responses/{model}/requests"].value == count
        assert "dagster/column_lineage" not in _materializations(result, "chat_completions")[DAY.isoformat()]
        messages = _materializations(result, "chat_messages")[DAY.isoformat()]
        assert "content" in messages["dagster/column_lineage"].value.deps_by_column


def test_the_bundled_definitions_give_every_asset_a_freshness_policy_from_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CLOUDGLUE_API_KEY", TEST_KEY)
    defs = build_definitions(start_date="2026-01-01")
    graph = defs.resolve_asset_graph()
    keys = [k for k in graph.get_all_asset_keys() if k.path[0] == "cloudglue"]
    assert {k.path[-1] for k in keys} == {"chat_completions", "chat_messages", "token_usage", "responses", "llm_usage"}
    for key in keys:
        policy = graph.get(key).freshness_policy
        assert isinstance(policy, dg.FreshnessPolicy), key
        assert policy.deadline_cron == "0 6 * * *" and policy.lower_bound_delta == dt.timedelta(hours=5)


def test_a_translators_own_freshness_policy_wins_and_no_deadline_means_no_policy() -> None:
    mine = dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(hours=30))

    class Team(CloudglueTranslator):
        def get_asset_spec(self, data: CloudglueTranslatorData) -> dg.AssetSpec:
            return super().get_asset_spec(data).replace_attributes(freshness_policy=mine)

    built = build_cloudglue_assets(start_date="2026-01-01", translator=Team())
    assert {s.freshness_policy for a in built.assets for s in a.specs} == {mine}
    quiet = build_cloudglue_assets(start_date="2026-01-01", freshness_deadline_hour=None)
    assert {s.freshness_policy for a in quiet.assets for s in a.specs} == {None}
