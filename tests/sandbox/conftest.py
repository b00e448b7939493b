"""A scene for sandbox tests: protected roots holding secrets, a workspace nested in the
(hidden) state dir as the defaults put it, a handoff root, and an agent that tries to escape.

The agent (``escape_agent.py``) is copied out of the checkout and run with the base
interpreter, because the sandbox hides the checkout and the virtualenv inside it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import structlog

import ua_vp
from tests.conftest import required
from tests.runtimes import runtime_harness
from ua_vp import guard, sandbox
from ua_vp.config import Settings
from ua_vp.missions import Mission, MissionSpec
from ua_vp.profiles import MissionContext, Profile
from ua_vp.runtimes.process import ProcessResult, run_process
from ua_vp.store import MissionStore, open_store

HERE = Path(__file__).resolve().parent
PACKAGE = Path(ua_vp.__file__).resolve().parent
# The venv's python is a symlink inside the checkout; the file it points to is not.
PYTHON = os.path.realpath(sys.executable)
VP = "vp.test.primary"
GENERAL, CODER = "vp.general.primary", "vp.coder.primary"
SECRETS = {
    "PGPASSWORD": "pg-password-secret",
    "OPENAI_API_KEY": "openai-key-secret",
    "AWS_SECRET_ACCESS_KEY": "aws-key-secret",
    "UA_VP_OPS_TOKEN": "ops-token-secret",
    "RUST_BACKTRACE": "1",
}
"""What a worker's environment may hold and a mission must never see."""


def backend_or_skip(name: sandbox.Backend) -> sandbox.Backend:
    found = sandbox.probe(name)
    if not found.works:
        required(f"{name} does not work on this machine: {found.reason}")
    return name


@pytest.fixture
def auto_backend() -> sandbox.Backend:
    """What ``auto`` takes here. None working skips locally and fails under CI=true, where
    .ci/run installs bubblewrap: the default must be shown to confine."""
    backend, why = sandbox.resolve("auto")
    if backend == "none":
        required(f"no sandbox backend works here: {why}")
    return backend


@pytest.fixture(params=["bwrap", "landlock"])
def backend(request: pytest.FixtureRequest) -> sandbox.Backend:
    """Each real backend in turn, skipped with the probe's reason where it cannot work."""
    return backend_or_skip(request.param)


def make_mission(objective: str = "[]", **fields: Any) -> Mission:
    """The runtime tests' mission, addressed to this suite's profile."""
    return runtime_harness.make_mission(objective, **{"vp_id": VP, **fields})


def snapshot(root: Path, skip: Iterable[Path]) -> dict[str, str]:
    """Every entry under ``root`` (outside ``skip``) with its content hash or link target."""
    skipped = set(skip)
    seen: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = [d for d in dirs if here / d not in skipped]
        for name in dirs + files:
            path = here / name
            if path in skipped:
                continue
            rel = str(path.relative_to(root))
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                seen[rel] = f"link -> {os.readlink(path)}"
            elif stat.S_ISDIR(mode):
                seen[rel] = "dir"
            elif stat.S_ISREG(mode):
                seen[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:  # never opened: a FIFO would block the test
                seen[rel] = f"special {stat.S_IFMT(mode):o}"
    return seen


def group_members(pgid: int) -> set[int]:
    """Live (not zombie) processes in process group ``pgid``."""
    return {pid for pid, (_, group, state) in _processes().items() if group == pgid and state not in "ZX"}


def descendants(pid: int) -> set[int]:
    """Live processes below ``pid``, whatever their group."""
    table = _processes()
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, (parent, _, state) in table.items() if parent in frontier and state not in "ZX"} - found
        found |= frontier
    return found


def alive(pids: Iterable[int]) -> set[int]:
    table = _processes()
    return {p for p in pids if p in table and table[p][2] not in "ZX"}


