"""``codex-cli``: OpenAI Codex as ``codex exec --json``.

Read loosely, because the event format changed between releases: newer ones
print ``{"type": "item.completed", "item": {"type": "agent_message", "text": ...}}``,
``turn.completed`` with ``usage`` and ``turn.failed``/``error``; older ones wrap
each event as ``{"id": ..., "msg": {"type": "agent_message", "message": ...}}``
with ``token_count`` and ``task_complete``. The last agent message is the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ua_vp.runtimes.agent_cli import AgentCliExecutor, JsonStream, require_program
from ua_vp.runtimes.common import object_at
from ua_vp.runtimes.process import clip

if TYPE_CHECKING:
    from ua_vp.config import Settings
    from ua_vp.profiles import Profile

SETTING = "UA_VP_CODEX_BIN"


@dataclass
class CodexStream(JsonStream):
    name = "codex"

    def on_object(self, obj: dict[str, Any]) -> None:
        body = object_at(obj, "msg") or obj
        etype = str(body.get("type", ""))
        item = object_at(body, "item")
        itype = item.get("type")

        message = None
        if itype == "agent_message" and etype == "item.completed":
            message = item.get("text")
        elif etype == "agent_message":
            message = body.get("message")
        if isinstance(message, str):
            self.final_text = message
            self.ctx.emit("assistant_text", {"text": clip(message)})
            return

        if etype == "task_complete" and isinstance(body.get("last_agent_message"), str):
            self.final_text = body["last_agent_message"]
        if etype in ("turn.failed", "error", "stream_error"):
            error = object_at(body, "error") or body
            self.last_error = str(error.get("message") or etype)
            if etype == "turn.failed":
                self.failure = self.last_error
        usage = object_at(body, "usage") or object_at(object_at(body, "info"), "total_token_usage")
        if usage:
            self.track_usage(dict(usage))
        if itype in ("command_execution", "mcp_tool_call", "web_search") or etype == "exec_command_begin":
            what = item.get("command") or item.get("tool") or item.get("query") or body.get("command")
            self.ctx.emit(
                "tool_use", {"type": itype or etype, "status": item.get("status"), "input": clip(str(what), 500)}
            )
        else:
            self.ctx.emit("event", {"type": etype, **({"item_type": itype} if itype else {})})


def create(profile: Profile, settings: Settings) -> AgentCliExecutor:
    program = require_program(settings.codex_bin, SETTING)
    return AgentCliExecutor(
        profile,
        # Mission workspaces are not git checkouts, which codex refuses to work in without this flag.
        argv=lambda prompt: [program, "exec", "--json", "--skip-git-repo-check", prompt],
        stream=CodexStream,
        setting=SETTING,
    )
