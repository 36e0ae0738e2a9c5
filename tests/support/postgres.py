"""A throwaway PostgreSQL server for the production tests: ``initdb`` + ``pg_ctl`` in a temp dir.

``with PostgresServer() as pg: pg.url`` gives ``postgresql://dagster@127.0.0.1:<port>/dagster``
on a free loopback port, with its socket in its own temp dir (not ``/var/run/postgresql``). The
server is stopped (``pg_ctl stop -m immediate``) and its directory removed on every exit path,
and at interpreter exit if a test was interrupted in between.

PostgreSQL refuses to run as root: as root, the server runs as the ``postgres`` user that
Debian's ``postgresql`` package creates: its directory is made directly under the system temp
dir (pytest's own temp dirs are private to root) and handed to that user. The binaries are found
on ``PATH`` or in ``/usr/lib/postgresql/<version>/bin`` (where Debian puts them); ``make test``
installs the package when it is missing.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

INSTALL_HINT = "apt-get install -y postgresql (make test does this when it runs as root or with sudo)"


def find_binary(name: str) -> str:
    """``name`` (initdb, pg_ctl) on PATH, else from the newest /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if not candidates:
        raise RuntimeError(f"PostgreSQL's {name} was not found on PATH or in /usr/lib/postgresql/*/bin: {INSTALL_HINT}")
    return candidates[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """See the module docstring. ``user`` is the database role (superuser, trust auth on loopback)."""

    def __init__(self, user: str = "dagster", database: str = "dagster") -> None:
        self.user, self.database = user, database
        self.root = Path(tempfile.mkdtemp(prefix="cloudglue-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._run_as = "postgres" if os.geteuid() == 0 else None
        self._started = False

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _run(self, *args: str) -> None:
        cmd = list(args)
        if self._run_as is not None:
            cmd = ["runuser", "-u", self._run_as, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed ({done.returncode}): {done.stderr[-2000:]}\n{tail}")

    def __enter__(self) -> PostgresServer:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        initdb, pg_ctl = find_binary("initdb"), find_binary("pg_ctl")
        if self._run_as is not None:
            try:
                account = pwd.getpwnam(self._run_as)
            except KeyError:
                raise RuntimeError(f"running as root needs the {self._run_as!r} user: {INSTALL_HINT}") from None
            os.chown(self.root, account.pw_uid, account.pw_gid)
        self._run(initdb, "-D", str(self.data), "-U", self.user, "-A", "trust", "--no-sync", "-E", "UTF8")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run(
            pg_ctl, "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options, "-w", "-t", "60", "start"
        )
        self._started = True
        atexit.register(self.stop)
        self._create_database()

    def _create_database(self) -> None:
        import psycopg2

        deadline = time.monotonic() + 30
        while True:
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, dbname="postgres")
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{self.database}"')
        conn.close()

    def stop(self) -> None:
        try:
            if self._started:
                self._started = False
                self._run(find_binary("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __exit__(self, *exc: object) -> None:
        self.stop()
