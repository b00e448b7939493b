"""claude-cli and codex-cli against a fake agent that prints what the real CLIs print."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from runtime_harness import Harness, make_mission, pid_gone

from ua_vp import agent_home, sandbox
from ua_vp.config import Settings, load_settings
from ua_vp.errors import BudgetExceeded, ConfigError, PermissionDenied, RuntimeFailed
from ua_vp.missions import Mission
from ua_vp.profiles import MissionContext
from ua_vp.runtimes import claude_cli, codex_cli
from ua_vp.runtimes.process import FALLBACK_HOME


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
    started, failed = harness.of_kind("tool_use")
    assert started == {"kind": "tool_use", "type": "command_execution", "status": "in_progress", "input": "ls"}
    # A finished command says how it ended, and the end of what it printed (clipped).
    assert failed["status"] == "failed" and failed["exit_code"] == 2
    assert failed["output"].endswith("ls: cannot access 'x'") and len(failed["output"]) < 600
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


# --- what the runtimes ask of the real CLIs (issue 10) ------------------------------------------


def _recorded(harness: Harness, config_dir: str) -> dict[str, Any]:
    """What the fake CLI recorded about its call, in its config folder in the mission's home."""
    recorded: dict[str, Any] = json.loads((harness.workspace / FALLBACK_HOME / config_dir / "run.json").read_text())
    return recorded


def _sandboxed_ctx(harness: Harness, mission: Mission, settings: Settings) -> MissionContext:
    ctx = harness.ctx(mission, settings)
    ctx.sandbox = sandbox.Sandbox(backend="bwrap", reason="test")
    return ctx


def test_claude_prompt_comes_after_dashes_so_multi_value_options_cannot_swallow_it(harness: Harness) -> None:
    settings = harness.settings(
        claude_bin=harness.fake_bin("claude", "claude", "success"),
        claude_args='--allowedTools "Bash(git *)" Edit --model sonnet',
    )
    harness.run(claude_cli.create(harness.profile("claude-cli"), settings), make_mission("Write NOTES.md."), settings)

    argv = _recorded(harness, ".claude")["argv"]
    assert argv[:6] == ["--print", "--output-format", "stream-json", "--verbose", "--permission-mode", "acceptEdits"]
    assert argv[6:-2] == ["--allowedTools", "Bash(git *)", "Edit", "--model", "sonnet"]
    assert argv[-2] == "--"
    assert "Write NOTES.md." in argv[-1]
    assert "Write NOTES.md." in (harness.workspace / "NOTES.md").read_text()


def test_claude_permission_mode_defaults_by_sandbox_and_can_be_set(harness: Harness) -> None:
    mission = make_mission()
    plain = harness.settings()
    assert claude_cli.permission_mode(harness.ctx(mission, plain)) == "acceptEdits"
    assert claude_cli.permission_mode(_sandboxed_ctx(harness, mission, plain)) == "bypassPermissions"
    # Claude Code refuses bypassPermissions as root unless it is told it runs in a sandbox.
    home = agent_home.SeededHome(harness.tmp, agent_home.CLAUDE, {})
    assert claude_cli.run_env(_sandboxed_ctx(harness, mission, plain), home)["IS_SANDBOX"] == "1"
    assert "IS_SANDBOX" not in claude_cli.run_env(harness.ctx(mission, plain), home)
    chosen = harness.settings(claude_permission_mode="default")
    assert claude_cli.permission_mode(_sandboxed_ctx(harness, mission, chosen)) == "default"


def test_claude_permission_denials_fail_the_mission_and_show_as_events(harness: Harness) -> None:
    with pytest.raises(PermissionDenied, match=r"refused 1 action\(s\) it asked for \(Bash rm -rf build\)") as info:
        harness.run(_claude(harness, "denied"), make_mission())
    assert info.value.code == "permission_denied"
    assert info.value.details["summary"] == "Wrote NOTES.md with the objective."
    assert harness.of_kind("permission_denied") == [
        {"kind": "permission_denied", "tool": "Bash", "input": "rm -rf build"}
    ]
    assert harness.of_kind("result")[0]["denials"] == 1


