"""The in-progress sensor: days stored while some of their responses were ``in_progress`` are
read again until none remain, within a stated limit.

A response's ``status`` and ``usage`` change after it is created, so a day loaded while one was
``in_progress`` is not final. Each write of ``responses`` records how many of the day's
responses were in progress and the newest one's ``created_at``
(:mod:`.response_checks`). This sensor (stopped by default) reads those records, and no API:
it asks for ``responses`` and ``llm_usage`` of a day again while its latest write holds
in-progress responses and was made before the newest of them had been in progress for
``limit_hours``. The first write after that point is the last: its check reports the responses
still in progress as stuck (``no_stuck_in_progress``, a warning), and the day is left alone.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import dagster as dg

from cloudglue_dagster.internals import UnresolvedAssetJobDefinition

from .checks import latest_materializations
from .metadata_keys import IN_PROGRESS_COUNT, IN_PROGRESS_NEWEST

__all__ = ["InProgressDay", "build_in_progress_sensor", "days_to_reread", "watched_days"]


@dataclass(frozen=True)
class InProgressDay:
    """What a day's latest ``responses`` write recorded: its storage id, when it was made (UTC),
    how many responses were in progress, and the newest one's ``created_at`` (UTC)."""

    storage_id: int
    written_at: dt.datetime
    in_progress: int
    newest: dt.datetime | None


def days_to_reread(days: Mapping[str, InProgressDay], limit_hours: float) -> list[str]:
    """The days to read again: their latest write held in-progress responses, and was made
    before the newest of them had been in progress ``limit_hours``."""
    limit = dt.timedelta(hours=limit_hours)
    return sorted(
        key
        for key, day in days.items()
        if day.in_progress > 0 and day.newest is not None and day.written_at < day.newest + limit
    )


def watched_days(limit_hours: float) -> int:
    """How many recent UTC days can hold a response younger than ``limit_hours`` (plus one:
    the day whose last re-read, just past the limit, is still due)."""
    return math.ceil(limit_hours / 24) + 2


def _in_progress_days(
    instance: dg.DagsterInstance, responses_key: dg.AssetKey, keys: Sequence[str]
) -> dict[str, InProgressDay]:
    out: dict[str, InProgressDay] = {}
    for key, record in latest_materializations(instance, responses_key, keys).items():
        materialization = record.asset_materialization if record is not None else None
        if record is None or materialization is None:
            continue
        values = {k: v.value for k, v in materialization.metadata.items()}
        count, newest = values.get(IN_PROGRESS_COUNT), values.get(IN_PROGRESS_NEWEST)
        out[key] = InProgressDay(
            record.storage_id,
            dt.datetime.fromtimestamp(record.timestamp, dt.timezone.utc),
            count if isinstance(count, int) else 0,
            dt.datetime.fromtimestamp(newest, dt.timezone.utc) if isinstance(newest, (int, float)) else None,
        )
    return out


def build_in_progress_sensor(
    *,
    name: str,
    job: UnresolvedAssetJobDefinition,
    responses_key: dg.AssetKey,
    llm_usage_key: dg.AssetKey,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    limit_hours: int,
    minimum_interval_seconds: int,
) -> dg.SensorDefinition:
    """A sensor (stopped by default) that re-materializes ``responses`` and ``llm_usage``,
    through ``job``, for the recent days stored while responses were in progress (module
    docstring). It sends no API request."""
    lookback = watched_days(limit_hours)

    @dg.sensor(
        name=name,
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=(
            f"Every {minimum_interval_seconds // 60} min, re-loads responses (and llm_usage) of the recent UTC"
            f" days stored while some responses were in_progress, until none remain; a response in_progress"
            f" over {limit_hours} h is reported by the responses check instead."
        ),
    )
    def in_progress_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        now = dt.datetime.now(dt.timezone.utc)
        keys = partitions_def.get_partition_keys(current_time=now)[-lookback:]
        days = _in_progress_days(context.instance, responses_key, keys)
        due = days_to_reread(days, limit_hours)
        for key in due:
            context.log.info(f"{key}: {days[key].in_progress} response(s) in_progress when loaded; re-loading")
        requests = [
            dg.RunRequest(
                run_key=f"{key}:{days[key].storage_id}",
                partition_key=key,
                asset_selection=[responses_key, llm_usage_key],
                tags={"cloudglue/in_progress": str(days[key].in_progress)},
            )
            for key in due
        ]
        if not requests:
            return dg.SkipReason(f"no response in_progress to re-read in the last {lookback} loaded day(s)")
        return dg.SensorResult(run_requests=requests)

    return in_progress_sensor
