"""Local, faithful emulator of Cloudglue's ``GET /v1/chat/completions`` and ``GET /v1/responses``.

Standard library only. Typical use::

    from datetime import date
    from cloudglue_dagster.emulator import Dataset, Emulator

    ds = Dataset(date(2026, 1, 1), date(2026, 1, 14), per_day=200, seed=0)
    with Emulator(ds, api_key="k", boundary="exclusive") as emu:
        ...  # point a client at emu.base_url; compare with emu.ground_truth(day)
        ...  # and emu.responses_ground_truth(day) (emu.responses: a ResponsesDataset)

Command line: ``python -m cloudglue_dagster.emulator --port 8787``.
Pytest fixtures ``cloudglue_emulator`` and ``cloudglue_emulator_factory``
are registered automatically (``pytest11`` entry point).
"""

from .content import TEXT_MODES
from .data import Dataset, DayTruth
from .faults import ALL_FAULT_KINDS, FAULT_KINDS
from .responses import ResponsesDataset, ResponsesDayTruth
from .server import ENDPOINT, RESPONSES_ENDPOINT, Emulator, LoggedRequest
from .timeutil import BOUNDARY_READINGS, ORDERS, TIMESTAMP_UNITS

__all__ = [
    "ALL_FAULT_KINDS",
    "BOUNDARY_READINGS",
    "ENDPOINT",
    "FAULT_KINDS",
    "ORDERS",
    "RESPONSES_ENDPOINT",
    "TEXT_MODES",
    "TIMESTAMP_UNITS",
    "Dataset",
    "DayTruth",
    "Emulator",
    "LoggedRequest",
    "ResponsesDataset",
    "ResponsesDayTruth",
]
