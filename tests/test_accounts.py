"""Several Cloudglue accounts in one code location: own keys, names and tables, no cross-talk."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from cloudglue_dagster import CloudglueDuckDBIOManager, CloudglueResource, build_cloudglue_assets
from cloudglue_dagster.emulator import Dataset, Emulator

FIRST, LAST = dt.date(2026, 3, 1), dt.date(2026, 3, 4)
KEYS = {"acme": "sk-acme-0000000000000000", "beta": "sk-beta-1111111111111111"}


@pytest.fixture
def emulators():
    # Different seeds and sizes: different ids, counts and models per day.
    with (
        Emulator(Dataset(FIRST, LAST, per_day=25, seed=1), api_key=KEYS["acme"]) as acme,
        Emulator(Dataset(FIRST, LAST, per_day=60, seed=2), api_key=KEYS["beta"]) as beta,
    ):
        yield {"acme": acme, "beta": beta}


def account_definitions(emulators: dict[str, Emulator], database: Path) -> tuple[dict, dg.Definitions]:
    built, resources = {}, {}
    for name, emu in emulators.items():
        built[name] = build_cloudglue_assets(
            start_date=FIRST.isoformat(),
            key_prefix=f"cloudglue_{name}",
            resource_key=f"cloudglue_{name}",
            io_manager_key=f"{name}_io_manager",
            retry_policy=None,
        )
        resources[f"cloudglue_{name}"] = CloudglueResource(api_key=KEYS[name], base_url=emu.base_url)
        # One DuckDB file; each account in its own schema.
        resources[f"{name}_io_manager"] = CloudglueDuckDBIOManager(database=str(database), schema=f"cloudglue_{name}")
    everything = dg.define_asset_job("every_account", selection=dg.AssetSelection.groups("cloudglue"))
    defs = dg.Definitions.merge(
        *(b.definitions() for b in built.values()),
        dg.Definitions(resources=resources, jobs=[everything], executor=dg.in_process_executor),
    )
    return built, defs


def test_names_are_unique_per_account(emulators, tmp_path: Path) -> None:
    built, defs = account_definitions(emulators, tmp_path / "w.duckdb")
    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    assert {j.name for j in repo.get_all_jobs()} >= {"cloudglue_acme_daily", "cloudglue_beta_daily"}
    assert {s.name for s in repo.schedule_defs} == {"cloudglue_acme_daily_schedule", "cloudglue_beta_daily_schedule"}
    assert {s.name for s in repo.sensor_defs} == {
        f"cloudglue_{n}_{kind}"
        for n in KEYS
        for kind in ("freshness_sensor", "late_data_sensor", "responses_late_data_sensor", "in_progress_sensor")
    }
    nodes = [n.name for n in defs.resolve_job_def("every_account").graph.node_defs]
    assert len(nodes) == len(set(nodes))  # op names: asset ops, token_usage check ops, freshness check ops
    assert {b.assets_def.op.pool for b in built.values()} == {"cloudglue_acme", "cloudglue_beta"}
    for name, b in built.items():  # each sensor reads its own account's resource
        late = next(s for s in b.sensors if s.name.endswith("late_data_sensor"))
        assert late.required_resource_keys == {f"cloudglue_{name}"}


def test_each_table_equals_its_own_emulator(emulators, tmp_path: Path) -> None:
    database = tmp_path / "w.duckdb"
    _, defs = account_definitions(emulators, database)
    result = defs.resolve_job_def("every_account").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        tags={"dagster/asset_partition_range_start": "2026-03-02", "dagster/asset_partition_range_end": "2026-03-03"},
    )
    assert result.success  # both accounts in one run
    assert all(e.passed for e in result.get_asset_check_evaluations() if e.check_name != "freshness_check")
    conn = duckdb.connect(str(database), read_only=True)
    conn.execute("SET TimeZone = 'UTC'")
    try:
        for name, emu in emulators.items():
            # Every request of this emulator carried its own key (a wrong one gets a 401 and fails the run).
            assert emu.requests_served > 0 and all(r.status == 200 for r in emu.request_log)
            chat = conn.execute(f"SELECT id, created_at FROM cloudglue_{name}.chat_completions").df()
            usage = conn.execute(f"SELECT * FROM cloudglue_{name}.token_usage").df()
            messages = conn.execute(f"SELECT completion_id FROM cloudglue_{name}.chat_messages").df()
            assert chat["id"].is_unique
            for day in (dt.date(2026, 3, 2), dt.date(2026, 3, 3)):
                truth = emu.ground_truth(day)
                assert set(chat.loc[chat["created_at"].dt.date == day, "id"]) == set(truth.ids)
                rows = usage[usage["date"] == pd.Timestamp(day)]
                assert int(rows["total_tokens"].sum()) == truth.total_tokens
                assert dict(zip(rows["model"], rows["completions"])) == truth.by_model
            assert set(messages["completion_id"]) <= set(chat["id"])
            responses = conn.execute(f"SELECT id, created_at FROM cloudglue_{name}.responses").df()
            for day in (dt.date(2026, 3, 2), dt.date(2026, 3, 3)):
                day_ids = set(responses.loc[responses["created_at"].dt.date == day, "id"])
                assert day_ids == set(emu.responses_ground_truth(day).ids)
            n_messages = sum(
                len(r["payload"].get("messages") or []) + len(r["choices"])
                for day in (dt.date(2026, 3, 2), dt.date(2026, 3, 3))
                for r in emu.records(day)
            )
            assert len(messages) == n_messages
    finally:
        conn.close()
    counts = Counter(e.asset_key.path[0] for e in result.get_asset_materialization_events())
    # chat_completions, chat_messages, token_usage, responses, llm_usage x 2 days each
    assert counts == {"cloudglue_acme": 10, "cloudglue_beta": 10}
