"""A second warehouse: Delta Lake tables on the local filesystem, through dagster-deltalake-pandas.

Real runs (``dg.materialize`` on a Dagster instance) against the emulator over HTTP; every
table is read back with the ``deltalake`` package, never through the I/O manager under test.

What was found:

* The stock ``DeltaLakePandasIOManager`` (0.29.27) does not work with these assets. It takes
  ``partition_expr`` to be a Delta partition column whose value IS the partition: it writes
  with ``partition_by=[partition_expr]``, replaces with the predicate ``column = '<window
  start>'`` and reads with the filter ``column == <window start, zone dropped>``
  (``dagster_deltalake/handler.py``, ``_time_window_partition_dnf``). On
  ``chat_completions.created_at``, a time within the day, that gives one Delta partition per
  completion, a re-write that Delta refuses (the rows do not match ``created_at = '<day>'``)
  and a read that fails (a UTC timestamp compared with a zone-less one). See the first test.
  On the ``date`` columns of the other two tables it could only work one day per run, since for
  a range the window's start is still the only value used (read in its source; not exercised
  here, as ``chat_completions`` fails first).
* :class:`cloudglue_dagster.io_managers.deltalake.CloudglueDeltaLakeIOManager`, whose type handler replaces
  and reads ``start <= partition_expr < end`` over the run's window, as the stock DuckDB,
  Snowflake and BigQuery I/O managers do, makes every asset, check and guarantee tested here
  hold on Delta Lake.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pds
import pytest
from dagster_deltalake import LocalConfig
from dagster_deltalake_pandas import DeltaLakePandasIOManager
from deltalake import DeltaTable, write_deltalake
from support.pipeline import TEST_KEY, Pipeline, day_range

from cloudglue_dagster import CloudglueResource
from cloudglue_dagster.emulator import Dataset, Emulator
from cloudglue_dagster.io_managers.deltalake import CloudglueDeltaLakeIOManager
from cloudglue_dagster.tables.frames import (
    CHAT_COMPLETIONS_COLUMNS,
    CHAT_MESSAGES_COLUMNS,
    TOKEN_USAGE_COLUMNS,
    conform,
)

UTC = dt.timezone.utc
FIRST, LAST = dt.date(2026, 3, 1), dt.date(2026, 3, 14)
EMPTY = dt.date(2026, 3, 6)
RANGE = ("2026-03-02", "2026-03-13")  # 12 days, EMPTY among them
CONTRACTS = {
    "chat_completions": CHAT_COMPLETIONS_COLUMNS,
    "token_usage": TOKEN_USAGE_COLUMNS,
    "chat_messages": CHAT_MESSAGES_COLUMNS,
}
# The pandas dtypes of the contract and the Arrow types Delta Lake stores them as (observed).
ARROW_OF_DTYPE = {
    "string": pa.string(),
    "Int64": pa.int64(),
    "Float64": pa.float64(),
    "datetime64[ns, UTC]": pa.timestamp("us", tz="UTC"),  # Delta `timestamp`: microseconds, UTC
    "datetime64[us]": pa.timestamp("us"),  # Delta `timestamp_ntz` (table feature timestampNtz)
}


# -- helpers -----------------------------------------------------------------------------------


@pytest.fixture
def emu():
    dataset = Dataset(FIRST, LAST, per_day=20, seed=11, empty_days=[EMPTY])
    with Emulator(dataset, api_key=TEST_KEY, retry_after_seconds=0) as server:
        yield server


def on_delta(pipeline: Pipeline, root: Path, manager: type = CloudglueDeltaLakeIOManager) -> Pipeline:
    pipeline.resources["io_manager"] = manager(root_uri=str(root), storage_options=LocalConfig(), schema="cloudglue")
    return pipeline


def delta(root: Path, name: str) -> DeltaTable:
    return DeltaTable(str(root / "cloudglue" / name))


def stored(root: Path, name: str) -> pd.DataFrame:
    """The whole Delta table, brought to the contract's dtypes (Arrow reads ints with nulls as floats)."""
    frame = conform(delta(root, name).to_pyarrow_table().to_pandas(), CONTRACTS[name])
    key = "created_at" if name == "chat_completions" else "date"
    return frame.sort_values([key, frame.columns[1]], kind="stable", ignore_index=True)


