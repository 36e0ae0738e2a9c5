"""Real Dagster materializations of the assets into a real DuckDB file, against the emulator."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pandas as pd

from cloudglue_dagster import CloudglueDuckDBIOManager, CloudglueResource, build_cloudglue_assets
from cloudglue_dagster.emulator import Emulator

TEST_KEY = "sk-cloudglue-test-0123456789abcdef"

TABLES = ("chat_completions", "chat_messages", "token_usage")
"""The tables every run writes (collection_usage only when asked for)."""


def day_range(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


class Pipeline:
    """The assets of one code location wired to an emulator and a DuckDB file."""

    def __init__(self, emu: Emulator, database: Path, start_date: str, **factory: Any) -> None:
        """``factory``: build_cloudglue_assets' options; by default no step retries, and no
        responses (a test of the chat completions' step keeps to that step; the Responses
        API's tests pass ``responses=True``)."""
        factory.setdefault("retry_policy", None)
        factory.setdefault("responses", False)
        self.emu = emu
        self.database = database
        self.built = build_cloudglue_assets(start_date=start_date, **factory)
        self.instance = dg.DagsterInstance.ephemeral()
        self.resources = {
            "cloudglue": CloudglueResource(api_key=TEST_KEY, base_url=emu.base_url, max_retries=6),
            "io_manager": CloudglueDuckDBIOManager(database=str(database), schema="cloudglue"),
        }

    def materialize(
        self,
        first: str,
        last: str | None = None,
        *,
        checks: bool = True,
        raise_on_error: bool = True,
        allow_shrink: bool = False,
        selection: Sequence[Any] | None = None,
    ) -> dg.ExecuteInProcessResult:
        """Materialize one day, or the range first..last as one run (every table, or the asset
        keys ``selection``); ``allow_shrink`` sets the step's run config."""
        assets: Sequence[Any] = [*self.built.assets, *(self.built.asset_checks if checks else ())]
        run_config = {"ops": {self.built.op_name: {"config": {"allow_shrink": True}}}} if allow_shrink else None
        partition: dict[str, Any] = (
            {"partition_key": first}
            if last is None
            else {"tags": {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}}
        )
        return dg.materialize(
            assets,
            resources=self.resources,
            instance=self.instance,
            raise_on_error=raise_on_error,
            run_config=run_config,
            selection=selection,
            **partition,
        )

    def table(self, name: str, where: str = "") -> pd.DataFrame:
        return read_table(self.database, name, where)


def read_table(database: Path, name: str, where: str = "") -> pd.DataFrame:
    conn = duckdb.connect(str(database), read_only=True)
    try:
        conn.execute("SET TimeZone = 'UTC'")
        # Three-part name: with cloudglue.duckdb, "cloudglue" is both the catalog and the schema.
        return conn.execute(f'SELECT * FROM "{database.stem}".cloudglue.{name} {where}').df()
    finally:
        conn.close()


def run_figures(result: dg.ExecuteInProcessResult, name: str) -> dict[str, Any]:
    """The run's own figures for the asset named ``name``: its one observation without a partition."""
    observations = [
        e.event_specific_data.asset_observation
        for e in result.all_events
        if e.event_type_value == "ASSET_OBSERVATION"
        and e.event_specific_data.asset_observation.asset_key.path[-1] == name
    ]
    assert len(observations) == 1, f"{len(observations)} run observations of {name}"
    assert observations[0].partition is None
    return {k: v.value for k, v in observations[0].metadata.items()}


def stored_tables(database: Path, tables: Sequence[str] = TABLES) -> dict[str, pd.DataFrame]:
    """Every stored row of each table, sorted on all its columns: an order that does not depend
    on how the storage returns them."""
    out = {}
    for name in tables:
        table = read_table(database, name)
        out[name] = table.sort_values(list(table.columns), ignore_index=True)
    return out


def assert_tables_unchanged(before: dict[str, pd.DataFrame], database: Path) -> None:
    """Every table holds exactly the rows ``before`` (from :func:`stored_tables`) held."""
    after = stored_tables(database, tuple(before))
    for name, rows in before.items():
        pd.testing.assert_frame_equal(rows, after[name], obj=name)
