"""Helpers of the test suite, imported by name (``from support.pipeline import Pipeline``).

* ``pipeline``: the assets wired to an emulator and a DuckDB file (``Pipeline``), ``read_table``;
* ``reliability``: ground truth from the emulator's raw records, the Dagster CLI, loopback
  servers, deterministic fault seeds;
* ``hostile_server``: a loopback proxy that lies in one chosen way (or several);
* ``leaks``: the forms a leaked secret can take (encodings, fragments) and the searches for them;
* ``postgres``: a throwaway PostgreSQL server.

Fixtures stay in ``tests/conftest.py``. The files run by other processes stay beside the tests:
``iom_assets.py`` (a script and a ``defs``), ``streaming_job.py`` and ``production_defs.py``
(code locations loaded from their paths).
"""
