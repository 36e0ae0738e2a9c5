"""The one step behind every table, and what it is made of, whatever the warehouse.

* :mod:`.step`: :class:`TablesStep`: each day's tables from one sweep, handed on together;
* :mod:`.api_days`: chat_completions' days from the API, the shrink guard;
* :mod:`.tables`: each table of a day built from chat_completions' rows, its metadata and checks;
* :mod:`.base`: the run's days, resuming, per-table records (the metadata rule);
* :mod:`.warehouse`: the warehouse seen through any other pandas I/O manager.
"""

from .base import Recorder, resume_runs, run_days
from .step import StepSettings, TablesStep
from .tables import CHAT, RESPONSES, Source, Table, sources_for, tables_for

__all__ = [
    "CHAT",
    "RESPONSES",
    "Recorder",
    "Source",
    "StepSettings",
    "Table",
    "TablesStep",
    "resume_runs",
    "run_days",
    "sources_for",
    "tables_for",
]
