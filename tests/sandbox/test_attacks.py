"""A hostile agent per finding of the confinement review (issue 11), per backend, against real
processes. Each test names its finding; the worker-level attacks are in ``test_attacks_workers.py``."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ua_vp import attempts
from ua_vp.runtimes import command
from ua_vp.runtimes.common import list_artifacts, write_new_file
from ua_vp.runtimes.environment import XDG_DIRS
from ua_vp.runtimes.process import run_process

from .conftest import GREETING, SECRETS, Internet, Scene, backend_or_skip, make_mission, snapshot, wait_for


@pytest.fixture(params=["none", "bwrap", "landlock"])
def any_backend(request: pytest.FixtureRequest) -> str:
    """No sandbox as well as each real one: the allow-list must not depend on confinement."""
    return "none" if request.param == "none" else backend_or_skip(request.param)


def test_h2_a_mission_sees_only_the_allow_listed_environment(
    scene: Scene, any_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {**SECRETS, "DECLARED_BY_RUNTIME": "declared", "ALLOWED_BY_OPERATOR": "allowed"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    box = scene.sandbox(sandbox=any_backend, allow_unsandboxed=True)

    report, proc = scene.run(
        box,
        [["env"]],
        settings={"agent_env": ["ALLOWED_BY_OPERATOR", "NOT_SET_ANYWHERE"]},
        pass_env=["DECLARED_BY_RUNTIME"],
        env={"GIVEN": "by value", "RUST_LOG": "info"},
    )

    assert proc.exit_code == 0, proc.stderr_tail
    seen: dict[str, str] = report[0]["result"]
    base = {name for name in ("PATH", "LANG", "TZ", "TERM") if name in os.environ}
    expected = base | {"HOME", "TMPDIR", *XDG_DIRS, "DECLARED_BY_RUNTIME", "ALLOWED_BY_OPERATOR", "GIVEN", "RUST_LOG"}
    if "PWD" in seen:  # bwrap sets it for --chdir
        assert any_backend == "bwrap" and seen.pop("PWD") == str(scene.workspace)
    assert {name for name in seen if not name.startswith("LC_")} == expected
    assert not set(SECRETS.values()) & set(seen.values())
    assert seen["HOME"] == str(scene.home) and seen["TMPDIR"] == str(scene.home / "tmp")
    assert seen["XDG_CONFIG_HOME"] == str(scene.home / ".config")
    assert (seen["DECLARED_BY_RUNTIME"], seen["ALLOWED_BY_OPERATOR"]) == ("declared", "allowed")


def test_h2_the_agent_env_setting_never_names_our_own_variables(scene: Scene) -> None:
    from ua_vp.config import load_settings
    from ua_vp.errors import ConfigError

    with pytest.raises(ConfigError, match=r"UA_VP_AGENT_ENV.*UA_VP_OPS_TOKEN is one of ua-vp's own settings"):
        load_settings(_env_file=None, agent_env="PATH_EXTRA,UA_VP_OPS_TOKEN")
    with pytest.raises(ConfigError, match=r"UA_VP_AGENT_ENV.*'A=B' is not a variable name"):
        load_settings(_env_file=None, agent_env="A=B")


@pytest.mark.parametrize("protect", ["hide", "read-only"])
def test_a_mission_writes_its_home_and_never_sees_another_missions_workspace_or_home(
    scene: Scene, backend: str, protect: str
) -> None:
    other_workspace = scene.workspace.parent / "m-other"
    other_home = scene.settings().homes_root / "m-other.1"
    for folder in (other_workspace, other_home):
        folder.mkdir(parents=True)
        (folder / "notes.txt").write_text("another mission's secret\n")
    before = snapshot(scene.tmp, [scene.workspace, scene.home])

    report, proc = scene.run(
        scene.sandbox(sandbox=backend, sandbox_protected=protect),
        [
            ["write", str(scene.home / "own-home.txt")],
            ["tempfile"],
            ["read", str(other_workspace / "notes.txt")],
            ["read", str(other_home / "notes.txt")],
            ["write", str(other_workspace / "notes.txt")],
            ["list", str(scene.workspace.parent)],
            ["list", str(scene.home.parent)],
        ],
    )

    assert proc.exit_code == 0, proc.stderr_tail
    own_home, tempfile, *spying = report
    assert own_home["ok"] and tempfile["ok"] and tempfile["result"].startswith(str(scene.home / "tmp"))
    for line in spying:
        # bwrap shows the roots holding only this mission's own mount points; Landlock refuses the listing.
        assert not line["ok"] or line["result"] in (["m-1"], ["m-1.1"]), line
    assert snapshot(scene.tmp, [scene.workspace, scene.home]) == before


# --- C1: the host's own writes and walks in a workspace ------------------------------------------


def plant(folder: Path, name: str, kind: str, target: Path) -> None:
    if kind == "symlink":
        (folder / name).symlink_to(target)
    else:
        os.mkfifo(folder / name)


def in_thread(fn: object, *args: object) -> object:
    """Run ``fn`` in a thread; a hang is a failure, not a stuck test run."""
    box: dict[str, object] = {}

    def call() -> None:
        try:
            box["value"] = fn(*args)  # type: ignore[operator]
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), f"{fn} blocked (a planted FIFO?)"
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box.get("value")


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_c1_the_host_writes_no_file_through_what_an_agent_planted(scene: Scene, kind: str) -> None:
    target = scene.outside / "PLANTED.py"
    target.write_text("# the host's own file\n")
    plant(scene.workspace, command.OBJECTIVE_FILE, kind, target)
    before = snapshot(scene.outside, [])

    argv = in_thread(command.build_argv, ["cat", "{objective_file}"], make_mission("the objective"), scene.workspace)

    assert snapshot(scene.outside, []) == before
    written = scene.workspace / command.OBJECTIVE_FILE
    assert argv == ["cat", str(written)]
    assert not written.is_symlink() and written.read_text() == "the objective"


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_c1_every_attempt_starts_in_an_empty_workspace_it_cannot_have_prepared(scene: Scene, kind: str) -> None:
    root = scene.workspace.parent
    first = attempts.fresh_workspace(root, make_mission(mission_id="m-c1", attempt=1))
    plant(first, command.OBJECTIVE_FILE, kind, scene.outside / "PLANTED.py")

    second = attempts.fresh_workspace(root, make_mission(mission_id="m-c1", attempt=2))

    assert second == first and list(second.iterdir()) == []
    kept = root / "m-c1.attempt-1"
    assert os.path.lexists(kept / command.OBJECTIVE_FILE)  # kept for people to look at, never reused
    in_thread(write_new_file, second, command.OBJECTIVE_FILE, "objective")
    assert not (scene.outside / "PLANTED.py").exists()


def test_c1_the_artifact_listing_skips_links_and_special_files_and_is_bounded(scene: Scene) -> None:
    ws = scene.workspace
    (ws / "report.md").write_text("a result")
    (ws / "to-outside").symlink_to(scene.outside / "readable.txt")
    (ws / "dir-link").symlink_to(scene.outside, target_is_directory=True)
    os.mkfifo(ws / "pipe")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(ws / "sock"))
    (ws / "sub").mkdir()
    (ws / "sub" / "notes.txt").write_text("more")

    found = in_thread(list_artifacts, ws)
    server.close()

    assert found == ["report.md", "sub/notes.txt"]


def test_c1_the_artifact_listing_stops_at_its_entry_bound(scene: Scene) -> None:
    for i in range(30):
        (scene.workspace / f"f{i:02}.txt").write_text("x")
    assert len(list_artifacts(scene.workspace, max_entries=10)) == 10
    assert len(list_artifacts(scene.workspace)) == 30


def test_c1_a_mission_home_is_removed_without_following_links_out_of_it(scene: Scene) -> None:
    home = attempts.fresh_home(scene.settings().homes_root, make_mission(mission_id="m-h", attempt=3))
    assert home.name == "m-h.3" and (home.stat().st_mode & 0o777) == 0o700 and list(home.iterdir()) == []
    (home / "creds").mkdir()
    (home / "creds" / "token").write_text("secret")
    (home / "out").symlink_to(scene.outside, target_is_directory=True)
    os.mkfifo(home / "pipe")
    before = snapshot(scene.outside, [])
    in_thread(attempts.remove_home, home)
    assert not os.path.lexists(home) and snapshot(scene.outside, []) == before


# --- C2, M2, H4: the network and the host's sockets ----------------------------------------------


def test_c2_the_agent_reaches_the_internet_but_not_the_hosts_loopback(
    scene: Scene, backend: str, internet: Internet, listening_port: int
) -> None:
    report, proc = scene.run(
        scene.sandbox(sandbox=backend),
        [
            ["connect", internet.address, internet.port],  # the positive control: model APIs stay reachable
            ["connect", "127.0.0.1", listening_port],  # where the ops API and a local PostgreSQL listen
            ["connect", "10.0.2.2", listening_port],  # slirp's alias of the host's loopback
        ],
    )
    assert proc.exit_code == 0, proc.stderr_tail
    out, loopback, alias = report
    assert out["ok"] and out["result"].strip() == GREETING, out
    assert not loopback["ok"] and not alias["ok"], report
    assert scene.of_kind("sandbox")[0]["private_network"] is True


@pytest.mark.parametrize("spelling", [False, "off"])
def test_m2_a_mission_without_network_has_none_at_all(
    scene: Scene, backend: str, internet: Internet, spelling: object
) -> None:
    report, proc = scene.run(
        scene.sandbox(sandbox=backend),
        [["connect", internet.address, internet.port], ["udp", internet.address, internet.port]],
        constraints={"network": spelling},
    )
    assert proc.exit_code == 0, proc.stderr_tail
    assert [line["ok"] for line in report] == [False, False], report  # TCP and UDP alike


@pytest.mark.parametrize("network", [True, False])
def test_h4_no_host_unix_socket_answers(
    scene: Scene, backend: str, unix_listener: dict[str, str], network: bool
) -> None:
    report, proc = scene.run(
        scene.sandbox(sandbox=backend),
        [["unix", unix_listener["named"]], ["unix", unix_listener["abstract"]]],
        constraints={"network": network},
    )
    assert proc.exit_code == 0, proc.stderr_tail
    assert [line["ok"] for line in report] == [False, False], report


# --- H3: survivors ----------------------------------------------------------------------------------


def test_h3_no_process_outlives_a_mission_that_ended_on_its_own(scene: Scene, any_backend: str) -> None:
    box = scene.sandbox(sandbox=any_backend, allow_unsandboxed=True)
    report, proc = scene.run(box, [["survivors", scene.marker]])
    assert proc.exit_code == 0 and report[0]["ok"], (report, proc.stderr_tail)
    wait_for(lambda: not processes_with(scene.marker), 5, "the setsid and double-forked sleepers to be gone")


def test_h3_no_process_outlives_a_cancelled_mission(scene: Scene, any_backend: str) -> None:
    box = scene.sandbox(sandbox=any_backend, allow_unsandboxed=True)

    async def cancel_once_they_run() -> None:
        ctx = scene.ctx(box, make_mission("[]"))
        argv = scene.argv([["survivors", scene.marker], ["sleep"]])
        task = asyncio.ensure_future(run_process(argv, ctx, on_stdout=lambda _line: None, check=False))
        deadline = time.monotonic() + 30
        while len(processes_with(scene.marker, "time.sleep")) < 2:
            assert not task.done(), task.result()
            assert time.monotonic() < deadline, f"the sleepers never started: {scene.events}"
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_once_they_run())
    wait_for(lambda: not processes_with(scene.marker), 5, "the setsid and double-forked sleepers to be gone")


@pytest.mark.parametrize("after", [n / 200 for n in range(30)])
def test_a_cancel_while_the_sandbox_starts_is_never_lost(scene: Scene, any_backend: str, after: float) -> None:
    """Cancelled at any moment of the start-up (network hand-shake included), the run ends cancelled.
    (asyncio.wait_for on Python 3.11 drops a cancel that lands as its inner future completes.)"""
    box = scene.sandbox(sandbox=any_backend, allow_unsandboxed=True)

    async def cancel_during_start() -> None:
        ctx = scene.ctx(box, make_mission("[]"))
        task = asyncio.ensure_future(run_process(scene.argv([["sleep"]]), ctx, on_stdout=lambda _line: None))
        while not scene.of_kind("process_started"):
            await asyncio.sleep(0.001)
        await asyncio.sleep(after)
        task.cancel()
        await asyncio.wait({task}, timeout=30)
        assert task.cancelled(), "the cancel was lost: the program runs on"

    asyncio.run(cancel_during_start())


def processes_with(marker: str, *also: str) -> list[int]:
    """Live processes whose command line holds ``marker`` and each of ``also``."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                raw = Path(f"/proc/{name}/cmdline").read_bytes()
                state = Path(f"/proc/{name}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if all(m.encode() in raw for m in (marker, *also)) and state not in (b"Z", b"X"):
                found.append(int(name))
    return found


# --- H4, item 4: hidden by default -----------------------------------------------------------------


def test_h4_the_env_file_database_and_root_only_secrets_are_hidden_even_read_only(
    scene: Scene, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker_dir = scene.tmp / "worker-cwd"
    worker_dir.mkdir()
    (worker_dir / ".env").write_text("UA_VP_OPENAI_API_KEY=sk-dotenv-secret\n")
    db_dir = scene.tmp / "db"
    db_dir.mkdir()
    (db_dir / "missions.db").write_text("every mission's objective and result\n")
    monkeypatch.chdir(worker_dir)
    box = scene.sandbox(
        sandbox=backend, sandbox_protected="read-only", database_url=f"sqlite:///{db_dir / 'missions.db'}"
    )
    targets = [worker_dir / ".env", db_dir / "missions.db", Path("/etc/shadow")]
    report, proc = scene.run(box, [["read", str(t)] for t in targets] + [["write", str(db_dir / "missions.db")]])
    assert proc.exit_code == 0, proc.stderr_tail
    assert [line["ok"] for line in report] == [False] * 4, report
    assert (db_dir / "missions.db").read_text() == "every mission's objective and result\n"


def test_h4_the_real_home_is_hidden_but_its_toolchains_on_path_still_run(
    scene: Scene, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = scene.tmp / "the-users-home"
    tool = home / ".toolchain" / "bin" / "tool"
    tool.parent.mkdir(parents=True)
    tool.write_text("#!/bin/sh\necho tool-ran\n")
    tool.chmod(0o755)
    (home / ".toolchain" / "credentials").mkdir()
    (home / "notes.txt").write_text("the user's own notes\n")
    (home / ".gradle").mkdir()
    (home / ".gradle" / "cache.txt").write_text("build cache\n")
    (home / ".ssh").mkdir()
    (home / ".ssh" / "id_ed25519").write_text("private key\n")
    (home / ".toolchain" / ".ssh").symlink_to(home / ".ssh")  # a way round through a readable entry
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", f"{tool.parent}{os.pathsep}{os.environ['PATH']}")

    attempts: list[list[Any]] = [
        ["run", "tool"],  # a toolchain on PATH inside HOME still runs
        ["read", str(home / ".gradle" / "cache.txt")],  # readable only when named in the setting
        ["read", str(home / "notes.txt")],
        ["list", str(home)],
        ["read", str(home / ".ssh" / "id_ed25519")],
        ["read", str(home / ".toolchain" / ".ssh" / "id_ed25519")],
    ]
    report, proc = scene.run(scene.sandbox(sandbox=backend, sandbox_home_readable=[".gradle"]), attempts)
    assert proc.exit_code == 0, proc.stderr_tail
    run, gradle, notes, listing, key, key_via_link = report
    assert run["result"] == "tool-ran\n" and gradle["result"] == "build cache\n", report
    assert not (notes["ok"] or key["ok"] or key_via_link["ok"]), report
    # Under bwrap HOME is an empty tmpfs holding the readable entries' mount points; Landlock refuses.
    assert not listing["ok"] or set(listing["result"]) <= {".toolchain", ".gradle"}, listing

    # Without the setting, an entry that holds no PATH folder is hidden like the rest.
    report, _ = scene.run(scene.sandbox(sandbox=backend), attempts[1:2])
    assert [line["ok"] for line in report] == [False], report


def test_h4_a_handoff_root_holding_the_database_is_a_config_error(scene: Scene) -> None:
    from ua_vp.errors import ConfigError

    with pytest.raises(ConfigError, match=r"UA_VP_HANDOFF_ROOT .* contains the database"):
        scene.sandbox(database_url=f"sqlite:///{scene.handoff / 'ua_vp.db'}")
