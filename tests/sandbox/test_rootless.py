"""Both backends confine a worker that is not root: user namespaces instead of privileges.

The suite runs as root, so each case drops to ``nobody`` with ``setpriv`` and runs the very
argv a worker would spawn. The worker's own Python lives under ``/root`` here, which nobody
cannot read, so the wrapper runs on the system Python instead (it needs only the standard
library). Files the sandbox must refuse are writable by nobody: the refusal is the sandbox's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ua_vp import sandbox

from .conftest import backend_or_skip

NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"
UNIX_SOCKET = f"{SYSTEM_PYTHON} -c 'import socket; socket.socket(socket.AF_UNIX)' 2>/dev/null"
SCRIPT = f"""
echo inside > written.txt
if echo escaped > "$1/escaped.txt"; then echo wrote-outside; else echo outside-refused; fi
if {UNIX_SOCKET}; then echo unix-made; else echo unix-refused; fi
echo "pid=$$"
"""


@pytest.fixture
def roots() -> Iterator[tuple[Path, Path, Path]]:
    """A workspace, a home and a folder outside both, owned by nobody, under a /tmp folder nobody may enter."""
    if os.geteuid() != 0:
        pytest.skip("becoming another user needs root")
    if not (os.access(SYSTEM_PYTHON, os.X_OK) and shutil.which("setpriv")):
        pytest.skip(f"needs {SYSTEM_PYTHON} and setpriv (util-linux)")
    top = Path(tempfile.mkdtemp(prefix="ua-vp-rootless-", dir="/tmp"))
    top.chmod(0o755)
    made = [top / "workspace", top / "home", top / "outside"]
    for folder in made:
        folder.mkdir()
        os.chown(folder, NOBODY, NOBODY)
    try:
        yield made[0], made[1], made[2]
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.mark.parametrize("name", ["bwrap", "landlock"])
def test_a_worker_that_is_not_root_still_confines_its_missions(name: str, roots: tuple[Path, Path, Path]) -> None:
    backend = backend_or_skip(name)  # type: ignore[arg-type]
    workspace, home, outside = roots
    box = sandbox.Sandbox(backend=backend, reason="rootless test")
    command = box.command(
        ["/bin/sh", "-c", SCRIPT, "sh", str(outside)], workspace=workspace, home=home, constraints={"network": False}
    )
    argv = [SYSTEM_PYTHON if arg == sys.executable else arg for arg in command.argv]
    try:
        done = subprocess.run(
            ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv],
            cwd=workspace,
            env={"PATH": "/usr/bin:/bin", "HOME": str(home)},
            pass_fds=command.pass_fds,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        command.started()
        command.finished()
    said = done.stdout.split()
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert (workspace / "written.txt").read_text() == "inside\n"
    assert "outside-refused" in said and not (outside / "escaped.txt").exists(), said
    assert "unix-refused" in said, said
    # Its own PID namespace: the program is one of the first processes there, not a host pid.
    pid = int(next(word for word in said if word.startswith("pid="))[4:])
    assert pid <= 3, said
