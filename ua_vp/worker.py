"""The generic worker: claim -> run with heartbeats -> finalize, for one profile.

The same :class:`Worker` runs as ``ua-vp worker --profile VP_ID`` (one process,
any number of them on any number of machines) and inside ``ua-vp serve`` as the
in-process lane (:class:`InProcessLane`).

Correctness never depends on LISTEN/NOTIFY: a worker that only polls is correct,
NOTIFY just makes it sooner. The database decides who runs what; a worker that
lost its lease stops and writes nothing more (the store's fencing refuses it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sqlite3
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import structlog
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from tenacity import AsyncRetrying, retry_if_exception, wait_random_exponential

from ua_vp import attempts, sandbox
from ua_vp.config import Settings
from ua_vp.errors import GuardViolation, UaVpError
from ua_vp.finalize_batch import FinalizeBatcher
from ua_vp.missions import Mission, Status
from ua_vp.plugins import Registry
from ua_vp.profiles import MissionContext, Profile
from ua_vp.store import MissionStore
from ua_vp.store.listen import listen_forever
from ua_vp.store.listen import parse as parse_notify
from ua_vp.store.pg_sql import NOTIFY_CANCEL, NOTIFY_QUEUED
from ua_vp.store.store import Outcome

log = structlog.get_logger(__name__)
T = TypeVar("T")

SQLITE_WATCH_SECONDS = 0.05
"""How often an idle SQLite worker checks whether another process committed (microseconds each)."""
PROGRESS_FLUSH_SECONDS = 0.5
WAKE_BACKSTOP_SECONDS = 2.0
"""A worker a NOTIFY did not pick still looks at the queue this much later."""
# Per flush window: a chatty agent cannot turn the events table into its log file.
PROGRESS_MAX_PER_FLUSH = 50


def _is_transient(exc: BaseException) -> bool:
    # Lost connections, restarts, failovers, SQLite busy, an exhausted pool: a retry
    # on a fresh connection can fix them. Integrity, programming and data errors
    # would fail the same way forever, so they are not retried.
    if isinstance(exc, PoolTimeout):
        return True
    return isinstance(exc, DBAPIError) and not isinstance(exc, IntegrityError | ProgrammingError | DataError)


def _log_retry(state: Any) -> None:
    log.warning(
        "database_unavailable_retrying", attempt=state.attempt_number, error=str(state.outcome.exception())[:200]
    )


# One named policy for every database call of a worker: back off up to 5 s and
# keep trying; a worker outlives a database restart instead of dying with it.
DB_RETRY = {
    "retry": retry_if_exception(_is_transient),
    "wait": wait_random_exponential(multiplier=0.1, max=5.0),
    "before_sleep": _log_retry,
    "reraise": True,
}


@dataclass
class Running:
    mission: Mission
    task: asyncio.Task[None] = field(init=False)
    stop_reason: str | None = None
    """Set before the execution is cancelled: cancelled | lease_lost | budget_exceeded |
    shutdown | supervisor_failed; ``finishing`` once it ended, so nothing cancels the finalize."""
    progress: list[dict[str, Any]] = field(default_factory=list)
    dropped: int = 0
    flushing: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Held while a batch of progress is on its way: the last flush, and so the finalize or
    release after it, waits for one in flight."""


