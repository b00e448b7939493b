"""``claude-cli``: Claude Code as ``claude --print --output-format stream-json --verbose
--permission-mode MODE [UA_VP_CLAUDE_ARGS] -- PROMPT``.

Each stdout line is one message: ``system`` (``init``; ``api_retry`` while the API
is retried), ``assistant`` (text and tool_use blocks, with the request's usage),
``user`` (tool results) and a final ``result`` carrying the answer, ``is_error``,
the whole run's ``usage``, ``total_cost_usd`` and ``permission_denials``.

What the agent may do: ``UA_VP_CLAUDE_PERMISSION_MODE``; unset, ``bypassPermissions``
inside an OS sandbox (the sandbox is the boundary; ``IS_SANDBOX=1`` tells Claude Code
so, which it requires before it bypasses its checks as root) and ``acceptEdits``
without one (file edits in the workspace, no other commands). Whatever it was
refused shows as ``permission_denied`` progress events, and a run with a refusal
fails with code ``permission_denied``: its work is at best partly done.

The prompt comes after ``--``: options such as ``--allowedTools`` take several
values and would swallow it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ua_vp import agent_home
from ua_vp.errors import PermissionDenied
from ua_vp.runtimes.agent_cli import AgentCliExecutor, JsonStream, require_program, sandboxed, text_of
from ua_vp.runtimes.common import object_at, tokens_used
from ua_vp.runtimes.process import clip

if TYPE_CHECKING:
    from ua_vp.config import Settings
    from ua_vp.profiles import MissionContext, Profile, Result
    from ua_vp.runtimes.process import ProcessResult

SETTING = "UA_VP_CLAUDE_BIN"
PASS_ENV = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_MODEL",
    "ANTHROPIC_SMALL_FAST_MODEL",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
)
"""What Claude Code needs from the worker's environment: its key or token and endpoint (Bedrock
and Vertex need their cloud's variables as well: name those in ``UA_VP_AGENT_ENV``)."""
QUIET_ENV = {
    # No auto-updater, telemetry, error reports or other calls besides the model API:
    # a mission's agent talks to its provider and to nothing it was not asked to.
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_AUTOUPDATER": "1",
}
_MAX_TOOLS_SHOWN = 5
# The usage fields worth keeping from the result line (it also carries per-iteration
# and per-service breakdowns that nobody reads in a mission result).
_USAGE_FIELDS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")


