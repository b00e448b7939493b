"""claude-cli and codex-cli against a fake agent that prints what the real CLIs print."""

from __future__ import annotations

import pytest
from runtime_harness import Harness, make_mission, pid_gone

from ua_vp.errors import BudgetExceeded, ConfigError, RuntimeFailed
from ua_vp.runtimes import claude_cli, codex_cli


def _claude(harness: Harness, scenario: str) -> claude_cli.AgentCliExecutor:
    settings = harness.settings(claude_bin=harness.fake_bin("claude", "claude", scenario))
    return claude_cli.create(harness.profile("claude-cli"), settings)


def _codex(harness: Harness, scenario: str) -> codex_cli.AgentCliExecutor:
    settings = harness.settings(codex_bin=harness.fake_bin("codex", "codex", scenario))
    return codex_cli.create(harness.profile("codex-cli"), settings)


def test_claude_stream_becomes_events_and_the_final_result(harness: Harness) -> None:
    mission = make_mission("Write NOTES.md about queues.", constraints={"tone": "dry"})
    result = harness.run(_claude(harness, "success"), mission)

    kinds = [e["kind"] for e in harness.events]
    assert kinds == [
        "process_started",
        "system",
        "assistant_text",
        "tool_use",
        "tool_result",
        "output",
        "assistant_text",
        "result",
        "process_exited",
    ]
    assert harness.of_kind("system")[0] == {
        "kind": "system",
        "subtype": "init",
        "model": "fake-claude",
        "session_id": "s-1",
    }
    assert harness.of_kind("tool_use")[0]["tools"] == [{"name": "Write", "input": '{"file_path": "NOTES.md"}'}]
    assert harness.of_kind("tool_result")[0] == {"kind": "tool_result", "is_error": False, "content": "File created"}
    assert harness.of_kind("output")[0]["line"] == "debug: not json at all"

    assert result.summary == "Wrote NOTES.md with the objective."
    assert result.usage["total_tokens"] == 245
    assert result.usage["total_cost_usd"] == 0.0012
    assert result.data["session_id"] == "s-1"
    assert result.data["exit_code"] == 0
    assert result.artifacts == ["NOTES.md"]
    # The prompt reached the CLI as one argument, profile and constraints included.
    prompt = (harness.workspace / "NOTES.md").read_text()
    assert "TESTER (vp.test.primary)" in prompt
    assert "Write NOTES.md about queues." in prompt
    assert '"tone": "dry"' in prompt


def test_claude_error_result_fails_the_run(harness: Harness) -> None:
    with pytest.raises(RuntimeFailed, match="claude reported an error: error_during_execution: API Error: 529"):
        harness.run(_claude(harness, "error"), make_mission())


def test_claude_without_a_result_line_fails_the_run(harness: Harness) -> None:
    with pytest.raises(RuntimeFailed, match="exited 0 without printing its final answer"):
        harness.run(_claude(harness, "noresult"), make_mission())


def test_claude_over_the_token_budget_is_stopped_mid_run(harness: Harness) -> None:
    # The fake keeps running after reporting 5000 tokens: only the budget check can end it.
    with pytest.raises(BudgetExceeded, match=r"claude used 5000 tokens, more than budget.max_tokens=1000"):
        harness.run(_claude(harness, "greedy"), make_mission(budget={"max_tokens": 1000}))
    assert pid_gone(harness.started_pid())


def test_claude_result_usage_is_checked_against_the_budget(harness: Harness) -> None:
    with pytest.raises(BudgetExceeded, match="used 245 tokens"):
        harness.run(_claude(harness, "success"), make_mission(budget={"max_tokens": 200}))


def test_missing_cli_is_a_config_error_at_start_up(harness: Harness) -> None:
    settings = harness.settings(claude_bin="no-such-claude", codex_bin="/nowhere/codex")
    with pytest.raises(ConfigError, match="UA_VP_CLAUDE_BIN"):
        claude_cli.create(harness.profile("claude-cli"), settings)
    with pytest.raises(ConfigError, match="UA_VP_CODEX_BIN"):
        codex_cli.create(harness.profile("codex-cli"), settings)


def test_codex_json_lines_give_the_last_agent_message(harness: Harness) -> None:
    result = harness.run(_codex(harness, "success"), make_mission())

    kinds = [e["kind"] for e in harness.events]
    assert kinds == [
        "process_started",
        "event",
        "event",
        "event",
        "tool_use",
        "output",
        "assistant_text",
        "event",
        "process_exited",
    ]
    assert [e.get("type") for e in harness.of_kind("event")] == [
        "thread.started",
        "turn.started",
        "item.completed",
        "turn.completed",
    ]
    assert harness.of_kind("tool_use")[0]["input"] == "ls"
    assert harness.of_kind("output")[0]["line"] == "plain text from codex"
    assert result.summary == "All done."
    assert result.usage["total_tokens"] == 150  # cached input is part of input_tokens, not added again
    assert result.data["exit_code"] == 0


def test_codex_older_event_format_is_understood(harness: Harness) -> None:
    result = harness.run(_codex(harness, "legacy"), make_mission())
    assert result.summary == "Legacy done."
    assert result.usage["total_tokens"] == 12


def test_codex_failed_turn_fails_the_run(harness: Harness) -> None:
    with pytest.raises(RuntimeFailed, match="codex reported an error: model overloaded"):
        harness.run(_codex(harness, "failed"), make_mission())
