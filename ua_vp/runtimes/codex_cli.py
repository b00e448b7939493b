"""``codex-cli``: OpenAI Codex as ``codex exec --json --skip-git-repo-check SANDBOX
[UA_VP_CODEX_ARGS] -- PROMPT``.

SANDBOX: inside ua-vp's OS sandbox, ``--dangerously-bypass-approvals-and-sandbox``,
codex's flag for environments that are sandboxed from outside (its own sandbox
cannot start inside ours: bubblewrap cannot map user ids there). With
``UA_VP_SANDBOX=none``, ``--sandbox workspace-write``: codex's own sandbox lets
the agent write its workspace and nothing else.

Token budget: ``codex exec --json`` reports usage only in ``turn.completed``, i.e.
when the whole run is over. codex also records a ``token_count`` after every model
response in its session log (``$CODEX_HOME/sessions/…/rollout-*.jsonl``, in the
mission's home), and :class:`RolloutUsage` reads that while codex runs: the budget
is checked after each model response, which is the earliest codex reports usage.
A response's tool calls may already have run by then, so one response's worth of
work can go over the budget; the ``token_budget`` event at the start says so.

Read loosely, because the event format changed between releases: newer ones
print ``{"type": "item.completed", "item": {"type": "agent_message", "text": ...}}``,
``turn.completed`` with ``usage`` and ``turn.failed``/``error``; older ones wrap
each event as ``{"id": ..., "msg": {"type": "agent_message", "message": ...}}``
with ``token_count`` and ``task_complete``. The last agent message is the answer.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ua_vp import agent_home
from ua_vp.runtimes.agent_cli import AgentCliExecutor, JsonStream, require_program, sandboxed
from ua_vp.runtimes.common import object_at
from ua_vp.runtimes.process import clip

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ua_vp.config import Settings
    from ua_vp.profiles import MissionContext, Profile

SETTING = "UA_VP_CODEX_BIN"
PASS_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "CODEX_API_KEY", "OPENAI_ORGANIZATION", "OPENAI_PROJECT")
"""What codex needs from the worker's environment: its key and endpoint. A custom model
provider's ``env_key`` is another name: list it in ``UA_VP_AGENT_ENV``."""
EXTERNALLY_SANDBOXED = "--dangerously-bypass-approvals-and-sandbox"
ROLLOUT_POLL_SECONDS = 0.25
_ROLLOUT_READ_BYTES = 4 * 1024 * 1024
_ROLLOUT_MAX_FILES = 64


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
        if itype == "error":
            # An item-level error (say, no metadata for the model) need not end the run; it is kept
            # as the last error, so a run that then fails says why.
            self.last_error = str(item.get("message") or "error item without a message")
            self.ctx.emit("error", {"message": clip(self.last_error, 1000), "item": True})
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
        if (
            itype in ("command_execution", "mcp_tool_call", "web_search", "file_change")
            or etype == "exec_command_begin"
        ):
            what = (
                item.get("command")
                or item.get("tool")
                or item.get("query")
                or item.get("changes")
                or body.get("command")
            )
            use = {"type": itype or etype, "status": item.get("status"), "input": clip(str(what), 500)}
            # A finished command says how it ended: an agent that carries on after a failed
            # command is otherwise indistinguishable, in the events, from one whose command worked.
            if isinstance(item.get("exit_code"), int):
                use["exit_code"] = item["exit_code"]
            if isinstance(item.get("aggregated_output"), str) and item["aggregated_output"].strip():
                use["output"] = clip(item["aggregated_output"].strip(), 500, keep_end=True)
            self.ctx.emit("tool_use", use)
        elif etype in ("turn.failed", "error", "stream_error"):
            self.ctx.emit("error", {"message": clip(self.last_error or etype, 1000), "type": etype})
        else:
            self.ctx.emit("event", {"type": etype, **({"item_type": itype} if itype else {})})

    def on_rollout(self, record: dict[str, Any]) -> None:
        """A line of codex's session log: its ``token_count`` after each model response."""
        payload = object_at(record, "payload")
        if payload.get("type") != "token_count":
            return
        usage = object_at(object_at(payload, "info"), "total_token_usage")
        if usage:
            self.ctx.emit("usage", {"source": "session log", **{k: v for k, v in usage.items() if isinstance(v, int)}})
            self.track_usage(dict(usage))


