"""The demo's command line: arguments, Ctrl-C and SIGTERM, exit statuses."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .commands import run_demo, run_ui
from .settings import (
    DEFAULT_DAYS,
    DEFAULT_HOME,
    DEFAULT_PER_DAY,
    DEFAULT_SEED,
    DUCKDB_FILE,
    DemoError,
    Settings,
    resolve_window,
    say,
)

__all__ = ["build_parser", "main"]


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {n}")
        return n

    return parse


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", type=Path, default=Path(DEFAULT_HOME),
                        help=f"Dagster home of the demo (default ./{DEFAULT_HOME})")  # fmt: skip
    common.add_argument("--duckdb", type=Path, default=None,
                        help=f"DuckDB file (default <home>/{DUCKDB_FILE})")  # fmt: skip
    common.add_argument("--start", type=_date, default=None,
                        help="first UTC day of the data set (default: the window ends yesterday, UTC)")  # fmt: skip
    common.add_argument("--days", type=_int_at_least(1), default=DEFAULT_DAYS, help=f"default {DEFAULT_DAYS}")
    common.add_argument("--per-day", type=_int_at_least(0), default=DEFAULT_PER_DAY,
                        help=f"mean completions of a non-empty day (default {DEFAULT_PER_DAY})")  # fmt: skip
    common.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"data set seed (default {DEFAULT_SEED})")
    common.add_argument("--emulator-port", type=_int_at_least(0), default=0,
                        help="port of the emulator (default 0: a free one)")  # fmt: skip
    parser = argparse.ArgumentParser(
        prog="python -m cloudglue_dagster.demo",
        description="Backfill a two-week emulated Cloudglue data set into DuckDB with Dagster (run),"
        " or serve the Dagster UI over it (ui).",
        epilog="Options of both commands (see `run --help`): --home, --duckdb, --start, --days,"
        " --per-day, --seed, --emulator-port. `ui` adds --host and --port.",
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", parents=[common], help="emulator + backfill + summary (the default)")
    ui = commands.add_parser("ui", parents=[common], help="emulator + dagster dev on the demo's Dagster home")
    ui.add_argument("--host", default="127.0.0.1", help="webserver host (default 127.0.0.1)")
    ui.add_argument("--port", type=_int_at_least(1), default=3000, help="webserver port (default 3000)")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    start, end = resolve_window(args.start, args.days, dt.datetime.now(dt.timezone.utc).date())
    home = args.home
    return Settings(
        home=home,
        duckdb=args.duckdb if args.duckdb is not None else home / DUCKDB_FILE,
        start=start,
        end=end,
        per_day=args.per_day,
        seed=args.seed,
        emulator_port=args.emulator_port,
    )


@contextlib.contextmanager
def _interrupts() -> Iterator[None]:
    """Ctrl-C and SIGTERM unwind as ``KeyboardInterrupt``, so the ``finally`` blocks stop the
    child processes (which run in their own process groups and do not see the terminal's
    Ctrl-C). SIGINT is set even if the shell started us with it ignored (``cmd &``)."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("run", "ui", "-h", "--help"):
        argv.insert(0, "run")
    args = build_parser().parse_args(argv)
    out = sys.stdout
    try:
        with _interrupts():
            settings = _settings(args)
            if args.command == "ui":
                return run_ui(settings, args.host, args.port, out=out)
            run_demo(settings, out=out)
            return 0
    except DemoError as exc:
        say(f"demo failed: {exc}", out=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if args.command == "ui":  # Ctrl-C is how the UI is meant to stop
            say("stopped: Dagster and the emulator were shut down", out=sys.stderr)
            return 0
        say("interrupted; the emulator and Dagster processes were stopped", out=sys.stderr)
        return 130