@dataclass
class Worker:
    settings: Settings
    store: MissionStore
    registry: Registry
    profile: Profile
    concurrency: int = 1
    lane: str = "external"
    worker_id: str = ""
    poll_interval: float | None = None
    heartbeat_interval: float | None = None
    running: dict[str, Running] = field(default_factory=dict)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _more: bool = True
    """The queue may hold missions for us (see :meth:`_loop`)."""
    _peers: list[str] = field(default_factory=list)
    _backstop: asyncio.TimerHandle | None = None
    """Live workers of our vp_id with a free slot, as of our last session touch."""
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        if not self.worker_id:
            self.worker_id = f"{self.profile.vp_id}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.poll_interval = self.poll_interval or self.settings.poll_interval_seconds
        self.heartbeat_interval = self.heartbeat_interval or self.store.lease_ttl.total_seconds() / 3
        self.executor = self.registry.executor(self.profile)
        # Probed here so a worker that cannot confine its agent fails at start, not on a mission.
        self.sandbox = sandbox.for_profile(self.profile, self.registry.policy(self.profile), self.settings)
        self.log = log.bind(vp_id=self.profile.vp_id, worker_id=self.worker_id)
        self._finalizer = FinalizeBatcher(self.store.finalize_many, self._db, alone=lambda: len(self.running) <= 1)

    # -- plumbing ----------------------------------------------------------------------
    async def _db(self, fn: Callable[..., T], *args: Any, until_stopping: bool = False, **kwargs: Any) -> T:
        """Run a blocking store call off the event loop, retried while the database is away.
        ``until_stopping``: give up (raising the last error) once the worker is told to stop,
        so SIGTERM during an outage still ends the main loop."""
        policy = dict(DB_RETRY, stop=lambda _s: self._stopping.is_set()) if until_stopping else DB_RETRY
        async for attempt in AsyncRetrying(**policy):  # type: ignore[arg-type]
            with attempt:
                return await asyncio.to_thread(fn, *args, **kwargs)
        raise AssertionError("unreachable")

    def wake(self) -> None:
        """New work may be waiting (NOTIFY, or the in-process gateway's doorbell)."""
        self._wake.set()

    def stop(self) -> None:
        """Stop claiming; :meth:`run` drains and returns."""
        self._stopping.set()
        self._wake.set()

    # -- main loop ------------------------------------------------------------------------
    async def run(self, *, once: bool = False) -> None:
        """Serve missions until :meth:`stop` (or, with ``once``, until the queue is empty)."""
        await self._db(
            self.store.register_session,
            worker_id=self.worker_id,
            vp_id=self.profile.vp_id,
            capacity=self.concurrency,
            lane=self.lane,
            sandbox=self.sandbox.backend,
        )
        self.log.info(
            "worker_started",
            lane=self.lane,
            capacity=self.concurrency,
            runtime=self.profile.runtime,
            sandbox=self.sandbox.backend,
            sandbox_reason=self.sandbox.reason,
        )
        listener = None
        if self.settings.listen and not once:
            listener = asyncio.create_task(self._listen() if self.store.is_postgres else self._watch_sqlite())
        keeper = asyncio.create_task(self._keep_leases())
        try:
            try:
                await self._loop(once)
            except DBAPIError:
                if not self._stopping.is_set():
                    raise
                self.log.warning("stopped_during_database_outage")
            await self._drain()
        finally:
            for task in (listener, keeper):
                if task:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            await self._mark_stopped()
            self.log.info("worker_stopped")

    async def _mark_stopped(self) -> None:
        # Best effort and bounded: a session left "idle" shows as lost after a lease TTL.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                asyncio.to_thread(self.store.touch_session, self.worker_id, status="stopped", active_missions=0), 10
            )

    async def _loop(self, once: bool) -> None:
        assert self.poll_interval is not None
        next_reap = next_touch = 0.0
        last_state = ""
        while not self._stopping.is_set():
            self._wake.clear()
            now = time.monotonic()
            # Reaping and the session row are housekeeping: at most once per poll
            # interval, never once per mission on the hot path.
            if now >= next_reap:
                await self._db(self.store.reap, until_stopping=True)
                next_reap = now + self.poll_interval
            free = self.concurrency - len(self.running)
            claimed = []
            if free > 0 and self._more:
                claimed = await self._db(
                    self.store.claim, self.profile.vp_id, self.worker_id, free, until_stopping=True
                )
                # Fewer than asked: the queue is empty now. Until a wake-up or the next
                # poll, a freed slot does not send another (empty) claim.
                self._more = len(claimed) == free
                if self._more and free > 1:
                    # A full batch says a burst is waiting: wake one more worker. (One
                    # mission filling one slot says nothing; handing on each time cost
                    # every mission a NOTIFY and another worker's empty claim.)
                    await self._hand_on()
            for mission in claimed:
                self._start(mission)
            state = "busy" if self.running else "idle"
            if state != last_state or now >= next_touch:
                self._peers = await self._db(
                    self.store.touch_session,
                    self.worker_id,
                    status=state,
                    active_missions=len(self.running),
                    until_stopping=True,
                )
                last_state, next_touch = state, now + self.poll_interval
            if once and not claimed and not self.running:
                return
            if claimed and len(self.running) < self.concurrency:
                continue  # more may be waiting: claim again before sleeping
            if not await self._sleep():
                self._more = True  # woken, or the poll interval passed: look again

    async def _sleep(self) -> bool:
        """Until woken, a slot frees up, or the poll interval passes; True when only a
        slot freed up (nothing says new work arrived)."""
        woken: asyncio.Future[Any] = asyncio.ensure_future(self._wake.wait())
        waiters = [woken, *(asyncio.shield(r.task) for r in self.running.values())]
        try:
            done, _ = await asyncio.wait(waiters, timeout=self.poll_interval, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
        return bool(done) and woken not in done

    # -- wake-ups that scale ---------------------------------------------------------------
    def chosen_for(self, key: str) -> bool:
        """Whether a NOTIFY about ``key`` wakes this worker: one of the workers of the vp_id
        that had a free slot when last seen, picked by a hash of ``key``, so a mission
        wakes one idle worker instead of all of them. The others still poll; a worker
        that sees no list (or is not on it) answers every NOTIFY."""
        return is_chosen(self._peers, self.worker_id, key)

    async def _hand_on(self) -> None:
        """Our claim filled every free slot, so more may wait: wake one more worker."""
        if self.store.is_postgres and self.settings.listen and len(self._peers) > 1:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.store.notify_queued, self.profile.vp_id, uuid.uuid4().hex)

    async def _drain(self) -> None:
        if not self.running:
            return
        grace = self.settings.shutdown_grace_seconds
        self.log.info("worker_draining", running=len(self.running), grace_seconds=grace)
        with contextlib.suppress(Exception):
            await self._db(
                self.store.touch_session, self.worker_id, status="draining", active_missions=len(self.running)
            )
        tasks = [r.task for r in self.running.values()]
        if not tasks:  # they all ended while the session row was written
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for r in list(self.running.values()):
            if r.task in pending:
                self._interrupt(r, "shutdown")
        if pending:
            await asyncio.wait(pending)

    # -- one mission ----------------------------------------------------------------------
    def _start(self, mission: Mission) -> None:
        run = self.running[mission.mission_id] = Running(mission)
        # The task starts on the next loop turn, after run.task is set.
        run.task = asyncio.create_task(self._run_mission(run), name=f"mission:{mission.mission_id}")
        # Only our own entry: the same mission may be ours again by now (lost, reaped,
        # re-claimed by this very worker), and that newer run must stay counted.
        run.task.add_done_callback(
            lambda _t: self.running.pop(mission.mission_id) if self.running.get(mission.mission_id) is run else None
        )

    def _interrupt(self, run: Running, reason: str) -> None:
        if run.stop_reason is None:
            run.stop_reason = reason
            run.task.cancel()

    async def _run_mission(self, run: Running) -> None:
        mission = run.mission
        mlog = self.log.bind(mission_id=mission.mission_id, attempt=mission.attempt)
        # This task's own context: library records logged during the run (httpx, the
        # runtimes' stdlib loggers) carry the ids too (ua_vp.logging merges contextvars).
        structlog.contextvars.bind_contextvars(
            mission_id=mission.mission_id, vp_id=mission.vp_id, worker_id=self.worker_id
        )
        token = mission.lease_token or ""
        mlog.info("mission_started")
        supervisor = asyncio.create_task(self._supervise(run, token))
        supervisor.add_done_callback(lambda t: self._supervisor_ended(run, t, mlog))
        status, result, error = Status.FAILED, None, None
        give_back = False
        try:
            result, error, status = await self._execute(run, mlog)
            # From here on nothing may cancel us: the outcome must be written.
            run.stop_reason = run.stop_reason or "finishing"
        except asyncio.CancelledError:
            reason = run.stop_reason
            if reason == "cancelled":
                status, error = Status.CANCELLED, {"code": "cancelled", "message": "cancelled on request"}
            elif reason == "budget_exceeded":
                limit = self._max_seconds(mission)
                status, error = (
                    Status.FAILED,
                    {"code": "budget_exceeded", "message": f"budget.max_seconds={limit} ran out"},
                )
            elif reason == "shutdown":
                give_back = True  # below, once its last progress is written
            elif reason in ("lease_lost", "supervisor_failed"):
                # lease_lost: someone else owns it now. supervisor_failed: without
                # heartbeats the lease runs out and the reaper gives it to another worker.
                mlog.warning("mission_abandoned", reason=reason)
                return
            else:
                raise
        finally:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await supervisor
        await self._flush(run, token)  # after a batch the supervisor has in flight (run.flushing)
        if give_back:
            # Give it back now rather than make it wait out its lease.
            await self._db(self.store.release, mission.mission_id, token, reason="worker_shutdown")
            mlog.warning("mission_released", reason="shutdown")
            return
        done = await self._finalizer.finalize(Outcome(mission.mission_id, token, status, result, error))
        if done is None:
            mlog.warning("finalize_refused_lease_lost", status=status.value)
        else:
            mlog.info("mission_finished", status=status.value, error_code=(error or {}).get("code"))

    async def _execute(self, run: Running, mlog: Any) -> tuple[dict[str, Any] | None, dict[str, Any] | None, Status]:
        mission = run.mission
        home = output_log = None

        def emit(kind: str, payload: dict[str, Any]) -> None:
            if len(run.progress) < PROGRESS_MAX_PER_FLUSH:
                run.progress.append({"kind": kind, **payload})
            else:
                run.dropped += 1

        try:
            # In a thread: a mission naming many paths (or a slow filesystem) must not stall
            # the loop, which in the in-process lane is the whole API. One hop, not four.
            workspace, home, output_log = await asyncio.to_thread(self._prepare, mission)
            if output_log is not None:
                # Now, while it cannot be crowded out by the output itself (PROGRESS_MAX_PER_FLUSH).
                emit("output_log", {"path": str(output_log.path), "max_bytes": output_log.limit})
            deadline = time.monotonic() + self._max_seconds(mission)

            ctx = MissionContext(
                mission=mission,
                profile=self.profile,
                settings=self.settings,
                workspace=workspace,
                deadline=deadline,
                emit=emit,
                log=mlog,
                sandbox=self.sandbox,
                home=home,
                output_log=output_log,
            )
            outcome = await self.executor.execute(mission, ctx)
            return outcome.to_json(self.profile.runtime), None, Status.COMPLETED
        except asyncio.CancelledError:
            raise
        except GuardViolation as exc:
            mlog.warning("mission_refused_by_guard", resolved=str(exc.resolved), **exc.details)
            return None, exc.as_dict(), Status.FAILED
        except UaVpError as exc:
            mlog.warning("mission_failed", code=exc.code, error=exc.message)
            return None, {"code": exc.code, "message": exc.message, "details": exc.details}, Status.FAILED
        except Exception as exc:  # an executor bug must end the mission, never strand it
            mlog.exception("executor_crashed")
            return None, {"code": "executor_error", "message": f"{type(exc).__name__}: {exc}"}, Status.FAILED
        finally:
            if output_log is not None:
                mlog.info("output_log_closed", **output_log.close())
            if home is not None:
                # Shielded: a second cancellation must not leave the home (and its credentials) behind.
                await asyncio.shield(asyncio.to_thread(attempts.remove_home, home))

    def _prepare(self, mission: Mission) -> tuple[Path, Path, attempts.OutputLog | None]:
        """The attempt's workspace, the worker-time guard, its home and its output log."""
        workspace = attempts.fresh_workspace(self.profile.workspace_root, mission)
        # Worker-time guard: the filesystem may have changed since dispatch
        # (a symlink planted into a protected root, say).
        self.registry.check_mission(mission, "worker", workspace=workspace)
        home = attempts.fresh_home(self.settings.homes_root, mission)
        # Only a runtime that starts processes has output to keep (not dry-run, not openai).
        if not self.settings.mission_output_log_mb or self.profile.runtime in sandbox.NO_PROCESS_RUNTIMES:
            return workspace, home, None
        try:
            cap = self.settings.mission_output_log_mb * 1024 * 1024
            return workspace, home, attempts.open_output_log(self.settings.output_root, mission, cap)
        except BaseException:
            attempts.remove_home(home)
            raise

    def _max_seconds(self, mission: Mission) -> float:
        return float(mission.budget.get("max_seconds") or self.settings.mission_max_seconds)

    def _supervisor_ended(self, run: Running, task: asyncio.Task[None], mlog: Any) -> None:
        if not task.cancelled() and task.exception() is not None:
            mlog.error("supervisor_failed", error=repr(task.exception()))
            self._interrupt(run, "supervisor_failed")

    async def _supervise(self, run: Running, token: str) -> None:
        """Flush progress, enforce the time budget (leases: :meth:`_keep_leases`)."""
        deadline = time.monotonic() + self._max_seconds(run.mission)
        while True:
            now = time.monotonic()
            await asyncio.sleep(max(0.0, min(now + PROGRESS_FLUSH_SECONDS, deadline) - now))
            if time.monotonic() >= deadline:
                self._interrupt(run, "budget_exceeded")
                return
            # Shielded: cancelling the supervisor when the mission ends must not drop a batch
            # already taken, nor let it land after the finalize (which refuses it).
            if (run.progress or run.dropped) and not await asyncio.shield(self._flush(run, token)):
                self._interrupt(run, "lease_lost")
                return

    async def _keep_leases(self) -> None:
        """For all running missions at once: every poll, a cheap read for asked cancels
        and lost leases (so a cancel arrives within a poll interval on every backend,
        LISTEN or not); every TTL/3, ONE heartbeat statement extending every lease."""
        assert self.poll_interval is not None and self.heartbeat_interval is not None
        next_beat = time.monotonic() + self.heartbeat_interval
        while True:
            await asyncio.sleep(self.poll_interval)
            runs = [r for r in self.running.values() if r.stop_reason is None]
            if not runs:
                next_beat = time.monotonic() + self.heartbeat_interval
                continue
            leases = [(r.mission.mission_id, r.mission.lease_token or "") for r in runs]
            try:
                if time.monotonic() >= next_beat:
                    seen: dict[str, Any] = await self._db(self.store.heartbeat_many, leases)
                    next_beat = time.monotonic() + self.heartbeat_interval
                else:
                    seen = await self._db(self.store.watch, leases)
            except Exception as exc:  # never lose the keeper: the next round tries again
                self.log.warning("lease_keeping_failed", error=repr(exc)[:200])
                continue
            for r in runs:
                state = seen.get(r.mission.mission_id)
                if state is None or self.running.get(r.mission.mission_id) is not r:
                    continue
                if not state.lease_held:
                    self._interrupt(r, "lease_lost")
                elif state.cancel_requested:
                    self._interrupt(r, "cancelled")

    async def _flush(self, run: Running, token: str) -> bool:
        async with run.flushing:
            batch, run.progress = run.progress, []
            if run.dropped:
                batch.append({"kind": "progress_dropped", "count": run.dropped})
                run.dropped = 0
            if not batch:
                return True
            return await self._db(self.store.add_progress, run.mission.mission_id, token, batch)

    # -- LISTEN ---------------------------------------------------------------------------
    async def _listen(self) -> None:
        """Wake on NOTIFY (see :mod:`ua_vp.store.listen`)."""
        await listen_forever(self.store.engine, self._on_notify, on_connected=self.wake, log=self.log)

    async def _watch_sqlite(self) -> None:
        """SQLite has no LISTEN: watch for other processes' commits instead (see
        ``MissionStore.sqlite_watch``). An accelerator only, like LISTEN: the poll stays."""
        try:
            watch = await asyncio.to_thread(self.store.sqlite_watch, self.profile.vp_id)
        except sqlite3.Error as exc:
            self.log.warning("sqlite_watch_failed", error=repr(exc), hint="new missions wait for the next poll")
            return
        try:
            while True:
                await asyncio.sleep(SQLITE_WATCH_SECONDS)
                if await asyncio.to_thread(watch.changed):
                    self.wake()
        except sqlite3.Error as exc:
            self.log.warning("sqlite_watch_stopped", error=repr(exc), hint="new missions wait for the next poll")
        finally:
            watch.close()

    def _on_notify(self, payload: str) -> None:
        kind, vp_id, mission_id = parse_notify(payload)
        if vp_id != self.profile.vp_id:
            return
        if kind == NOTIFY_QUEUED:
            if self.chosen_for(mission_id):
                self.wake()
            elif self._backstop is None:
                # Workers may see the list at different moments and disagree on whom a
                # mission woke: look anyway a little later (at most once per backstop).
                self._backstop = asyncio.get_running_loop().call_later(WAKE_BACKSTOP_SECONDS, self._backstop_wake)
        elif kind == NOTIFY_CANCEL:
            self.cancel_running(mission_id)

    def _backstop_wake(self) -> None:
        self._backstop = None
        self.wake()

    def cancel_running(self, mission_id: str) -> None:
        """Stop our execution of a mission whose cancel was committed (the heartbeat
        would see it too, later)."""
        if mission_id in self.running:
            self._interrupt(self.running[mission_id], "cancelled")


