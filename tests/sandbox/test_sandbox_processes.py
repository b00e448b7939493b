"""Each backend against real processes: escapes fail, the workspace and handoff root work,
and cancelling leaves nothing running."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from ua_vp import sandbox
from ua_vp.errors import BudgetExceeded, ConfigError, GuardViolation
from ua_vp.runtimes import claude_cli, command

from .conftest import (
    PACKAGE,
    PYTHON,
    Scene,
    alive,
    descendants,
    group_members,
    make_mission,
    snapshot,
    wait_for,
)


def by_target(report: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(line["op"], line["target"]): line for line in report}


def check_confined(scene: Scene, box: sandbox.Sandbox) -> list[dict[str, Any]]:
    """Run every escape and every allowed attempt in ``box``; assert the escapes failed,
    the allowed ones worked, and nothing outside the workspace and handoff root changed."""
    escapes, would_create = scene.escape_attempts()
    allowed = scene.allowed_attempts()
    untouched = [scene.workspace, scene.handoff, scene.home]
    before = snapshot(scene.tmp, untouched)
    package_before = snapshot(PACKAGE, [])

    report, proc = scene.run(box, escapes + allowed)

    litter = scene.cleanup(would_create)
    assert not litter, f"the sandbox let these be created: {litter}"
    assert proc.exit_code == 0, proc.stderr_tail
    assert len(report) == len(escapes) + len(allowed)
    for line in report[: len(escapes)]:
        # Planting the symlink is allowed (it is in the workspace); following it is not.
        assert line["ok"] is (line["op"] == "link"), f"escaped: {line}"
    for line in report[len(escapes) :]:
        assert line["ok"] is True, f"an allowed action failed: {line}"
    assert snapshot(scene.tmp, untouched) == before
    # Our own files only: others may be editing the checkout while the tests run.
    assert {k: v for k, v in snapshot(PACKAGE, []).items() if scene.marker in k} == {}
    assert set(package_before) <= set(snapshot(PACKAGE, []))
    assert (scene.workspace / "inside-workspace.txt").exists()
    assert (scene.handoff / "handed-off.txt").exists()
    (scratch,) = [line["result"] for line in report if line["op"] == "tempfile"]
    assert Path(scratch).parent == scene.home / "tmp"  # TMPDIR is in the mission's home
    (event,) = scene.of_kind("sandbox")
    assert event["backend"] == box.backend and event["sandboxed"] is True
    return report


def test_escapes_fail_and_only_the_workspace_and_handoff_root_change(scene: Scene, backend: sandbox.Backend) -> None:
    box = scene.sandbox(sandbox=backend)
    assert box.backend == backend
    report = check_confined(scene, box)
    # Hidden means unreadable, not merely unwritable: the secrets did not come out.
    reads = {line["target"]: line for line in report if line["op"] == "read"}
    assert reads[str(scene.project / ".env")]["ok"] is False
    assert reads["into-state/secret.txt"]["ok"] is False
    assert all("secret" not in json.dumps(line["result"]) for line in report)


def test_auto_takes_the_strongest_working_backend_and_confines(scene: Scene, auto_backend: str) -> None:
    box = scene.sandbox(sandbox="auto")
    assert box.backend == auto_backend == next(b for b in sandbox.BACKENDS if sandbox.probe(b).works)
    check_confined(scene, box)


def test_a_hidden_protected_root_looks_empty_or_unreadable(scene: Scene, backend: sandbox.Backend) -> None:
    report, _ = scene.run(scene.sandbox(sandbox=backend), [["list", str(scene.project)], ["list", str(scene.state)]])
    project, state = report
    # bwrap shows an empty folder (holding only the mount points of the workspace and home); Landlock refuses.
    assert not project["ok"] or project["result"] == []
    assert not state["ok"] or state["result"] == ["homes", "workspaces"]


def test_read_only_protection_lets_reads_through_but_no_writes(scene: Scene, backend: sandbox.Backend) -> None:
    box = scene.sandbox(sandbox=backend, sandbox_protected="read-only")
    attempts = [
        ["read", str(scene.project / ".env")],
        ["read", str(scene.state / "secret.txt")],
        ["write", str(scene.project / ".env")],
        ["write", str(scene.state / f"{scene.marker}.txt")],
    ]
    before = snapshot(scene.tmp, [scene.workspace, scene.home])
    report, _ = scene.run(box, attempts)
    # Its .env stays hidden even so: .env files are hidden whatever UA_VP_SANDBOX_PROTECTED says.
    assert [line["ok"] for line in report] == [False, True, False, False]
    assert report[1]["result"] == "state secret\n"
    assert snapshot(scene.tmp, [scene.workspace, scene.home]) == before


def test_a_protected_root_inside_the_handoff_root_stays_protected(scene: Scene, backend: sandbox.Backend) -> None:
    locked, open_ = scene.handoff / "locked", scene.handoff / "open"
    locked.mkdir()
    open_.mkdir()
    (locked / "keep.txt").write_text("keep\n")
    box = scene.sandbox(sandbox=backend, protected_roots=[scene.project, locked])
    report, _ = scene.run(
        box,
        [
            ["write", str(locked / "keep.txt")],
            ["read", str(locked / "keep.txt")],
            ["write", str(open_ / "beside.txt")],
            ["write", str(scene.handoff / "top.txt")],
        ],
    )
    # Landlock cannot take a right back below a granted folder, so it grants the handoff root
    # entry by entry around the protected one: its top level takes no new files (documented).
    assert [line["ok"] for line in report] == [False, False, True, backend == "bwrap"]
    assert (locked / "keep.txt").read_text() == "keep\n"


@pytest.mark.parametrize("how", ["cancel", "output_budget"])
def test_stopping_a_sandboxed_mission_leaves_no_process(scene: Scene, backend: sandbox.Backend, how: str) -> None:
    box = scene.sandbox(sandbox=backend)
    done, go = scene.workspace / "family.done", scene.workspace / "go"
    attempts: list[list[Any]] = [["family", str(done), 2], ["sleep"]]
    budget = {}
    if how == "output_budget":
        attempts = [["family", str(done), 2], ["await", str(go)], ["flood"]]
        budget = {"max_output_bytes": 2_000_000}
    ctx = scene.ctx(box, make_mission(json.dumps(attempts), budget=budget))
    seen: dict[str, set[int]] = {}

    async def scenario() -> None:
        from ua_vp.runtimes.process import run_process

        task = asyncio.create_task(run_process(scene.argv(attempts), ctx, on_stdout=lambda line: None))
        await asyncio.to_thread(wait_for, done.exists, 20, "the agent's children")
        leader = int(scene.of_kind("process_started")[0]["pgid"])
        seen["group"] = group_members(leader)
        seen["tree"] = descendants(leader) | {leader}
        if how == "cancel":  # cancel request, lease loss and max_seconds all arrive as this
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        else:
            go.touch()
            with pytest.raises(BudgetExceeded):
                await task

    asyncio.run(scenario())
    # The agent and its two sleeping children (and bwrap's two processes), all in one group.
    assert len(seen["group"]) >= (5 if backend == "bwrap" else 3), seen
    assert seen["tree"] <= seen["group"], seen
    leader = int(scene.of_kind("process_started")[0]["pgid"])
    assert not alive(seen["tree"]), "a process of the mission outlived it"
    assert not group_members(leader), "its process group still has members"


def test_a_process_that_left_the_group_ends_too(scene: Scene, backend: sandbox.Backend) -> None:
    box = scene.sandbox(sandbox=backend)
    done = scene.workspace / "setsid.done"
    attempts = [["setsid", str(done)], ["sleep"]]
    ctx = scene.ctx(box, make_mission(json.dumps(attempts)))
    escaped: set[int] = set()

    async def scenario() -> None:
        from ua_vp.runtimes.process import run_process

        task = asyncio.create_task(run_process(scene.argv(attempts), ctx, on_stdout=lambda line: None))
        await asyncio.to_thread(wait_for, done.exists, 20, "the agent's escaped child")
        leader = int(scene.of_kind("process_started")[0]["pgid"])
        escaped.update(descendants(leader) - group_members(leader))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert escaped, "the child should have left the process group"
    # killpg cannot reach it; the PID namespace going down with the sandbox does.
    wait_for(lambda: not alive(escaped), 3, "the escaped child to be gone")


def test_none_runs_unconfined_and_says_so(scene: Scene) -> None:
    from structlog.testing import capture_logs

    box = scene.sandbox(sandbox="none", allow_unsandboxed=True)
    target = scene.outside / f"{scene.marker}.txt"
    with capture_logs() as logs:
        report, _ = scene.run(box, [["write", str(target)]])
    assert report[0]["ok"] is True and target.exists()  # nothing stopped it: that is what none means
    (event,) = scene.of_kind("sandbox")
    assert event["backend"] == "none" and event["sandboxed"] is False and "unsandboxed" in event["warning"]
    assert [e for e in logs if e["event"] == "mission_unsandboxed" and e["log_level"] == "warning"]


def test_none_refuses_a_mission_that_asks_for_no_network(scene: Scene) -> None:
    box = scene.sandbox(sandbox="none", allow_unsandboxed=True)
    with pytest.raises(GuardViolation, match="network_unenforceable"):
        scene.run(box, [["connect", "127.0.0.1", 9]], constraints={"network": "none"})


def test_a_program_inside_a_hidden_root_is_a_clear_config_error(scene: Scene, backend: sandbox.Backend) -> None:
    program = scene.state / "agent.sh"
    program.write_text("#!/bin/sh\necho hi\n")
    program.chmod(0o755)
    ctx = scene.ctx(scene.sandbox(sandbox=backend), make_mission())
    from ua_vp.runtimes.process import run_process

    with pytest.raises(ConfigError, match="UA_VP_SANDBOX_PROTECTED=read-only"):
        asyncio.run(run_process([str(program)], ctx, on_stdout=lambda line: None))
    with pytest.raises(ConfigError, match="set UA_VP_COMMAND"):
        asyncio.run(run_process(["no-such-agent-here"], ctx, on_stdout=lambda line: None, setting="UA_VP_COMMAND"))


def test_the_command_runtime_runs_in_the_sandbox(scene: Scene, backend: sandbox.Backend) -> None:
    target = scene.outside / f"{scene.marker}.txt"
    attempts = json.dumps([["write", str(target)], ["write", "ok.txt"]])
    settings = scene.settings(command=f"{PYTHON} {scene.agent} {{objective}}")
    executor = command.create(scene.profile(settings), settings)
    mission = make_mission(attempts)
    result = asyncio.run(executor.execute(mission, scene.ctx(scene.sandbox(sandbox=backend), mission)))
    lines = [json.loads(e["line"]) for e in scene.of_kind("output") if e["stream"] == "stdout"]
    assert [line["ok"] for line in lines] == [False, True]
    assert not target.exists() and "ok.txt" in result.artifacts
    assert scene.of_kind("sandbox")[0]["backend"] == backend


def test_the_agent_cli_runtimes_run_in_the_sandbox(scene: Scene, backend: sandbox.Backend) -> None:
    fake = scene.bin / "fake_agent.py"
    fake.write_bytes((Path(__file__).resolve().parents[1] / "fake_agent.py").read_bytes())
    claude = scene.bin / "claude"
    claude.write_text(f'#!/bin/sh\nexec {PYTHON} {fake} claude success "$@"\n')
    claude.chmod(0o755)
    settings = scene.settings(claude_bin=str(claude))
    executor = claude_cli.create(scene.profile(settings), settings)
    mission = make_mission("say hello")
    result = asyncio.run(executor.execute(mission, scene.ctx(scene.sandbox(sandbox=backend), mission)))
    assert result.summary
    (event,) = scene.of_kind("sandbox")
    assert event["backend"] == backend and event["sandboxed"] is True


def test_each_missions_network_ends_with_it_when_many_run_at_once(
    scene: Scene, backend: sandbox.Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight networked missions at once, four finishing and four cancelled: each slirp4netns
    ends because its exit pipe closed (exit status 0), none is killed after a wait, none is left."""
    from ua_vp.runtimes.process import run_process
    from ua_vp.sandbox_net import PrivateNetwork

    ended: list[int | None] = []
    close = PrivateNetwork.close

    async def recorded(self: PrivateNetwork) -> None:
        await close(self)
        ended.append(self.slirp.returncode if self.slirp else None)

    monkeypatch.setattr(PrivateNetwork, "close", recorded)
    box = scene.sandbox(sandbox=backend)

    async def scenario() -> None:
        def start(attempts: list[list[Any]]) -> asyncio.Task[Any]:
            ctx = scene.ctx(box, make_mission(json.dumps(attempts)))
            return asyncio.create_task(run_process(scene.argv(attempts), ctx, on_stdout=lambda line: None))

        finishing = [start([["write", f"quick-{n}.txt"]]) for n in range(4)]
        hanging = [start([["sleep"]]) for _ in range(4)]
        await asyncio.gather(*finishing)
        await asyncio.to_thread(wait_for, lambda: len(scene.of_kind("process_started")) == 8, 20, "all eight")
        for task in hanging:
            task.cancel()
        await asyncio.gather(*hanging, return_exceptions=True)

    asyncio.run(scenario())
    assert ended == [0] * 8, "a slirp4netns was killed (negative) or never started (None)"
    left = [
        pid for pid in alive(descendants(os.getpid())) if b"slirp4netns" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    assert not left, left
