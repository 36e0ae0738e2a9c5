"""``python -m cloudglue_dagster plan``: what a backfill will cost, before you click *Backfill*.

The API key is read from ``CLOUDGLUE_API_KEY`` (never an argument: it would be in the shell's
history and the process list); the API root from ``--base-url`` or ``CLOUDGLUE_BASE_URL``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Sequence

from cloudglue_dagster.api.client import DEFAULT_BASE_URL, CloudglueClient
from cloudglue_dagster.planner.plan import DEFAULT_ASSUMPTIONS, Assumptions, parse_size, plan_backfill

from .environment import API_KEY, BASE_URL
from .errors import CloudglueError


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cloudglue_dagster")
    commands = parser.add_subparsers(dest="command", required=True)
    plan = commands.add_parser("plan", help="probe a range of UTC days and plan its backfill")
    plan.add_argument("--start", type=_date, required=True, help="first UTC day, YYYY-MM-DD")
    plan.add_argument("--end", type=_date, help="last UTC day, YYYY-MM-DD (default: yesterday, UTC)")
    plan.add_argument("--max-partitions-per-run", type=int, help="days per run, as the assets' option (default: all)")
    plan.add_argument("--memory", type=parse_size, help="memory budget per run, e.g. 2GiB: recommends a split")
    plan.add_argument("--concurrency", type=int, default=DEFAULT_ASSUMPTIONS.concurrency, help="requests at once (8)")
    plan.add_argument("--latency", type=float, help="seconds per request (default: the probes' median)")
    plan.add_argument(
        "--whole-range",
        action="store_true",
        help="plan for an I/O manager handed the whole range (not ours, which commits day by day)",
    )
    plan.add_argument(
        "--no-responses",
        dest="responses",
        action="store_false",
        help="plan chat completions alone (for assets built with responses=False): nothing is asked of /v1/responses",
    )
    plan.add_argument("--markdown", action="store_true", help="print markdown instead of text")
    plan.add_argument("--base-url", default=os.environ.get(BASE_URL) or DEFAULT_BASE_URL)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    key = os.environ.get(API_KEY, "")
    if not key:
        print("error: set CLOUDGLUE_API_KEY to the account's API key", file=sys.stderr)
        return 2
    end = args.end or dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
    if args.max_partitions_per_run is not None and args.max_partitions_per_run < 1:
        print(f"error: --max-partitions-per-run must be >= 1, got {args.max_partitions_per_run}", file=sys.stderr)
        return 2
    assumptions = Assumptions(
        concurrency=args.concurrency, latency_seconds=args.latency, streaming=not args.whole_range
    )
    try:
        with CloudglueClient(key, args.base_url, max_concurrent_requests=args.concurrency) as client:
            plan = plan_backfill(
                client,
                args.start,
                end,
                max_partitions_per_run=args.max_partitions_per_run,
                assumptions=assumptions,
                memory_budget_bytes=args.memory,
                responses=args.responses,
            )
    except CloudglueError as exc:  # the config errors too: each names its fix
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(plan.to_markdown() if args.markdown else plan.to_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
