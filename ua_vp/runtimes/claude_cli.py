"""``claude-cli``: Claude Code as ``claude --print --output-format stream-json --verbose``.

Each stdout line is one message: ``system`` (init), ``assistant`` (text and
tool_use blocks, with the request's usage), ``user`` (tool results) and a final
``result`` carrying the answer, ``is_error``, ``usage`` and ``total_cost_usd``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ua_vp.runtimes.agent_cli import AgentCliExecutor, JsonStream, require_program, text_of
from ua_vp.runtimes.common import object_at, tokens_used
from ua_vp.runtimes.process import clip

if TYPE_CHECKING:
    from ua_vp.config import Settings
    from ua_vp.profiles import Profile

SETTING = "UA_VP_CLAUDE_BIN"
_MAX_TOOLS_SHOWN = 5


@dataclass
class ClaudeStream(JsonStream):
    name = "claude"
    # One API response spans several lines (one per content block), each
    # repeating that response's usage: keep the latest per message id.
    _per_message: dict[str, int] = field(default_factory=dict, init=False)

    def on_object(self, obj: dict[str, Any]) -> None:
        kind = obj.get("type")
        message = object_at(obj, "message")
        if kind == "assistant":
            self._assistant(message)
        elif kind == "user":
            self._user(message)
        elif kind == "result":
            self._result(obj)
        elif kind == "system":
            info = {k: obj[k] for k in ("subtype", "model", "session_id") if isinstance(obj.get(k), str)}
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
        self.ctx.emit("result", {"subtype": subtype, "is_error": is_error, "num_turns": obj.get("num_turns")})
        if is_error or subtype not in (None, "success"):
            self.failure = f"{subtype or 'error'}: {answer or 'no message'}"
            return
        self.final_text = answer
        self.data = {k: obj[k] for k in ("session_id", "num_turns", "duration_ms") if obj.get(k) is not None}
        # The result's usage is the whole run's; it replaces the per-message sum.
        usage = dict(object_at(obj, "usage") or self.usage)
        if obj.get("total_cost_usd") is not None:
            usage["total_cost_usd"] = obj["total_cost_usd"]
        self.track_usage(usage)


def create(profile: Profile, settings: Settings) -> AgentCliExecutor:
    program = require_program(settings.claude_bin, SETTING)
    return AgentCliExecutor(
        profile,
        argv=lambda prompt: [program, "--print", "--output-format", "stream-json", "--verbose", prompt],
        stream=ClaudeStream,
        setting=SETTING,
    )
