"""command runtime and the subprocess machinery under it, against real processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import pytest
from runtime_harness import AGENT, AGENT_ARGV, PY, Harness, make_mission, pid_gone, wait_for_file

from ua_vp.errors import BudgetExceeded, ConfigError, RuntimeFailed
from ua_vp.runtimes import command
from ua_vp.runtimes.process import EVENT_TEXT_CHARS, run_process


def _executor(harness: Harness, template: str) -> command.CommandExecutor:
    return command.create(harness.profile("command"), harness.settings(command=template))


def test_streams_each_line_as_an_event_and_returns_the_exit_code(harness: Harness) -> None:
    result = harness.run(_executor(harness, f"{AGENT} lines 3"), make_mission())

    outputs = [(e["stream"], e["line"]) for e in harness.of_kind("output")]
    assert outputs[:3] == [("stdout", "line 1"), ("stdout", "line 2"), ("stdout", "line 3")]
    assert ("stderr", "a warning on stderr") in outputs
    assert result.data["exit_code"] == 0
    assert result.summary.endswith("line 3")
    assert result.model_ran is True
    started = harness.of_kind("process_started")[0]
    assert started["pid"] == started["pgid"]
    assert harness.of_kind("process_exited")[0]["exit_code"] == 0
    assert pid_gone(started["pid"])


def test_placeholders_fill_whole_arguments_and_host_secrets_stay_out(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UA_VP_OPS_TOKEN", "s3cret")
    script = "import json, os, sys; print(json.dumps([sys.argv[1:], os.environ.get('UA_VP_OPS_TOKEN'), os.getcwd()]))"
    template = (
        f'{PY} -c "{script}" {{objective}} {{objective_file}} {{workspace}} {{mission_id}} {{vp_id}} {{mission_type}}'
    )
    objective = 'Fix the "quoted" bug; don\'t touch {workspace} or $HOME'
    result = harness.run(_executor(harness, template), make_mission(objective, mission_type="fix"))

    argv, token, cwd = json.loads(result.summary)
    ws = harness.workspace
    assert argv == [objective, str(ws / "OBJECTIVE.md"), str(ws), "m-1", "vp.test.primary", "fix"]
    assert (ws / "OBJECTIVE.md").read_text() == objective
    assert token is None
    assert cwd == str(ws)


def test_a_missing_or_broken_template_names_the_variable(harness: Harness) -> None:
    with pytest.raises(ConfigError, match="UA_VP_COMMAND"):
        command.create(harness.profile("command"), harness.settings())
    with pytest.raises(ConfigError, match=r"UA_VP_COMMAND.*\{objective_file\}"):
        command.create(harness.profile("command"), harness.settings(command="agent {task}"))


def test_non_zero_exit_fails_with_the_code_and_stderr(harness: Harness) -> None:
    with pytest.raises(RuntimeFailed, match="exited with code 3; last stderr: something broke") as info:
        harness.run(_executor(harness, f"{AGENT} fail 3"), make_mission())
    assert info.value.details["exit_code"] == 3


def test_a_program_that_is_not_there_is_a_config_error(harness: Harness) -> None:
    with pytest.raises(ConfigError, match="set UA_VP_COMMAND"):
        harness.run(_executor(harness, "/nonexistent/agent {objective}"), make_mission())


def test_output_budget_stops_the_process(harness: Harness) -> None:
    mission = make_mission(budget={"max_output_bytes": 200_000})
    with pytest.raises(BudgetExceeded, match="max_output_bytes=200000") as info:
        harness.run(_executor(harness, f"{AGENT} flood"), mission)
    assert info.value.code == "budget_exceeded"
    assert pid_gone(harness.started_pid())


def test_long_lines_are_cut_in_events(harness: Harness) -> None:
    harness.run(_executor(harness, f"{PY} -c \"print('y' * 100000)\""), make_mission())
    (event,) = harness.of_kind("output")
    assert event["line"].startswith("y" * EVENT_TEXT_CHARS)
    assert event["line"].endswith(f"[{100000 - EVENT_TEXT_CHARS} more chars]")


def test_cancel_kills_the_child_and_its_grandchild(harness: Harness) -> None:
    pidfile = harness.tmp / "pids"
    executor = _executor(harness, f"{AGENT} family {pidfile}")
    mission = make_mission()

    async def scenario() -> list[int]:
        task = asyncio.create_task(executor.execute(mission, harness.ctx(mission)))
        pids = [int(p) for p in (await wait_for_file(pidfile)).split()]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return pids

    child, grandchild = asyncio.run(scenario())
    assert harness.started_pid() == child
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)  # reaped, not just dead
    assert pid_gone(grandchild, timeout=1.0)


def test_cancel_also_kills_a_grandchild_in_a_session_of_its_own(harness: Harness) -> None:
    # codex runs shell commands on a terminal, in sessions of their own: killpg alone misses them
    # (seen with the real codex under Landlock, where no PID namespace catches them either).
    pidfile = harness.tmp / "pids"
    mission = make_mission()
    ctx = harness.ctx(mission)

    async def scenario() -> list[int]:
        argv = [*AGENT_ARGV, "family", str(pidfile), "setsid"]
        task = asyncio.create_task(run_process(argv, ctx, on_stdout=lambda line: None, term_grace=0.3))
        pids = [int(p) for p in (await wait_for_file(pidfile)).split()]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return pids

    child, grandchild = asyncio.run(scenario())
    gone = pid_gone(grandchild, timeout=1.0)
    if not gone:
        os.kill(grandchild, signal.SIGKILL)  # do not leave it behind when this fails
    assert pid_gone(child, timeout=0) and gone


def test_a_grandchild_ignoring_sigterm_gets_sigkill_after_the_grace(harness: Harness) -> None:
    pidfile = harness.tmp / "pids"
    mission = make_mission()
    ctx = harness.ctx(mission)

    async def scenario() -> tuple[list[int], float]:
        argv = [*AGENT_ARGV, "family", str(pidfile), "stubborn"]
        task = asyncio.create_task(run_process(argv, ctx, on_stdout=lambda line: None, term_grace=0.3))
        pids = [int(p) for p in (await wait_for_file(pidfile)).split()]
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return pids, time.monotonic() - started

    (child, grandchild), took = asyncio.run(scenario())
    assert pid_gone(child, timeout=0) and pid_gone(grandchild, timeout=0.5)
    assert 0.25 < took < 2.0  # waited out the grace for the stubborn one, then killed it


def test_leftovers_of_a_finished_command_are_stopped(harness: Harness) -> None:
    pidfile = harness.tmp / "orphan"
    # The orphan keeps our stdout open: without stopping it the run would never end.
    result = harness.run(_executor(harness, f"{AGENT} orphan {pidfile}"), make_mission())
    assert result.data["exit_code"] == 0
    assert pid_gone(int(pidfile.read_text()), timeout=1.0)


def test_a_key_handed_to_the_agent_is_masked_when_the_agent_prints_it_bare(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ua_vp import redact

    # No pattern knows this shape; only its secret-looking name tells.
    value = "plain-looking-value-4711"
    monkeypatch.setenv("MY_SERVICE_TOKEN", value)
    settings = harness.settings(
        command=f"{PY} -c \"import os; print(os.environ['MY_SERVICE_TOKEN'])\"", agent_env=["MY_SERVICE_TOKEN"]
    )
    redact._reset_for_tests()
    try:
        result = harness.run(command.create(harness.profile("command"), settings), make_mission(), settings)

        assert result.summary == value  # the agent really had it...
        printed = json.dumps([e["line"] for e in harness.of_kind("output")])
        assert value in printed
        # ...and what the store writes of its output (it masks on write) does not.
        assert value not in redact.redact(printed) and redact.MASK in redact.redact(printed)
    finally:
        redact._reset_for_tests()
