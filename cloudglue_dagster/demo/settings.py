"""The demo's settings, defaults, date window and small output helpers."""

from __future__ import annotations

import datetime as dt
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: keeps `--help` fast
    from cloudglue_dagster.emulator import Dataset, ResponsesDataset

__all__ = [
    "ASSET_SELECTION",
    "DEFAULT_DAYS",
    "DEFAULT_HOME",
    "DEFAULT_PER_DAY",
    "DEFAULT_SEED",
    "DEFINITIONS_MODULE",
    "DUCKDB_FILE",
    "DemoError",
    "SCHEMA",
    "Settings",
    "demo_dataset",
    "last_lines",
    "resolve_window",
    "say",
    "shown_path",
]

DEFAULT_DAYS = 14
DEFAULT_PER_DAY = 250
DEFAULT_SEED = 0
DEFAULT_HOME = ".dagster_home"
DUCKDB_FILE = "warehouse.duckdb"
SCHEMA = "cloudglue"
ASSET_SELECTION = 'key:"cloudglue/*"'
DEFINITIONS_MODULE = "cloudglue_dagster.definitions"


class DemoError(Exception):
    """A failure with a message meant for the user (printed as ``demo failed: ...``)."""


@dataclass(frozen=True)
class Settings:
    """Where the demo writes and which data set it serves."""

    home: Path
    duckdb: Path
    start: dt.date
    end: dt.date  # inclusive
    per_day: int = DEFAULT_PER_DAY
    seed: int = DEFAULT_SEED
    emulator_port: int = 0

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def partition_range(self) -> str:
        return f"{self.start.isoformat()}...{self.end.isoformat()}"


def say(message: str = "", *, out: IO[str] | None = None) -> None:
    print(message, file=out or sys.stdout, flush=True)


def shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it is inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def last_lines(lines: Sequence[str], n: int = 30) -> str:
    kept = [line.rstrip("\n") for line in lines if not _is_noise(line)]
    return "\n".join("    " + line for line in kept[-n:])


_WARNING_RE = re.compile(r"^\S+\.py:\d+: \w*Warning: ")


def _is_noise(line: str) -> bool:
    """Python warnings (Beta/Preview/Supersession) and the source line that follows them."""
    return bool(_WARNING_RE.match(line)) or line.startswith("  return ")


# -- the data set and its window ---------------------------------------------------------------


def resolve_window(start: dt.date | None, days: int, today: dt.date) -> tuple[dt.date, dt.date]:
    """First and last UTC day of the demo's data set.

    By default the ``days`` days ending yesterday (UTC): daily partitions end yesterday, and
    the UI plots the latest partitions, so the demo's days are the ones it shows. A day's
    completions depend only on the seed and the date, so re-running (the same day) writes
    the same rows again. ``start`` pins the window instead; it must have ended.
    """
    if days < 1:
        raise DemoError(f"--days must be >= 1, got {days}")
    yesterday = today - dt.timedelta(days=1)
    if start is None:
        return yesterday - dt.timedelta(days=days - 1), yesterday
    end = start + dt.timedelta(days=days - 1)
    if end > yesterday:
        raise DemoError(
            f"the window {start}..{end} is not over yet: daily partitions end yesterday"
            f" ({yesterday}, UTC). Choose an earlier --start or fewer --days."
        )
    return start, end


def demo_dataset(settings: Settings) -> Dataset:
    from cloudglue_dagster.emulator import Dataset

    return Dataset(settings.start, settings.end, per_day=settings.per_day, seed=settings.seed)


def demo_responses(settings: Settings) -> ResponsesDataset:
    """The responses the demo's emulator serves (its default beside :func:`demo_dataset`)."""
    from cloudglue_dagster.emulator import ResponsesDataset

    per_day = ResponsesDataset.per_day_beside(settings.per_day)
    return ResponsesDataset(settings.start, settings.end, per_day, settings.seed)
