"""Cost columns of token_usage: a stable contract, null without a price, never an invented zero."""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd
import pytest
from support.pipeline import TEST_KEY

from cloudglue_dagster import CloudglueConfigError, ModelPrice, build_cloudglue_assets
from cloudglue_dagster.api.parsing import parse_completion
from cloudglue_dagster.emulator import Dataset, Emulator
from cloudglue_dagster.tables.frames import TOKEN_USAGE_COLUMNS, chat_completions_frame
from cloudglue_dagster.tables.usage import token_usage_frame

DAY = 1767225600000  # 2026-01-01T00:00:00Z in ms
PRICES = {"m1": ModelPrice(input_per_million=2.0, output_per_million=10.0)}


def completion(id: str, model: str, usage: dict):
    return parse_completion(
        {
            "id": id,
            "created_at": DAY,
            "object": "chat.completion",
            "model": model,
            "usage": usage,
            "choices": [],
            "payload": {},
        }
    )


def by_model(usage: pd.DataFrame) -> dict[str, dict]:
    return {r["model"]: r for r in usage.to_dict("records")}


def test_cost_per_model_day() -> None:
    chat = chat_completions_frame(
        [
            completion(
                "a", "m1", {"prompt_tokens": 1_000_000, "completion_tokens": 500_000, "total_tokens": 1_500_000}
            ),
            completion("b", "m1", {"prompt_tokens": 250_000}),  # completion tokens not reported: adds no output cost
            completion("c", "m2", {"prompt_tokens": 10, "completion_tokens": 10}),  # no price
            completion("d", "m3", {}),  # no price, no usage
        ]
    )
    rows = by_model(token_usage_frame(chat, {**PRICES, "m3": ModelPrice(1.0, 1.0)}))
    assert rows["m1"]["input_cost"] == pytest.approx(2.5) and rows["m1"]["output_cost"] == pytest.approx(5.0)
    assert rows["m1"]["total_cost"] == pytest.approx(7.5)
    for model in ("m2", "m3"):  # no price, or no tokens to price: null, never zero
        assert all(pd.isna(rows[model][c]) for c in ("input_cost", "output_cost", "total_cost"))


def test_total_cost_is_null_when_a_half_is_unknown() -> None:
    chat = chat_completions_frame([completion("a", "m1", {"prompt_tokens": 100})])
    [row] = token_usage_frame(chat, PRICES).to_dict("records")
    assert row["input_cost"] == pytest.approx(0.0002) and pd.isna(row["output_cost"]) and pd.isna(row["total_cost"])


def test_cost_columns_are_always_in_the_contract() -> None:
    chat = chat_completions_frame([completion("a", "m1", {"prompt_tokens": 1, "completion_tokens": 1})])
    names_and_types = [(c.name, c.dtype) for c in TOKEN_USAGE_COLUMNS]
    for usage in (token_usage_frame(chat), token_usage_frame(chat, PRICES), token_usage_frame(chat.iloc[:0], PRICES)):
        assert [(n, str(t)) for n, t in usage.dtypes.items()] == names_and_types
    assert token_usage_frame(chat)[["input_cost", "output_cost", "total_cost"]].isna().all().all()


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, True, "1.0"])
def test_prices_are_validated(bad) -> None:
    with pytest.raises(CloudglueConfigError, match="input_per_million"):
        ModelPrice(input_per_million=bad, output_per_million=1.0)
    with pytest.raises(CloudglueConfigError, match="prices"):
        build_cloudglue_assets(start_date="2026-01-01", prices={"m1": {"input_per_million": 1}})  # type: ignore[dict-item]


