"""Hostile agents against real ``ua-vp worker`` processes, per backend (issue 11's findings that
need a worker: a retry, the worker's own environment). SQLite only: these are about the host, not
the store, whose behaviour the other suites prove on both databases."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from ua_vp.missions import Status
from ua_vp.runtimes.command import OBJECTIVE_FILE
from ua_vp.store import MissionStore, open_store

from .conftest import GENERAL, SECRETS, Scene, Workers, dispatch, progress, snapshot, wait_for


@pytest.fixture
def workers(sqlite_url: str, scene: Scene) -> Iterator[Workers]:
    w = Workers(sqlite_url, scene)
    yield w
    w.stop_all()


@pytest.fixture
def wstore(sqlite_url: str) -> Iterator[MissionStore]:
    s = open_store(sqlite_url, lease_ttl_seconds=15)
    yield s
    s.engine.dispose()


def test_c1_a_retry_makes_the_host_write_nothing_through_a_link_the_first_attempt_planted(
    workers: Workers, wstore: MissionStore, scene: Scene, backend: str
) -> None:
    target = scene.outside / "PLANTED.py"
    target.write_text("# a file of the host's\n")
    m = dispatch(
        wstore,
        GENERAL,
        [["once", str(scene.handoff / "first-attempt")], ["link", OBJECTIVE_FILE, str(target)], ["sleep"]],
    )
    root = scene.state / "workspaces" / "general"
    root.mkdir(parents=True)
    db_files = [scene.tmp / f"ua_vp.db{suffix}" for suffix in ("", "-wal", "-shm", "-journal")]
    # The worker's own writes: homes, and each attempt's output log.
    homes, logs = scene.settings().homes_root, scene.settings().output_root
    untouched = [root, scene.handoff, workers.logs_dir, homes, logs, *db_files]
    before = snapshot(scene.tmp, untouched)

    # Attempt 1 plants the link and sleeps; a restart with no grace gives the mission back.
    first = workers.start(GENERAL, UA_VP_SANDBOX=backend, UA_VP_SHUTDOWN_GRACE_SECONDS="0")
    wait_for(lambda: (root / m.mission_id / OBJECTIVE_FILE).is_symlink(), 30, "the planted link")
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0, workers.logs()
    assert wstore.get(m.mission_id).status is Status.QUEUED

    second = workers.start(GENERAL, "--once", UA_VP_SANDBOX=backend)
    assert second.wait(timeout=60) == 0, workers.logs()

    done = wstore.get(m.mission_id)
    assert done.status is Status.COMPLETED and done.attempt == 2, (done.error, workers.logs())
    assert target.read_text() == "# a file of the host's\n"
    assert snapshot(scene.tmp, untouched) == before
    assert (root / m.mission_id / OBJECTIVE_FILE).read_text() == m.objective
    assert (root / f"{m.mission_id}.attempt-1" / OBJECTIVE_FILE).is_symlink()  # kept aside, never reused
    assert list(scene.settings().homes_root.iterdir()) == []


def test_h2_a_worker_hands_its_mission_no_secret_from_its_environment(
    workers: Workers, wstore: MissionStore, scene: Scene, auto_backend: str
) -> None:
    m = dispatch(wstore, GENERAL, "print the environment")
    proc = workers.start(GENERAL, "--once", UA_VP_COMMAND="/usr/bin/env", **SECRETS)
    assert proc.wait(timeout=60) == 0, workers.logs()

    assert wstore.get(m.mission_id).status is Status.COMPLETED
    lines = [e["line"] for e in progress(wstore, m.mission_id, "output")]
    names = {line.split("=", 1)[0] for line in lines}
    assert {"PATH", "HOME", "TMPDIR"} <= names
    assert not names & set(SECRETS) and not any("secret" in line for line in lines)
    # Only what the command runtime passes by value; not the worker's database URL or token.
    assert {n for n in names if n.startswith("UA_VP_")} == {"UA_VP_MISSION_ID", "UA_VP_VP_ID", "UA_VP_WORKSPACE"}
