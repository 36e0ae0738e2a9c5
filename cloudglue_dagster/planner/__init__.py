"""The backfill planner: :mod:`.plan` (no Dagster: requests, time and memory per run, and how
to split a range; ``python -m cloudglue_dagster plan``) and :mod:`.job` (the planner as a
Dagster job that records a plan in the UI)."""

from .plan import DEFAULT_ASSUMPTIONS, Assumptions, BackfillPlan, DayProbe, RunPlan, parse_size, plan_backfill

__all__ = ["DEFAULT_ASSUMPTIONS", "Assumptions", "BackfillPlan", "DayProbe", "RunPlan", "parse_size", "plan_backfill"]
