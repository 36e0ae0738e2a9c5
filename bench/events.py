"""Benchmark: the share of a backfill run's wall time spent writing Dagster events.

Runs the project's backfill the way a user does::

    dagster asset materialize -m cloudglue_dagster.definitions \\
        --select 'key:"cloudglue/*"' --partition-range A...B

against the emulator (its own process, fixed latency, N days x M completions a day), in a
fresh ``DAGSTER_HOME`` on SQLite storage (the default ``dagster.yaml``) and/or PostgreSQL
storage (``dagster_postgres``, on a throwaway server this script starts with ``initdb`` +
``pg_ctl`` on a free loopback port, as ``nobody`` when run as root, stopped in every case).
Each storage runs two selections: chat_completions only, and all assets (with their checks).

Afterwards it reads the run's event log back from the instance (``instance.all_logs``) and
prints, per DagsterEventType: the number of events, and the seconds spent writing them.

How the time is measured (not estimated): a ``sitecustomize.py`` in a temporary directory is
put first on the run process's ``PYTHONPATH``. When ``CLOUDGLUE_BENCH_EVENTS_OUT`` is set it
wraps, at class level, three nested layers, and times every outermost call (a thread-local
guard per layer, so a ``store_event_batch`` that loops over ``store_event``, or a subclass
calling its base, is counted once):

  storage   the event log storage's ``store_event`` / ``store_event_batch``
            (``EventLogStorage``, ``SqlEventLogStorage``, ``SqliteEventLogStorage``,
            ``ConsolidatedSqliteEventLogStorage``, ``PostgresEventLogStorage``): the insert
            into the run's event table, the asset / asset-check index tables, serialization;
  instance  ``DagsterInstance.handle_new_event``: storage plus the run-storage update of
            run events (RUN_START, RUN_SUCCESS...) and the notification of watchers;
  path      the whole path of an event: ``DagsterLogHandler.emit`` for a logged event or a
            ``context.log`` message (the record, the console handler - the CLI prints every
            event, here to a file, not a terminal - and the instance), else
            ``handle_new_event`` (events reported straight to the instance, e.g. the
            ASSET_MATERIALIZATION_PLANNED ones written when the run is created).

With ``DAGSTER_EVENT_BATCH_SIZE`` set, a batch's storage time is shared evenly among its
events, and its instance time falls on the event whose ``handle_new_event`` flushed it. SQLite
storages have no batch write of their own: ``store_event_batch`` is the base loop over
``store_event`` (the summary's "storage calls" shows whether batches were written).

Each call is recorded (epoch start, perf_counter duration, event type, thread) and written
to a JSON file when the process exits. Shares are of the run wall (RUN_START..RUN_SUCCESS
timestamps from the event log, calls clipped to that window) and of the whole process wall
(CLI start to exit, imports and the ASSET_MATERIALIZATION_PLANNED events written before
RUN_START included). Events written from several threads at once would make the sum exceed
the wall; the thread count is printed.

PostgreSQL needs ``dagster-postgres`` matching dagster (1.13.x -> 0.29.x), ``sqlalchemy<2.1``
(2.1 maps ``postgresql://`` to psycopg 3) and ``psycopg2-binary``::

    .venv/bin/python -m pip install 'dagster-postgres>=0.29,<0.30' 'sqlalchemy<2.1' psycopg2-binary

Usage::

    .venv/bin/python bench/events.py --days 30 --per-day 1000 --storage both
    .venv/bin/python bench/events.py --storage sqlite --select all --event-batch-size 0,100
    .venv/bin/python bench/events.py --rev HEAD   # measure a commit, not the working tree

``--rev`` exports the commit with ``git archive`` and puts it first on the ``PYTHONPATH`` of the
emulator and the run (ahead of the editable install), so edits in progress are not measured.
Timings vary a lot on a shared machine (17..46 ms per stored event seen for one configuration):
compare before/after with ``--repeat`` (configurations are interleaved) on an idle machine.

``DAGSTER_EVENT_BATCH_SIZE`` is taken from ``--event-batch-size`` only (0 = unset, Dagster's
default); it is removed from the inherited environment otherwise. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import itertools
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from run import EmulatorProcess, materialize_cmd  # bench/ is first on sys.path: this script's folder

ROOT = Path(__file__).resolve().parents[1]
OUT_ENV = "CLOUDGLUE_BENCH_EVENTS_OUT"
LAYERS = ("storage", "instance", "path")
SELECTIONS = {
    "chat": ('key:"cloudglue/chat_completions"', "chat_completions only"),
    "all": ('key:"cloudglue/*"', "all assets and checks"),
}
LOG_MESSAGE = "(log message)"

# Injected into the run process. Kept free of anything but the standard library and dagster,
# and never fatal: a failure to patch is recorded in the output file instead.
PROBE = textwrap.dedent("""
    import os as _os

    def _cloudglue_bench_events_probe(out_dir):
        import atexit, functools, json, threading, time, traceback
        calls, errors, patched = [], [], []
        local = threading.local()

        def entry_type(entry):
            event = getattr(entry, "dagster_event", None)
            return event.event_type_value if event is not None else "(log message)"

        def record_type(record):
            event = getattr(record, "dagster_event", None)
            return event.event_type_value if event is not None else "(log message)"

        def wrap(cls, name, layer, types_of):
            fn = cls.__dict__.get(name)
            if fn is None:
                return
            @functools.wraps(fn)
            def timed(*args, **kwargs):
                if getattr(local, layer, False):
                    return fn(*args, **kwargs)
                setattr(local, layer, True)
                wall, started = time.time(), time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    took = time.perf_counter() - started
                    setattr(local, layer, False)
                    try:
                        types = types_of(args, kwargs)
                    except Exception:
                        types = ["(unknown)"]
                    calls.append((layer, wall, took, types, threading.get_ident()))
            setattr(cls, name, timed)
            patched.append(f"{layer}: {cls.__module__}.{cls.__qualname__}.{name}")

        def one(args, kwargs):
            return [entry_type(args[1] if len(args) > 1 else kwargs["event"])]

        def many(args, kwargs):
            return [entry_type(e) for e in (args[1] if len(args) > 1 else kwargs["events"])]

        def log_record(args, kwargs):
            return [record_type(args[1] if len(args) > 1 else kwargs["record"])]

        try:
            from dagster._core.storage.event_log.base import EventLogStorage
            from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage
            from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
            from dagster._core.storage.event_log.sqlite.consolidated_sqlite_event_log import (
                ConsolidatedSqliteEventLogStorage,
            )
            storages = [EventLogStorage, SqlEventLogStorage, SqliteEventLogStorage, ConsolidatedSqliteEventLogStorage]
            try:
                from dagster_postgres.event_log.event_log import PostgresEventLogStorage
                storages.append(PostgresEventLogStorage)
            except ImportError:
                pass
            for cls in storages[1:]:  # EventLogStorage.store_event is abstract
                wrap(cls, "store_event", "storage", one)
                wrap(cls, "store_event_batch", "storage", many)
            from dagster._core.instance import DagsterInstance
            for cls in DagsterInstance.__mro__:
                if "handle_new_event" in cls.__dict__:
                    wrap(cls, "handle_new_event", "instance", one)
                    # wrapped again (outside the instance layer): the path layer
                    wrap(cls, "handle_new_event", "path", one)
                    break
            from dagster._core.log_manager import DagsterLogHandler
            wrap(DagsterLogHandler, "emit", "path", log_record)
        except Exception:
            errors.append(traceback.format_exc())

        started = time.time()

        def dump():
            path = _os.path.join(out_dir, f"probe-{_os.getpid()}.json")
            with open(path, "w") as f:
                json.dump({"pid": _os.getpid(), "started": started, "ended": time.time(),
                           "patched": patched, "errors": errors, "calls": calls}, f)

        atexit.register(dump)

    if _os.environ.get("CLOUDGLUE_BENCH_EVENTS_OUT"):
        _cloudglue_bench_events_probe(_os.environ["CLOUDGLUE_BENCH_EVENTS_OUT"])
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cleanup(fn: Any) -> Any:
    """Run ``fn`` at exit too (idempotent cleanups), so a crash or SIGTERM still stops servers."""
    atexit.register(fn)
    return fn