@dataclass
class RolloutUsage:
    """Follows codex's session logs under ``CODEX_HOME/sessions`` and hands each record to the stream.

    The files live in the agent's home, so they are treated as the agent's: opened without
    following links or blocking, regular files only, read in bounded pieces."""

    sessions: Path
    stream: CodexStream
    _offsets: dict[str, int] = field(default_factory=dict)
    _partial: dict[str, bytes] = field(default_factory=dict)

    async def follow(self) -> None:
        while True:
            for record in await asyncio.to_thread(self.read_new):
                self.stream.on_rollout(record)
            await asyncio.sleep(ROLLOUT_POLL_SECONDS)

    def read_new(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        for path in self._logs():
            records += self._read(path)
        return records

    def _logs(self) -> list[str]:
        # sessions/YYYY/MM/DD/rollout-*.jsonl; a bounded look, not a walk of whatever is there.
        found: list[str] = []
        level = [str(self.sessions)]
        for _ in range(3):
            level = [e.path for d in level for e in _scan(d) if e.is_dir(follow_symlinks=False)][:_ROLLOUT_MAX_FILES]
        for d in level:
            found += [e.path for e in _scan(d) if e.name.startswith("rollout-") and e.name.endswith(".jsonl")]
        return sorted(found)[:_ROLLOUT_MAX_FILES]

    def _read(self, path: str) -> list[dict[str, Any]]:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return []
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return []
            f.seek(self._offsets.get(path, 0))
            chunk = f.read(_ROLLOUT_READ_BYTES)
            self._offsets[path] = f.tell()
        *lines, rest = (self._partial.pop(path, b"") + chunk).split(b"\n")
        if len(rest) < _ROLLOUT_READ_BYTES:
            self._partial[path] = rest
        records = []
        for line in lines:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                records.append(obj)
        return records


def _scan(folder: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return [e for _, e in zip(range(_ROLLOUT_MAX_FILES * 4), it, strict=False)]
    except OSError:
        return []


def sandbox_args(ctx: MissionContext) -> list[str]:
    if sandboxed(ctx):
        return [EXTERNALLY_SANDBOXED]
    return ["--sandbox", "workspace-write"]


def build_argv(program: str, prompt: str, ctx: MissionContext) -> list[str]:
    # Mission workspaces are not git checkouts, which codex refuses to work in without --skip-git-repo-check.
    return [
        program,
        "exec",
        "--json",
        "--skip-git-repo-check",
        *sandbox_args(ctx),
        *ctx.settings.codex_args,
        "--",
        prompt,
    ]


def watch_usage(
    ctx: MissionContext, home: agent_home.SeededHome, stream: JsonStream
) -> Callable[[], Awaitable[None]] | None:
    if ctx.budget.get("max_tokens") is None or not isinstance(stream, CodexStream):
        return None
    ctx.emit(
        "token_budget",
        {
            "max_tokens": ctx.budget["max_tokens"],
            "checked": "after each model response, from codex's session log; the tools that response "
            "called may already have run, so a run can end up to one response over the budget",
        },
    )
    return RolloutUsage(home.config_dir / "sessions", stream).follow


def create(profile: Profile, settings: Settings) -> AgentCliExecutor:
    program = require_program(settings.codex_bin, SETTING)
    agent_home.check_template(settings.agent_home_template)
    return AgentCliExecutor(
        profile,
        argv=lambda prompt, ctx: build_argv(program, prompt, ctx),
        stream=CodexStream,
        setting=SETTING,
        files=agent_home.CODEX,
        pass_env=PASS_ENV,
        template=settings.agent_home_template,
        watch=watch_usage,
    )
