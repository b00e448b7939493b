"""Real ``ua-vp worker`` processes with the sandbox at its default (``auto``), over
SQLite and PostgreSQL: confinement end to end, the session row, refusing to run
CODIE unconfined, and cancel / time budget leaving no process behind."""

from __future__ import annotations

import json

import pytest

from ua_vp.missions import Status
from ua_vp.store import MissionStore

from .conftest import (
    CODER,
    GENERAL,
    Scene,
    Workers,
    alive,
    descendants,
    dispatch,
    group_members,
    progress,
    report,
    snapshot,
    wait_for,
)


def test_a_worker_on_defaults_confines_its_missions(
    workers: Workers, wstore: MissionStore, scene: Scene, auto_backend: str
) -> None:
    escapes, would_create = scene.escape_attempts()
    allowed = scene.allowed_attempts()
    m = dispatch(wstore, GENERAL, escapes + allowed)
    workspace = scene.state / "workspaces" / "general" / m.mission_id
    workspace.parent.mkdir(parents=True)
    db_files = [scene.tmp / f"ua_vp.db{suffix}" for suffix in ("", "-wal", "-shm", "-journal")]
    homes = scene.settings().homes_root
    untouched = [workspace, scene.handoff, workers.logs_dir, homes, scene.settings().output_root, *db_files]
    before = snapshot(scene.tmp, untouched)

    workers.start(GENERAL, "--once")
    wait_for(lambda: wstore.get(m.mission_id).status.terminal, 60, "the mission to end")

    litter = scene.cleanup(would_create)
    assert not litter, f"the sandbox let these be created: {litter}"
    done = wstore.get(m.mission_id)
    assert done.status is Status.COMPLETED, (done.error, workers.logs())
    lines = report(wstore, m.mission_id)
    assert len(lines) == len(escapes) + len(allowed)
    for line in lines[: len(escapes)]:
        assert line["ok"] is (line["op"] == "link"), f"escaped: {line}"
        if not line["ok"]:
            assert line["error"]  # the mission's record says how each attempt was refused
    assert all(line["ok"] for line in lines[len(escapes) :]), lines
    assert snapshot(scene.tmp, untouched) == before
    assert (workspace / "inside-workspace.txt").exists() and (scene.handoff / "handed-off.txt").exists()
    assert list(homes.iterdir()) == []  # the attempt's home went with it

    (event,) = progress(wstore, m.mission_id, "sandbox")
    assert event["backend"] == auto_backend and event["sandboxed"] is True
    (session,) = wstore.list_sessions(vp_id=GENERAL)
    assert session.sandbox == auto_backend


def test_codie_will_not_start_unconfined_unless_allowed(workers: Workers, wstore: MissionStore) -> None:
    refused = workers.start(CODER, "--once", UA_VP_SANDBOX="none")
    assert refused.wait(timeout=60) == 2
    assert "UA_VP_ALLOW_UNSANDBOXED=1" in workers.logs()
    assert wstore.list_sessions(vp_id=CODER) == []

    m = dispatch(wstore, CODER, [["write", "ok.txt"]])
    allowed = workers.start(CODER, "--once", UA_VP_SANDBOX="none", UA_VP_ALLOW_UNSANDBOXED="1")
    assert allowed.wait(timeout=60) == 0, workers.logs()
    assert wstore.get(m.mission_id).status is Status.COMPLETED
    (event,) = progress(wstore, m.mission_id, "sandbox")
    assert event["sandboxed"] is False and event["warning"].startswith("ran unsandboxed")
    warnings = [json.loads(line) for line in workers.logs().splitlines() if "mission_unsandboxed" in line]
    assert [w["level"] for w in warnings] == ["warning"] and warnings[0]["mission_id"] == m.mission_id
    (session,) = wstore.list_sessions(vp_id=CODER)
    assert session.sandbox == "none"


@pytest.mark.parametrize("how", ["cancel", "max_seconds"])
def test_stopping_a_sandboxed_mission_leaves_no_process(
    workers: Workers, wstore: MissionStore, scene: Scene, how: str, auto_backend: str
) -> None:
    budget = {"max_seconds": 6} if how == "max_seconds" else {}
    m = dispatch(wstore, GENERAL, [["family", "family.done", 2], ["sleep"]], budget=budget)
    done = scene.state / "workspaces" / "general" / m.mission_id / "family.done"
    workers.start(GENERAL)
    wait_for(done.exists, 30, "the agent's children")
    wait_for(lambda: progress(wstore, m.mission_id, "process_started"), 10, "the process_started event")
    leader = int(progress(wstore, m.mission_id, "process_started")[0]["pgid"])
    group = group_members(leader)
    tree = descendants(leader) | {leader}
    assert len(group) >= 3 and tree <= group, (group, tree)
    assert progress(wstore, m.mission_id, "sandbox")[0]["backend"] == auto_backend

    if how == "cancel":
        wstore.request_cancel(m.mission_id)
    wait_for(lambda: wstore.get(m.mission_id).status.terminal, 20, "the mission to stop")
    ended = wstore.get(m.mission_id)
    if how == "cancel":
        assert ended.status is Status.CANCELLED
    else:
        assert ended.status is Status.FAILED and ended.error and ended.error["code"] == "budget_exceeded"
    wait_for(lambda: not alive(tree), 5, "every process of the mission to be gone")
    assert not group_members(leader)


def test_the_worker_reports_its_backend_at_start(workers: Workers, wstore: MissionStore, auto_backend: str) -> None:
    proc = workers.start(GENERAL, "--once")
    assert proc.wait(timeout=60) == 0, workers.logs()
    started = [json.loads(line) for line in workers.logs().splitlines() if '"worker_started"' in line]
    assert started[0]["sandbox"] == auto_backend and started[0]["sandbox_reason"].startswith("auto: ")
