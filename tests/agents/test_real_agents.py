"""The real Claude Code and codex CLIs, run by real ``ua-vp worker`` processes, editing files
in their mission workspaces, against stub providers on a pretend internet.

Matrix: runtime (claude-cli, codex-cli) x sandbox backend (none, bwrap, landlock) x
profile (GENERALIST, CODIE). Each case starts one worker and hands it three missions
at once: one that edits (a file written through the CLI's file tool, copied through its
shell), one over its token budget, one that hangs in a shell command until cancelled.

The worker's HOME is a folder standing in for the user's real home, holding their agent
files (a codex config that points at the stub, a credential file): seeded into each
mission's home, never written.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.agents.stub_net import StubInternet
from tests.conftest import required
from ua_vp import sandbox
from ua_vp.missions import Mission, MissionSpec, Status
from ua_vp.store import MissionStore, open_store

GENERAL, CODER = "vp.general.primary", "vp.coder.primary"
SEEDED_SECRET = "seeded-secret-" + secrets.token_hex(8)
"""Stands in for a credential in the user's own agent files; must never leave the home."""


def hash_tree(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file() and not path.is_symlink():
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        elif path.is_dir():
            digest.update(b"dir")
    return digest.hexdigest()


def user_home(root: Path, stub: StubInternet) -> Path:
    """The worker user's real home: the agent files a logged-in user has."""
    home = root / "user-home"
    (home / ".codex").mkdir(parents=True)
    (home / ".codex" / "config.toml").write_text(
        'model = "stub-model"\nmodel_provider = "stub"\n\n[model_providers.stub]\nname = "stub"\n'
        f'base_url = "{stub.openai_base_url}"\nenv_key = "OPENAI_API_KEY"\nwire_api = "responses"\n'
    )
    (home / ".codex" / "auth.json").write_text(json.dumps({"OPENAI_API_KEY": SEEDED_SECRET}))
    (home / ".claude").mkdir()
    (home / ".claude" / "settings.json").write_text(json.dumps({"includeCoAuthoredBy": False}))
    return home


@dataclass
class Case:
    runtime: str
    backend: str
    vp_id: str
    tmp: Path
    stub: StubInternet
    bin: str
    db_url: str

    def __post_init__(self) -> None:
        self.state = self.tmp / "state"
        self.home = user_home(self.tmp, self.stub)
        self.log = self.tmp / "worker.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self, **extra: str) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("UA_VP_")}
        return {
            **inherited,
            "HOME": str(self.home),
            "UA_VP_DATABASE_URL": self.db_url,
            "UA_VP_STATE_DIR": str(self.state),
            "UA_VP_ENABLED_IDS": self.vp_id,
            "UA_VP_GENERAL_RUNTIME": self.runtime,
            "UA_VP_CODER_RUNTIME": self.runtime,
            "UA_VP_CLAUDE_BIN": self.bin,
            "UA_VP_CODEX_BIN": self.bin,
            "UA_VP_SANDBOX": self.backend,
            "UA_VP_ALLOW_UNSANDBOXED": "1",
            "UA_VP_MAX_CONCURRENT_MISSIONS": "3",
            "UA_VP_POLL_INTERVAL_SECONDS": "1",
            "UA_VP_LEASE_TTL_SECONDS": "15",
            "UA_VP_LOG_FORMAT": "json",
            "ANTHROPIC_API_KEY": self.stub.key,
            "ANTHROPIC_BASE_URL": self.stub.anthropic_base_url,
            "OPENAI_API_KEY": self.stub.key,
            **extra,
        }

    def start(self, **extra: str) -> subprocess.Popen[bytes]:
        log = open(self.log, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ua_vp.cli", "worker", "--profile", self.vp_id],
            env=self.env(**extra),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.tmp,
        )
        return self.proc

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def make_case(
    agent_bins: dict[str, str], stub: StubInternet, sqlite_url: str, tmp_path: Path
) -> Iterator[Callable[[str, str, str], Case]]:
    cases: list[Case] = []

    def make(runtime: str, backend: str, vp_id: str) -> Case:
        if backend != "none" and not sandbox.probe(backend).works:  # type: ignore[arg-type]
            reason = f"{backend} does not work here: {sandbox.probe(backend).reason}"  # type: ignore[arg-type]
            required(reason)
        case = Case(runtime, backend, vp_id, tmp_path, stub, agent_bins[runtime], sqlite_url)
        cases.append(case)
        return case

    yield make
    for case in cases:
        case.stop()


@pytest.fixture
def mstore(sqlite_url: str) -> Iterator[MissionStore]:
    s = open_store(sqlite_url, lease_ttl_seconds=15)
    yield s
    s.engine.dispose()


def dispatch(store: MissionStore, vp_id: str, objective: str, **kw: Any) -> Mission:
    return store.enqueue(MissionSpec.create(vp_id=vp_id, objective=objective, **kw)).mission


def wait_until(
    predicate: Callable[[], object],
    timeout: float,
    what: str,
    case: Case,
    detail: Callable[[], object] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            shown = f"\nstill: {detail()}" if detail else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{shown}\n{case.logs()[-6000:]}")
        if case.proc is not None and case.proc.poll() is not None:
            raise AssertionError(f"the worker exited ({case.proc.returncode}) while waiting for {what}\n{case.logs()}")
        time.sleep(0.05)


def processes() -> dict[int, tuple[int, str, int]]:
    """Every live process: pid -> (parent pid, command line, start time in clock ticks).

    The start time tells a process from a later one given the same pid: pids wrap at 32,768
    here, and a full suite goes round more than once."""
    table: dict[int, tuple[int, str, int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_bytes()
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if fields[0] not in (b"Z", b"X"):
            table[int(name)] = (int(fields[1]), cmdline, int(fields[19]))
    return table


def descendants(pid: int) -> dict[tuple[int, int], str]:
    """Live processes below ``pid``: (pid, start time) -> command line."""
    table = processes()
    found: dict[tuple[int, int], str] = {}
    frontier = {pid}
    while frontier:
        frontier = {p for p, (parent, _, _) in table.items() if parent in frontier and (p, table[p][2]) not in found}
        found.update({(p, table[p][2]): table[p][1] for p in frontier})
    return found


def everything_said(store: MissionStore, mission: Mission) -> str:
    """The mission's row, result, error and every event, as one string to search."""
    final = store.get(mission.mission_id)
    said = [json.dumps(final.to_public(), default=str)]
    said += [json.dumps(e.to_public(), default=str) for e in store.events(mission.mission_id)]
    return "\n".join(said)


def workspace_files(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()}


RUNTIMES = ["claude-cli", "codex-cli"]
BACKENDS = ["none", "bwrap", "landlock"]
PROFILES = [GENERAL, CODER]


@pytest.mark.parametrize("vp_id", PROFILES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_real_agent_edits_its_workspace_keeps_its_budget_and_dies_on_cancel(
    make_case: Callable[[str, str, str], Case], mstore: MissionStore, runtime: str, backend: str, vp_id: str
) -> None:
    case = make_case(runtime, backend, vp_id)
    home_before = hash_tree(case.home)
    token = "content-" + secrets.token_hex(6)
    edit = dispatch(mstore, vp_id, f"Write note.md. STUB-WRITE note.md {token}")
    greedy = dispatch(mstore, vp_id, f"Write big.md. STUB-WRITE big.md {token}", budget={"max_tokens": 100})
    hang = dispatch(mstore, vp_id, "Wait for something. STUB-HANG")
    # Unsandboxed, Claude's default (acceptEdits) runs no commands but file edits: allow the shell,
    # as an operator narrowing or widening what the agent may do would.
    widen = {"UA_VP_CLAUDE_ARGS": "--allowedTools Bash"} if runtime == "claude-cli" and backend == "none" else {}
    worker = case.start(**widen)

    # The hanging mission's shell command runs as a child of the CLI; then cancel it.
    def hanging() -> dict[int, str]:
        return {p: c for (p, _), c in descendants(worker.pid).items() if "time.sleep(300)" in c}

    wait_until(lambda: len(hanging()) >= 2, 90, "the hanging shell command and its child", case)
    tree = descendants(worker.pid)
    mstore.request_cancel(hang.mission_id)

    done = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)
    wait_until(
        lambda: all(mstore.get(m.mission_id).status in done for m in (edit, greedy, hang)), 120, "three ends", case
    )

    # The edit: completed, the model's text as summary, the file written with the asked content.
    finished = mstore.get(edit.mission_id)
    assert finished.status == Status.COMPLETED, (finished.error, case.logs()[-4000:])
    assert finished.result is not None
    assert finished.result["summary"] == f"STUB-DONE {token}", everything_said(mstore, edit)[-6000:]
    workspace = case.state / "workspaces" / ("coder" if vp_id == CODER else "general") / edit.mission_id
    workspace = next(case.state.rglob(edit.mission_id)) if not workspace.is_dir() else workspace
    assert (workspace / "note.md").read_text() == f"{token}\n"
    copy = workspace / "note.md.copy"  # through the shell tool
    assert copy.is_file() and copy.read_text() == f"{token}\n", everything_said(mstore, edit)[-6000:]
    assert "note.md" in finished.result["artifacts"]
    usage = finished.result["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0 and usage["total_tokens"] > 0

    # The budget: stopped, as a budget failure.
    over = mstore.get(greedy.mission_id)
    assert over.status == Status.FAILED and over.error is not None
    assert over.error["code"] == "budget_exceeded", over.error

    # The cancel: every process the CLI started is gone.
    assert mstore.get(hang.mission_id).status == Status.CANCELLED

    def survivors() -> dict[str, str]:
        now = processes()
        alive = {(p, started) for p, (_, _, started) in now.items()}
        return {f"{p} (parent {now[p][0]})": tree[p, t] for p, t in set(tree) & alive}

    wait_until(lambda: not survivors(), 30, "the cancelled CLI's processes to end", case, detail=survivors)

    # No credential in events, results, errors, workspaces or the worker's log.
    for mission in (edit, greedy, hang):
        said = everything_said(mstore, mission)
        assert case.stub.key not in said
        assert SEEDED_SECRET not in said
    for path, data in workspace_files(case.state / "workspaces").items():
        assert case.stub.key.encode() not in data, path
        assert SEEDED_SECRET.encode() not in data, path
    assert case.stub.key not in case.logs()
    assert SEEDED_SECRET not in case.logs()

    # The user's real home is exactly as it was.
    assert hash_tree(case.home) == home_before


def test_claude_denied_edit_fails_the_mission_as_permission_denied(
    make_case: Callable[[str, str, str], Case], mstore: MissionStore
) -> None:
    case = make_case("claude-cli", "bwrap", GENERAL)
    mission = dispatch(mstore, GENERAL, "Write note.md. STUB-WRITE note.md denied-content")
    case.start(UA_VP_CLAUDE_PERMISSION_MODE="default")  # Claude's own default: ask, and nobody answers
    wait_until(lambda: mstore.get(mission.mission_id).status == Status.FAILED, 90, "the mission to fail", case)

    failed = mstore.get(mission.mission_id)
    assert failed.error is not None and failed.error["code"] == "permission_denied", failed.error
    assert "Write" in failed.error["message"]
    denied = [e.payload for e in mstore.events(mission.mission_id) if e.payload.get("kind") == "permission_denied"]
    assert {d["tool"] for d in denied} >= {"Write"}
    assert not list(case.state.rglob("note.md"))
