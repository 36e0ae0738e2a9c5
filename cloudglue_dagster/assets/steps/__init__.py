"""The step behind each endpoint's tables, and what it is made of, whatever the warehouse.

Two steps use it: chat completions' (``chat_completions`` and the tables built from it) and
the Responses API's (``responses``); they differ only in their :class:`Source` and tables.

* :mod:`.step`: :class:`TablesStep`: each day's tables from one sweep, handed on together;
* :mod:`.api_days`: the source table's days from the API, the shrink guard;
* :mod:`.tables`: each endpoint's :class:`Source`; each table of a day built from its source
  table's rows, its metadata and checks;
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
