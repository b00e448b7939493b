"""The machinery of the chaos tests, kept apart so that test_chaos.py reads as the
claims it proves.

- :class:`PgCluster`: a private PostgreSQL cluster (``scripts/pg_test_server.sh``)
  that may be restarted without disturbing the shared test server.
- :class:`WorkerPool`: real ``ua-vp worker`` processes on the fast ``dry-run``
  runtime, one log file each.
- :class:`Producer`: enqueues the missions at a steady pace while chaos plays out.
- :class:`Chaos`: a seeded random schedule of kill -9 (each with a replacement),
  SIGSTOP/SIGCONT (some past the lease) and PostgreSQL restarts, executed in a
  thread.
- :func:`census`: what the database says happened to every mission.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError, PendingRollbackError

from ua_vp.missions import MissionSpec, Status
from ua_vp.store import MissionStore
from ua_vp.store.tables import events, missions, sessions

T = TypeVar("T")

VP = "vp.general.primary"
LEASE = 15.0  # the smallest lease the settings allow
POLL = 1.0  # the smallest poll interval the settings allow
MAX_ATTEMPTS = 20  # generous: a mission may be stranded several times, and should still complete
REPO = Path(__file__).resolve().parents[2]
PG_SCRIPT = REPO / "scripts" / "pg_test_server.sh"
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
RETRYING_LOG = "database_unavailable_retrying"
FENCED_LOGS = ("finalize_refused_lease_lost", "mission_abandoned_lease_lost")


def patiently(fn: Callable[[], T], *, timeout: float = 120.0, retries: list[int] | None = None) -> T:
    """``fn()``, retried while the database is away: the test's own enqueues and reads
    have to outlive a server restart just like the workers do."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        # PendingRollbackError: how MissionStore._tx currently reports a dropped connection
        # (test_outage.py). Retried here so that the test's own client outlives it and
        # the runs measure the workers.
        except (OperationalError, InterfaceError, PendingRollbackError):
            if time.monotonic() > deadline:
                raise
            if retries is not None:
                retries[0] += 1
            time.sleep(0.2)


def observer(url: str) -> Engine:
    """An engine for the test's own reads. Not MissionStore's: on SQLite every transaction
    of its engine begins IMMEDIATE, reads included, so a read queues behind the write lock
    and the chaos thread would deadlock with a worker it froze while holding that lock
    (the worker waits for SIGCONT, the chaos thread for the lock). Plain WAL reads never wait."""
    if make_url(url).get_backend_name() == "sqlite":
        return create_engine(url, connect_args={"timeout": 5})
    return create_engine(url, pool_pre_ping=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- PostgreSQL ----------------------------------------------------------------------------
@dataclass
class PgCluster:
    """A throwaway PostgreSQL 15 of our own: restarting it hurts nobody else."""

    data_dir: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _script(self, *args: str) -> None:
        subprocess.run(["bash", str(PG_SCRIPT), *args], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self._script("start", str(self.data_dir), str(self.port))

    def stop(self) -> None:
        self._script("stop", str(self.data_dir))

    def accepts_connections(self) -> bool:
        try:
            with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def listening_backends(self) -> int:
        """Sessions whose last statement was our LISTEN: one per live worker."""
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE query ILIKE 'LISTEN %' AND pid <> pg_backend_pid()"
            ).fetchone()
        return int(row[0]) if row else 0


# -- workers -------------------------------------------------------------------------------
@dataclass
class WorkerProc:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    started_at: float
    killed_at: float | None = None
    paused: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def count(self, event: str) -> int:
        return self.log().count(f'"{event}"')


class WorkerPool:
    """Real ``ua-vp worker`` processes; the test decides which of them may die."""

    def __init__(self, db_url: str, tmp: Path, *, concurrency: int) -> None:
        self.db_url = db_url
        self.tmp = tmp
        self.concurrency = concurrency
        self.procs: list[WorkerProc] = []
        self._lock = threading.Lock()

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "UA_VP_DATABASE_URL": self.db_url,
            "UA_VP_STATE_DIR": str(self.tmp / "state"),
            "UA_VP_ENABLED_IDS": VP,
            # In-process and a few milliseconds per mission: throughput, not agents, is under test.
            "UA_VP_GENERAL_RUNTIME": "dry-run",
            "UA_VP_GENERAL_WORKSPACE_ROOT": str(self.tmp / "workspaces"),
            "UA_VP_POLL_INTERVAL_SECONDS": str(POLL),
            "UA_VP_LEASE_TTL_SECONDS": str(LEASE),
            "UA_VP_SHUTDOWN_GRACE_SECONDS": "5",
            "UA_VP_LOG_FORMAT": "json",
        }

    def start(self) -> WorkerProc:
        with self._lock:
            name = f"worker-{len(self.procs)}"
            log_path = self.tmp / f"{name}.log"
            log = open(log_path, "wb")  # noqa: SIM115 - lives as long as the process
            proc = subprocess.Popen(
                [sys.executable, "-m", "ua_vp.cli", "worker", "--profile", VP, "--concurrency", str(self.concurrency)],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.tmp,
            )
            log.close()  # the child holds its own descriptor
            w = WorkerProc(name, proc, log_path, time.monotonic())
            self.procs.append(w)
            return w

    def alive(self) -> list[WorkerProc]:
        """Every worker the chaos did not kill on purpose."""
        with self._lock:
            return [w for w in self.procs if w.killed_at is None]

    def kill(self, w: WorkerProc) -> None:
        w.killed_at = time.monotonic()
        w.proc.send_signal(signal.SIGKILL)
        w.proc.wait(timeout=10)

    def pause(self, w: WorkerProc) -> None:
        w.paused = True
        w.proc.send_signal(signal.SIGSTOP)

    def resume(self, w: WorkerProc) -> None:
        w.proc.send_signal(signal.SIGCONT)
        w.paused = False

    def logs(self, names: set[str] | None = None, tail: int = 12) -> str:
        """The last lines of each worker's log (of ``names`` only, if given)."""
        return "\n".join(
            f"--- {w.name}\n" + "\n".join(w.log().splitlines()[-tail:])
            for w in self.procs
            if names is None or w.name in names
        )

    def cleanup(self) -> None:
        for w in self.procs:
            if w.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.send_signal(signal.SIGCONT)
                    w.proc.kill()
            w.proc.wait(timeout=10)