def test_stored_costs_and_metadata(pipeline_factory) -> None:
    prices = {"nimbus-001": ModelPrice(0.5, 1.5), "nimbus-002": ModelPrice(1.0, 4.0)}
    with Emulator(Dataset(dt.date(2026, 3, 1), dt.date(2026, 3, 3), per_day=40, seed=3), api_key=TEST_KEY) as emu:
        pipeline = pipeline_factory(emu, "2026-03-01", prices=prices)
        result = pipeline.materialize("2026-03-02", "2026-03-03")
        assert result.success
    usage = pipeline.table("token_usage")
    for row in usage.to_dict("records"):
        price = prices.get(row["model"])
        if price is None:
            assert pd.isna(row["input_cost"]) and pd.isna(row["total_cost"])
            continue
        assert row["input_cost"] == pytest.approx(row["prompt_tokens"] * price.input_per_million / 1e6)
        assert row["output_cost"] == pytest.approx(row["completion_tokens"] * price.output_per_million / 1e6)
        assert row["total_cost"] == pytest.approx(row["input_cost"] + row["output_cost"])
    metadata = {
        e.partition: {k: v.value for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
        if e.asset_key.path[-1] == "token_usage"
    }
    for day, md in metadata.items():
        rows = usage[usage["date"] == pd.Timestamp(day)]
        assert md["total_cost_usd"] == pytest.approx(rows["total_cost"].sum(), abs=1e-6)
        assert md["completions_without_cost"] == rows.loc[rows["total_cost"].isna(), "completions"].sum()
        assert md["completions_without_cost"] > 0  # gpt-4o-mini and nimbus-002-mini have no price here


def test_no_prices_no_cost_metadata(pipeline_factory) -> None:
    with Emulator(Dataset(dt.date(2026, 3, 1), dt.date(2026, 3, 2), per_day=10, seed=3), api_key=TEST_KEY) as emu:
        pipeline = pipeline_factory(emu, "2026-03-01")
        result = pipeline.materialize("2026-03-02")
    [md] = [
        e.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.asset_key.path[-1] == "token_usage"
    ]
    assert "total_cost_usd" not in md
    assert pipeline.table("token_usage")["total_cost"].isna().all()


# -- prices that change over time ------------------------------------------------------------

CHANGE = dt.date(2026, 3, 3)
OLD, NEW = ModelPrice(1.0, 2.0), ModelPrice(3.0, 8.0, effective_from=CHANGE)


def test_each_day_is_costed_at_the_price_in_force_that_day() -> None:
    rows = [completion(f"c{i}", "m1", {"prompt_tokens": 1_000_000, "completion_tokens": 1_000_000}) for i in range(2)]
    day_before, day_of = (pd.Timestamp(CHANGE - dt.timedelta(days=1), tz="UTC"), pd.Timestamp(CHANGE, tz="UTC"))
    chat = chat_completions_frame(rows).assign(created_at=[day_before, day_of])
    usage = token_usage_frame(chat, {"m1": [NEW, OLD]})  # in any order
    assert usage["total_cost"].tolist() == [pytest.approx(3.0), pytest.approx(11.0)]
    # A price that starts later leaves the days before it without a price: null, never zero.
    later = token_usage_frame(chat, {"m1": ModelPrice(1.0, 1.0, effective_from="2026-03-03")})
    assert pd.isna(later["total_cost"].iloc[0]) and later["total_cost"].iloc[1] == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("prices", "message"),
    [
        ({"m1": [OLD, ModelPrice(2.0, 2.0)]}, "two prices from the same day"),
        ({"m1": []}, "a ModelPrice or a list of them"),
        ({"m1": [OLD, "3.0"]}, "must be a ModelPrice"),
    ],
)
def test_a_price_list_that_cannot_be_read_fails_at_load(prices, message) -> None:
    with pytest.raises(CloudglueConfigError, match=message):
        build_cloudglue_assets(start_date="2026-01-01", prices=prices)


@pytest.mark.parametrize("bad", ["03/03/2026", 20260303, dt.datetime(2026, 3, 3)])
def test_an_effective_day_that_is_not_a_date_is_refused(bad) -> None:
    with pytest.raises(CloudglueConfigError, match="effective_from"):
        ModelPrice(1.0, 1.0, effective_from=bad)


def test_a_price_change_costs_each_day_at_its_own_price_before_and_after_a_rerun(pipeline_factory) -> None:
    prices = {"nimbus-001": [ModelPrice(0.5, 1.5), ModelPrice(5.0, 15.0, effective_from=CHANGE)]}
    days = (CHANGE - dt.timedelta(days=1), CHANGE)
    with Emulator(Dataset(dt.date(2026, 3, 1), dt.date(2026, 3, 4), per_day=30, seed=5), api_key=TEST_KEY) as emu:
        pipeline = pipeline_factory(emu, "2026-03-01", prices=prices, responses=True)
        assert pipeline.materialize(days[0].isoformat(), days[1].isoformat()).success

        def costs() -> dict[str, dict[dt.date, float]]:
            out: dict[str, dict[dt.date, float]] = {}
            usage = pipeline.table("token_usage", "WHERE model = 'nimbus-001'")
            out["token_usage"] = {d.date(): c for d, c in zip(usage["date"], usage["total_cost"])}
            responses = pipeline.table("responses", "WHERE model = 'nimbus-001'")
            by_day = responses.groupby(responses["created_at"].dt.date)["total_cost"].sum()
            out["responses"] = {d: float(c) for d, c in by_day.items()}
            return out

        before = costs()
        usage = pipeline.table("token_usage", "WHERE model = 'nimbus-001'").set_index("date")
        for day, price in zip(days, (prices["nimbus-001"][0], prices["nimbus-001"][1])):
            row = usage.loc[pd.Timestamp(day)]
            expected = (
                row["prompt_tokens"] * price.input_per_million + row["completion_tokens"] * price.output_per_million
            ) / 1e6
            assert row["total_cost"] == pytest.approx(expected)
        assert pipeline.materialize(days[0].isoformat()).success  # the late-data sensor's re-run of an old day
        assert costs() == before