def _processes() -> dict[int, tuple[int, int, str]]:
    table: dict[int, tuple[int, int, str]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            raw = Path(f"/proc/{name}/stat").read_bytes()
        except OSError:
            continue
        fields = raw[raw.rfind(b")") + 2 :].split()
        table[int(name)] = (int(fields[1]), int(fields[2]), fields[0].decode())
    return table


@dataclass
class Scene:
    """Roots on disk, the settings naming them, and a runner for the escape agent."""

    tmp: Path
    marker: str = field(default_factory=lambda: f"ua-vp-sandbox-{uuid.uuid4().hex[:10]}")
    events: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.state = self.tmp / "state"
        self.project = self.tmp / "project"  # a protected checkout of our own, with a secret in it
        self.handoff = self.tmp / "handoff"
        self.outside = self.tmp / "outside"
        self.bin = self.tmp / "bin"
        for folder in (self.state, self.project, self.handoff, self.outside, self.bin):
            folder.mkdir(parents=True, exist_ok=True)
        (self.state / "ua_vp.db").write_text("the embedded database\n")
        (self.state / "secret.txt").write_text("state secret\n")
        (self.project / ".env").write_text("UA_VP_OPS_TOKEN=project-secret\n")
        (self.outside / "readable.txt").write_text("anyone may read this\n")
        self.agent = self.bin / "escape_agent.py"
        shutil.copy(HERE / "escape_agent.py", self.agent)

    def settings(self, **values: Any) -> Settings:
        values.setdefault("sandbox", "auto")
        values.setdefault("protected_roots", [self.project])
        return Settings(_env_file=None, state_dir=self.state, handoff_root=self.handoff, **values)  # type: ignore[call-arg]

    def profile(self, settings: Settings) -> Profile:
        return Profile(
            vp_id=VP,
            name="TESTER",
            description="A hard-blocking profile for sandbox tests.",
            workspace_root=settings.workspace_root("test", None),
            runtime="command",
            hard_block=True,
        )

    def sandbox(self, **values: Any) -> sandbox.Sandbox:
        settings = self.settings(**values)
        profile = self.profile(settings)
        policy = guard.build_policy(profile, settings, extra_protected=[], extra_allowed=[])
        return sandbox.for_profile(profile, policy, settings)

    @property
    def workspace(self) -> Path:
        path = self.state / "workspaces" / "test" / "m-1"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def home(self) -> Path:
        """The mission's private home, where the worker would put it."""
        path = self.settings().homes_root / "m-1.1"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def checkouts(self) -> list[Path]:
        """The real ua-vp checkout(s) the guard protects (the one these tests run from, if any)."""
        roots = guard.host_protected_roots(self.settings())
        return [r for r in roots if r not in (PACKAGE, self.state.resolve(), self.project.resolve())]

    def ctx(
        self, box: sandbox.Sandbox | None, mission: Mission, settings: dict[str, Any] | None = None
    ) -> MissionContext:
        values = self.settings(**(settings or {}))
        return MissionContext(
            mission=mission,
            profile=self.profile(values),
            settings=values,
            workspace=self.workspace,
            deadline=None,
            emit=lambda kind, payload: self.events.append({"kind": kind, **payload}),
            log=structlog.get_logger("tests.sandbox"),
            sandbox=box,
            home=self.home,
        )

    def argv(self, attempts: list[list[Any]]) -> list[str]:
        return [PYTHON, str(self.agent), json.dumps(attempts)]

    def run(
        self,
        box: sandbox.Sandbox | None,
        attempts: list[list[Any]],
        *,
        settings: dict[str, Any] | None = None,
        pass_env: Iterable[str] = (),
        env: dict[str, str] | None = None,
        **mission: Any,
    ) -> tuple[list[dict[str, Any]], ProcessResult]:
        """Run the agent to its end; its report, one dict per attempt, and how it ended."""
        lines: list[str] = []
        ctx = self.ctx(box, make_mission(json.dumps(attempts), **mission), settings)
        proc = asyncio.run(
            run_process(
                self.argv(attempts), ctx, on_stdout=lines.append, check=False, pass_env=tuple(pass_env), env=env
            )
        )
        return [json.loads(line) for line in lines if line.startswith("{")], proc

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] == kind]

    def escape_attempts(self) -> tuple[list[list[Any]], list[Path]]:
        """Everything a confined mission must not do, and the paths it would have created."""
        m = self.marker
        targets = [
            PACKAGE / f"{m}.txt",  # the installed ua_vp package
            self.state / f"{m}.txt",  # the state dir
            self.project / f"{m}.txt",  # a configured protected root
            Path("/tmp") / f"{m}.txt",  # /tmp, outside the workspace
            self.outside / f"{m}.txt",  # anywhere else outside the workspace
            *(checkout / f"{m}.txt" for checkout in self.checkouts()),  # the project checkout
        ]
        attempts: list[list[Any]] = [["write", str(t)] for t in targets]
        attempts += [
            ["write", str(self.state / "ua_vp.db")],  # change an existing protected file
            ["link", "into-state", str(self.state)],  # plant a symlink in the workspace...
            ["write", f"into-state/{m}-via-link.txt"],  # ...and write through it
            ["read", "into-state/secret.txt"],  # ...and read through it
            ["read", str(self.state / "secret.txt")],
            ["read", str(self.project / ".env")],
        ]
        return attempts, [*targets, self.state / f"{m}-via-link.txt"]

    def allowed_attempts(self) -> list[list[Any]]:
        return [
            ["write", "inside-workspace.txt"],
            ["write", str(self.handoff / "handed-off.txt")],
            ["tempfile"],
            ["read", str(self.outside / "readable.txt")],
        ]

    def cleanup(self, paths: Iterable[Path]) -> list[Path]:
        """Remove any of ``paths`` that exist (a sandbox failure must not leave litter); the ones found."""
        found = [p for p in paths if p.exists() or p.is_symlink()]
        for p in found:
            p.unlink()
        return found


@pytest.fixture
def scene(tmp_path: Path) -> Scene:
    return Scene(tmp_path)