# -- the producer --------------------------------------------------------------------------
class Producer(threading.Thread):
    """Enqueues ``count`` missions evenly over ``seconds``.

    A dry-run mission takes a few milliseconds, so a queue filled up front would be
    empty before the first kill; spread out, every kill, pause and restart lands on
    live traffic. Each mission has an idempotency key, so an enqueue whose commit was
    lost in the restart is retried without ever making a second mission."""

    def __init__(self, store: MissionStore, count: int, seconds: float) -> None:
        super().__init__(name="chaos-producer", daemon=True)
        self.store = store
        self.count = count
        self.seconds = seconds
        self.ids: list[str] = []
        self.replays = 0
        self.outage_retries = [0]
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            began = time.monotonic()
            for i in range(self.count):
                time.sleep(max(0.0, began + i * self.seconds / self.count - time.monotonic()))
                spec = MissionSpec.create(
                    vp_id=VP,
                    objective=f"Chaos mission {i}. Write the plan. Survive the chaos.",
                    idempotency_key=f"chaos-{i}",
                    max_attempts=MAX_ATTEMPTS,
                )
                got = patiently(functools.partial(self.store.enqueue, spec), retries=self.outage_retries)
                self.replays += not got.created
                self.ids.append(got.mission.mission_id)
        except BaseException as exc:
            self.error = exc


# -- chaos ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChaosPlan:
    """How much chaos, over how many seconds; the moments are drawn from ``seed``."""

    seconds: float
    kills: int = 0
    short_pauses: int = 0
    """SIGSTOP for 1-5 s: shorter than the lease, the worker's missions stay its own."""
    long_pauses: int = 0
    """SIGSTOP for LEASE + 2-5 s: its missions are reaped and re-run by the others."""
    restarts: int = 0
    seed: int = 0


@dataclass
class Kill:
    worker: str
    at: float
    stranded: list[str]
    """Missions the dead worker held (still ``running`` under its id once it was gone)."""


@dataclass
class Pause:
    worker: str
    at: float
    seconds: float
    stranded: list[str]
    """Missions the frozen worker held when it was stopped."""

    @property
    def past_lease(self) -> bool:
        return self.seconds > LEASE + POLL


@dataclass
class Restart:
    down_at: float
    up_at: float = 0.0


