"""Recovery and cancel latency with real worker processes.

    python bench/recovery.py --database-url postgresql://postgres@127.0.0.1:54329/postgres [--lease 15 --lease 120]

recovery: a worker is killed with -9 mid-mission; time from the kill until another
worker has started the mission again. The goal is at most lease TTL + one poll interval + 1 s.
cancel: a running mission's cancel is requested; time until its agent process is gone.
On PostgreSQL NOTIFY delivers it at once; elsewhere the worker's per-poll look at its
running missions does (goal: at most the poll interval + 1 s).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from ua_vp.missions import MissionSpec
from ua_vp.store import db, open_store

AGENT = Path(__file__).resolve().parent.parent / "tests" / "worker" / "mission_agent.py"
VP = "vp.general.primary"


def fresh_database(admin_url: str) -> str:
    name = f"ua_vp_recovery_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + "/" + name
    db.upgrade(db.make_engine(url))
    return url


def start_worker(url: str, tmp: Path, lease: float, poll: float) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UA_VP_")}
    env.update(
        UA_VP_DATABASE_URL=url,
        UA_VP_STATE_DIR=str(tmp / "state"),
        UA_VP_ENABLED_IDS=VP,
        UA_VP_GENERAL_RUNTIME="command",
        UA_VP_COMMAND=f"{sys.executable} {AGENT} {{objective}}",
        UA_VP_LEASE_TTL_SECONDS=str(lease),
        UA_VP_POLL_INTERVAL_SECONDS=str(poll),
        UA_VP_LOG_LEVEL="warning",
        # The agent script lives in the checkout, which a sandbox would hide.
        UA_VP_SANDBOX="none",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "ua_vp.cli", "worker", "--profile", VP], env=env, cwd=tmp, stderr=subprocess.DEVNULL
    )


def wait_for(predicate, timeout: float) -> float:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(0.01)
    raise TimeoutError


def recovery(url: str, lease: float, poll: float) -> float:
    store = open_store(url, lease_ttl_seconds=lease)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        pidfile = tmp / "agent.pid"
        m = store.enqueue(MissionSpec.create(vp_id=VP, objective=f"pid:{pidfile} sleep:600")).mission
        first = start_worker(url, tmp, lease, poll)
        wait_for(pidfile.exists, 60)
        first.kill()
        killed = time.monotonic()
        first.wait()
        os.killpg(int(pidfile.read_text()), signal.SIGKILL)  # its orphaned agent
        second = start_worker(url, tmp, lease, poll)
        try:
            rerun = wait_for(lambda: store.get(m.mission_id).attempt == 2, lease + poll + 60)
        finally:
            second.kill()
            second.wait()
    return rerun - killed


def cancel_latency(url: str, lease: float, poll: float) -> float:
    store = open_store(url, lease_ttl_seconds=lease)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        pidfile = tmp / "agent.pid"
        m = store.enqueue(MissionSpec.create(vp_id=VP, objective=f"pid:{pidfile} sleep:600")).mission
        worker = start_worker(url, tmp, lease, poll)
        try:
            wait_for(pidfile.exists, 60)
            time.sleep(0.5)
            pid = int(pidfile.read_text())
            asked = time.monotonic()
            store.request_cancel(m.mission_id)

            def gone() -> bool:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return True
                return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"

            done = wait_for(gone, lease + 10)
        finally:
            worker.kill()
            worker.wait()
    return done - asked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True, help="PostgreSQL admin URL (a fresh database is made)")
    parser.add_argument("--lease", type=float, action="append", help="lease TTLs to try (default: 15 and 120)")
    parser.add_argument("--poll", type=float, default=5.0)
    parser.add_argument("--cancel-only", action="store_true", help="measure cancels, not kill -9 recovery")
    args = parser.parse_args()
    leases = args.lease or [15.0, 120.0]
    print("| backend | measure | lease s | poll s | seconds | goal s |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as d:
        backends = {"postgresql": fresh_database(args.database_url), "sqlite": f"sqlite:///{d}/bench.db"}
        db.upgrade(db.make_engine(backends["sqlite"]))
        for name, url in backends.items():
            c = cancel_latency(url, 15.0, args.poll)
            goal = f"<= {args.poll + 1:g} (poll + 1 s)"
            print(f"| {name} | cancel -> agent gone | 15 | {args.poll:g} | {c:.2f} | {goal} |")
            for lease in [] if args.cancel_only else leases:
                r = recovery(url, lease, args.poll)
                print(
                    f"| {name} | kill -9 -> re-run | {lease:g} | {args.poll:g} | {r:.2f} | {lease + args.poll + 1:g} |"
                )


if __name__ == "__main__":
    main()
