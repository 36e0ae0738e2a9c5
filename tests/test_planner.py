"""The backfill planner: its request count against real runs, its time against a real CLI backfill.

The emulator does not serve ``/v1/responses`` yet: the tests against it plan and build chat
completions alone (``responses=False``, ``--no-responses``, ``CLOUDGLUE_RESPONSES=false``); the
responses' part of the plan is tested against a loopback server answering both lists' totals.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import dagster as dg
import pytest
from support.pipeline import TEST_KEY, Pipeline
from support.reliability import Reply, Seen, cli_env, http_server, materialize_cmd

from cloudglue_dagster import CloudglueClient, CloudglueConfigError, CloudglueResource, build_cloudglue_assets
from cloudglue_dagster.__main__ import main as cli_main
from cloudglue_dagster.emulator import Dataset, Emulator, ResponsesDataset
from cloudglue_dagster.planner import Assumptions, DayProbe, parse_size, plan_backfill
from cloudglue_dagster.planner.plan import plan_from_probes

FIRST, LAST = dt.date(2026, 5, 1), dt.date(2026, 5, 14)
MiB = 2**20
PLAN_CMD = [sys.executable, "-m", "cloudglue_dagster", "plan"]


def test_memory_sizes_read_as_people_write_them() -> None:
    assert parse_size("2GiB") == 2 * 1024**3
    assert parse_size("512 MiB") == 512 * MiB
    assert parse_size("1.5GB") == 1_500_000_000
    assert parse_size("800M") == 800_000_000
    assert parse_size("1048576") == MiB
    with pytest.raises(CloudglueConfigError, match="memory must be like 2GiB"):
        parse_size("lots")


@pytest.mark.parametrize("boundary", ["inclusive", "exclusive", "half-open"])
@pytest.mark.parametrize("per_run", [None, 4])
def test_the_planned_requests_are_exactly_what_the_runs_then_make(
    tmp_path: Path, boundary: str, per_run: int | None
) -> None:
    dataset = Dataset(FIRST, LAST, per_day=90, seed=8, empty_days=[dt.date(2026, 5, 6)])
    responses = ResponsesDataset(FIRST, LAST, per_day=30, seed=8)  # some runs need two pages
    with Emulator(dataset, responses=responses, api_key=TEST_KEY, boundary=boundary) as emu:
        with CloudglueClient(TEST_KEY, emu.base_url) as client:
            plan = plan_backfill(client, dt.date(2026, 5, 2), dt.date(2026, 5, 12), max_partitions_per_run=per_run)
        assert emu.requests_served == plan.probe_requests  # one limit=1 request per window probed
        pipeline = Pipeline(emu, tmp_path / "w.duckdb", "2026-04-30", max_partitions_per_run=per_run, responses=True)
        made: list[tuple[int, int]] = []
        for run in plan.runs:  # the runs the backfill policy makes, as the daemon launches them
            emu.reset_stats()
            assert pipeline.materialize(run.first.isoformat(), run.last.isoformat(), checks=False).success
            paths = [r.path for r in emu.request_log]
            made.append((paths.count("/v1/chat/completions"), paths.count("/v1/responses")))
    assert [(r.requests, r.responses_requests) for r in plan.runs] == made
    assert plan.requests == sum(a + b for a, b in made)
    assert len(plan.runs) == (1 if per_run is None else 3)


@pytest.mark.processes
@pytest.mark.serial  # the estimate is held to the time measured
def test_a_cli_backfill_takes_the_planned_api_time_and_the_estimate_is_of_its_order(tmp_path: Path) -> None:
    """At a fixed latency of 0.5 s per request the run cannot be faster than the API time the
    plan counts (the first page, then the others four at a time). The estimate's other terms
    (start-up, work per day and per completion) are the defaults fitted by
    ``bench/planner_calibration.py`` on one day of this machine, whose speed varies by up to
    twice from one day to the next: a band, not a timing, is what a test can hold."""
    dataset = Dataset(FIRST, LAST, per_day=300, seed=9)
    first, last = dt.date(2026, 5, 2), dt.date(2026, 5, 13)
    with Emulator(dataset, api_key=TEST_KEY, latency_seconds=0.5) as emu:
        with CloudglueClient(TEST_KEY, emu.base_url, max_concurrent_requests=4) as client:
            plan = plan_backfill(client, first, last, assumptions=Assumptions(concurrency=4), responses=False)
        env = cli_env(
            key=TEST_KEY,
            base_url=emu.base_url,
            start="2026-05-01",
            database=tmp_path / "w.duckdb",
            home=tmp_path / "home",
            CLOUDGLUE_MAX_CONCURRENT_REQUESTS="4",
        )
        command = materialize_cmd("--partition-range", f"{first}...{last}")
        began = time.monotonic()
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
        measured = time.monotonic() - began
        assert done.returncode == 0, done.stderr[-3000:]
    (run,) = plan.runs
    api = 0.5 * (1 + math.ceil((run.requests - 1) / 4))
    print(f"planned {plan.seconds:.1f} s (API {api:.1f} s), measured {measured:.1f} s, {plan.requests} requests")
    assert api <= measured
    assert 0.5 * measured <= plan.seconds <= 2.5 * measured


def probes(*totals: int) -> list[DayProbe]:
    return [DayProbe(FIRST + dt.timedelta(days=i), t) for i, t in enumerate(totals)]


def planned(days: list[DayProbe], budget: int, streaming: bool):
    runs = {(d.day, d.day): d.window_total for d in days}
    runs[days[0].day, days[-1].day] = sum(d.window_total for d in days)
    a = Assumptions(base_memory_bytes=100 * MiB, bytes_per_completion=MiB, streaming=streaming)
    return plan_from_probes(
        days, runs, max_partitions_per_run=None, assumptions=a, latency_seconds=0.1, probe_requests=0,
        memory_budget_bytes=budget,
    )  # fmt: skip


def test_the_memory_budget_picks_the_largest_split_that_fits() -> None:
    days = probes(10, 10, 50, 10, 10, 10)  # MiB held per day, over a 100 MiB base
    streaming = planned(days, 160 * MiB, streaming=True)  # a run holds its busiest day: 150 MiB
    assert streaming.recommended_max_partitions_per_run is None and "whole range" in streaming.recommendation
    whole = planned(days, 160 * MiB, streaming=False)  # a run holds all its days
    assert whole.recommended_max_partitions_per_run == 2  # [10,10] [50,10] [10,10]: at most 160 MiB
    assert "max_partitions_per_run = 2 fits 160 MiB" in whole.recommendation
    tight = planned(days, 120 * MiB, streaming=True)
    assert "no split fits 120 MiB: the busiest day alone needs about 150 MiB" in tight.recommendation


@pytest.mark.processes
def test_the_cli_prints_the_plan_with_its_assumptions_and_never_the_key() -> None:
    with Emulator(Dataset(FIRST, LAST, per_day=40, seed=2), api_key=TEST_KEY) as emu:
        env = {**os.environ, "CLOUDGLUE_API_KEY": TEST_KEY, "CLOUDGLUE_BASE_URL": emu.base_url}
        command = [
            *PLAN_CMD, "--start", "2026-05-02", "--end", "2026-05-05", "--no-responses",
        ]  # fmt: skip
        done = subprocess.run([*command, "--memory", "2GiB"], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "Backfill plan: 2026-05-02..2026-05-05 (4 UTC days)" in done.stdout
        assert "requests (exact, for honest answers)" in done.stdout and "Assumptions:" in done.stdout
        assert "max_partitions_per_run = None (the whole range in one run) fits 2,048 MiB" in done.stdout
        assert TEST_KEY not in done.stdout + done.stderr
        no_key = subprocess.run(
            command, env={k: v for k, v in env.items() if k != "CLOUDGLUE_API_KEY"}, capture_output=True, text=True
        )
        assert no_key.returncode == 2 and "set CLOUDGLUE_API_KEY" in no_key.stderr
        wrong_key = subprocess.run(
            command, env={**env, "CLOUDGLUE_API_KEY": "sk-wrong-0123456789abcdef"}, capture_output=True, text=True
        )
        assert wrong_key.returncode == 1 and "refused the API key" in wrong_key.stderr
        assert "sk-wrong-0123456789abcdef" not in wrong_key.stdout + wrong_key.stderr


def test_the_plan_job_records_the_plan_as_markdown_on_chat_completions() -> None:
    with Emulator(Dataset(FIRST, LAST, per_day=40, seed=2), api_key=TEST_KEY) as emu:
        built = build_cloudglue_assets(start_date="2026-05-01", responses=False)
        defs = dg.Definitions.merge(
            built.definitions(),
            dg.Definitions(resources={"cloudglue": CloudglueResource(api_key=TEST_KEY, base_url=emu.base_url)}),
        )
        config = {"start": "2026-05-02", "end": "2026-05-08", "max_partitions_per_run": 3, "memory": "1GiB"}
        result = defs.resolve_job_def("cloudglue_plan_backfill").execute_in_process(
            run_config={"ops": {"cloudglue__plan_backfill": {"config": config}}}
        )
    assert result.success
    (observation,) = [
        e.event_specific_data.asset_observation for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"
    ]
    assert observation.asset_key == dg.AssetKey(["cloudglue", "chat_completions"])
    metadata = {k: v.value for k, v in observation.metadata.items()}
    assert metadata["planned_runs"] == 3 and metadata["planned_days"] == "2026-05-02...2026-05-08"
    assert metadata["backfill_plan"].startswith("## Backfill plan: 2026-05-02..2026-05-08 (7 UTC days)")
    assert "| run | days | window completions | requests |" in metadata["backfill_plan"]


# -- both endpoints, against a loopback server answering each list's total --------------------

CHAT_PER_DAY = 150
BUSY = {dt.date(2026, 5, d): 120 for d in (5, 6, 7)} | {dt.date(2026, 5, 8): 7}  # responses a day; others none


def totals_server(responses_per_day: Callable[[dt.date], int]) -> Callable[[Seen], Reply]:
    """Answers ``limit=1`` probes of both lists with the total of the days strictly between the
    dates asked (the exclusive reading): 150 completions a day, ``responses_per_day(day)``."""

    def reply(request: Seen) -> Reply:
        url = urlsplit(request.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        after, before = dt.date.fromisoformat(query["created_after"]), dt.date.fromisoformat(query["created_before"])
        days = [after + dt.timedelta(days=i) for i in range(1, (before - after).days)]
        per_day = {"/v1/chat/completions": lambda _d: CHAT_PER_DAY, "/v1/responses": responses_per_day}.get(url.path)
        if per_day is None or query.get("limit") != "1":
            return 404, {}, b'{"error": "not probed this way"}'
        total = sum(per_day(d) for d in days)
        return 200, {}, json.dumps({"object": "list", "data": [], "total": total, "limit": 1, "offset": 0}).encode()

    return reply


def probed(seen: list[Seen], path: str) -> list[tuple[str, str]]:
    """The windows (created_after, created_before) asked of ``path``, sorted."""
    queries = [parse_qs(urlsplit(s.path).query) for s in seen if urlsplit(s.path).path == path]
    return sorted((q["created_after"][0], q["created_before"][0]) for q in queries)


def test_the_plan_counts_both_endpoints_requests_per_run_and_in_total() -> None:
    a = Assumptions(latency_seconds=0.5)
    with http_server("127.0.0.1", totals_server(lambda d: BUSY.get(d, 0))) as (root, seen):
        url = f"{root}/v1"
        with CloudglueClient(TEST_KEY, url) as client:
            plan = plan_backfill(
                client, dt.date(2026, 5, 2), dt.date(2026, 5, 8), max_partitions_per_run=3, assumptions=a
            )
            assert (
                len(seen) == plan.probe_requests == 7 + 2 + 3
            )  # chat: each day and each longer run; responses: each run
            assert probed(seen, "/v1/responses") == [  # one probe per run's padded window, none per day
                ("2026-05-01", "2026-05-05"), ("2026-05-04", "2026-05-08"), ("2026-05-07", "2026-05-09"),
            ]  # fmt: skip
            seen.clear()
            alone = plan_backfill(client, dt.date(2026, 5, 2), dt.date(2026, 5, 8), max_partitions_per_run=3, assumptions=a, responses=False)  # fmt: skip
            assert probed(seen, "/v1/responses") == [] and len(seen) == alone.probe_requests == 9
    assert [(r.window_total, r.requests) for r in plan.runs] == [(450, 5), (450, 5), (150, 2)]
    # No responses still costs a run one request; 360 is four pages of 100.
    assert [(r.responses_window_total, r.responses_requests) for r in plan.runs] == [(0, 1), (360, 4), (7, 1)]
    assert plan.requests == 12 + 6 and plan.completion_requests == 12 and plan.responses_requests == 6
    assert alone.requests == 12 and [r.responses_window_total for r in alone.runs] == [None, None, None]
    # The second run: start-up, each sweep's first page then the others 8 at a time, the work of both.
    second, second_alone = plan.runs[1], alone.runs[1]
    chat = 5.5 + 0.5 * 2 + 0.36 * 3 + 0.00026 * 450
    assert second_alone.seconds == round(chat, 1)
    assert second.seconds == round(chat + 0.5 * 2 + 0.00026 * 360, 1)
    # It holds its busiest day of completions, and of responses at most its window's 360.
    assert second_alone.peak_memory_bytes == 254 * MiB + 10_700 * 150
    assert second.peak_memory_bytes == 254 * MiB + 10_700 * 150 + 1_000 * 360
    text = plan.to_text()
    assert "window completions  completion requests  window responses  response requests" in text
    assert "Total: 18 requests (exact, for honest answers: 12 chat completions + 6 responses)" in text
    assert "Responses: 0.26 ms of work and 1,000 bytes each (the work the completions' figure, an upper bound;" in text
    assert "| run | days | window completions | completion requests | window responses | response requests |" in (
        plan.to_markdown()
    )
    assert "| 2026-05-05..2026-05-07 | 3 | 450 | 5 | 360 | 4 |" in plan.to_markdown()
    assert "response" not in alone.to_text().lower()  # chat completions alone print as before
    assert "Total: 12 requests (exact, for honest answers), about" in alone.to_text()


def test_a_run_with_many_responses_has_its_days_probed_so_its_memory_counts_the_busiest_day() -> None:
    heavy = {dt.date(2026, 5, 2): 4_000, dt.date(2026, 5, 3): 9_000, dt.date(2026, 5, 4): 6_000}  # 19 MB held whole
    with http_server("127.0.0.1", totals_server(lambda d: heavy.get(d, 0))) as (root, seen):
        url = f"{root}/v1"
        with CloudglueClient(TEST_KEY, url) as client:
            plan = plan_backfill(client, dt.date(2026, 5, 2), dt.date(2026, 5, 4), memory_budget_bytes=300 * MiB)
            assert probed(seen, "/v1/responses") == [  # the run's window, then its days
                ("2026-05-01", "2026-05-03"), ("2026-05-01", "2026-05-05"), ("2026-05-02", "2026-05-04"),
                ("2026-05-03", "2026-05-05"),
            ]  # fmt: skip
            seen.clear()
            whole = plan_backfill(
                client, dt.date(2026, 5, 2), dt.date(2026, 5, 4), assumptions=Assumptions(streaming=False)
            )
            assert len(probed(seen, "/v1/responses")) == 1  # a run handed its whole range holds the window: no days
    (run,) = plan.runs
    assert (run.responses_window_total, run.responses_requests) == (19_000, 190)
    assert run.peak_memory_bytes == 254 * MiB + 10_700 * 150 + 1_000 * 9_000
    assert [p.responses_window_total for p in plan.days] == [4_000, 9_000, 6_000]
    assert plan.probe_requests == 3 + 1 + 1 + 3
    assert "Note: responses probed per day for 3 day(s)" in plan.to_text()
    assert "max_partitions_per_run = None (the whole range in one run) fits 300 MiB" in plan.recommendation
    assert whole.runs[0].peak_memory_bytes == 254 * MiB + 10_700 * 450 + 1_000 * 19_000


def test_the_memory_budget_counts_the_responses_a_run_holds() -> None:
    days = probes(10, 10, 10, 10)
    runs = {(days[0].day, days[1].day): 20, (days[2].day, days[3].day): 20}
    a = Assumptions(base_memory_bytes=100 * MiB, bytes_per_completion=MiB, bytes_per_response=MiB, streaming=False)
    plan = plan_from_probes(
        days, runs, max_partitions_per_run=2, assumptions=a, latency_seconds=0.1, probe_requests=0,
        memory_budget_bytes=175 * MiB,
        responses_run_totals={(days[0].day, days[1].day): 30, (days[2].day, days[3].day): 5},
    )  # fmt: skip
    assert [r.peak_memory_bytes for r in plan.runs] == [(100 + 20 + 30) * MiB, (100 + 20 + 5) * MiB]
    # Whole range: 100 + 40 + 35 = 175 MiB fits; the completions alone would not tell.
    assert plan.recommended_max_partitions_per_run is None
    tight = plan_from_probes(
        days, runs, max_partitions_per_run=2, assumptions=a, latency_seconds=0.1, probe_requests=0,
        memory_budget_bytes=170 * MiB,
        responses_run_totals={(days[0].day, days[1].day): 30, (days[2].day, days[3].day): 5},
    )  # fmt: skip
    # Whole range 175 MiB; in 3 days, [10,10,10] + both planned runs' 30 + 5 = 165, [10] + 5 = 115.
    assert tight.recommended_max_partitions_per_run == 3


def test_the_cli_plans_both_endpoints_and_no_responses_asks_nothing_of_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with http_server("127.0.0.1", totals_server(lambda d: BUSY.get(d, 0))) as (root, seen):
        url = f"{root}/v1"
        monkeypatch.setenv("CLOUDGLUE_API_KEY", TEST_KEY)
        argv = ["plan", "--start", "2026-05-02", "--end", "2026-05-08", "--max-partitions-per-run", "3"]
        assert cli_main([*argv, "--base-url", url, "--latency", "0.5"]) == 0
        both = capsys.readouterr().out
        assert len(probed(seen, "/v1/responses")) == 3
        seen.clear()
        assert cli_main([*argv, "--base-url", url, "--no-responses"]) == 0
        alone = capsys.readouterr().out
        assert probed(seen, "/v1/responses") == [] and len(seen) == 9
    assert "Total: 18 requests (exact, for honest answers: 12 chat completions + 6 responses)" in both
    assert "response requests" in both and "response" not in alone.lower()
    assert "Total: 12 requests (exact, for honest answers), about" in alone


def test_the_plan_job_plans_responses_when_the_account_builds_them() -> None:
    with http_server("127.0.0.1", totals_server(lambda d: BUSY.get(d, 0))) as (root, seen):
        url = f"{root}/v1"
        for responses in (True, False):
            seen.clear()
            built = build_cloudglue_assets(start_date="2026-05-01", responses=responses)
            defs = dg.Definitions.merge(
                built.definitions(),
                dg.Definitions(resources={"cloudglue": CloudglueResource(api_key=TEST_KEY, base_url=url)}),
            )
            config = {"start": "2026-05-02", "end": "2026-05-08", "max_partitions_per_run": 3}
            result = defs.resolve_job_def("cloudglue_plan_backfill").execute_in_process(
                run_config={"ops": {"cloudglue__plan_backfill": {"config": config}}}
            )
            assert result.success
            (observation,) = [
                e.event_specific_data.asset_observation
                for e in result.all_events
                if e.event_type_value == "ASSET_OBSERVATION"
            ]
            metadata = {k: v.value for k, v in observation.metadata.items()}
            assert len(probed(seen, "/v1/responses")) == (3 if responses else 0)
            assert metadata["planned_requests"] == (18 if responses else 12)
            assert metadata["planned_response_requests"] == (6 if responses else 0)
            assert ("| window responses | response requests |" in metadata["backfill_plan"]) == responses