def test_claude_api_retries_are_named_retries(harness: Harness) -> None:
    harness.run(_claude(harness, "retry"), make_mission())
    assert harness.of_kind("retry") == [
        {
            "kind": "retry",
            "attempt": 1,
            "max_retries": 10,
            "retry_delay_ms": 500,
            "error_status": 529,
            "error": "overloaded_error",
        }
    ]


def test_claude_usage_is_the_result_lines_counts(harness: Harness) -> None:
    result = harness.run(_claude(harness, "success"), make_mission())
    # Output tokens from the result line (25), not the streamed placeholders; no per-service clutter.
    assert result.usage == {
        "input_tokens": 20,
        "cache_read_input_tokens": 200,
        "output_tokens": 25,
        "total_cost_usd": 0.0012,
        "total_tokens": 245,
    }


def test_codex_writes_its_workspace_through_its_own_sandbox_when_ours_is_off(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUST_BACKTRACE", "1")  # would bury codex's error line under frames
    monkeypatch.setenv("OPENAI_API_KEY", "openai-key-for-codex")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "anthropic-key-not-for-codex")
    settings = harness.settings(
        codex_bin=harness.fake_bin("codex", "codex", "success"), codex_args="--model o4-mini -c x=1"
    )
    harness.run(codex_cli.create(harness.profile("codex-cli"), settings), make_mission("Do it."), settings)
    recorded = _recorded(harness, ".codex")
    argv = recorded["argv"]
    assert argv[:5] == ["exec", "--json", "--skip-git-repo-check", "--sandbox", "workspace-write"]
    assert argv[5:-2] == ["--model", "o4-mini", "-c", "x=1"]
    assert argv[-2] == "--"
    assert "Do it." in argv[-1]
    assert recorded["env"]["CODEX_HOME"] == str(harness.workspace / FALLBACK_HOME / ".codex")
    # What codex declares reaches it; nothing else of the worker's environment does.
    assert recorded["env"]["OPENAI_API_KEY"] == "openai-key-for-codex"
    assert "ANTHROPIC_API_KEY" not in recorded["env"]
    assert "RUST_BACKTRACE" not in recorded["env"]


def test_codex_inside_our_sandbox_is_told_it_is_sandboxed_from_outside(harness: Harness) -> None:
    ctx = _sandboxed_ctx(harness, make_mission(), harness.settings())
    assert codex_cli.sandbox_args(ctx) == ["--dangerously-bypass-approvals-and-sandbox"]
    assert codex_cli.sandbox_args(harness.ctx(make_mission())) == ["--sandbox", "workspace-write"]


def test_codex_item_errors_are_error_events_and_explain_a_failed_run(harness: Harness) -> None:
    with pytest.raises(RuntimeFailed, match="without printing its final answer; last error: Model metadata not found"):
        harness.run(_codex(harness, "item_error"), make_mission())
    assert harness.of_kind("error") == [{"kind": "error", "message": "Model metadata not found", "item": True}]


def test_a_failure_message_quotes_the_error_line_not_backtrace_frames(harness: Harness) -> None:
    with pytest.raises(RuntimeFailed) as info:
        harness.run(_codex(harness, "backtrace"), make_mission())
    message = info.value.message
    assert "Error: failed to initialize in-process app-server client: Read-only file system" in message
    assert "<unknown>" not in message
    assert "Stack backtrace" not in message


def test_codex_token_budget_is_checked_from_its_session_log_while_it_runs(harness: Harness) -> None:
    # The fake prints nothing after its first line and reports usage only in its session
    # log, every 0.2 s for 20 s: only the session log can stop it early.
    started = time.monotonic()
    with pytest.raises(BudgetExceeded, match=r"codex used 3030 tokens, more than budget.max_tokens=2500"):
        harness.run(_codex(harness, "rollout"), make_mission(budget={"max_tokens": 2500}))
    assert time.monotonic() - started < 15
    assert pid_gone(harness.started_pid())
    (note,) = harness.of_kind("token_budget")
    assert "after each model response" in note["checked"]
    assert [e["total_tokens"] for e in harness.of_kind("usage")] == [1010, 2020, 3030]


