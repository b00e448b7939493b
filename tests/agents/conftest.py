"""Fixtures for the real agent CLIs: where they are installed, and the stub internet they talk to.

The CLIs are pinned in ``tests/agents/package.json`` (the one place) and installed by
``npm ci --prefix tests/agents`` (``.ci/run`` does it). Locally these tests skip when
the CLIs or root (for the network namespace) are missing; under ``CI=true`` they fail.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agents.stub_net import StubInternet, stub_internet, why_unavailable
from tests.conftest import required

HERE = Path(__file__).resolve().parent
CLIS = {"claude-cli": "claude", "codex-cli": "codex"}


@pytest.fixture(scope="session")
def agent_bins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """``{"claude-cli": path, "codex-cli": path}``: the pinned CLIs, hard-linked out of the checkout.

    The checkout is a protected root, hidden inside the sandbox: a CLI run from it would be
    refused. A hard-linked copy outside it costs nothing (same file system) or a copy."""
    installed = HERE / "node_modules"
    if not all((installed / ".bin" / name).exists() for name in CLIS.values()):
        required("the agent CLIs are not installed: run npm ci --prefix tests/agents")
    if shutil.which("node") is None:
        required("node is not installed (apt-get install nodejs npm)")
    target = tmp_path_factory.mktemp("agents") / "node_modules"
    link = subprocess.run(["cp", "-al", str(installed), str(target)], capture_output=True)
    if link.returncode != 0:
        shutil.copytree(installed, target, symlinks=True)
    bins = {runtime: str(target / ".bin" / name) for runtime, name in CLIS.items()}
    for path in bins.values():
        version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
        if version.returncode != 0:
            required(f"{path} --version failed: {version.stderr.strip()[-500:]}")
    return bins


@pytest.fixture(scope="session")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StubInternet]:
    """The stub providers on a non-loopback address in a network namespace made for this session."""
    reason = why_unavailable()
    if reason:
        required(f"no stub internet: {reason}")
    with stub_internet(tmp_path_factory.mktemp("stub")) as net:
        yield net