@dataclass
class ClaudeStream(JsonStream):
    name = "claude"
    # One API response spans several lines (one per content block), each
    # repeating that response's usage: keep the latest per message id.
    _per_message: dict[str, int] = field(default_factory=dict, init=False)
    denials: list[dict[str, Any]] = field(default_factory=list, init=False)
    """What Claude Code refused the agent, from the result line."""

    def on_object(self, obj: dict[str, Any]) -> None:
        kind = obj.get("type")
        message = object_at(obj, "message")
        if kind == "assistant":
            self._assistant(message)
        elif kind == "user":
            self._user(message)
        elif kind == "result":
            self._result(obj)
        elif kind == "system" and obj.get("subtype") == "api_retry":
            retry: dict[str, Any] = {
                k: obj[k] for k in ("attempt", "max_retries", "retry_delay_ms", "error_status") if k in obj
            }
            if obj.get("error") is not None:
                retry["error"] = clip(str(obj["error"]), 500)
            self.last_error = str(obj.get("error") or f"API retry (status {obj.get('error_status')})")
            self.ctx.emit("retry", retry)
        elif kind == "system":
            info = {
                k: obj[k] for k in ("subtype", "model", "session_id", "permissionMode") if isinstance(obj.get(k), str)
            }
            self.ctx.emit("system", info)
        else:
            self.ctx.emit("event", {"type": str(kind)})

    def _assistant(self, message: dict[str, Any]) -> None:
        blocks = [b for b in message.get("content") or [] if isinstance(b, dict)]
        text = "\n".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text").strip()
        tools = [
            {"name": b.get("name"), "input": clip(json.dumps(b.get("input"), sort_keys=True), 500)}
            for b in blocks
            if b.get("type") == "tool_use"
        ]
        if tools:
            self.ctx.emit("tool_use", {"tools": tools[:_MAX_TOOLS_SHOWN], **({"text": clip(text)} if text else {})})
        elif text:
            self.ctx.emit("assistant_text", {"text": clip(text)})
        elif any(b.get("type") == "thinking" for b in blocks):
            self.ctx.emit("thinking", {})
        usage, message_id = message.get("usage"), message.get("id")
        if isinstance(usage, dict) and isinstance(message_id, str):
            self._per_message[message_id] = tokens_used(usage) or 0
            self.track_usage({"total_tokens": sum(self._per_message.values())})

    def _user(self, message: dict[str, Any]) -> None:
        results = [b for b in message.get("content") or [] if isinstance(b, dict) and b.get("type") == "tool_result"]
        if results:
            content = "\n".join(text_of(b.get("content")) for b in results)
            is_error = any(b.get("is_error") for b in results)
            self.ctx.emit("tool_result", {"is_error": is_error, "content": clip(content, 500)})

    def _result(self, obj: dict[str, Any]) -> None:
        subtype = obj.get("subtype")
        answer = text_of(obj.get("result"))
        is_error = bool(obj.get("is_error"))
        denials = [d for d in obj.get("permission_denials") or [] if isinstance(d, dict)]
        self.ctx.emit(
            "result",
            {"subtype": subtype, "is_error": is_error, "num_turns": obj.get("num_turns"), "denials": len(denials)},
        )
        for denial in denials:
            shown = {"tool": str(denial.get("tool_name")), "input": _denied_input(object_at(denial, "tool_input"))}
            self.denials.append(shown)
            self.ctx.emit("permission_denied", shown)
        # The result's usage is the whole run's, with the output tokens the streamed
        # messages only had a placeholder for; it replaces the per-message sum.
        reported = object_at(obj, "usage")
        usage = {k: reported[k] for k in _USAGE_FIELDS if isinstance(reported.get(k), int)} or dict(self.usage)
        if obj.get("total_cost_usd") is not None:
            usage["total_cost_usd"] = obj["total_cost_usd"]
        if is_error or subtype not in (None, "success"):
            self.usage = usage
            self.failure = f"{subtype or 'error'}: {answer or 'no message'}"
            return
        self.final_text = answer
        self.data = {k: obj[k] for k in ("session_id", "num_turns", "duration_ms") if obj.get(k) is not None}
        self.track_usage(usage)

    def finish(self, proc: ProcessResult, artifacts: list[str]) -> Result:
        result = super().finish(proc, artifacts)
        if self.denials:
            listed = "; ".join(f"{d['tool']} {d['input']}" for d in self.denials[:_MAX_TOOLS_SHOWN])
            mode = self.ctx.settings.claude_permission_mode
            raise PermissionDenied(
                f"claude was refused {len(self.denials)} action(s) it asked for ({listed}), so the mission is at "
                f"best partly done. Permission mode: {mode or 'the default'}; allow more with "
                "UA_VP_CLAUDE_PERMISSION_MODE or UA_VP_CLAUDE_ARGS='--allowedTools ...'",
                denials=self.denials,
                summary=result.summary,
                usage=result.usage,
            )
        return result


def _denied_input(tool_input: dict[str, Any]) -> str:
    """The part of a refused tool call a person recognises: its path or command."""
    for key in ("file_path", "notebook_path", "path", "command", "url", "pattern"):
        if isinstance(tool_input.get(key), str):
            return clip(tool_input[key], 300)
    return clip(json.dumps(tool_input, sort_keys=True), 300)


def permission_mode(ctx: MissionContext) -> str:
    """``UA_VP_CLAUDE_PERMISSION_MODE``, or the default for where the mission runs (see the module docstring)."""
    configured = ctx.settings.claude_permission_mode
    if configured is not None:
        return configured
    return "bypassPermissions" if sandboxed(ctx) else "acceptEdits"


def build_argv(program: str, prompt: str, ctx: MissionContext) -> list[str]:
    return [
        program,
        "--print",
        "--output-format",
        "stream-json",
        "--verbose",
        "--permission-mode",
        permission_mode(ctx),
        *ctx.settings.claude_args,
        "--",
        prompt,
    ]


def run_env(ctx: MissionContext, home: agent_home.SeededHome) -> dict[str, str]:
    env = dict(QUIET_ENV)
    if sandboxed(ctx):
        # Claude Code refuses bypassPermissions as root unless told it runs in a sandbox; it does.
        env["IS_SANDBOX"] = "1"
    return env


def create(profile: Profile, settings: Settings) -> AgentCliExecutor:
    program = require_program(settings.claude_bin, SETTING)
    agent_home.check_template(settings.agent_home_template)
    return AgentCliExecutor(
        profile,
        argv=lambda prompt, ctx: build_argv(program, prompt, ctx),
        stream=ClaudeStream,
        setting=SETTING,
        files=agent_home.CLAUDE,
        pass_env=PASS_ENV,
        env=run_env,
        template=settings.agent_home_template,
    )