def day_of(frame: pd.DataFrame) -> pd.Series:
    if "created_at" in frame:
        return frame["created_at"].dt.tz_convert("UTC").dt.date
    return frame["date"].dt.date


def assert_days_equal_truth(emu: Emulator, root: Path, days: Sequence[dt.date]) -> None:
    chat, usage, messages = (stored(root, n) for n in ("chat_completions", "token_usage", "chat_messages"))
    assert chat["id"].is_unique
    for day in days:
        truth = emu.ground_truth(day)
        chat_day = chat[day_of(chat) == day]
        assert set(chat_day["id"]) == set(truth.ids), day
        assert len(chat_day) == truth.count
        assert int(chat_day["total_tokens"].sum()) == truth.total_tokens
        usage_day = usage[day_of(usage) == day]
        assert int(usage_day["completions"].sum()) == truth.count
        assert int(usage_day["prompt_tokens"].sum()) == truth.prompt_tokens
        assert int(usage_day["completion_tokens"].sum()) == truth.completion_tokens
        assert int(usage_day["total_tokens"].sum()) == truth.total_tokens
        assert int(usage_day["completions_without_usage"].sum()) == truth.no_usage
        assert dict(zip(usage_day["model"], usage_day["completions"])) == truth.by_model
        messages_day = messages[day_of(messages) == day]
        assert set(messages_day["completion_id"]) == set(truth.ids)
        expected = int(chat_day["message_count"].sum() + chat_day["choice_count"].sum())
        assert len(messages_day) == expected, day


def check_results(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str, str], bool]:
    return {(e.asset_key.path[-1], e.check_name, e.partition): e.passed for e in result.get_asset_check_evaluations()}


