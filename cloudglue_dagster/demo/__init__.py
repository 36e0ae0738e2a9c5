"""The one-command demo (``make demo``) and the UI launcher (``make ui``).

``python -m cloudglue_dagster.demo`` (the ``run`` command, the default):

1. starts the local Cloudglue emulator in a background process over a
   deterministic data set (by default the 14 UTC days ending yesterday, ~250
   completions a day, seed 0: a few thousand completions, quiet, busy and
   empty days; a day's completions depend only on the seed and the date) with
   a freshly generated API key that is never printed;
2. runs a real Dagster backfill of those days through
   ``cloudglue_dagster.definitions`` with the Dagster CLI
   (``dagster asset materialize ... --partition-range A...B``: one run, the
   asset checks included), recorded in a project-local ``DAGSTER_HOME``
   (``./.dagster_home``) so that ``make ui`` shows the run afterwards, and
   writing the DuckDB file ``./.dagster_home/warehouse.duckdb``;
3. reads the three tables back from DuckDB, verifies them against the emulator's
   ground truth and prints a per-day summary (completions and tokens, by model);
4. stops the emulator, on every exit path.

Running it again replaces the same partitions with the same rows. Any failure
ends with ``demo failed: <reason>`` on stderr and exit status 1 (130 after
Ctrl-C).

``python -m cloudglue_dagster.demo ui`` starts the emulator over the same data
set and ``dagster dev -w workspace.yaml`` on the same ``DAGSTER_HOME`` and
DuckDB file (running the backfill first if the DuckDB file lacks a day of
the window), prints the URL and serves until Ctrl-C (exit status 0).

Child processes run in their own process groups and are stopped as groups
(POSIX only, like the Makefile).
"""

from .backfill import BackfillResult, run_backfill
from .cli import main
from .commands import run_demo, run_ui
from .processes import EmulatorProcess, dagster_env, prepare_home
from .settings import DEFAULT_DAYS, DEFAULT_HOME, DEFAULT_PER_DAY, DEFAULT_SEED, DemoError, Settings, resolve_window
from .summary import DayRow, Summary, format_summary, read_summary, verify

__all__ = [
    "BackfillResult",
    "DEFAULT_DAYS",
    "DEFAULT_HOME",
    "DEFAULT_PER_DAY",
    "DEFAULT_SEED",
    "DayRow",
    "DemoError",
    "EmulatorProcess",
    "Settings",
    "Summary",
    "dagster_env",
    "format_summary",
    "main",
    "prepare_home",
    "read_summary",
    "resolve_window",
    "run_backfill",
    "run_demo",
    "run_ui",
    "verify",
]
