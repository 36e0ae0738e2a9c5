"""A day that is not a partition is refused with a message naming start_date, the key asked
and the keys there are, wherever the package can say it.

Dagster's own message is "Could not find a partition with key `2025-12-01`". The assets'
partitions (``CloudglueDailyPartitionsDefinition``) replace it wherever Dagster asks them: the
CLI (``dagster asset materialize``, ``dg launch``), ``materialize()``, run requests. A run
that reaches the step anyway (launched with partition tags) is refused there, before any
request. The CLI then adds its own last line; the message is the exception it reports.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.errors import DagsterUnknownPartitionError
from dagster._serdes import serialize_value
from support.pipeline import Pipeline
from support.reliability import materialize_cmd

from cloudglue_dagster import build_cloudglue_assets
from cloudglue_dagster.assets.partitions import CloudglueDailyPartitionsDefinition
from cloudglue_dagster.definitions import DEFAULT_START_DATE
from cloudglue_dagster.emulator import Emulator

REPO = Path(__file__).resolve().parents[1]


def yesterday() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)


def bundled_cli(tmp_path: Path, *partition: str) -> subprocess.CompletedProcess[str]:
    """``dagster asset materialize`` of cloudglue_dagster.definitions, with its defaults."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDGLUE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))  # this tree
    env["DAGSTER_HOME"] = str(tmp_path)
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return subprocess.run(
        materialize_cmd(*partition), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.processes
def test_the_cli_names_start_date_and_the_partitions_for_a_day_before_start_date(tmp_path: Path) -> None:
    done = bundled_cli(tmp_path, "--partition", "2025-12-01")
    said = done.stdout + done.stderr
    assert done.returncode != 0
    assert (
        f"No Cloudglue partition `2025-12-01`: it is before start_date ({DEFAULT_START_DATE}), the first"
        f" partition. The partitions are the UTC days from start_date to yesterday:"
        f" {DEFAULT_START_DATE}...{yesterday().isoformat()}."
    ) in said
    assert "CLOUDGLUE_START_DATE for cloudglue_dagster.definitions" in said
    assert not (tmp_path / "cloudglue.duckdb").exists()  # refused before any run


@pytest.mark.processes
def test_the_cli_names_the_day_of_a_range_that_has_not_ended(tmp_path: Path) -> None:
    today = dt.datetime.now(dt.timezone.utc).date()
    done = bundled_cli(tmp_path, "--partition-range", f"{yesterday().isoformat()}...{today.isoformat()}")
    said = done.stdout + done.stderr
    assert done.returncode != 0
    # Dagster's own last line names the range's start whichever end is wrong; this names the end.
    assert f"No Cloudglue partition `{today.isoformat()}`: that UTC day has not ended yet" in said
    assert f"{DEFAULT_START_DATE}...{yesterday().isoformat()}" in said


def test_materialize_in_python_names_start_date(cloudglue_emulator: Emulator, tmp_path: Path) -> None:
    pipeline = Pipeline(cloudglue_emulator, tmp_path / "w.duckdb", "2026-01-01")
    with pytest.raises(DagsterUnknownPartitionError) as refused:
        pipeline.materialize("2025-12-31")
    assert str(refused.value).startswith("No Cloudglue partition `2025-12-31`: it is before start_date (2026-01-01)")
    with pytest.raises(DagsterUnknownPartitionError, match="`not-a-day`: it is not a UTC day written YYYY-MM-DD"):
        pipeline.materialize("not-a-day")
    assert cloudglue_emulator.requests_served == 0


@pytest.mark.parametrize(
    ("first", "last", "named", "why"),
    [
        ("2025-12-30", "2026-01-02", "2025-12-30", "it is before start_date (2026-01-01)"),
        ("2026-01-02", "tomorrow", "tomorrow", "that UTC day has not ended yet"),
    ],
)
def test_a_run_that_reaches_the_step_with_days_outside_the_partitions_fails_before_any_request(
    cloudglue_emulator: Emulator, tmp_path: Path, first: str, last: str, named: str, why: str
) -> None:
    """Partition tags are not checked by Dagster when a run is launched with them (as a run
    launched from a process that holds only a snapshot of the partitions may be): the step checks."""
    tomorrow = (yesterday() + dt.timedelta(days=2)).isoformat()  # a far future day costs Dagster minutes
    last, named = (tomorrow if day == "tomorrow" else day for day in (last, named))
    pipeline = Pipeline(cloudglue_emulator, tmp_path / "w.duckdb", "2026-01-01")
    result = pipeline.materialize(first, last, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.to_string()  # the step error, caused by ours
    assert f"No Cloudglue partition `{named}`: {why}" in message
    assert f"2026-01-01...{yesterday().isoformat()}" in message
    assert cloudglue_emulator.requests_served == 0


def test_the_partitions_are_stored_as_dagster_daily_partitions() -> None:
    """Nothing Dagster stores or compares names the subclass: snapshots, subsets and the
    identity derived from repr are those of DailyPartitionsDefinition."""
    from dagster._core.definitions.partitions.snap import PartitionsSnap

    ours = build_cloudglue_assets(start_date="2026-01-01").partitions_def
    plain = dg.DailyPartitionsDefinition(start_date="2026-01-01", timezone="UTC")
    assert isinstance(ours, CloudglueDailyPartitionsDefinition)
    assert ours == plain and hash(ours) == hash(plain) and repr(ours) == repr(plain)
    assert ours.get_serializable_unique_identifier() == plain.get_serializable_unique_identifier()
    assert serialize_value(PartitionsSnap.from_def(ours)) == serialize_value(PartitionsSnap.from_def(plain))
    keys = ["2026-01-02", "2026-01-03"]
    assert serialize_value(ours.subset_with_partition_keys(keys).to_serializable_subset()) == serialize_value(
        plain.subset_with_partition_keys(keys).to_serializable_subset()
    )