def step_failures(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    """Step key -> the innermost cause of its failure."""
    out = {}
    for event in result.all_events:
        if event.is_step_failure:
            error = event.event_specific_data.error
            while error.cause is not None:
                error = error.cause
            out[event.step_key] = f"{error.cls_name}: {error.message}"
    return out


def rows_of(root: Path, name: str, day: dt.date) -> pd.DataFrame:
    frame = stored(root, name)
    return frame[day_of(frame) == day].reset_index(drop=True)


# -- the stock manager -------------------------------------------------------------------------


def test_the_stock_delta_lake_io_manager_cannot_store_chat_completions_partitioned_on_a_timestamp(
    emu: Emulator, pipeline_factory, tmp_path: Path
) -> None:
    """Pins why the stock DeltaLakePandasIOManager is not supported (see the module doc): if a
    release of dagster-deltalake changes this, this test fails and the README must change."""
    root = tmp_path / "lake"
    pipeline = on_delta(pipeline_factory(emu, "2026-03-01"), root, DeltaLakePandasIOManager)
    day = dt.date(2026, 3, 2)
    truth = emu.ground_truth(day)

    first = pipeline.materialize(day.isoformat(), raise_on_error=False)
    # chat_completions is written as one Delta partition per distinct created_at ...
    table = delta(root, "chat_completions")
    assert table.metadata().partition_columns == ["created_at"]
    assert len(table.partitions()) == len(set(table.to_pyarrow_table()["created_at"].to_pylist())) > 1
    assert table.to_pyarrow_table().num_rows == truth.count
    # (the other tables come from the rows in hand; only the check reading token_usage back fails)
    assert list(step_failures(first)) == ["cloudglue__token_usage_checks"]

    # ... and a re-run of the day cannot replace it: Delta checks the rows against `created_at = '2026-03-02'`.
    again = pipeline.materialize(day.isoformat(), raise_on_error=False)
    assert "Invalid data found" in step_failures(again)["cloudglue__tables"]
    assert delta(root, "chat_completions").to_pyarrow_table().num_rows == truth.count  # left as it was


# -- with the range-honouring handler ----------------------------------------------------------


def test_a_range_backfill_into_delta_lake_equals_the_emulator_in_all_three_tables_and_every_check_passes(
    emu: Emulator, pipeline_factory, tmp_path: Path
) -> None:
    root = tmp_path / "lake"
    pipeline = on_delta(pipeline_factory(emu, "2026-03-01"), root)
    days = day_range(dt.date.fromisoformat(RANGE[0]), dt.date.fromisoformat(RANGE[1]))
    assert EMPTY in days and emu.ground_truth(EMPTY).count == 0

    result = pipeline.materialize(*RANGE)
    assert result.success
    assert_days_equal_truth(emu, root, days)
    assert len(stored(root, "chat_completions")) == sum(emu.ground_truth(d).count for d in days)
    # One check per asset and partition, every one evaluated and passed.
    checks = check_results(result)
    expected = {
        (asset, check, d.isoformat())
        for d in days
        for asset, check in (
            ("chat_completions", "rows_valid"),
            ("chat_messages", "rows_valid"),
            ("token_usage", "sums_match_chat_completions"),
        )
    }
    assert set(checks) == expected
    assert all(checks.values())
    # Where each table is: its Delta table's URI and name, on every day's materialization.
    events = result.get_asset_materialization_events()
    assert len(events) == 3 * len(days)
    for event in events:
        materialization = event.step_materialization_data.materialization
        table = materialization.asset_key.path[-1]
        assert materialization.metadata["dagster/uri"].value == str(root / "cloudglue" / table), table
        assert materialization.metadata["dagster/table_name"].value == f"cloudglue.{table}"
    # A range is one DataFrame and one Delta commit per table (it creates the table here).
    for name in CONTRACTS:
        assert delta(root, name).version() == 0
    chat_md = {
        e.partition: e.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.asset_key.path[-1] == "chat_completions"
    }
    assert {k: v["dagster/partition_row_count"].value for k, v in chat_md.items()} == {
        d.isoformat(): emu.ground_truth(d).count for d in days
    }


def test_rerunning_one_day_replaces_exactly_that_day_in_one_commit_and_leaves_its_neighbours_untouched(
    emu: Emulator, pipeline_factory, tmp_path: Path
) -> None:
    root = tmp_path / "lake"
    pipeline = on_delta(pipeline_factory(emu, "2026-03-01"), root)
    assert pipeline.materialize(*RANGE).success
    day = dt.date(2026, 3, 9)
    neighbours = [day - dt.timedelta(days=1), day + dt.timedelta(days=1)]
    before = {(n, d): rows_of(root, n, d) for n in CONTRACTS for d in neighbours}

    # The API now holds one completion more on that day, and the table a row the API never had.
    at_ms = int(dt.datetime(2026, 3, 9, 12, tzinfo=UTC).timestamp() * 1000)
    emu.add_record(
        {
            "id": "chatcmpl-late-arrival",
            "object": "chat.completion",
            "model": "nimbus-001",
            "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12},
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "late"}}],
            "payload": {"messages": [{"role": "user", "content": "hello?"}], "collections": []},
        },
        at_ms=at_ms,
    )
    chat = delta(root, "chat_completions").to_pyarrow_table()
    start, end = (pa.scalar(dt.datetime(2026, 3, d, tzinfo=UTC), chat.schema.field("created_at").type) for d in (9, 10))
    of_day = (pds.field("created_at") >= start) & (pds.field("created_at") < end)
    stale = chat.filter(of_day).slice(0, 1).set_column(0, "id", pa.array(["stale-row"]))
    write_deltalake(str(root / "cloudglue" / "chat_completions"), stale, mode="append")
    assert "stale-row" in set(rows_of(root, "chat_completions", day)["id"])
    versions = {n: delta(root, n).version() for n in CONTRACTS}

    result = pipeline.materialize(day.isoformat())
    assert result.success
    assert all(check_results(result).values())
    assert_days_equal_truth(emu, root, [day, *neighbours])
    assert "chatcmpl-late-arrival" in set(rows_of(root, "chat_completions", day)["id"])
    assert "stale-row" not in set(stored(root, "chat_completions")["id"])
    for (name, d), rows in before.items():
        pd.testing.assert_frame_equal(rows_of(root, name, d), rows)
    # Each table's replace of the day was one commit: a WRITE whose predicate is the day's window.
    for name in CONTRACTS:
        table = delta(root, name)
        assert table.version() == versions[name] + 1
        commit = table.history(1)[0]
        assert commit["operation"] == "WRITE"
        predicate = commit["operationParameters"]["predicate"]
        assert "2026-03-09T00:00:00" in predicate and "2026-03-10T00:00:00" in predicate


