"""What ``claude-cli`` and ``codex-cli`` share: seed the CLI's folder in the mission's
home (:mod:`ua_vp.agent_home`), run the CLI that prints one JSON object per line,
turn each line into one progress event, scrub the credentials from the home, and
build the :class:`Result` from the stream once the process has ended."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ua_vp import agent_home
from ua_vp.errors import ConfigError, RuntimeFailed
from ua_vp.profiles import Result
from ua_vp.runtimes.common import agent_prompt, check_token_budget, collect_artifacts, tokens_used
from ua_vp.runtimes.process import clip, mission_home, run_process

if TYPE_CHECKING:
    from pathlib import Path

    from ua_vp.agent_home import AgentFiles
    from ua_vp.missions import Mission
    from ua_vp.profiles import MissionContext, Profile
    from ua_vp.runtimes.process import ProcessResult


SUMMARY_CHARS = 4000


@dataclass
class JsonStream:
    """Reads one agent CLI's stdout. Subclasses interpret the objects it prints and
    fill in ``final_text``, ``failure``, ``usage`` and ``data``; :meth:`finish` judges the run."""

    ctx: MissionContext
    name: ClassVar[str] = "agent"
    final_text: str | None = field(default=None, init=False)
    """The agent's final answer; None until the CLI printed one."""
    failure: str | None = field(default=None, init=False)
    """Set when the CLI reported that the run failed."""
    last_error: str | None = field(default=None, init=False)
    """The latest error it mentioned, which need not have ended the run."""
    usage: dict[str, Any] = field(default_factory=dict, init=False)
    data: dict[str, Any] = field(default_factory=dict, init=False)

    def on_line(self, line: str) -> None:
        if not line.strip():
            return
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            self.on_object(obj)
        else:
            self.ctx.emit("output", {"stream": "stdout", "line": clip(line)})

    def on_object(self, obj: dict[str, Any]) -> None:
        """Handle one JSON object; emit at most one progress event for it."""
        raise NotImplementedError

    def track_usage(self, usage: dict[str, Any]) -> None:
        """Record usage so far; over ``budget.max_tokens`` the raise stops the process mid-run."""
        self.usage = usage
        check_token_budget(self.ctx.budget, usage, who=self.name)

    def finish(self, proc: ProcessResult, artifacts: list[str]) -> Result:
        """The mission's result once the process exited; :class:`RuntimeFailed` for a failed run."""
        proc.raise_for_limit()  # the cause, whatever the CLI made of it
        if self.failure is not None:
            raise RuntimeFailed(f"{self.name} reported an error: {clip(self.failure, 1000)}", exit_code=proc.exit_code)
        proc.raise_for_exit()
        if self.final_text is None:
            said = f"; last error: {clip(self.last_error, 1000)}" if self.last_error else ""
            raise RuntimeFailed(
                f"{self.name} exited 0 without printing its final answer{said}",
                exit_code=proc.exit_code,
                stdout_tail=proc.stdout_tail,
            )
        check_token_budget(self.ctx.budget, self.usage, who=self.name)
        usage = dict(self.usage)
        if (total := tokens_used(usage)) is not None:
            usage["total_tokens"] = total
        return Result(
            summary=clip(self.final_text.strip(), SUMMARY_CHARS) or f"{self.name} finished with an empty answer",
            artifacts=artifacts,
            usage=usage,
            data={**self.data, "final_message": self.final_text, "exit_code": proc.exit_code},
        )


def sandboxed(ctx: MissionContext) -> bool:
    """Whether the mission's processes run inside an OS sandbox (not backend ``none``)."""
    return ctx.sandbox is not None and ctx.sandbox.sandboxed


@dataclass(frozen=True)
class AgentCliExecutor:
    profile: Profile
    argv: Callable[[str, MissionContext], list[str]]
    """Builds the command line from the prompt (which it puts after ``--``) and the context."""
    stream: Callable[[MissionContext], JsonStream]
    setting: str
    """The variable naming the program, for error messages."""
    files: AgentFiles
    """Where the CLI keeps its configuration and credentials in a home."""
    pass_env: Sequence[str] = ()
    """The worker's variables the CLI needs (its API key and endpoint); nothing else reaches it."""
    env: Callable[[MissionContext, agent_home.SeededHome], dict[str, str]] | None = None
    """Variables set for this run beyond the CLI's config-dir variable."""
    template: Path | None = None
    """``UA_VP_AGENT_HOME_TEMPLATE``."""
    watch: (
        Callable[[MissionContext, agent_home.SeededHome, JsonStream], Callable[[], Awaitable[None]] | None] | None
    ) = None
    """Something to follow while the CLI runs (codex's session log for usage); what it raises stops the run."""

    async def execute(self, mission: Mission, ctx: MissionContext) -> Result:
        stream = self.stream(ctx)
        home = await asyncio.to_thread(agent_home.seed, mission_home(ctx), self.files, template=self.template)
        follow = self.watch(ctx, home, stream) if self.watch else None
        run = asyncio.ensure_future(
            run_process(
                self.argv(agent_prompt(mission, self.profile), ctx),
                ctx,
                on_stdout=stream.on_line,
                env={**home.env, **(self.env(ctx, home) if self.env else {})},
                pass_env=self.pass_env,
                check=False,
                setting=self.setting,
            )
        )
        watcher = asyncio.ensure_future(follow()) if follow else None
        try:
            if watcher is not None:
                await asyncio.wait({run, watcher}, return_when=asyncio.FIRST_COMPLETED)
                if watcher.done() and not run.done():
                    run.cancel()  # stops the process group, then surfaces what the watcher raised
                    await asyncio.gather(run, return_exceptions=True)
                    watcher.result()
            proc = await run
        finally:
            for task in (run, watcher):
                if task is not None and not task.done():
                    task.cancel()
            await asyncio.gather(*(t for t in (run, watcher) if t is not None), return_exceptions=True)
            # Synchronous on purpose: a few unlinks, and they must happen even on a second cancel.
            agent_home.scrub(home)
        return stream.finish(proc, await collect_artifacts(ctx.workspace))


def require_program(program: str, setting: str) -> str:
    """Fail at start-up, not on the first mission, when the CLI is not installed."""
    if shutil.which(program) is None:
        raise ConfigError(
            f"{program!r} is not an executable on PATH; install it or set {setting} to its absolute path",
            setting=setting,
            program=program,
        )
    return program


def text_of(value: Any) -> str:
    """Text from a string or a list of content blocks, as tool results carry it."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(text_of(v.get("text", "")) if isinstance(v, dict) else str(v) for v in value)
    return "" if value is None else json.dumps(value)
