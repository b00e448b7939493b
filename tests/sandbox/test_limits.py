"""Per-mission limits (issue 11 item 6): a hostile agent per limit, per backend, against real
processes. Each runs into its limit and the mission fails with ``limit_exceeded`` naming the
setting to raise; the same limits leave a well-behaved agent alone."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from typing import Any

import pytest

from ua_vp import limits, sandbox
from ua_vp.errors import LimitExceeded
from ua_vp.missions import Status
from ua_vp.store import MissionStore

from .conftest import GENERAL, Scene, Workers, backend_or_skip, dispatch, progress, wait_for

SMALL = {"mission_memory_mb": 128, "mission_max_pids": 40, "mission_max_file_mb": 1, "mission_cpu_seconds": 1}
"""Limits small enough for each hostile agent to hit within a second or two."""


@pytest.fixture(params=["none", "bwrap", "landlock"])
def any_backend(request: pytest.FixtureRequest) -> str:
    """No sandbox as well as each real one: the limits do not depend on confinement."""
    return "none" if request.param == "none" else backend_or_skip(request.param)


def box(scene: Scene, backend: str, *, cgroups: bool = True, **values: Any) -> sandbox.Sandbox:
    made = scene.sandbox(sandbox=backend, allow_unsandboxed=True, **{**SMALL, **values})
    if cgroups:
        return made
    # As on a machine where the worker may make no cgroup: the rlimit fallback.
    return dataclasses.replace(made, limits=dataclasses.replace(made.limits, controllers=()))


def run_hostile(scene: Scene, made: sandbox.Sandbox, attempts: list[list[Any]]) -> LimitExceeded:
    _, proc = scene.run(made, attempts)
    assert proc.exit_code != 0, proc
    with pytest.raises(LimitExceeded) as caught:
        proc.raise_for_exit()
    (exited,) = scene.of_kind("process_exited")
    assert exited["limit"] == caught.value.details["limit"]
    assert_host_fine()
    return caught.value


def assert_host_fine() -> None:
    """The host still starts processes, and no cgroup of ours is left behind."""
    assert subprocess.run(["true"], check=False).returncode == 0
    for controller in filter(None, map(limits.cgroup_controller, ("memory", "pids"))):
        ours = [p for p in controller.parent.iterdir() if p.name.startswith(f"ua-vp-{os.getpid()}-")]
        assert not ours, ours


def needs_cgroup(name: str) -> limits.Controller:
    found = limits.cgroup_controller(name)
    if found is None:
        pytest.skip(f"the {name} limit needs a cgroup this process may create; none here")
    return found


def test_a_well_behaved_agent_completes_under_the_same_small_limits(scene: Scene, any_backend: str) -> None:
    report, proc = scene.run(
        box(scene, any_backend),
        [["allocate", 16], ["fork", 5], ["fill", "small.bin", 512], ["write", "notes.txt"]],
    )
    assert proc.exit_code == 0 and proc.limit is None, proc.stderr_tail
    assert [line["ok"] for line in report] == [True] * 4, report
    (event,) = scene.of_kind("sandbox")
    assert event["limits"]["max_file_mb"] == 1 and set(event["limits"]["enforced_by"]) == set(limits.SETTINGS)


def test_writing_past_the_file_size_limit(scene: Scene, any_backend: str) -> None:
    error = run_hostile(scene, box(scene, any_backend), [["fill", "big.bin", 4096]])
    assert error.details["setting"] == "UA_VP_MISSION_MAX_FILE_MB" and "SIGXFSZ" in error.message
    assert (scene.workspace / "big.bin").stat().st_size == 1024 * 1024


def test_spinning_past_the_cpu_limit(scene: Scene, any_backend: str) -> None:
    error = run_hostile(scene, box(scene, any_backend), [["spin"]])
    assert error.details["setting"] == "UA_VP_MISSION_CPU_SECONDS" and "SIGXCPU" in error.message


def test_allocating_past_the_memory_limit_in_a_cgroup(scene: Scene, any_backend: str) -> None:
    needs_cgroup("memory")
    error = run_hostile(scene, box(scene, any_backend), [["allocate", 1024]])
    assert error.details["setting"] == "UA_VP_MISSION_MEMORY_MB" and "cgroup" in error.message


def test_allocating_past_the_memory_limit_without_a_cgroup(scene: Scene, any_backend: str) -> None:
    made = box(scene, any_backend, cgroups=False)
    error = run_hostile(scene, made, [["allocate", 1024]])
    assert error.details["setting"] == "UA_VP_MISSION_MEMORY_MB" and "RLIMIT_DATA" in error.message


def test_a_fork_bomb_stops_at_the_process_limit(scene: Scene, any_backend: str) -> None:
    needs_cgroup("pids")
    error = run_hostile(scene, box(scene, any_backend), [["fork", 500]])
    assert error.details["setting"] == "UA_VP_MISSION_MAX_PIDS" and "pids.max" in error.message


def test_the_sandbox_event_says_what_holds_each_limit(scene: Scene) -> None:
    without = box(scene, "none", cgroups=False).limits
    assert without.enforced_by("pids").startswith("not enforced")
    assert without.enforced_by("memory").startswith("RLIMIT_DATA")
    assert box(scene, "none", mission_cpu_seconds=0).limits.enforced_by("cpu") == "off (UA_VP_MISSION_CPU_SECONDS=0)"


def test_every_limit_off_applies_none(scene: Scene) -> None:
    off = dict.fromkeys(SMALL, 0)
    made = scene.sandbox(sandbox="none", allow_unsandboxed=True, **off)
    command = made.command(["/bin/true"], workspace=scene.workspace, home=scene.home, constraints={})
    # Only the subreaper that kills leftovers remains (sandbox_exec --reap), with no limit to apply.
    assert command.argv[-3:] == ["--reap", "--", "/bin/true"], command.argv
    assert made.limits.controllers == ()
    command.finished()


def test_a_worker_fails_a_mission_on_a_limit(workers: Workers, wstore: MissionStore, scene: Scene) -> None:
    m = dispatch(wstore, GENERAL, [["fill", "big.bin", 4096]])
    workers.start(GENERAL, "--once", UA_VP_MISSION_MAX_FILE_MB="1")
    wait_for(lambda: wstore.get(m.mission_id).status.terminal, 60, "the mission to end")

    done = wstore.get(m.mission_id)
    assert done.status is Status.FAILED and done.error is not None, workers.logs()
    assert done.error["code"] == "limit_exceeded", done.error
    assert "raise UA_VP_MISSION_MAX_FILE_MB" in done.error["message"]
    (event,) = progress(wstore, m.mission_id, "sandbox")
    assert event["limits"]["max_file_mb"] == 1


def test_a_sandboxed_agent_cannot_leave_its_cgroup(scene: Scene, backend: str) -> None:
    controller = needs_cgroup("pids")
    report, proc = scene.run(box(scene, backend), [["write", str(controller.parent / "cgroup.procs")]])
    assert proc.exit_code == 0 and not report[0]["ok"], report
    assert "Read-only file system" in report[0]["error"] or "Permission denied" in report[0]["error"]


def test_cgroups_a_killed_worker_left_are_removed_at_the_next_start() -> None:
    controller = needs_cgroup("pids")
    gone = subprocess.Popen(["true"])
    gone.wait()
    left, live = controller.parent / f"ua-vp-{gone.pid}-0123abcd", controller.parent / f"ua-vp-{os.getpid()}-0123abcd"
    for folder in (left, live):
        folder.mkdir()
    try:
        limits._remove_leftovers(controller)
        assert not left.exists() and live.exists()
    finally:
        for folder in (left, live):
            if folder.exists():
                folder.rmdir()
