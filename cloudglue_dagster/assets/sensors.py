"""Freshness checks and the late-data sensor of the daily assets.

Freshness: by ``deadline_hour`` UTC each day, the day that just ended must be
loaded (Dagster's time-partition freshness checks, evaluated at the end of
every run that materializes the assets, and by a sensor between runs).

Late data: completions can reach the API after their day was loaded. The
sensor re-reads each recent day's ``total`` (one ``limit=1`` request per day,
over the same padded dates the assets query, see :mod:`cloudglue_dagster.api.window`) and asks for
a re-materialization of the days whose count changed since they were loaded.

The API filters by whole dates whose boundary reading it does not document,
so the padded query of day D can cover D-1 and D+1 too: a late completion on
D then also changes the probes of its neighbours, and they are re-loaded with
it: a few extra day loads, D itself always among them. Where the server
excludes both named dates, the probe is exactly day D.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import dagster as dg

from cloudglue_dagster.api.client import CloudglueClient
from cloudglue_dagster.api.window import padded_dates
from cloudglue_dagster.internals import UnresolvedAssetJobDefinition
from cloudglue_dagster.resource import CloudglueResource

from .checks import latest_materializations
from .metadata_keys import RUN_PARTITIONS, WINDOW_RECEIVED

__all__ = [
    "LATE_DATA_PROBES",
    "LoadedDay",
    "build_freshness",
    "build_late_data_sensor",
    "late_days",
]


def build_freshness(
    *,
    assets: Sequence[dg.AssetsDefinition],
    deadline_hour: int,
    sensor_name: str,
) -> tuple[Sequence[dg.AssetChecksDefinition], dg.SensorDefinition]:
    """Freshness checks on ``assets`` (daily, UTC) and the sensor that evaluates them between runs.

    Each check passes once the latest UTC day that ended before the most recent
    ``deadline_hour``:00 UTC is materialized: from 06:00 UTC (the default), yesterday.
    Every run that materializes the assets also evaluates their checks, after
    the materialization; the sensor (stopped by default) re-evaluates them
    when one can have become overdue.
    """
    checks = dg.build_time_partition_freshness_checks(
        assets=list(assets),
        deadline_cron=f"0 {deadline_hour} * * *",
        timezone="UTC",
        severity=dg.AssetCheckSeverity.WARN,
    )
    sensor = dg.build_sensor_for_freshness_checks(
        freshness_checks=checks,
        name=sensor_name,
        minimum_interval_seconds=600,
        default_status=dg.DefaultSensorStatus.STOPPED,
    )
    return checks, sensor


@dataclass(frozen=True)
class LoadedDay:
    """The latest materialization of a day of ``chat_completions``.

    Attributes:
        storage_id: its event's storage id (a new load has a new one).
        received: ``window_received`` when it was a single-day run, i.e. the
            ``total`` of exactly the query the sensor repeats; None for a day
            loaded by a range run (its sweep covered the range, and its figures are
            on the run's observation, not on the day).
    """

    storage_id: int
    received: int | None


Cursor = dict[str, tuple[int, int]]
"""Per day: ``(storage_id, baseline total)``."""


def late_days(
    loaded: Mapping[str, LoadedDay], probes: Mapping[str, int], cursor: Mapping[str, tuple[int, int]]
) -> tuple[list[str], Cursor]:
    """The days whose probed ``total`` differs from its baseline, and the new cursor.

    A day's baseline is, for its latest materialization: the cursor's value
    if the cursor saw that materialization; else its ``received`` (single-day
    run); else the first probe after it, which is then recorded and compared
    from the next tick on. Only days in both ``loaded`` and ``probes`` are
    considered or kept in the cursor.
    """
    changed: list[str] = []
    new_cursor: Cursor = {}
    for day in sorted(set(loaded) & set(probes)):
        load, probe = loaded[day], probes[day]
        seen = cursor.get(day)
        if seen is not None and seen[0] == load.storage_id:
            baseline = seen[1]
        elif load.received is not None:
            baseline = load.received
        else:
            baseline = probe
        new_cursor[day] = (load.storage_id, baseline)
        if probe != baseline:
            changed.append(day)
    return changed, new_cursor


def _loaded_days(instance: dg.DagsterInstance, source_key: dg.AssetKey, days: Sequence[str]) -> dict[str, LoadedDay]:
    out: dict[str, LoadedDay] = {}
    for day, record in latest_materializations(instance, source_key, days).items():
        if record is None:
            continue  # never loaded: backfills and the freshness checks cover it
        materialization = record.asset_materialization
        metadata = {k: v.value for k, v in (materialization.metadata if materialization else {}).items()}
        single_day = metadata.get(RUN_PARTITIONS) == 1 and isinstance(metadata.get(WINDOW_RECEIVED), int)
        out[day] = LoadedDay(record.storage_id, metadata[WINDOW_RECEIVED] if single_day else None)
    return out


def _read_cursor(text: str | None) -> Cursor:
    if not text:
        return {}
    try:
        return {day: (int(v[0]), int(v[1])) for day, v in json.loads(text).items()}
    except (ValueError, TypeError, KeyError, IndexError):
        return {}  # an unreadable cursor only costs a tick of fresh baselines


Probe = Callable[[CloudglueClient, dt.date, dt.date], int]
"""``(client, created_after, created_before)`` -> the ``total`` of one endpoint's padded window."""

LATE_DATA_PROBES: dict[str, tuple[str, Probe]] = {
    "chat_completions": (
        "completion",
        lambda client, after, before: (
            client.list_chat_completions(limit=1, created_after=after, created_before=before).total
        ),
    ),
    "responses": (
        "response",
        lambda client, after, before: client.list_responses(limit=1, created_after=after, created_before=before).total,
    ),
}
"""Source table -> what it is called and how a late-data sensor probes its endpoint's count."""


def build_late_data_sensor(
    *,
    name: str,
    job: UnresolvedAssetJobDefinition,
    source_key: dg.AssetKey,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    resource_key: str,
    lookback_days: int,
    minimum_interval_seconds: int,
    source: str = "chat_completions",
    asset_selection: Sequence[dg.AssetKey] | None = None,
) -> dg.SensorDefinition:
    """A sensor (stopped by default) that re-materializes, through ``job``, the days
    of the last ``lookback_days`` UTC days whose count of ``source`` records changed since
    ``source_key`` (that source table's key) loaded them. Days never loaded are left alone.

    Args:
        source: ``chat_completions`` or ``responses`` (:data:`LATE_DATA_PROBES`).
        asset_selection: the assets each run re-loads; None: all of ``job``'s.
    """
    noun, probe = LATE_DATA_PROBES[source]

    @dg.sensor(
        name=name,
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.STOPPED,
        required_resource_keys={resource_key},
        description=(
            f"Every {minimum_interval_seconds // 60} min, re-reads the {noun} count of each of the last"
            f" {lookback_days} UTC days (one request per day) and re-loads the days whose count changed since"
            f" they were loaded (late {noun}s, or deleted ones)."
        ),
    )
    def late_data_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        now = dt.datetime.now(dt.timezone.utc)
        days = partitions_def.get_partition_keys(current_time=now)[-lookback_days:]
        loaded = _loaded_days(context.instance, source_key, days)
        if not loaded:
            return dg.SkipReason(f"none of the last {lookback_days} days is loaded yet")
        resource: CloudglueResource = getattr(context.resources, resource_key)
        probes: dict[str, int] = {}
        with resource.get_client(logger=context.log) as client:
            for day in loaded:
                window = partitions_def.time_window_for_partition_key(day)
                after, before = padded_dates(window.start, window.end)
                probes[day] = probe(client, after, before)
        changed, cursor = late_days(loaded, probes, _read_cursor(context.cursor))
        requests = [
            dg.RunRequest(
                run_key=f"{day}:{cursor[day][0]}:{probes[day]}",
                partition_key=day,
                asset_selection=None if asset_selection is None else list(asset_selection),
                tags={"cloudglue/late_data": f"{cursor[day][1]}->{probes[day]}"},
            )
            for day in changed
        ]
        for day in changed:
            context.log.info(f"{day}: {cursor[day][1]} {noun}s when loaded, {probes[day]} now; re-loading")
        return dg.SensorResult(
            run_requests=requests,
            cursor=json.dumps({day: list(v) for day, v in cursor.items()}, sort_keys=True),
            skip_reason=None if requests else f"no change in {len(probes)} loaded day(s)",
        )

    return late_data_sensor
