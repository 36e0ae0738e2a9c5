"""The planner as a Dagster job: ``<account>_plan_backfill`` records a backfill's plan in the UI.

Launch it from the Launchpad with the range to plan; the plan (requests, time, memory per run,
the split for a memory budget) is recorded as markdown on an observation of
``chat_completions``, so it sits on the asset's page next to what the backfill then did. It
plans the Responses API's sweep too when the account builds ``responses``.
"""

# No `from __future__ import annotations`: Dagster reads the op's config annotation as a type.

import datetime as dt

import dagster as dg
from pydantic import Field

from .plan import Assumptions, parse_size, plan_backfill

__all__ = ["PlanConfig", "build_plan_job"]


class PlanConfig(dg.Config):
    """The range to plan, and what to plan it for."""

    start: str | None = Field(default=None, description="First UTC day, YYYY-MM-DD (default: the first partition).")
    end: str | None = Field(default=None, description="Last UTC day, YYYY-MM-DD (default: yesterday, UTC).")
    max_partitions_per_run: int | None = Field(
        default=None, description="Days per run (default: the assets' own max_partitions_per_run)."
    )
    memory: str | None = Field(default=None, description="Memory budget per run, e.g. 2GiB: recommends a split.")
    whole_range: bool = Field(
        default=False, description="Plan for an I/O manager handed the whole range (not ours: it commits by day)."
    )


def build_plan_job(
    *,
    name: str,
    chat_key: dg.AssetKey,
    first_day: dt.date,
    resource_key: str,
    max_partitions_per_run: int | None,
    responses: bool,
) -> dg.JobDefinition:
    """The job planning a backfill of the account whose assets start on ``first_day``;
    ``responses``: the account builds ``responses`` (the factory's option), so plan its sweep too."""

    @dg.op(name=f"{name}__plan_backfill", required_resource_keys={resource_key})
    def plan_backfill_op(context: dg.OpExecutionContext, config: PlanConfig) -> None:
        resource = getattr(context.resources, resource_key)
        start = dt.date.fromisoformat(config.start) if config.start else first_day
        end = (
            dt.date.fromisoformat(config.end)
            if config.end
            else dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
        )
        assumptions = Assumptions(
            page_size=resource.page_size,
            concurrency=resource.max_concurrent_requests,
            streaming=not config.whole_range,
        )
        with resource.get_client(logger=context.log) as client:
            plan = plan_backfill(
                client,
                start,
                end,
                max_partitions_per_run=config.max_partitions_per_run or max_partitions_per_run,
                assumptions=assumptions,
                memory_budget_bytes=parse_size(config.memory) if config.memory else None,
                responses=responses,
            )
        context.log.info(plan.to_text())
        context.log_event(
            dg.AssetObservation(
                asset_key=chat_key,
                metadata={
                    "backfill_plan": dg.MetadataValue.md(plan.to_markdown()),
                    "planned_days": dg.MetadataValue.text(f"{start}...{end}"),
                    "planned_requests": dg.MetadataValue.int(plan.requests),
                    "planned_response_requests": dg.MetadataValue.int(plan.responses_requests),
                    "planned_runs": dg.MetadataValue.int(len(plan.runs)),
                    "estimated_seconds": dg.MetadataValue.float(round(plan.seconds, 1)),
                    "estimated_peak_memory_mib": dg.MetadataValue.int(round(plan.peak_memory_bytes / 2**20)),
                },
            )
        )

    @dg.job(
        name=f"{name}_plan_backfill",
        description=(
            "Plans a backfill before it runs: probes each UTC day and each run's window with limit=1 requests"
            " (chat completions, and responses when built) and records the requests, time and memory per run"
            " (and a split for a memory budget) on chat_completions."
        ),
    )
    def plan_job() -> None:
        plan_backfill_op()

    return plan_job
