"""Choosing a backend, refusing to run unconfined, and what the policy is made of."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ua_vp import sandbox, sandbox_exec
from ua_vp.config import load_settings
from ua_vp.errors import ConfigError

from .conftest import Scene


def fake_probes(monkeypatch: pytest.MonkeyPatch, **works: bool) -> None:
    def probe(backend: str) -> sandbox.Probe:
        if backend == "none":
            return sandbox.Probe("none", True, "no confinement")
        ok = works.get(backend, False)
        return sandbox.Probe(backend, ok, "fine" if ok else f"{backend} cannot work in this test")

    monkeypatch.setattr(sandbox, "probe", probe)


def test_auto_takes_the_strongest_backend_that_works(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_probes(monkeypatch, bwrap=True, landlock=True)
    assert sandbox.resolve("auto")[0] == "bwrap"
    fake_probes(monkeypatch, bwrap=False, landlock=True)
    assert sandbox.resolve("auto")[0] == "landlock"
    fake_probes(monkeypatch)
    backend, why = sandbox.resolve("auto")
    assert backend == "none"
    assert "bwrap cannot work in this test" in why and "landlock cannot work in this test" in why


def test_an_explicit_backend_that_cannot_work_stops_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_probes(monkeypatch, bwrap=True)
    with pytest.raises(ConfigError, match="UA_VP_SANDBOX=landlock does not work on this machine: landlock cannot"):
        sandbox.resolve("landlock")


def test_a_hard_blocking_profile_refuses_to_run_unconfined_unless_allowed(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="UA_VP_ALLOW_UNSANDBOXED=1"):
        scene.sandbox(sandbox="none")
    assert scene.sandbox(sandbox="none", allow_unsandboxed=True).backend == "none"
    # auto with nothing working is no excuse either.
    fake_probes(monkeypatch)
    with pytest.raises(ConfigError, match="auto found no working backend"):
        scene.sandbox(sandbox="auto")


def test_a_profile_that_starts_no_process_or_does_not_hard_block_may_run_unconfined(scene: Scene) -> None:
    from ua_vp import guard
    from ua_vp.profiles import Profile

    settings = scene.settings(sandbox="none")
    for runtime, hard_block in (("dry-run", True), ("openai", True), ("command", False)):
        profile = Profile(
            vp_id="vp.x.primary",
            name="X",
            description="x",
            workspace_root=settings.workspace_root("x", None),
            runtime=runtime,
            hard_block=hard_block,
        )
        policy = guard.build_policy(profile, settings, extra_protected=[], extra_allowed=[])
        assert sandbox.for_profile(profile, policy, settings).backend == "none"
        assert sandbox.describe(profile, settings).startswith("none (")


def test_the_policy_comes_from_the_guard(scene: Scene) -> None:
    box = scene.sandbox(sandbox="auto")
    state, project = scene.state.resolve(), scene.project.resolve()
    assert state in box.protected and project in box.protected
    # Writable: the handoff root, not the workspace root (other missions' workspaces live there).
    assert box.writable == (scene.handoff.resolve(),)


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        (None, True),
        (True, True),
        ("on", True),
        (False, False),
        ("none", False),
        ("OFF", False),
        ("deny", False),
        # Unknown spellings (dispatch refuses them; one stored before that rule): closed.
        ("full", False),
        ("disabled", False),
        (0, False),
        ({"enabled": True}, False),
    ],
)
def test_the_network_constraint(value: object, allowed: bool) -> None:
    constraints = {} if value is None else {"network": value}
    assert sandbox.network_allowed(constraints) is allowed


def test_settings_take_any_case_and_name_the_variable_when_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UA_VP_SANDBOX", "BWrap")
    monkeypatch.setenv("UA_VP_SANDBOX_PROTECTED", "Read-Only")
    settings = load_settings(_env_file=None)
    assert (settings.sandbox, settings.sandbox_protected) == ("bwrap", "read-only")
    monkeypatch.setenv("UA_VP_SANDBOX", "firejail")
    with pytest.raises(ConfigError, match="UA_VP_SANDBOX"):
        load_settings(_env_file=None)


def test_landlock_reads_everything_but_the_hidden_roots(tmp_path: Path) -> None:
    a = tmp_path / "a"
    (a / "hidden" / "deep").mkdir(parents=True)
    (a / "sibling").mkdir()
    (a / "file").write_text("x")
    (tmp_path / "b").mkdir()
    os.symlink(a / "hidden", a / "into-hidden")  # a rule on it would be a rule on the hidden root
    os.symlink(tmp_path, a / "to-ancestor")  # would grant the ancestor, hidden root and all
    os.symlink(a / "sibling", a / "to-sibling")
    roots = sandbox_exec.roots_around([str(a / "hidden")], top=str(tmp_path))
    assert roots == [str(tmp_path / p) for p in ("a/file", "a/sibling", "a/to-sibling", "b")]
    assert sandbox_exec.roots_around([], top="/") == ["/"]


def test_ua_vp_profiles_shows_the_sandbox(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("UA_VP_")}
    env.update(UA_VP_STATE_DIR=str(tmp_path / "state"), UA_VP_CODER_RUNTIME="command", UA_VP_SANDBOX="none")
    done = subprocess.run(
        [sys.executable, "-m", "ua_vp.cli", "--json", "profiles"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    shown = {p["vp_id"]: p["sandbox"] for p in out["profiles"]}
    assert shown["vp.coder.primary"] == "none (refuses to start)"
    assert shown["vp.general.primary"] == "none (no processes)"
    assert set(out["sandbox"]["backends"]) == {"bwrap", "landlock"}
    assert out["sandbox"]["setting"] == "none"