class Chaos(threading.Thread):
    """Executes a :class:`ChaosPlan`: one thread, one time-ordered queue of actions."""

    def __init__(self, plan: ChaosPlan, pool: WorkerPool, db: Engine, cluster: PgCluster | None = None) -> None:
        super().__init__(name="chaos", daemon=True)
        if plan.restarts and cluster is None:
            raise ValueError("restarts need a PostgreSQL cluster of the test's own")
        self.plan = plan
        self.pool = pool
        self.db = db
        self.cluster = cluster
        self.rng = random.Random(plan.seed)
        self.kills: list[Kill] = []
        self.pauses: list[Pause] = []
        self.restarts: list[Restart] = []
        self.missed = Counter[str]()
        """Pauses past the lease that caught a worker holding nothing (undone and retried)."""
        self.error: BaseException | None = None
        self._queue: list[tuple[float, int, str, Any]] = []
        self._seq = itertools.count()
        self._db_down = False
        self._began = 0.0
        self.halted = threading.Event()
        """Set by the test to end the chaos early (the producer failed, say)."""

    # -- schedule --------------------------------------------------------------------------
    def _at(self, delay: float, action: str, arg: Any = None) -> None:
        heapq.heappush(self._queue, (time.monotonic() + delay, next(self._seq), action, arg))

    def _schedule(self) -> None:
        p, r = self.plan, self.rng
        for _ in range(p.kills):
            self._at(r.uniform(1.5, p.seconds), "kill", 0)
        for _ in range(p.short_pauses):
            self._at(r.uniform(1.5, p.seconds), "pause", r.uniform(1.0, 5.0))
        for _ in range(p.long_pauses):
            # Early enough that the pause ends inside the window where work still arrives.
            self._at(r.uniform(1.5, max(2.0, p.seconds - LEASE)), "pause", LEASE + r.uniform(2.0, 5.0))
        for _ in range(p.restarts):
            self._at(r.uniform(0.3, 0.6) * p.seconds, "restart", r.uniform(2.0, 4.0))

    def run(self) -> None:
        self._began = time.monotonic()
        try:
            self._schedule()
            while self._queue:
                due, _, action, arg = heapq.heappop(self._queue)
                if self.halted.wait(max(0.0, due - time.monotonic())):
                    return
                getattr(self, f"_do_{action}")(arg)
        except BaseException as exc:
            self.error = exc
        finally:
            # Whatever happened, leave nothing frozen and the database up.
            for w in self.pool.alive():
                if w.paused:
                    self.pool.resume(w)
            if self.cluster is not None and self._db_down:
                self.cluster.start()

    def _t(self) -> float:
        return round(time.monotonic() - self._began, 1)

    # -- looking at the database -------------------------------------------------------------
    def _running_by_pid(self) -> dict[int, list[str]]:
        query = (
            select(sessions.c.pid, missions.c.mission_id)
            .select_from(missions.join(sessions, missions.c.worker_id == sessions.c.worker_id))
            .where(missions.c.status == Status.RUNNING.value)
        )

        def read() -> list[Any]:
            with self.db.connect() as conn:
                return list(conn.execute(query))

        rows = patiently(read, timeout=30)
        out: dict[int, list[str]] = defaultdict(list)
        for pid, mission_id in rows:
            out[pid].append(mission_id)
        return out

    def _victim(self, candidates: list[WorkerProc], *, anyone: bool) -> WorkerProc | None:
        """A worker holding missions right now, if one shows up within a few seconds:
        chaos that hits an idle worker proves little. Then anyone, or None."""
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            busy = self._running_by_pid()
            holding = [w for w in candidates if busy.get(w.pid)]
            if holding:
                return self.rng.choice(holding)
            time.sleep(0.02)
        return self.rng.choice(candidates) if anyone else None

    def _held_by(self, w: WorkerProc) -> list[str]:
        time.sleep(0.3)  # a COMMIT already on the wire lands first
        return sorted(self._running_by_pid().get(w.pid, []))

    # -- actions -----------------------------------------------------------------------------
    def _postponed(self, action: str, arg: Any) -> bool:
        # Worker actions wait while the server is down: a replacement started then
        # would die at start-up (see test_findings.py).
        if self._db_down:
            self._at(1.0, action, arg)
            return True
        return False

    def _do_kill(self, waited: int | None) -> None:
        waited = waited or 0
        if self._postponed("kill", waited):
            return
        candidates = [w for w in self.pool.alive() if not w.paused]
        # Nobody busy (say, on SQLite, everyone queues behind a frozen lock holder):
        # wait for work to resume, for up to 10 tries, rather than kill an idle worker.
        victim = self._victim(candidates, anyone=waited >= 10) if candidates else None
        if victim is None:
            self._at(1.0, "kill", waited + 1)
            return
        at = self._t()
        self.pool.kill(victim)
        self.pool.start()  # a supervisor would restart it; so do we
        kill = Kill(victim.name, at, self._held_by(victim))
        self.kills.append(kill)
        if not kill.stranded and not any(k.stranded for k in self.kills) and len(self.kills) < 2 * self.plan.kills:
            self._at(self.rng.uniform(0.5, 2.0), "kill", 0)  # no kill has stranded a mission yet: one more

    def _do_pause(self, seconds: float) -> None:
        if self._postponed("pause", seconds):
            return
        candidates = [w for w in self.pool.alive() if not w.paused]
        if len(candidates) < 2:  # someone must be left to reap and re-run
            self._at(1.0, "pause", seconds)
            return
        victim = self._victim(candidates, anyone=True)
        assert victim is not None
        at = self._t()
        self.pool.pause(victim)
        held = self._held_by(victim)
        if seconds > LEASE + POLL and not held and self.missed["long"] < 20:
            # A pause past the lease is only worth its seconds if it strands work.
            self.missed["long"] += 1
            self.pool.resume(victim)
            self._at(0.5, "pause", seconds)
            return
        self.pauses.append(Pause(victim.name, at, seconds, held))
        self._at(seconds, "resume", victim)

    def _do_resume(self, w: WorkerProc) -> None:
        self.pool.resume(w)

    def _do_restart(self, down_seconds: float) -> None:
        assert self.cluster is not None
        # Only workers that are already up: one still starting would die on the
        # closed port (see test_findings.py).
        deadline = time.monotonic() + 30
        while any("worker_started" not in w.log() for w in self.pool.alive()) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.restarts.append(Restart(down_at=time.monotonic()))
        self._db_down = True
        self.cluster.stop()
        if self.cluster.accepts_connections():
            raise AssertionError("pg_test_server.sh stop left PostgreSQL running")
        self._at(down_seconds, "pg_start")

    def _do_pg_start(self, _: Any) -> None:
        assert self.cluster is not None
        self.cluster.start()
        self._db_down = False
        self.restarts[-1].up_at = time.monotonic()

    def summary(self) -> dict[str, Any]:
        return {
            "seed": self.plan.seed,
            "kills": [(k.worker, k.at, len(k.stranded)) for k in self.kills],
            "pauses": [(p.worker, p.at, round(p.seconds, 1), len(p.stranded)) for p in self.pauses],
            "restarts": [round(r.up_at - r.down_at, 1) for r in self.restarts],
            "long_pauses_that_caught_nothing_and_were_retried": self.missed["long"],
        }


