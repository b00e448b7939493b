"""The ``ua-vp`` command line, through the real console script: conventions every
subcommand keeps (``--json`` anywhere, ``--api`` for reads and cancel, help for every
option, exit codes for ``--wait``) and the plugin machinery as a user meets it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import click
import httpx
import pytest

from tests.api.conftest import DISPATCH, Served, start_server
from tests.cli_harness import Cli, fake_dist
from ua_vp.cli import cli as cli_group

GENERAL = "vp.general.primary"


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Served]:
    """``ua-vp serve`` on SQLite with the in-process lane; CODIE's runtime is a command that fails."""
    served = start_server(
        {
            "UA_VP_EXTERNAL_DISPATCH_ENABLED": "0",
            "UA_VP_CODER_RUNTIME": "command",
            "UA_VP_COMMAND": "false",
            "UA_VP_POLL_INTERVAL_SECONDS": "1",
        },
        tmp_path,
    )
    yield served
    assert served.stop() == 0


def _walk(command: click.Command, path: str = "ua-vp") -> Iterator[tuple[str, click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _walk(sub, f"{path} {name}")


def test_every_option_of_every_command_has_help(cli: Cli) -> None:
    for path, command in _walk(cli_group):
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{path} {param.opts[0]} has no help text"
    shown = cli("dispatch", "--help")
    assert shown.returncode == 0
    for option in ("--type", "--idempotency-key", "--api", "--json"):
        line = next(ln for ln in shown.stdout.splitlines() if ln.strip().startswith(option))
        assert len(line.split(maxsplit=2)) == 3, f"{option} shows no help: {line!r}"
    assert "0 completed, 1 failed, 3 cancelled, 4 timed out" in " ".join(shown.stdout.split())


def test_json_is_accepted_after_every_subcommand(cli: Cli) -> None:
    for path, command in _walk(cli_group):
        if not isinstance(command, click.Group):
            assert "--json" in {o for p in command.params for o in p.opts}, f"{path} has no --json"
    dispatched = cli("dispatch", GENERAL, "hello", "--json")
    assert dispatched.returncode == 0, dispatched.stderr
    mission_id = json.loads(dispatched.stdout)["mission"]["mission_id"]
    for args in (["mission", mission_id], ["cancel", mission_id], ["plugins"]):
        after = cli(*args, "--json")
        assert after.returncode == 0, (args, after.stderr)
        assert isinstance(json.loads(after.stdout), dict), args
    before = cli("--json", "missions")
    assert json.loads(before.stdout)["missions"][0]["status"] == "cancelled"


def test_every_read_and_cancel_command_goes_through_api(cli: Cli, server: Served, tmp_path: Path) -> None:
    # The client's own state dir is empty: every answer below can only have come from the server.
    client = Cli(tmp_path / "client", env={"UA_VP_API_URL": server.url})
    client.cwd.mkdir()
    queued = client("dispatch", "vp.far.away", "x", "--json", UA_VP_API_URL="")
    assert queued.returncode == 2 and "error [unknown_vp_id]" in queued.stderr

    done = client("dispatch", GENERAL, "through the server", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    mission_id = json.loads(done.stdout)["mission"]["mission_id"]
    listed = json.loads(client("missions", "--json").stdout)["missions"]
    assert [m["mission_id"] for m in listed] == [mission_id]
    shown = json.loads(client("mission", mission_id, "--json").stdout)
    assert shown["mission"]["status"] == "completed" and shown["events"][-1]["event_type"] == "vp.mission.completed"
    assert GENERAL in {s["vp_id"] for s in json.loads(client("sessions", "--json").stdout)["sessions"]}
    assert json.loads(client("metrics", "--vp-id", GENERAL, "--json").stdout)["metrics"]["missions"]["total"] == 1
    cancelled = json.loads(client("cancel", mission_id, "--json").stdout)
    assert cancelled == {"mission": cancelled["mission"], "changed": False}

    # --api on the command line wins over the environment, and an unreachable server is one line.
    down = client("missions", "--api", "http://127.0.0.1:9", UA_VP_API_URL=server.url)
    assert down.returncode == 2 and down.stderr.startswith("error [api_unreachable]"), down.stderr
    local = Cli(tmp_path / "client")
    assert json.loads(local("missions", "--json").stdout) == {"missions": []}


def test_wait_exits_with_the_missions_outcome(cli: Cli, server: Served) -> None:
    completed = cli("dispatch", GENERAL, "fine", "--wait", "--api", server.url)
    assert completed.returncode == 0, completed.stderr
    assert f"mission {completed.stdout.split()[1]}: completed" in completed.stdout

    failed = cli("dispatch", "vp.coder.primary", "will fail", "--follow", "--api", server.url)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "vp.mission.failed" in failed.stdout

    # No worker serves a remote id here: the mission waits until it is cancelled or the wait ends.
    remote = {"UA_VP_REMOTE_IDS": "vp.elsewhere"}
    timed_out = cli("dispatch", "vp.elsewhere", "nobody runs me", "--wait", "--timeout", "1", **remote)
    assert timed_out.returncode == 4 and "error [wait_timed_out]" in timed_out.stderr, timed_out.stderr

    waiting = cli.start("dispatch", "vp.elsewhere", "cancel me", "--wait", "--timeout", "60", **remote)
    assert waiting.stdout is not None
    first = waiting.stdout.readline()
    mission_id = first.split()[1]
    assert cli("cancel", mission_id).returncode == 0
    out, err = waiting.communicate(timeout=30)
    assert waiting.returncode == 3, first + out + err
    assert f"mission {mission_id}: cancelled" in out

    usage = cli("dispatch", GENERAL, "x", "--wait", "--budget", "{nope")
    assert usage.returncode == 2 and usage.stderr.startswith("error [invalid_request]")


@pytest.fixture
def observed(tmp_path: Path) -> tuple[Path, Path]:
    """A plugin site with an observer that writes ``<ua-vp command> <mission_id> <event type>``
    for every event it is told of, and the file it writes."""
    seen = tmp_path / "seen.txt"
    site = fake_dist(
        tmp_path / "site",
        "ua-vp-observer",
        "0.3",
        "observer_plugin",
        f"""
        import sys
        from ua_vp import hookimpl

        @hookimpl
        def ua_vp_mission_event(event):
            with open({str(seen)!r}, "a") as out:
                out.write(f"{{sys.argv[1]}} {{event.mission_id}} {{event.event_type}}\\n")
        """,
    )
    seen.touch()
    return site, seen


def test_the_mission_event_observer_fires_for_cli_dispatch_and_cancel(cli: Cli, observed: tuple[Path, Path]) -> None:
    site, seen = observed
    queued = cli(
        "dispatch", "vp.elsewhere", "observe me", "--json", PYTHONPATH=str(site), UA_VP_REMOTE_IDS="vp.elsewhere"
    )
    assert queued.returncode == 0, queued.stderr
    mission_id = json.loads(queued.stdout)["mission"]["mission_id"]
    assert cli("cancel", mission_id, PYTHONPATH=str(site)).returncode == 0
    assert [line.split()[2] for line in seen.read_text().splitlines()] == [
        "vp.mission.dispatched",
        "vp.mission.cancel_requested",
        "vp.mission.cancelled",
    ]


def test_the_observer_sees_every_event_whichever_process_commits_it(
    cli: Cli, observed: tuple[Path, Path], tmp_path: Path
) -> None:
    """One factory (ua_vp.host) gives the CLI, a worker and the server the same observer."""
    site, seen = observed
    env = {"PYTHONPATH": str(site)}
    mission_id = json.loads(cli("dispatch", GENERAL, "observe me", "--json", **env).stdout)["mission"]["mission_id"]
    worker = cli("worker", "--profile", GENERAL, "--once", **env)
    assert worker.returncode == 0, worker.stderr

    served = start_server({**env, "UA_VP_EXTERNAL_DISPATCH_ENABLED": "0"}, tmp_path)
    try:
        body = {"vp_id": GENERAL, "objective": "observe me too"}
        answer = httpx.post(served.url + DISPATCH, json=body)
        assert answer.status_code == 201, answer.text
        served_id = answer.json()["mission"]["mission_id"]
        deadline = time.monotonic() + 30
        while f"{served_id} vp.mission.completed" not in seen.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        assert served.stop() == 0

    by = {(mid, kind): command for command, mid, kind in map(str.split, seen.read_text().splitlines())}
    assert by[(mission_id, "vp.mission.dispatched")] == "dispatch"
    assert by[(mission_id, "vp.mission.started")] == by[(mission_id, "vp.mission.completed")] == "worker"
    assert by[(served_id, "vp.mission.dispatched")] == "serve"  # the in-process lane runs it there
    assert by[(served_id, "vp.mission.completed")] == "serve"


BROKEN_IMPORT = """
import ua_vp_missing_dependency  # noqa: F401
"""
MISSPELT_HOOK = """
from ua_vp import hookimpl

@hookimpl
def ua_vp_profile(settings):
    return []
"""
RAISING_HOOK = """
from ua_vp import hookimpl

@hookimpl
def ua_vp_profiles(settings):
    raise RuntimeError("cannot reach the licence server")
"""


def test_a_broken_plugin_is_reported_once_and_the_other_profiles_keep_working(cli: Cli, tmp_path: Path) -> None:
    site = fake_dist(tmp_path / "site", "ua-vp-broken", "1.2.3", "broken_plugin", BROKEN_IMPORT)
    fake_dist(site, "ua-vp-typo", "0.0.1", "typo_plugin", MISSPELT_HOOK)
    fake_dist(site, "ua-vp-raises", "2.0", "raising_plugin", RAISING_HOOK)
    env = {"PYTHONPATH": str(site)}

    listed = cli("profiles", **env)
    assert listed.returncode == 0, listed.stderr
    warnings = [json.loads(line) for line in listed.stderr.splitlines() if "plugin_broken" in line]
    broken = {w["dist"]: w for w in warnings}
    assert len(warnings) == 3, listed.stderr
    assert broken["ua-vp-raises"]["error"] == "RuntimeError: cannot reach the licence server"
    assert broken["ua-vp-broken"]["version"] == "1.2.3"
    assert broken["ua-vp-broken"]["error"] == "ModuleNotFoundError: No module named 'ua_vp_missing_dependency'"
    assert "ua_vp_profile" in broken["ua-vp-typo"]["error"] and "Traceback" not in listed.stderr
    assert "broken plugin broken_plugin (ua-vp-broken 1.2.3), left out: ModuleNotFoundError" in listed.stdout

    ran = cli("dispatch", GENERAL, "still works", "--json", **env)
    assert ran.returncode == 0, ran.stderr
    plugins = json.loads(cli("plugins", "--json", **env).stdout)
    assert {b["dist"] for b in plugins["broken"]} == {"ua-vp-broken", "ua-vp-typo", "ua-vp-raises"}
    assert "vp_general" in {p["name"] for p in plugins["plugins"]}


FLAKY_CHECK = """
from ua_vp import hookimpl
from ua_vp.profiles import Profile

@hookimpl
def ua_vp_profiles(settings):
    return [
        Profile(
            vp_id="vp.flaky.primary", name="FLAKY", description="x", workspace_root=settings.state_dir.parent / "flaky"
        )
    ]

@hookimpl
def ua_vp_check_mission(profile, mission, phase):
    raise RuntimeError("policy service down")
"""
STRICT_CHECK = """
from ua_vp import hookimpl
from ua_vp.errors import GuardViolation

@hookimpl
def ua_vp_check_mission(profile, mission, phase):
    if "secret" in mission.objective:
        raise GuardViolation("no secret missions here", rule="strict")
"""


def test_a_plugin_whose_check_crashes_takes_only_its_own_profiles_down(cli: Cli, tmp_path: Path) -> None:
    site = fake_dist(tmp_path / "site", "ua-vp-flaky", "0.1", "flaky_plugin", FLAKY_CHECK)
    fake_dist(site, "ua-vp-strict", "0.2", "strict_plugin", STRICT_CHECK)
    env = {"PYTHONPATH": str(site)}

    other = cli("dispatch", GENERAL, "still works", "--json", **env)
    assert other.returncode == 0, other.stderr
    (warning,) = [json.loads(line) for line in other.stderr.splitlines() if "plugin_broken" in line]
    assert (warning["dist"], warning["error"]) == ("ua-vp-flaky", "RuntimeError: policy service down")

    own = cli("dispatch", "vp.flaky.primary", "anything", **env)
    assert own.returncode != 0 and "Traceback" not in own.stderr
    assert (
        "[vp_id_unavailable]" in own.stderr and "flaky_plugin failed (RuntimeError: policy service down)" in own.stderr
    )

    # A refusal is an answer, not a crash: the strict plugin stays in and keeps refusing.
    refused = cli("dispatch", GENERAL, "a secret plan", **env)
    assert refused.returncode != 0 and "[guard_violation]" in refused.stderr, refused.stderr
    assert "no secret missions here" in refused.stderr


def test_load_plugins_and_trace_hooks(cli: Cli) -> None:
    only = json.loads(cli("profiles", "--json", UA_VP_LOAD_PLUGINS="ua-vp-general").stdout)
    assert [p["vp_id"] for p in only["profiles"]] == [GENERAL]
    none = json.loads(cli("plugins", "--json", UA_VP_LOAD_PLUGINS="none").stdout)
    assert [p["name"] for p in none["plugins"]] == ["ua_vp.runtimes.builtin"]

    # Spelt as pip would accept it, or misspelt with a warning naming what is installed.
    spelt = json.loads(cli("profiles", "--json", UA_VP_LOAD_PLUGINS="UA_VP.General").stdout)
    assert [p["vp_id"] for p in spelt["profiles"]] == [GENERAL]
    typo = cli("profiles", "--json", UA_VP_LOAD_PLUGINS="ua-vp-generalist")
    (warning,) = [json.loads(line) for line in typo.stderr.splitlines() if "load_plugins_name_not_installed" in line]
    assert warning["names"] == ["ua-vp-generalist"] and "ua-vp-general" in warning["installed"]

    traced = cli("profiles", UA_VP_TRACE_HOOKS="1", UA_VP_LOAD_PLUGINS="ua-vp-general")
    assert traced.returncode == 0, traced.stderr
    assert "ua_vp_profiles" in traced.stderr and "finish" in traced.stderr


def test_plugins_lists_dist_version_hooks_and_what_each_provides(cli: Cli) -> None:
    found = {p["name"]: p for p in json.loads(cli("plugins", "--json").stdout)["plugins"]}
    coder = found["vp_coder"]
    assert coder["dist"] == "ua-vp-coder" and coder["version"]
    assert coder["profiles"] == ["vp.coder.primary"]
    assert {"ua_vp_profiles", "ua_vp_plugin_settings", "ua_vp_check_mission"} <= set(coder["hooks"])
    assert "dry-run" in found["ua_vp.runtimes.builtin"]["runtimes"]


def test_profiles_show_effective_plugin_settings_and_a_bad_one_names_its_variable(cli: Cli) -> None:
    shown = json.loads(cli("profiles", "--json", UA_VP_CODER_RUNTIME="command").stdout)
    coder = next(p for p in shown["profiles"] if p["vp_id"] == "vp.coder.primary")
    assert coder["runtime"] == "command"
    assert coder["settings"] == {
        "UA_VP_CODER_WORKSPACE_ROOT": None,
        "UA_VP_CODER_RUNTIME": "command",
        "UA_VP_HARD_BLOCK_UA_REPO": True,
    }
    bad = cli("dispatch", GENERAL, "x", UA_VP_HARD_BLOCK_UA_REPO="maybe")
    assert bad.returncode == 2
    assert bad.stderr.startswith("error [config_invalid]: invalid settings: UA_VP_HARD_BLOCK_UA_REPO:"), bad.stderr


def test_a_worker_for_a_profile_nothing_provides_fails_naming_the_installed(cli: Cli) -> None:
    missing = cli("worker", "--profile", "vp.not.here", "--once")
    assert missing.returncode == 2
    assert missing.stderr.startswith("error [unknown_vp_id]: no installed profile has vp_id 'vp.not.here'")
    assert "installed: vp.coder.primary" in missing.stderr and GENERAL in missing.stderr


def test_an_enabled_id_nothing_provides_is_a_warning_and_its_dispatch_names_the_installed(cli: Cli) -> None:
    env = {"UA_VP_ENABLED_IDS": f"{GENERAL},vp.ghost"}
    ok = cli("dispatch", GENERAL, "fine", **env)
    assert ok.returncode == 0, ok.stderr
    assert "enabled_id_not_installed" in ok.stderr and "vp.ghost" in ok.stderr
    ghost = cli("dispatch", "vp.ghost", "nobody", **env)
    assert ghost.returncode == 2 and "error [unknown_vp_id]" in ghost.stderr
    assert "installed: vp.coder.primary" in ghost.stderr and "UA_VP_REMOTE_IDS" in ghost.stderr


def test_a_remote_id_is_accepted_here_and_guarded_by_its_worker(cli: Cli, tmp_path: Path) -> None:
    # The gateway host has only GENERALIST; CODIE's workers run "elsewhere" (same database).
    gateway = {"UA_VP_LOAD_PLUGINS": "ua-vp-general", "UA_VP_REMOTE_IDS": "vp.coder.primary"}
    inside_the_host = str(Path(__file__).resolve().parent.parent)
    queued = cli(
        "dispatch",
        "vp.coder.primary",
        "touch the host's own repo",
        "--constraints",
        json.dumps({"repo_path": inside_the_host}),
        "--json",
        **gateway,
    )
    assert queued.returncode == 0, queued.stderr
    mission_id = json.loads(queued.stdout)["mission"]["mission_id"]
    worker = cli("worker", "--profile", "vp.coder.primary", "--once")
    assert worker.returncode == 0, worker.stderr
    mission = json.loads(cli("mission", mission_id, "--json").stdout)["mission"]
    assert mission["status"] == "failed" and mission["error"]["code"] == "guard_violation"


def test_a_local_dispatch_wakes_a_sqlite_server_at_once_instead_of_at_its_next_poll(cli: Cli, tmp_path: Path) -> None:
    # A poll a minute: the mission can only end within the 20 s wait if the server's lane
    # noticed the CLI's commit to the shared SQLite file by itself.
    served = start_server({"UA_VP_EXTERNAL_DISPATCH_ENABLED": "0", "UA_VP_POLL_INTERVAL_SECONDS": "60"}, tmp_path)
    try:
        time.sleep(0.5)  # the lane's first look at the (empty) queue is behind it
        done = cli("dispatch", GENERAL, "no --api", "--wait", "--timeout", "20")
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        assert served.stop() == 0


def test_profile_new_refuses_a_bad_name_and_a_folder_in_use(cli: Cli, tmp_path: Path) -> None:
    bad = cli("profile", "new", "Bad Name")
    assert bad.returncode == 2 and bad.stderr.startswith("error [invalid_request]: profile name 'Bad Name'")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep me")
    taken = cli("profile", "new", "weather", "--dir", str(tmp_path / "taken"))
    assert taken.returncode == 2 and "already exists and is not empty" in taken.stderr
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["mine.txt"]