def is_chosen(peers: list[str], me: str, key: str) -> bool:
    """Whether ``me`` is the one of ``peers`` a NOTIFY about ``key`` wakes (see
    :meth:`Worker.chosen_for`); every worker computes the same answer from the same list."""
    if me not in peers:
        return True
    return peers[zlib.crc32(key.encode()) % len(peers)] == me


@dataclass
class InProcessLane:
    """The server's own workers: one :class:`Worker` per enabled profile, in its event loop."""

    settings: Settings
    store: MissionStore
    registry: Registry
    workers: dict[str, Worker] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        for profile in self.registry.enabled.values():
            worker = Worker(
                settings=self.settings,
                store=self.store,
                registry=self.registry,
                profile=profile,
                concurrency=self.settings.max_concurrent_missions,
                lane="in_process",
            )
            self.workers[profile.vp_id] = worker
            self.tasks.append(asyncio.create_task(worker.run(), name=f"lane:{profile.vp_id}"))

    def wake(self, vp_id: str) -> None:
        self._call(vp_id, lambda w: w.wake())

    def cancel(self, vp_id: str, mission_id: str) -> None:
        """A cancel reaches our own running mission at once, without waiting for a heartbeat."""
        self._call(vp_id, lambda w: w.cancel_running(mission_id))

    def _call(self, vp_id: str, action: Callable[[Worker], None]) -> None:
        # The gateway runs in a request thread; the workers live in the server's loop.
        worker = self.workers.get(vp_id)
        if worker is not None and self.tasks:
            self.tasks[0].get_loop().call_soon_threadsafe(action, worker)

    async def stop(self) -> None:
        for worker in self.workers.values():
            worker.stop()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)


async def run_worker_process(worker: Worker, *, once: bool = False) -> None:
    """``ua-vp worker``: SIGTERM/SIGINT stop claiming and drain; a second one is not needed."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    await worker.run(once=once)