# --- the per-mission home ---------------------------------------------------------------------


def test_home_is_seeded_from_the_users_own_files_and_credentials_are_scrubbed(harness: Harness) -> None:
    user = harness.tmp / "user-home"
    (user / ".codex").mkdir(parents=True)
    (user / ".codex" / "config.toml").write_text('model = "o4-mini"\n')
    (user / ".codex" / "auth.json").write_text('{"OPENAI_API_KEY": "sk-user-secret"}')
    (user / ".codex" / "history.jsonl").write_text("not on the list\n")
    before = {p: p.read_bytes() for p in user.rglob("*") if p.is_file()}
    home = harness.tmp / "mission-home"

    seeded = agent_home.seed(home, agent_home.CODEX, template=None, user_home=user)
    assert seeded.env == {"CODEX_HOME": str(home / ".codex")}
    assert sorted(p.name for p in (home / ".codex").iterdir()) == ["auth.json", "config.toml"]
    assert (home / ".codex" / "auth.json").stat().st_mode & 0o077 == 0
    (home / ".codex" / "sessions").mkdir()  # what the CLI leaves stays; secrets go
    assert sorted(agent_home.scrub(seeded)) == [".codex/auth.json", ".codex/config.toml"]
    assert [p.name for p in (home / ".codex").iterdir()] == ["sessions"]
    assert {p: p.read_bytes() for p in user.rglob("*") if p.is_file()} == before
    # Seeding again over what a run left (a link planted where a seeded file goes) replaces it.
    (home / ".codex" / "auth.json").symlink_to(user / ".codex" / "history.jsonl")
    agent_home.seed(home, agent_home.CODEX, template=None, user_home=user)
    assert not (home / ".codex" / "auth.json").is_symlink()
    assert (user / ".codex" / "history.jsonl").read_text() == "not on the list\n"


def test_a_template_folder_replaces_the_list_and_links_in_it_are_not_followed(harness: Harness) -> None:
    template = harness.tmp / "template"
    (template / ".claude").mkdir(parents=True)
    (template / ".claude" / "settings.json").write_text("{}")
    (template / ".claude" / ".credentials.json").write_text('{"token": "t"}')
    (template / ".claude" / "stolen").symlink_to("/etc/shadow")
    home = harness.tmp / "mission-home"

    seeded = agent_home.seed(home, agent_home.CLAUDE, template=template, user_home=harness.tmp / "nobody")
    assert seeded.env == {"CLAUDE_CONFIG_DIR": str(home / ".claude")}
    assert sorted(p.name for p in (home / ".claude").iterdir()) == [".credentials.json", "settings.json"]
    agent_home.scrub(seeded)
    assert list((home / ".claude").iterdir()) == []


def test_the_cli_finds_its_seeded_files_and_they_are_gone_after_the_run(harness: Harness) -> None:
    template = harness.tmp / "template"
    (template / ".codex").mkdir(parents=True)
    (template / ".codex" / "auth.json").write_text("{}")
    settings = harness.settings(codex_bin=harness.fake_bin("codex", "codex", "success"), agent_home_template=template)
    harness.run(codex_cli.create(harness.profile("codex-cli"), settings), make_mission(), settings)
    assert "auth.json" in _recorded(harness, ".codex")["files"]
    assert not (harness.workspace / FALLBACK_HOME / ".codex" / "auth.json").exists()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("UA_VP_CLAUDE_ARGS", "--output-format text", "is set by ua-vp itself"),
        ("UA_VP_CLAUDE_ARGS", "--dangerously-skip-permissions", "is set by ua-vp itself"),
        ("UA_VP_CODEX_ARGS", "--sandbox=read-only", "is set by ua-vp itself"),
        ("UA_VP_CODEX_ARGS", "--model 'o4", "cannot be split like a shell command line"),
        ("UA_VP_CLAUDE_PERMISSION_MODE", "yolo", "UA_VP_CLAUDE_PERMISSION_MODE"),
    ],
)
def test_bad_agent_arguments_fail_at_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable) as info:
        load_settings(_env_file=None)
    assert message in info.value.message
