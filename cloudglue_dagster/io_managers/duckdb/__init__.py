"""DuckDB as the warehouse: the I/O manager and what it is made of.

* :mod:`.io_manager`: :class:`CloudglueDuckDBIOManager`, the factory users configure
  (``type_handlers()`` is the override point), and the ``DbIOManager`` it creates;
* :mod:`.client`: :class:`UTCDuckDbClient`, transactions, reads, error mapping;
* :mod:`.pandas_handler`: writing and loading DataFrames with stable types;
* :mod:`.day_store`: every table of a day in one transaction; :mod:`.day_stream`: a run's days
  written, resumed and put back; :mod:`.progress`: the progress marks; :mod:`.previous`: a
  provisional day's previous rows;
* :mod:`.connections`: opening connections (UTC, memory cap, lock waits);
* :mod:`.sql`: quoting, the catalog, partition windows;
* :mod:`.errors`: every error, permanent, explained.
"""

from .client import UTCDuckDbClient
from .connections import DEFAULT_MEMORY_LIMIT, open_connection
from .errors import (
    DuckDBCorruptFileError,
    DuckDBDiskFullError,
    DuckDBLockTimeoutError,
    DuckDBMemoryLimitError,
    DuckDBPathError,
    DuckDBRunTerminatedError,
    DuckDBSchemaError,
    DuckDBStorageError,
    DuckDBWriteError,
    check_database_path,
)
from .io_manager import CloudglueDuckDBIOManager
from .pandas_handler import DuckDBPandasReplaceTypeHandler, write_frame

__all__ = [
    "DEFAULT_MEMORY_LIMIT",
    "CloudglueDuckDBIOManager",
    "DuckDBCorruptFileError",
    "DuckDBDiskFullError",
    "DuckDBLockTimeoutError",
    "DuckDBMemoryLimitError",
    "DuckDBPandasReplaceTypeHandler",
    "DuckDBPathError",
    "DuckDBRunTerminatedError",
    "DuckDBSchemaError",
    "DuckDBStorageError",
    "DuckDBWriteError",
    "UTCDuckDbClient",
    "check_database_path",
    "open_connection",
    "write_frame",
]
