"""Runs the real ``ua-vp`` console script, and makes plugin distributions a test can put on
``PYTHONPATH``: a module plus a ``.dist-info`` with its ``ua_vp`` entry point, which
``importlib.metadata`` finds exactly as it finds a pip-installed one."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

UA_VP = str(Path(sys.executable).with_name("ua-vp"))
"""The console script pip installed next to this interpreter."""


def fake_dist(site: Path, dist: str, version: str, module: str, source: str, entry_name: str | None = None) -> Path:
    """Install ``module`` (``source``) as distribution ``dist`` into ``site`` with a ``ua_vp`` entry point."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[ua_vp]\n{entry_name or module} = {module}\n")
    return site


@dataclass
class Cli:
    """``cli(*args, **env)`` runs ``ua-vp`` in ``cwd`` with a clean ``UA_VP_*`` environment."""

    cwd: Path
    env: dict[str, str] = field(default_factory=dict)

    def environ(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("UA_VP_")}
        env.update({"UA_VP_STATE_DIR": str(self.cwd / "state"), "UA_VP_LOG_FORMAT": "json", **self.env, **extra})
        return env

    def __call__(self, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [UA_VP, *args], env=self.environ(**env), cwd=self.cwd, capture_output=True, text=True, timeout=timeout
        )

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [UA_VP, *args],
            env=self.environ(**env),
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
