"""Command line: serve an emulated Cloudglue API until SIGINT / SIGTERM.

Example::

    python -m cloudglue_dagster.emulator --port 8787 --days 14 --per-day 200
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from datetime import date, datetime, timedelta, timezone
from types import FrameType

from cloudglue_dagster.api.loopback import is_loopback

from .content import TEXT_MODES
from .data import Dataset
from .faults import FAULT_KINDS, validate_kinds
from .responses import ResponsesDataset
from .server import Emulator
from .timeutil import BOUNDARY_READINGS, ORDERS, TIMESTAMP_UNITS

DEFAULT_DAYS = 14


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {value!r}") from None


def _kinds(value: str) -> tuple[str, ...]:
    try:
        return validate_kinds(k.strip() for k in value.split(",") if k.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    p = argparse.ArgumentParser(
        prog="python -m cloudglue_dagster.emulator",
        description="Serve a local emulator of Cloudglue's GET /v1/chat/completions and GET /v1/responses.",
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (loopback only unless --allow-remote)")
    p.add_argument("--port", type=int, default=8787, help="TCP port; 0 picks a free one (default 8787)")
    p.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host")
    p.add_argument(
        "--api-key", default=None, help="accepted bearer token (default: $CLOUDGLUE_API_KEY, else emulator-key)"
    )
    p.add_argument("--start", type=_date, help="first day (default: the window ends yesterday, UTC)")
    span = p.add_mutually_exclusive_group()
    span.add_argument("--days", type=int, help=f"number of days (default {DEFAULT_DAYS})")
    span.add_argument("--end", type=_date, help="last day, inclusive")
    p.add_argument("--per-day", type=int, default=200, help="mean completions per non-empty day (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--text",
        choices=TEXT_MODES,
        default="realistic",
        help="realistic: distinct texts per completion, ~1.4 KB of JSON each (default); "
        "compact: texts from a pool of 256 bodies, which repeat",
    )
    p.add_argument("--boundary", choices=BOUNDARY_READINGS, default="inclusive")
    p.add_argument("--timestamp-unit", choices=TIMESTAMP_UNITS, default="ms", help="chat completions' created_at")
    p.add_argument(
        "--responses-per-day",
        type=int,
        default=None,
        help="mean responses per non-empty day (default: a quarter of --per-day, at least 1 unless it is 0)",
    )
    p.add_argument("--responses-timestamp-unit", choices=TIMESTAMP_UNITS, default="int-s", help="responses' created_at")
    p.add_argument(
        "--in-progress-rate", type=float, default=0.0, help="share of each day's responses in progress (default 0)"
    )
    p.add_argument(
        "--settle-after-seconds",
        type=float,
        default=None,
        help="in-progress responses read as completed this long after start (default: never)",
    )
    p.add_argument("--order", choices=ORDERS, default="newest")
    p.add_argument("--latency-ms", type=float, default=0.0, help="delay before every answer")
    p.add_argument("--max-page-size", type=int, default=100)
    p.add_argument("--fault-rate", type=float, default=0.0, help="probability that a request is faulted")
    p.add_argument("--fault-seed", type=int, default=0)
    p.add_argument(
        "--faults", type=_kinds, default=FAULT_KINDS, help=f"comma-separated subset of {','.join(FAULT_KINDS)}"
    )
    p.add_argument("--retry-after", type=int, default=1, help="Retry-After seconds of 429/503 faults")
    p.add_argument("--slow-seconds", type=float, default=5.0, help="delay of the 'slow' fault")
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return p


def _window(args: argparse.Namespace, today: date) -> tuple[date, date]:
    days = args.days if args.days is not None else DEFAULT_DAYS
    if days < 1:
        raise SystemExit("--days must be >= 1")
    if args.start is not None:
        start = args.start
        end = args.end if args.end is not None else start + timedelta(days=days - 1)
    else:
        end = args.end if args.end is not None else today - timedelta(days=1)
        start = end - timedelta(days=days - 1)
    if end < start:
        raise SystemExit(f"--end {end} is before --start {start}")
    return start, end


def main(argv: list[str] | None = None) -> int:
    """Run the emulator until SIGINT or SIGTERM; returns the exit status."""
    args = build_parser().parse_args(argv)
    if not is_loopback(args.host) and not args.allow_remote:
        print(f"refusing to listen on non-loopback host {args.host!r}; pass --allow-remote", file=sys.stderr)
        return 2
    start, end = _window(args, datetime.now(timezone.utc).date())
    api_key = args.api_key or os.environ.get("CLOUDGLUE_API_KEY") or "emulator-key"
    dataset = Dataset(start, end, per_day=args.per_day, seed=args.seed, text=args.text)
    per_day = args.responses_per_day
    if per_day is None:
        per_day = ResponsesDataset.per_day_beside(args.per_day)
    try:
        responses = ResponsesDataset(
            start,
            end,
            per_day,
            args.seed,
            in_progress_rate=args.in_progress_rate,
            settle_after_seconds=args.settle_after_seconds,
        )
    except ValueError as exc:
        print(f"bad responses options: {exc}", file=sys.stderr)
        return 2
    emu = Emulator(
        dataset,
        responses=responses,
        responses_timestamp_unit=args.responses_timestamp_unit,
        api_key=api_key,
        host=args.host,
        port=args.port,
        boundary=args.boundary,
        timestamp_unit=args.timestamp_unit,
        order=args.order,
        latency_seconds=args.latency_ms / 1000.0,
        max_page_size=args.max_page_size,
        fault_rate=args.fault_rate,
        fault_seed=args.fault_seed,
        fault_kinds=args.faults,
        retry_after_seconds=args.retry_after,
        slow_seconds=args.slow_seconds,
        verbose=args.verbose,
    )
    done = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        emu.start()
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(
        f"Cloudglue emulator listening on {emu.base_url} ({dataset.total} completions, {start}..{end})",
        flush=True,
    )
    print(f"  and {responses.total} responses at {emu.base_url}/responses", flush=True)
    try:
        while not done.wait(0.5):
            pass
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