def test_an_empty_day_leaves_no_rows_and_a_table_with_the_contract_columns(tmp_path: Path) -> None:
    busy, empty = dt.date(2026, 4, 1), dt.date(2026, 4, 2)
    root = tmp_path / "lake"
    with Emulator(Dataset(busy, empty, counts={busy: 30, empty: 0}), api_key=TEST_KEY) as emu:
        pipeline = on_delta(Pipeline(emu, tmp_path / "unused.duckdb", "2026-04-01"), root)
        # The first thing ever written is an empty day: each table is created, empty, typed.
        first = pipeline.materialize(empty.isoformat())
        assert first.success and all(check_results(first).values())
        for name, columns in CONTRACTS.items():
            table = delta(root, name).to_pyarrow_table()
            assert table.num_rows == 0
            assert table.schema.names == [c.name for c in columns]
            assert table.schema.types == [ARROW_OF_DTYPE[c.dtype] for c in columns]
        assert pipeline.materialize(busy.isoformat()).success
        assert_days_equal_truth(emu, root, [busy, empty])
        busy_rows = {n: rows_of(root, n, busy) for n in CONTRACTS}

        # A row on the empty day that the API does not have (moved there by hand) ...
        chat = delta(root, "chat_completions").to_pyarrow_table()
        moved = chat.slice(0, 1).to_pandas()
        moved["id"], moved["created_at"] = "stale-row", pd.Timestamp("2026-04-02 08:00", tz="UTC")
        write_deltalake(
            str(root / "cloudglue" / "chat_completions"),
            pa.Table.from_pandas(moved, schema=chat.schema, preserve_index=False),
            mode="append",
        )
        assert len(rows_of(root, "chat_completions", empty)) == 1
        # ... is gone after the day is re-run; the busy day is untouched and the table still reads.
        again = pipeline.materialize(empty.isoformat())
        assert again.success and all(check_results(again).values())
        for name in CONTRACTS:
            assert rows_of(root, name, empty).empty
            pd.testing.assert_frame_equal(rows_of(root, name, busy), busy_rows[name])


def test_the_delta_tables_have_the_contracts_columns_in_order_as_nullable_arrow_types(
    emu: Emulator, pipeline_factory, tmp_path: Path
) -> None:
    """Observed mapping: string -> string, Int64 -> int64 (long), Float64 -> double,
    datetime64[ns, UTC] -> timestamp[us, tz=UTC] (Delta `timestamp`, microseconds),
    datetime64[us] -> timestamp[us] (Delta `timestamp_ntz`); every field nullable, nulls kept."""
    root = tmp_path / "lake"
    pipeline = on_delta(pipeline_factory(emu, "2026-03-01"), root)
    assert pipeline.materialize(*RANGE).success
    for name, columns in CONTRACTS.items():
        table = delta(root, name)
        schema = table.to_pyarrow_dataset().schema
        assert schema.names == [c.name for c in columns], name
        assert schema.types == [ARROW_OF_DTYPE[c.dtype] for c in columns], name
        assert all(f.nullable for f in table.schema().fields)
        assert table.metadata().partition_columns == []
    assert "timestampNtz" in (delta(root, "token_usage").protocol().reader_features or [])
    # A count the API did not report is stored as null, not zero.
    chat = delta(root, "chat_completions").to_pyarrow_table()
    no_usage = sum(emu.ground_truth(d).no_usage for d in day_range(dt.date(2026, 3, 2), dt.date(2026, 3, 13)))
    assert no_usage > 0
    assert chat["total_tokens"].null_count >= no_usage
    # Times are the API's, to the millisecond, in UTC.
    first = emu.records(dt.date(2026, 3, 2))[0]
    stored_first = chat.filter(pds.field("id") == first["id"])["created_at"][0].as_py()
    assert stored_first == dt.datetime.fromtimestamp(first["created_at"] / 1000, tz=UTC)


