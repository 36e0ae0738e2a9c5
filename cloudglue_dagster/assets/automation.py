"""What runs the assets: the account's job, its daily schedule, freshness checks and sensors.

Every name comes from the account (the key prefix joined with ``_``), never from the asset
keys a translator chose, so renaming the assets does not rename a running schedule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import dagster as dg

from cloudglue_dagster.internals import UnresolvedAssetJobDefinition

from .in_progress import build_in_progress_sensor
from .options import AssetOptions
from .sensors import build_freshness, build_late_data_sensor

__all__ = ["Automation", "build_automation"]


@dataclass(frozen=True)
class Automation:
    job: UnresolvedAssetJobDefinition
    schedule: dg.ScheduleDefinition
    freshness_checks: tuple[dg.AssetChecksDefinition, ...]
    sensors: tuple[dg.SensorDefinition, ...]


def build_automation(
    options: AssetOptions, assets_defs: Sequence[dg.AssetsDefinition], keys: Mapping[str, dg.AssetKey]
) -> Automation:
    """The job over the account's tables (``keys``: table -> key; ``assets_defs``: their
    assets), its schedule, and the enabled checks and sensors."""
    job = dg.define_asset_job(
        name=f"{options.name}_daily",
        selection=dg.AssetSelection.assets(*keys.values()),
        # Given here, not left to Definitions: the schedule below is then a ScheduleDefinition
        # at once (without it, an unresolved schedule with no cron_schedule to read).
        partitions_def=options.partitions_def,
        description="Materializes every Cloudglue table of the account for a day (or a range).",
    )
    schedule = dg.build_schedule_from_partitioned_job(
        job,
        hour_of_day=options.schedule_hour,
        description=f"Each day at {options.schedule_hour:02d}:00 UTC, loads the UTC day that just ended.",
    )
    assert isinstance(schedule, dg.ScheduleDefinition)  # the job has its partitions (above)
    freshness_checks: Sequence[dg.AssetChecksDefinition] = ()
    sensors: list[dg.SensorDefinition] = []
    if options.freshness_deadline_hour is not None:
        freshness_checks, freshness_sensor = build_freshness(
            assets=list(assets_defs),
            deadline_hour=options.freshness_deadline_hour,
            sensor_name=f"{options.name}_freshness_sensor",
        )
        sensors.append(freshness_sensor)
    if options.late_data_lookback_days is not None:
        # One per endpoint; the responses' re-loads only the tables built from it.
        watched: list[tuple[str, str, list[dg.AssetKey] | None]] = [("chat_completions", "late_data_sensor", None)]
        if options.responses:
            watched.append(("responses", "responses_late_data_sensor", [keys["responses"], keys["llm_usage"]]))
        for source, sensor_name, selection in watched:
            sensors.append(
                build_late_data_sensor(
                    name=f"{options.name}_{sensor_name}",
                    job=job,
                    source_key=keys[source],
                    partitions_def=options.partitions_def,
                    resource_key=options.resource_key,
                    lookback_days=options.late_data_lookback_days,
                    minimum_interval_seconds=options.late_data_interval_seconds,
                    source=source,
                    asset_selection=selection,
                )
            )
    if options.responses and options.in_progress_limit_hours is not None:
        sensors.append(
            build_in_progress_sensor(
                name=f"{options.name}_in_progress_sensor",
                job=job,
                responses_key=keys["responses"],
                llm_usage_key=keys["llm_usage"],
                partitions_def=options.partitions_def,
                limit_hours=options.in_progress_limit_hours,
                minimum_interval_seconds=options.late_data_interval_seconds,
            )
        )
    return Automation(job, schedule, tuple(freshness_checks), tuple(sensors))