class Workers:
    def __init__(self, db_url: str, scene: Scene) -> None:
        self.db_url = db_url
        self.scene = scene
        self.logs_dir = scene.tmp / "logs"
        self.logs_dir.mkdir()
        self.procs: list[subprocess.Popen[bytes]] = []

    def env(self, vp_id: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("UA_VP_")}
        s = self.scene
        return {
            **env,
            "UA_VP_DATABASE_URL": self.db_url,
            "UA_VP_STATE_DIR": str(s.state),
            "UA_VP_ENABLED_IDS": vp_id,
            "UA_VP_GENERAL_RUNTIME": "command",
            "UA_VP_CODER_RUNTIME": "command",
            "UA_VP_COMMAND": f"{PYTHON} {s.agent} {{objective}}",
            "UA_VP_HANDOFF_ROOT": str(s.handoff),
            "UA_VP_PROTECTED_ROOTS": str(s.project),
            "UA_VP_POLL_INTERVAL_SECONDS": "1",
            "UA_VP_LEASE_TTL_SECONDS": "15",
            "UA_VP_LOG_FORMAT": "json",
            **extra,
        }

    def start(self, vp_id: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        log = open(self.logs_dir / f"worker-{len(self.procs)}.log", "wb")  # noqa: SIM115 - lives with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "ua_vp.cli", "worker", "--profile", vp_id, *args],
            env=self.env(vp_id, **env),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.scene.tmp,
        )
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.logs_dir.glob("*.log")))

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)


@pytest.fixture
def workers(db_url: str, scene: Scene) -> Iterator[Workers]:
    w = Workers(db_url, scene)
    yield w
    w.stop_all()


@pytest.fixture
def wstore(db_url: str) -> Iterator[MissionStore]:
    s = open_store(db_url, lease_ttl_seconds=15)
    yield s
    s.engine.dispose()


def dispatch(store: MissionStore, vp_id: str, attempts: list[list[Any]], **kw: Any) -> Mission:
    return store.enqueue(MissionSpec.create(vp_id=vp_id, objective=json.dumps(attempts), **kw)).mission


def progress(store: MissionStore, mission_id: str, kind: str) -> list[dict[str, Any]]:
    return [
        e.payload
        for e in store.events(mission_id)
        if e.event_type == "vp.mission.progress" and e.payload.get("kind") == kind
    ]


def report(store: MissionStore, mission_id: str) -> list[dict[str, Any]]:
    lines = [e["line"] for e in progress(store, mission_id, "output") if e.get("stream") == "stdout"]
    return [json.loads(line) for line in lines if line.startswith("{")]


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that accepts connections (the backlog does, without accept())."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server.getsockname()[1]
    server.close()


GREETING = "hello from the stand-in internet"
_SERVER = f"""
import socket, sys
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
while True:
    conn, _ = server.accept()
    conn.sendall(b"{GREETING}\\n")
    conn.close()
"""


@dataclass(frozen=True)
class Internet:
    """A TCP server on a 10.x address that only a network namespace of the test's own holds."""

    address: str
    port: int


@pytest.fixture(scope="session")
def internet() -> Iterator[Internet]:
    """The internet for tests: a namespace joined to the host by a veth pair, a server inside it.
    Never a real outside address. Needs root and iproute2 (.ci/run installs it)."""
    import random

    why = "needs root" if os.geteuid() != 0 else "needs iproute2's ip" if shutil.which("ip") is None else ""
    if why:
        required(f"the stand-in internet {why}")
    tag = uuid.uuid4().hex[:6]
    ns, host_if, ns_if = f"uavp-net-{tag}", f"uvh{tag}", f"uvn{tag}"
    prefix = f"10.213.{random.randrange(256)}.{random.randrange(0, 252, 4)}".rsplit(".", 1)
    host_ip, ns_ip = f"{prefix[0]}.{int(prefix[1]) + 1}", f"{prefix[0]}.{int(prefix[1]) + 2}"

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)

    ip("netns", "add", ns)
    server = None
    try:
        ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        ip("link", "set", ns_if, "netns", ns)
        ip("addr", "add", f"{host_ip}/30", "dev", host_if)
        ip("link", "set", host_if, "up")
        ip("-n", ns, "addr", "add", f"{ns_ip}/30", "dev", ns_if)
        ip("-n", ns, "link", "set", ns_if, "up")
        server = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", _SERVER, ns_ip, "8080"], stdout=subprocess.PIPE
        )
        assert server.stdout is not None and server.stdout.readline().strip() == b"ready"
        yield Internet(ns_ip, 8080)
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)  # takes the veth pair along


@pytest.fixture
def unix_listener(scene: Scene) -> Iterator[dict[str, str]]:
    """A named unix socket on the host (the shape of PostgreSQL's or Docker's) and an abstract one."""
    import socket

    named, abstract = socket.socket(socket.AF_UNIX), socket.socket(socket.AF_UNIX)
    path = scene.outside / ".s.PGSQL.5432"
    named.bind(str(path))
    abstract.bind(f"\0{scene.marker}")
    for sock in (named, abstract):
        sock.listen(8)
    yield {"named": str(path), "abstract": f"@{scene.marker}"}
    named.close()
    abstract.close()


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)