def test_the_shrink_guard_refuses_a_sharp_shrink_of_what_delta_holds_even_with_a_new_instance(
    emu: Emulator, pipeline_factory, tmp_path: Path
) -> None:
    """The guard's witness is the warehouse: through the I/O manager's own load of the stored
    ``created_at`` column, so a new instance (which remembers no materialization) is protected
    too; nothing is committed to any table."""
    root = tmp_path / "lake"
    day = dt.date(2026, 3, 10)
    with Emulator(Dataset(day, day, counts={day: 100}), api_key=TEST_KEY) as bigger:
        pipeline = on_delta(pipeline_factory(bigger, "2026-03-01"), root)
        assert pipeline.materialize(day.isoformat()).success
    versions = {n: delta(root, n).version() for n in CONTRACTS}
    assert emu.ground_truth(day).count < 50  # under half of the 100 stored
    pipeline.resources["cloudglue"] = CloudglueResource(api_key=TEST_KEY, base_url=emu.base_url, max_retries=6)
    pipeline.instance = dg.DagsterInstance.ephemeral()  # remembers nothing

    refused = pipeline.materialize(day.isoformat(), raise_on_error=False)
    assert "ShrinkRefusedError" in step_failures(refused)["cloudglue__tables"]
    assert f"{day.isoformat()}: 100 -> {emu.ground_truth(day).count}" in step_failures(refused)["cloudglue__tables"]
    assert {n: delta(root, n).version() for n in CONTRACTS} == versions  # no commit at all
    assert len(rows_of(root, "chat_completions", day)) == 100


# -- assets of your own ------------------------------------------------------------------------


def test_an_asset_with_static_partitions_is_stored_and_loaded_as_the_stock_manager_does(tmp_path: Path) -> None:
    """Only a slice of one time window is the handler's own; any other partitioned slice (here
    regions) is written and read by the stock handler, as before the manager existed."""
    regions = dg.StaticPartitionsDefinition(["eu", "us"])

    @dg.asset(partitions_def=regions, metadata={"partition_expr": "region"})
    def sales(context) -> pd.DataFrame:  # unannotated: Dagster cannot resolve string annotations of a local function
        amounts = {"eu": [1, 2], "us": [10, 20, 30]}[context.partition_key]
        return pd.DataFrame({"region": context.partition_key, "amount": amounts})

    @dg.asset(partitions_def=regions, metadata={"partition_expr": "region"})
    def sales_total(sales: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"region": sorted(set(sales["region"])), "amount": [int(sales["amount"].sum())]})

    root = tmp_path / "lake"
    resources = {
        "io_manager": CloudglueDeltaLakeIOManager(root_uri=str(root), storage_options=LocalConfig(), schema="s")
    }
    for region in ("eu", "us", "eu"):  # the second eu replaces the first
        assert dg.materialize([sales], partition_key=region, resources=resources).success
    assert dg.materialize(
        [sales, sales_total], partition_key="us", resources=resources, selection=[sales_total]
    ).success

    rows = DeltaTable(str(root / "s" / "sales")).to_pyarrow_table().to_pandas()
    assert sorted(zip(rows["region"], rows["amount"])) == [("eu", 1), ("eu", 2), ("us", 10), ("us", 20), ("us", 30)]
    total = DeltaTable(str(root / "s" / "sales_total")).to_pyarrow_table().to_pandas()
    assert list(zip(total["region"], total["amount"])) == [("us", 60)]  # loaded: only us's rows
