"""The host's built-in client runtimes, registered through the same hook a third-party plugin uses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ua_vp.hookspecs import hookimpl
from ua_vp.runtimes import claude_cli, codex_cli, command, dry_run, openai

if TYPE_CHECKING:
    from ua_vp.profiles import RuntimeFactory


@hookimpl
def ua_vp_client_runtimes() -> dict[str, RuntimeFactory]:
    return {
        "dry-run": dry_run.create,
        "command": command.create,
        "claude-cli": claude_cli.create,
        "codex-cli": codex_cli.create,
        "openai": openai.create,
    }
