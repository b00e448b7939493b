"""What an agent CLI finds in its per-mission home, and what is taken back out.

Each attempt's processes get a private, writable home of their own
(:attr:`~ua_vp.profiles.MissionContext.home`); the worker makes it empty and
removes it when the attempt ends. Before the agent CLI starts, the home is seeded
so a user who has logged in to the CLI once needs to configure nothing more:

- **by default**, from this explicit list of the worker user's own files (the
  real ``~``, read only, never written):

  ============  =========================================  =================================
  CLI           copied from ``~``                           of which credentials
  ============  =========================================  =================================
  claude        ``.claude/settings.json``,                  ``.claude/.credentials.json``
                ``.claude/.credentials.json``
  codex         ``.codex/config.toml``, ``.codex/auth.json``  ``.codex/auth.json``
  ============  =========================================  =================================

- **or**, with ``UA_VP_AGENT_HOME_TEMPLATE`` set, from that folder instead: its
  regular files and folders are copied as they are (symlinks and special files
  are skipped), and nothing is read from ``~``.

The CLI's own config-dir variable (``CLAUDE_CONFIG_DIR``, ``CODEX_HOME``) points at
its folder inside the home. When the CLI has exited, :func:`scrub` deletes every
credential file in it (and the CLIs' shell snapshots, which hold the environment, keys
included) and every file that was seeded, so no secret outlives the
process even where the home itself lingers (a home inside the workspace when no
worker made one). Seeding logs file names, never contents.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from ua_vp.errors import ConfigError

log = structlog.get_logger(__name__)

MAX_TEMPLATE_FILES = 1000
MAX_TEMPLATE_BYTES = 64 * 1024 * 1024
"""A template is a handful of config files; past these it is a mistake (or a planted tree)."""


@dataclass(frozen=True)
class AgentFiles:
    """Where one agent CLI keeps its configuration and credentials."""

    cli: str
    config_dir: str
    """Its folder, relative to a home (``.claude``)."""
    variable: str
    """The variable that tells the CLI where that folder is."""
    seed: tuple[str, ...]
    """Files inside ``config_dir`` copied from the worker user's own, when present."""
    credentials: tuple[str, ...]
    """Files and folders inside ``config_dir`` that hold secrets (seeded or written by the CLI)."""


CLAUDE = AgentFiles(
    "claude",
    ".claude",
    "CLAUDE_CONFIG_DIR",
    seed=("settings.json", ".credentials.json"),
    credentials=(".credentials.json", "shell-snapshots", "session-env"),
)
CODEX = AgentFiles(
    "codex",
    ".codex",
    "CODEX_HOME",
    seed=("config.toml", "auth.json"),
    # codex's shell snapshots hold the environment of its shell, API key included.
    credentials=("auth.json", "shell_snapshots"),
)


@dataclass
class SeededHome:
    """A home made ready for one CLI; :func:`scrub` it when the CLI has exited."""

    home: Path
    files: AgentFiles
    env: dict[str, str]
    """Variables the CLI needs to find its folder (``CODEX_HOME=…``)."""
    seeded: list[Path] = field(default_factory=list)

    @property
    def config_dir(self) -> Path:
        return self.home / self.files.config_dir


def seed(home: Path, files: AgentFiles, *, template: Path | None, user_home: Path | None = None) -> SeededHome:
    """Copy the CLI's files into ``home`` (see the module docstring). Blocking: call it off the event loop."""
    config_dir = home / files.config_dir
    config_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    result = SeededHome(home, files, {files.variable: str(config_dir)})
    if template is not None:
        result.seeded = _copy_template(template, home)
    else:
        source = (user_home or Path.home()) / files.config_dir
        for name in files.seed:
            # A home in the workspace (no worker made one) may hold what an earlier run left or planted.
            with contextlib.suppress(FileNotFoundError):
                (config_dir / name).unlink()
            if _copy_file(source / name, config_dir / name):
                result.seeded.append(config_dir / name)
    log.info("agent_home_seeded", cli=files.cli, files=[p.relative_to(home).as_posix() for p in result.seeded])
    return result


def scrub(seeded: SeededHome) -> list[str]:
    """Delete the credentials and the seeded files from the home; returns what was removed (relative).

    Links are removed, never followed: the agent may have replaced any of these paths."""
    targets = [seeded.config_dir / name for name in seeded.files.credentials] + seeded.seeded
    removed = []
    for path in targets:
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("agent_home_scrub_failed", path=str(path), error=exc.strerror)
            continue
        removed.append(path.relative_to(seeded.home).as_posix())
    return removed


def check_template(template: Path | None, setting: str = "UA_VP_AGENT_HOME_TEMPLATE") -> None:
    """Fail at start-up, not on the first mission, when the template folder is missing."""
    if template is not None and not template.is_dir():
        raise ConfigError(f"{setting}={template} is not a folder", setting=setting)


def _copy_file(source: Path, dest: Path) -> bool:
    """Copy a regular file (not a link, FIFO or device), private to the user. False when there is none."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as src:
        if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
            return False
        out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return True


def _copy_template(template: Path, home: Path) -> list[Path]:
    copied: list[Path] = []
    total = 0
    for root, dirs, names in os.walk(template):
        rel = Path(root).relative_to(template)
        for d in list(dirs):
            # os.walk lists a symlink to a folder among the folders; it is skipped like any link.
            if (Path(root) / d).is_symlink():
                dirs.remove(d)
            else:
                (home / rel / d).mkdir(mode=0o700, parents=True, exist_ok=True)
        for name in names:
            source = Path(root) / name
            total += source.lstat().st_size
            if len(copied) >= MAX_TEMPLATE_FILES or total > MAX_TEMPLATE_BYTES:
                raise ConfigError(
                    f"agent home template {template} holds more than {MAX_TEMPLATE_FILES} files "
                    f"or {MAX_TEMPLATE_BYTES} bytes; it should hold a few config files",
                    setting="UA_VP_AGENT_HOME_TEMPLATE",
                )
            dest = home / rel / name
            with contextlib.suppress(FileNotFoundError):
                dest.unlink()
            if _copy_file(source, dest):
                copied.append(dest)
    return copied
