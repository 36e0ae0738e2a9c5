"""The demo's child processes: the emulator, and the Dagster home and environment they share."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .settings import DemoError, Settings, last_lines, shown_path

__all__ = [
    "EmulatorProcess",
    "check_duckdb_unlocked",
    "dagster_env",
    "port_free",
    "prepare_home",
    "spawn_process",
    "stop_process",
    "wait_http",
]

# -- child processes -----------------------------------------------------------------------------


def spawn_process(cmd: Sequence[str], env: Mapping[str, str], **kwargs: Any) -> subprocess.Popen[Any]:
    """Start ``cmd`` in its own process group, so that it and every process it starts can be
    stopped together (`dagster dev` runs a webserver, a daemon and code servers)."""
    return subprocess.Popen(list(cmd), env=dict(env), stdin=subprocess.DEVNULL, start_new_session=True, **kwargs)


def stop_process(proc: subprocess.Popen[Any], sig: int, timeout: float = 20.0) -> None:
    """Stop a process group started by :func:`spawn_process`: ``sig`` (SIGINT is how `dagster dev`
    and `dagster asset materialize` shut down cleanly), then SIGKILL for whatever is left
    after ``timeout`` seconds. Nothing happens if the process has exited already."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # the leader if it hung, and any straggler of its group
    proc.wait()


# -- the emulator in a background process ------------------------------------------------------


_LISTENING_RE = re.compile(r"listening on (http://\S+)")


class EmulatorProcess:
    """``python -m cloudglue_dagster.emulator`` in a child process; a context manager.

    The API key travels in the child's environment (``CLOUDGLUE_API_KEY``), not on its
    command line, so it never shows in ``ps``.
    """

    def __init__(self, settings: Settings, api_key: str, *, startup_timeout: float = 60.0) -> None:
        self.settings = settings
        self._api_key = api_key
        self._startup_timeout = startup_timeout
        self.proc: subprocess.Popen[str] | None = None
        self.base_url: str | None = None
        self.output: deque[str] = deque(maxlen=200)
        self._ready = threading.Event()

    def __enter__(self) -> EmulatorProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> str:
        s = self.settings
        cmd = [
            sys.executable, "-m", "cloudglue_dagster.emulator",
            "--host", "127.0.0.1", "--port", str(s.emulator_port),
            "--start", s.start.isoformat(), "--end", s.end.isoformat(),
            "--per-day", str(s.per_day), "--seed", str(s.seed),
        ]  # fmt: skip
        env = {**os.environ, "CLOUDGLUE_API_KEY": self._api_key, "PYTHONUNBUFFERED": "1"}
        self.proc = spawn_process(cmd, env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           encoding="utf-8", errors="replace")  # fmt: skip
        threading.Thread(target=self._read, name="emulator-output", daemon=True).start()
        if not self._ready.wait(self._startup_timeout) or self.base_url is None:
            self.stop()
            raise DemoError(
                f"the Cloudglue emulator did not start (port {s.emulator_port or 'any'} on 127.0.0.1):\n"
                + (last_lines(list(self.output)) or "    (no output)")
            )
        return self.base_url

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            match = _LISTENING_RE.search(line)
            if match and self.base_url is None:
                self.base_url = match.group(1)
                self._ready.set()
        self._ready.set()  # exited: wake start()

    def stop(self) -> None:
        """Stop the emulator (SIGTERM, then SIGKILL after 5 s); idempotent."""
        proc = self.proc
        if proc is None:
            return
        stop_process(proc, signal.SIGTERM, timeout=5.0)
        if proc.stdout is not None:
            proc.stdout.close()


_DAGSTER_YAML_HEADER = "# Written by `python -m cloudglue_dagster.demo`"
_DAGSTER_YAML = f"""\
{_DAGSTER_YAML_HEADER} (make demo / make ui): the demo's Dagster
# instance. Runs, event logs and schedules live in SQLite files next to this one. Delete this
# file's first line to keep your own edits (the demo then leaves the file alone).
telemetry:
  enabled: false
nux:
  enabled: false  # no "join the community" dialog in the UI
"""


# -- the Dagster instance ----------------------------------------------------------------------


def prepare_home(home: Path) -> None:
    """Create ``home`` with the demo's ``dagster.yaml`` (telemetry and the UI's welcome dialog off).

    A ``dagster.yaml`` the demo did not write is left alone.
    """
    try:
        home.mkdir(parents=True, exist_ok=True)
        config = home / "dagster.yaml"
        if not config.exists() or (
            config.read_text(encoding="utf-8").startswith(_DAGSTER_YAML_HEADER)
            and config.read_text(encoding="utf-8") != _DAGSTER_YAML
        ):
            config.write_text(_DAGSTER_YAML, encoding="utf-8")
    except OSError as exc:
        raise DemoError(f"cannot create the Dagster home {home}: {exc}") from exc


def dagster_env(settings: Settings, base_url: str, api_key: str) -> dict[str, str]:
    """The environment of the Dagster processes: instance, definitions' settings, key."""
    env = dict(os.environ)
    env.update(
        DAGSTER_HOME=str(settings.home.resolve()),
        CLOUDGLUE_BASE_URL=base_url,
        CLOUDGLUE_API_KEY=api_key,
        CLOUDGLUE_START_DATE=settings.start.isoformat(),
        CLOUDGLUE_DUCKDB_PATH=str(settings.duckdb.resolve()),
        PYTHONUNBUFFERED="1",
    )
    return env


def check_duckdb_unlocked(path: Path, wait_seconds: float = 5.0) -> None:
    """Fail fast, with a clear message, when another process holds the DuckDB file's lock."""
    import duckdb

    from cloudglue_dagster.io_managers.duckdb.connections import is_lock_error

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DemoError(f"cannot create the folder of the DuckDB file {path}: {exc}") from exc
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            duckdb.connect(str(path)).close()
            return
        except duckdb.IOException as exc:
            if not is_lock_error(exc):
                raise DemoError(f"cannot open the DuckDB file {shown_path(path)}: {exc}") from exc
            if time.monotonic() >= deadline:
                raise DemoError(
                    f"the DuckDB file {shown_path(path)} is locked by another process (a DuckDB shell,"
                    " a notebook, or a Dagster run still writing it). Close it and run again."
                    f" DuckDB said: {exc}"
                ) from exc
            time.sleep(0.5)


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the webserver binds: connections of a previous server in TIME_WAIT do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def wait_http(url: str, proc: subprocess.Popen[Any], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    return False