class PostgresServer:
    """A throwaway PostgreSQL cluster in a temporary directory on a free loopback port.

    PostgreSQL refuses to run as root, so as root the cluster belongs to ``nobody`` and the
    binaries run through ``runuser``. Trust authentication, loopback only, default durability
    (fsync and synchronous_commit on, as a real deployment)."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="cloudglue-bench-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.started = False
        self.prefix: list[str] = []
        _cleanup(self.stop)
        if os.geteuid() == 0:
            user = pwd.getpwnam("nobody")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self.prefix = ["runuser", "-u", "nobody", "--"]
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.root / "server.log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-h 127.0.0.1 -p {self.port} -k {self.root}",
            "start",
        )
        self.started = True

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self.prefix, str(self.bin_dir / tool), *args], cwd=self.root, capture_output=True, text=True
        )
        if done.returncode != 0:
            log = self.root / "server.log"
            raise SystemExit(
                f"{tool} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n"
                + (log.read_text()[-2000:] if log.exists() else "")
            )

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def create_database(self, name: str) -> str:
        import psycopg2

        conn = psycopg2.connect(self.url())
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url(name)

    def stop(self) -> None:
        if self.started:
            self.started = False
            done = subprocess.run(
                [
                    *self.prefix,
                    str(self.bin_dir / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    "30",
                    "stop",
                ],
                cwd=self.root,
                capture_output=True,
            )
            if done.returncode != 0:
                pid_file = self.data / "postmaster.pid"
                if pid_file.exists():
                    try:
                        os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
                    except (OSError, ValueError):
                        pass
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Result:
    storage: str
    selection: str
    batch_size: int
    run_id: str
    status: str
    process_wall: float
    run_wall: float
    events: Counter = field(default_factory=Counter)
    # layer -> type -> [calls, seconds in the whole process, seconds inside the run window]
    layers: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    threads: int = 0
    calls: Counter = field(default_factory=Counter)  # layer -> outermost calls
    patched: list[str] = field(default_factory=list)

    def total(self, layer: str, index: int) -> float:
        return sum(v[index] for v in self.layers.get(layer, {}).values())


def source_tree(rev: str | None, tmp: Path) -> tuple[Path | None, str]:
    """The package to measure: the working tree (None) or ``rev`` exported with git archive."""
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", rev or "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if rev is None:
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "cloudglue_dagster"], capture_output=True, text=True
        ).stdout.strip()
        return None, commit[:12] + (" + uncommitted changes in cloudglue_dagster/" if dirty else "")
    out = tmp / "src"
    out.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "cloudglue_dagster"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return out, commit[:12]


def base_env(src: Path | None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CLOUDGLUE_") and k not in ("DAGSTER_HOME", "DAGSTER_EVENT_BATCH_SIZE")
    }
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    return env


def backfill(
    *,
    env: dict[str, str],
    probe_dir: Path,
    work: Path,
    storage: str,
    pg: PostgresServer | None,
    emu: EmulatorProcess,
    key: str,
    first: dt.date,
    last: dt.date,
    concurrency: int,
    selection: str,
    batch_size: int,
) -> Result:
    home, out = work / "home", work / "probe"
    home.mkdir(parents=True)
    out.mkdir()
    yaml = "telemetry:\n  enabled: false\n"
    if storage == "postgres":
        assert pg is not None
        url = pg.create_database(re.sub(r"\W", "_", work.name))
        yaml = f"storage:\n  postgres:\n    postgres_url: {json.dumps(url)}\n" + yaml
    (home / "dagster.yaml").write_text(yaml)
    run_env = {
        **env,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(probe_dir), env.get("PYTHONPATH")])),
        OUT_ENV: str(out),
        "DAGSTER_HOME": str(home),
        "CLOUDGLUE_API_KEY": key,
        "CLOUDGLUE_BASE_URL": emu.base_url,
        "CLOUDGLUE_START_DATE": first.isoformat(),
        "CLOUDGLUE_DUCKDB_PATH": str(work / "bench.duckdb"),
        "CLOUDGLUE_MAX_CONCURRENT_REQUESTS": str(concurrency),
    }
    if batch_size:
        run_env["DAGSTER_EVENT_BATCH_SIZE"] = str(batch_size)
    cmd = materialize_cmd(SELECTIONS[selection][0], first, last)
    log_path = work / "dagster.log"
    started = time.monotonic()
    with open(log_path, "w") as log:
        # cwd: the CLI puts its working directory first on sys.path; keep the repo's off it.
        done = subprocess.run(cmd, env=run_env, cwd=work, stdout=log, stderr=subprocess.STDOUT)
    process_wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"dagster backfill failed ({done.returncode}):\n{log_path.read_text()[-4000:]}")
    return read_result(home, out, storage, selection, batch_size, process_wall)


def read_result(home: Path, out: Path, storage: str, selection: str, batch_size: int, process_wall: float) -> Result:
    from dagster import DagsterEventType, DagsterInstance

    instance = DagsterInstance.from_config(str(home))
    try:
        runs = instance.get_runs()
        if len(runs) != 1:
            raise SystemExit(f"expected one run in {home}, found {len(runs)}")
        run = runs[0]
        entries = instance.all_logs(run.run_id)
    finally:
        instance.dispose()

    def name(value: str) -> str:
        try:
            return DagsterEventType(value).name  # RUN_START, not its stored value PIPELINE_START
        except ValueError:
            return value

    events: Counter = Counter(
        name(e.dagster_event.event_type_value) if e.dagster_event else LOG_MESSAGE for e in entries
    )
    stamps = {e.dagster_event.event_type_value: e.timestamp for e in entries if e.dagster_event}
    w0 = stamps.get(DagsterEventType.RUN_START.value)
    w1 = stamps.get(DagsterEventType.RUN_SUCCESS.value) or stamps.get(DagsterEventType.RUN_FAILURE.value)
    if w0 is None or w1 is None:
        raise SystemExit(f"run {run.run_id} has no RUN_START / RUN_SUCCESS event")
    result = Result(storage, selection, batch_size, run.run_id, run.status.value, process_wall, w1 - w0, events)
    threads: set[int] = set()
    probes = sorted(out.glob("probe-*.json"))
    if not probes:
        raise SystemExit(f"no probe output in {out}: was sitecustomize imported by the run process?")
    for path in probes:
        data = json.loads(path.read_text())
        if data["errors"]:
            raise SystemExit("probe failed to patch:\n" + "\n".join(data["errors"]))
        result.patched = sorted(set(result.patched) | set(data["patched"]))
        for layer, wall, took, types, thread in data["calls"]:
            inside = max(0.0, min(wall + took, w1) - max(wall, w0))
            result.calls[layer] += 1
            if layer == "storage":
                threads.add(thread)
            for t in map(name, types):  # a batch's time is shared evenly among its events
                row = result.layers.setdefault(layer, {}).setdefault(t, [0, 0.0, 0.0])
                row[0] += 1
                row[1] += took / len(types)
                row[2] += inside / len(types)
    result.threads = len(threads)
    return result


def fmt_share(seconds: float, wall: float) -> str:
    return f"{100 * seconds / wall:.1f}%" if wall > 0 else ""


def print_result(r: Result) -> None:
    label = SELECTIONS[r.selection][1]
    batch = f", DAGSTER_EVENT_BATCH_SIZE={r.batch_size}" if r.batch_size else ""
    print(f"\n### {r.storage}, {label}{batch}\n")
    print(
        f"run {r.run_id[:8]} {r.status}; run wall (RUN_START..RUN_SUCCESS) {r.run_wall:.2f}s,"
        f" process wall {r.process_wall:.2f}s; event-writing threads: {r.threads}\n"
    )
    print("| event type | events | stored | storage s | instance s | path s | storage % of run wall |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    storage, instance, path = (r.layers.get(k, {}) for k in LAYERS)
    types = sorted(set(r.events) | set(storage) | set(path), key=lambda t: (-storage.get(t, [0, 0.0])[1], t))
    for t in types:
        s, i, g = (layer.get(t, [0, 0.0, 0.0]) for layer in (storage, instance, path))
        print(
            f"| {t} | {r.events.get(t, 0)} | {int(s[0])} | {s[1]:.3f} | {i[1]:.3f} | {g[1]:.3f} |"
            f" {fmt_share(s[2], r.run_wall)} |"
        )
    print(
        f"| **total** | **{sum(r.events.values())}** | {int(sum(v[0] for v in storage.values()))} |"
        f" **{r.total('storage', 1):.3f}** | {r.total('instance', 1):.3f} | {r.total('path', 1):.3f} |"
        f" **{fmt_share(r.total('storage', 2), r.run_wall)}** |"
    )
    print()
    for layer in LAYERS:
        print(
            f"- {layer}: {r.total(layer, 2):.2f}s inside the run = {fmt_share(r.total(layer, 2), r.run_wall)}"
            f" of run wall; {r.total(layer, 1):.2f}s in all = {fmt_share(r.total(layer, 1), r.process_wall)}"
            f" of process wall"
        )


def print_summary(results: list[Result]) -> None:
    print("\n### Summary (share = seconds inside RUN_START..RUN_SUCCESS / run wall)\n")
    print(
        "| storage | selection | batch | events | process wall s | run wall s | storage s | storage %"
        " | instance % | path % | storage calls | ms / stored event |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        n = sum(v[0] for v in r.layers.get("storage", {}).values())
        print(
            f"| {r.storage} | {SELECTIONS[r.selection][1]} | {r.batch_size or '-'} | {sum(r.events.values())} |"
            f" {r.process_wall:.2f} | {r.run_wall:.2f} | {r.total('storage', 2):.2f} |"
            f" {fmt_share(r.total('storage', 2), r.run_wall)} | {fmt_share(r.total('instance', 2), r.run_wall)} |"
            f" {fmt_share(r.total('path', 2), r.run_wall)} | {r.calls['storage']} |"
            f" {1000 * r.total('storage', 1) / n if n else 0:.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--per-day", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=25.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2025, 1, 1))
    parser.add_argument("--storage", choices=("sqlite", "postgres", "both"), default="sqlite")
    parser.add_argument(
        "--select",
        choices=("chat", "all", "both"),
        default="both",
        help="chat_completions only, all assets, or both (default)",
    )
    parser.add_argument(
        "--event-batch-size",
        default="0",
        help="comma list of DAGSTER_EVENT_BATCH_SIZE values to run; 0 = unset (default)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="run every configuration this many times")
    parser.add_argument(
        "--rev", default=None, help="measure this git revision (exported with git archive) instead of the working tree"
    )
    parser.add_argument(
        "--pg-bin",
        type=Path,
        default=Path(os.environ.get("PG_BIN", "/usr/local/bin")),
        help="directory of initdb and pg_ctl (default $PG_BIN or /usr/local/bin)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the finally blocks and atexit stop the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    storages = ["sqlite", "postgres"] if args.storage == "both" else [args.storage]
    selections = ["chat", "all"] if args.select == "both" else [args.select]
    batch_sizes = [int(b) for b in args.event_batch_size.split(",") if b.strip()]
    if "postgres" in storages:
        try:
            import dagster_postgres  # noqa: F401
            import psycopg2  # noqa: F401
            import sqlalchemy
        except ImportError as exc:
            raise SystemExit(
                f"{exc}; install: {sys.executable} -m pip install 'dagster-postgres>=0.29,<0.30'"
                " 'sqlalchemy<2.1' psycopg2-binary"
            ) from exc
        if tuple(int(x) for x in sqlalchemy.__version__.split(".")[:2]) >= (2, 1):
            raise SystemExit(
                f"sqlalchemy {sqlalchemy.__version__} maps postgresql:// to psycopg 3; install 'sqlalchemy<2.1'"
            )
    first, last = args.start, args.start + dt.timedelta(days=args.days - 1)
    key = secrets.token_hex(16)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="cloudglue-bench-events-") as tmp_name:
        tmp = Path(tmp_name)
        src, commit = source_tree(args.rev, tmp)
        env = base_env(src)
        probe_dir = tmp / "probe"
        probe_dir.mkdir()
        (probe_dir / "sitecustomize.py").write_text(PROBE)
        emu = EmulatorProcess(
            start=args.start,
            days=args.days,
            per_day=args.per_day,
            seed=args.seed,
            latency_ms=args.latency_ms,
            key=key,
            env=env,
        )
        _cleanup(emu.stop)
        pg: PostgresServer | None = None
        try:
            print(
                f"code {commit}; emulator {emu.total} completions over {args.days} days, latency"
                f" {args.latency_ms:g} ms, concurrency {args.concurrency}",
                file=sys.stderr,
            )
            if "postgres" in storages:
                pg = PostgresServer(args.pg_bin)
                print(f"postgres on 127.0.0.1:{pg.port}", file=sys.stderr)
            n = 0
            for _, storage, batch_size, selection in itertools.product(
                range(args.repeat), storages, batch_sizes, selections
            ):
                n += 1
                r = backfill(
                    env=env,
                    probe_dir=probe_dir,
                    work=tmp / f"run{n}_{storage}_{selection}",
                    storage=storage,
                    pg=pg,
                    emu=emu,
                    key=key,
                    first=first,
                    last=last,
                    concurrency=args.concurrency,
                    selection=selection,
                    batch_size=batch_size,
                )
                results.append(r)
                print(f"{storage} {selection} batch={batch_size}: {r.process_wall:.1f}s", file=sys.stderr)
        finally:
            if pg is not None:
                pg.stop()
            emu.stop()
    print(
        f"\n## Dagster event writing: {args.days} days x {args.per_day}/day ({emu.total} completions),"
        f" L = {args.latency_ms:g} ms, concurrency {args.concurrency}, one run of {args.days} partitions;"
        f" code {commit}"
    )
    for r in results:
        print_result(r)
    print_summary(results)
    if results:
        print("\nTimed: " + "; ".join(results[0].patched))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "commit": commit,
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "results": [r.__dict__ for r in results],
                },
                indent=1,
                default=str,
            )
        )


if __name__ == "__main__":
    main()
