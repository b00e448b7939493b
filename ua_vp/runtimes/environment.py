"""The environment of every process a mission starts: an allow-list, owned here only.

A child sees nothing of the worker's environment except:

- the base set: ``PATH``, ``LANG``, ``LC_*``, ``TZ``, ``TERM`` (copied when the
  worker has them);
- ``HOME`` (the attempt's private home, :attr:`MissionContext.home`), and
  ``XDG_CONFIG_HOME``, ``XDG_CACHE_HOME``, ``XDG_DATA_HOME``, ``XDG_STATE_HOME``
  inside it, so a CLI's config and caches land in the home too;
- ``TMPDIR``, a folder inside that home;
- the names the runtime declares (``run_process(..., pass_env=...)``), copied when set;
- the names in ``UA_VP_AGENT_ENV`` (comma separated), copied when set;
- the values the runtime passes (``run_process(..., env=...)``), which win over all.

A value passed under a secret-looking name (``ANTHROPIC_API_KEY``, ``OPENAI_API_KEY``,
anything :func:`ua_vp.redact.is_secret_key` accepts) is remembered by
:mod:`ua_vp.redact`, so an agent that prints its own key in an event, an error or a log
line shows ``***`` instead.

Nothing else: not the database URL or password (``PGPASSWORD``), not the ops
token, not a cloud key the worker happened to inherit. ``RUST_BACKTRACE`` is
named here because agent CLIs written in Rust print their environment in a
backtrace: it passes only when one of the lists above names it.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from pathlib import Path

from ua_vp import redact

BASE_NAMES = ("PATH", "LANG", "TZ", "TERM")
BASE_PREFIXES = ("LC_",)
XDG_DIRS = {
    "XDG_CONFIG_HOME": ".config",
    "XDG_CACHE_HOME": ".cache",
    "XDG_DATA_HOME": ".local/share",
    "XDG_STATE_HOME": ".local/state",
}
HOME_TMP = "tmp"
"""``TMPDIR`` inside the mission home."""
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def home_variables(home: Path) -> dict[str, str]:
    """``HOME``, the XDG base folders and ``TMPDIR``, all inside ``home``."""
    found = {"HOME": str(home), "TMPDIR": str(home / HOME_TMP)}
    found.update({name: str(home / sub) for name, sub in XDG_DIRS.items()})
    return found


def prepare_home(home: Path) -> None:
    """Create the folders :func:`home_variables` names (private to the worker's user)."""
    for sub in (HOME_TMP, *XDG_DIRS.values()):
        (home / sub).mkdir(mode=0o700, parents=True, exist_ok=True)


def child_env(
    *,
    home: Path,
    pass_env: Collection[str] = (),
    agent_env: Collection[str] = (),
    values: Mapping[str, str] | None = None,
    source: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The whole environment of a child process.

    :param home: the mission's home (``HOME``, XDG folders, ``TMPDIR`` inside it).
    :param pass_env: names the runtime needs from the worker's environment.
    :param agent_env: names the operator allows (``UA_VP_AGENT_ENV``).
    :param values: explicit variables from the runtime; they win.
    :param source: the environment to copy from (default: the worker's).
    """
    source = os.environ if source is None else source
    env = {name: value for name, value in source.items() if name in BASE_NAMES or name.startswith(BASE_PREFIXES)}
    env.setdefault("PATH", DEFAULT_PATH)
    env.update(home_variables(home))
    for name in (*pass_env, *agent_env):
        if name in source:
            env[name] = source[name]
    env.update(values or {})
    redact.remember(*(value for name, value in env.items() if redact.is_secret_key(name)))
    return env
