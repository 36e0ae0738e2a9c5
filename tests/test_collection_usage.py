"""collection_usage: token usage per (UTC day, collection, model), reconciled with token_usage."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
from support.pipeline import TEST_KEY, Pipeline, day_range, read_table

from cloudglue_dagster import ModelPrice
from cloudglue_dagster.assets.usage_checks import collection_usage_mismatches
from cloudglue_dagster.emulator import Dataset, Emulator
from cloudglue_dagster.tables.frames import COLLECTION_USAGE_COLUMNS, empty_frame
from cloudglue_dagster.tables.usage import collection_usage_frame, token_usage_frame

FIRST, LAST = dt.date(2026, 4, 1), dt.date(2026, 4, 30)
EMPTY = [dt.date(2026, 4, 9), dt.date(2026, 4, 30)]
PRICES = {"nimbus-001": ModelPrice(0.5, 1.5)}
FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")


def handmade() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "created_at": pd.to_datetime(
                ["2026-03-01T01:00Z", "2026-03-01T02:00Z", "2026-03-01T03:00Z", "2026-03-02T00:00Z"]
            ),
            "model": ["m", "m", "m", "n"],
            "prompt_tokens": pd.array([11, 5, None, 7], dtype="Int64"),
            "completion_tokens": pd.array([3, None, None, 1], dtype="Int64"),
            "total_tokens": pd.array([14, 5, None, 8], dtype="Int64"),
            "collections": ['["z","x","y"]', "[]", '["x","x"]', None],
        }
    )


def test_a_completion_is_split_evenly_in_whole_tokens_and_one_naming_none_goes_to_null() -> None:
    rows = collection_usage_frame(handmade(), {"m": ModelPrice(1.0, 2.0)}).to_dict("records")
    by_key = {(r["date"].date().isoformat(), r["collection"], r["model"]): r for r in rows}
    x, y, z = (by_key["2026-03-01", c, "m"] for c in "xyz")
    assert [x["prompt_tokens"], y["prompt_tokens"], z["prompt_tokens"]] == [4, 4, 3]  # 11 over x, y, z
    assert (x["completions"], x["attributed_completions"]) == (2, pytest.approx(1 + 1 / 3))  # c names x twice
    none_day1 = rows[3]  # sorted by date, collection (null last), model
    assert pd.isna(none_day1["collection"]) and none_day1["prompt_tokens"] == 5
    assert pd.isna(none_day1["completion_tokens"])  # unreported stays null, never zero
    assert x["input_cost"] == pytest.approx(4 / 1e6) and pd.isna(rows[-1]["input_cost"])  # n has no price
    assert pd.isna(rows[-1]["collection"]) and rows[-1]["model"] == "n"


def test_summed_over_collections_every_day_and_model_is_token_usage() -> None:
    chat = handmade()
    assert collection_usage_mismatches(collection_usage_frame(chat, PRICES), token_usage_frame(chat, PRICES)) == []


def test_the_check_rule_names_what_drifted() -> None:
    chat = handmade()
    collections, usage = collection_usage_frame(chat), token_usage_frame(chat)
    drifted = collections.copy()
    drifted.loc[0, "total_tokens"] += 1
    assert collection_usage_mismatches(drifted, usage) == [
        {"model": "m", "column": "total_tokens", "expected": "19", "stored": "20"}
    ]
    missing = collections[collections["model"] != "n"]
    assert collection_usage_mismatches(missing, usage) == [{"model": "n", "column": "model", "in_token_usage": True}]


def test_an_empty_day_has_the_contract_columns_and_dtypes() -> None:
    empty = collection_usage_frame(handmade().iloc[:0])
    assert list(empty.dtypes.astype(str)) == [c.dtype for c in COLLECTION_USAGE_COLUMNS]
    assert empty.dtypes.equals(empty_frame(COLLECTION_USAGE_COLUMNS).dtypes)


def truth(emu: Emulator, days: list[dt.date]) -> dict[tuple[str, str | None, str], dict[str, float]]:
    """The rule computed from the emulator's raw records, independently of the code under test."""
    out: dict[tuple[str, str | None, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for day in days:
        for raw in emu.dataset.records(day, "ms"):
            names = sorted(set(raw["payload"].get("collections") or [])) or [None]
            usage = raw.get("usage") or {}
            for i, name in enumerate(names):
                cell = out[day.isoformat(), name, raw["model"]]
                cell["completions"] += 1
                cell["attributed_completions"] += 1 / len(names)
                for field in FIELDS:
                    if usage.get(field) is not None:
                        tokens = int(usage[field])
                        cell[field] += tokens // len(names) + (1 if i < tokens % len(names) else 0)
    return out


@pytest.fixture
def emu():
    dataset = Dataset(FIRST, LAST, per_day=15, seed=21, empty_days=EMPTY)
    with Emulator(dataset, api_key=TEST_KEY, retry_after_seconds=0) as server:
        yield server


def test_a_30_day_backfill_reconciles_on_every_partition_empty_days_included(emu: Emulator, tmp_path: Path) -> None:
    pipeline = Pipeline(emu, tmp_path / "w.duckdb", "2026-03-31", collection_usage=True, prices=PRICES)
    result = pipeline.materialize(FIRST.isoformat(), LAST.isoformat())
    assert result.success
    days = day_range(FIRST, LAST)
    checks = [c for c in result.get_asset_check_evaluations() if c.check_name == "sums_match_token_usage"]
    assert sorted(c.partition for c in checks) == [d.isoformat() for d in days]  # the empty days too
    assert all(c.passed for c in checks)

    stored = read_table(pipeline.database, "collection_usage")
    expected = truth(emu, days)
    got = {
        (r["date"].date().isoformat(), None if pd.isna(r["collection"]) else r["collection"], r["model"]): r
        for r in stored.to_dict("records")
    }
    assert set(got) == set(expected)
    for key, cell in expected.items():
        row = got[key]
        assert row["completions"] == cell["completions"]
        assert row["attributed_completions"] == pytest.approx(cell["attributed_completions"])
        for field in FIELDS:
            assert (0 if pd.isna(row[field]) else row[field]) == cell[field], (key, field)
    assert not any(d.isoformat() in {k[0] for k in got} for d in EMPTY)
    conn = duckdb.connect(str(pipeline.database), read_only=True)
    try:
        types = conn.execute(
            "SELECT data_type FROM information_schema.columns WHERE table_name = 'collection_usage'"
            " ORDER BY ordinal_position"
        ).fetchall()
    finally:
        conn.close()
    assert [t for (t,) in types] == [
        "TIMESTAMP",
        "VARCHAR",
        "VARCHAR",
        "BIGINT",
        "DOUBLE",
        *["BIGINT"] * 3,
        *["DOUBLE"] * 3,
    ]


def test_a_tampered_day_fails_the_check_on_that_day_only(emu: Emulator, tmp_path: Path) -> None:
    pipeline = Pipeline(emu, tmp_path / "w.duckdb", "2026-03-31", collection_usage=True)
    assert pipeline.materialize("2026-04-02", "2026-04-04").success
    conn = duckdb.connect(str(pipeline.database))
    try:
        conn.execute(
            "UPDATE cloudglue.collection_usage SET total_tokens = total_tokens + 1"
            " WHERE rowid = (SELECT min(rowid) FROM cloudglue.collection_usage WHERE date = DATE '2026-04-03')"
        )
    finally:
        conn.close()
    (check,) = [c for c in pipeline.built.asset_checks if "collection_usage" in c.node_def.name]
    result = dg.materialize(
        [*pipeline.built.assets, check],
        selection=dg.AssetSelection.checks(check),
        resources=pipeline.resources,
        instance=pipeline.instance,
        tags={"dagster/asset_partition_range_start": "2026-04-02", "dagster/asset_partition_range_end": "2026-04-04"},
    )
    outcomes = {c.partition: c for c in result.get_asset_check_evaluations()}
    assert {k: c.passed for k, c in outcomes.items()} == {"2026-04-02": True, "2026-04-03": False, "2026-04-04": True}
    assert outcomes["2026-04-03"].metadata["details"].value[0]["column"] == "total_tokens"


def test_off_by_default_and_on_through_the_component() -> None:
    from dagster.components.testing.utils import component_defs

    from cloudglue_dagster import CloudglueComponent, build_cloudglue_assets

    assert "collection_usage" not in build_cloudglue_assets(start_date="2026-01-01").keys
    component = CloudglueComponent.model_validate(
        {"account": {"api_key_env_var": "K"}, "start_date": "2026-01-01", "collection_usage": True}
    )
    defs = component_defs(component=component)
    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert "cloudglue/collection_usage" in keys
    job = defs.resolve_job_def("cloudglue_daily")
    assert dg.AssetKey(["cloudglue", "collection_usage"]) in job.asset_layer.executable_asset_keys