# -- what the database says ------------------------------------------------------------------
TERMINAL_EVENTS = frozenset({"vp.mission.completed", "vp.mission.failed", "vp.mission.cancelled"})


@dataclass
class Census:
    """Every mission row, and per mission its events in the order they were written."""

    rows: dict[str, dict[str, Any]]
    events: dict[str, list[tuple[int, str, dict[str, Any]]]] = field(default_factory=dict)

    def unfinished(self) -> list[str]:
        return [m for m, r in self.rows.items() if r["status"] not in {s.value for s in Status if s.terminal}]

    def kinds(self, mission_id: str) -> list[str]:
        return [kind.removeprefix("vp.mission.") for _, kind, _ in self.events.get(mission_id, [])]

    def retried_reasons(self) -> Counter[str]:
        return Counter(
            payload.get("reason", "?")
            for evs in self.events.values()
            for _, kind, payload in evs
            if kind == "vp.mission.retried"
        )


def census(db: Engine, *, with_events: bool = True) -> Census:
    def read() -> Census:
        with db.connect() as conn:
            rows = {
                r.mission_id: dict(r._mapping)
                for r in conn.execute(
                    select(missions.c.mission_id, missions.c.status, missions.c.attempt, missions.c.error)
                )
            }
            out = Census(rows)
            if with_events:
                for mission_id, event_id, kind, payload in conn.execute(
                    select(events.c.mission_id, events.c.id, events.c.event_type, events.c.payload).order_by(
                        events.c.id
                    )
                ):
                    out.events.setdefault(mission_id, []).append((event_id, kind, payload or {}))
        return out

    return patiently(read)


def unfinished_count(db: Engine) -> int:
    done = [s.value for s in Status if s.terminal]

    def read() -> int:
        with db.connect() as conn:
            return int(
                conn.execute(select(func.count()).select_from(missions).where(missions.c.status.not_in(done))).scalar()
                or 0
            )

    return patiently(read)
