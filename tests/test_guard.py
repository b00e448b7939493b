"""The path guard on a real filesystem: what counts as a path, how it resolves, and
which rule refuses it. No mocks: symlinks, renames and bind mounts are real."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import ua_vp
from ua_vp.config import Settings, load_settings
from ua_vp.errors import ConfigError, GuardViolation
from ua_vp.guard import GuardPolicy, build_policy, check_constraints, host_protected_roots, mission_paths
from ua_vp.profiles import Profile

PACKAGE_DIR = Path(ua_vp.__file__).resolve().parent


@dataclass
class Host:
    """A host laid out under tmp_path: state dir, handoff root and an extra protected repo."""

    tmp: Path
    state: Path
    handoff: Path
    repo: Path

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {"state_dir": self.state, "handoff_root": self.handoff, "protected_roots": [self.repo]}
        return load_settings(**(values | overrides))

    def profile(self, settings: Settings, *, hard_block: bool = True, workspace_root: Path | None = None) -> Profile:
        return Profile(
            vp_id="vp.coder.primary" if hard_block else "vp.general.primary",
            name="CODIE" if hard_block else "GENERALIST",
            description="test profile",
            workspace_root=workspace_root or settings.workspace_root("coder" if hard_block else "general", None),
            hard_block=hard_block,
        )

    def policy(
        self, *, hard_block: bool = True, extra_protected: list[Path] | None = None, **overrides: Any
    ) -> GuardPolicy:
        settings = self.settings(**overrides)
        return build_policy(
            self.profile(settings, hard_block=hard_block),
            settings,
            extra_protected=extra_protected or [],
            extra_allowed=[],
        )

    @property
    def workspace(self) -> Path:
        """One CODIE mission's workspace under the default root."""
        return self.state / "workspaces" / "coder" / "m1"


@pytest.fixture
def host(tmp_path: Path) -> Host:
    tmp = tmp_path.resolve()
    h = Host(tmp=tmp, state=tmp / "state", handoff=tmp / "handoff", repo=tmp / "host-repo")
    for folder in (h.workspace, h.handoff, h.repo):
        folder.mkdir(parents=True)
    (h.repo / "pyproject.toml").write_text("[project]\nname = 'something'\n")
    return h


def resolved(err: GuardViolation) -> str | None:
    return None if err.resolved is None else str(err.resolved)


def refusal(policy: GuardPolicy, constraints: dict[str, Any], base: Path | None = None) -> GuardViolation:
    with pytest.raises(GuardViolation) as caught:
        check_constraints(policy, constraints, base=base)
    return caught.value


# --- resolution ------------------------------------------------------------------


def test_dotdot_traversal_into_a_protected_root_is_refused(host: Host) -> None:
    given = f"{host.handoff}/../host-repo/pyproject.toml"
    err = refusal(host.policy(), {"repo_path": given})
    # The resolved path is kept for the log, never echoed (L3: it would be an oracle).
    assert err.details == {
        "path": given,
        "rule": "protected_root",
        "root": str(host.repo),
        "key": "constraints.repo_path",
    }
    assert resolved(err) == str(host.repo / "pyproject.toml")
    assert err.message == (
        f"constraints.repo_path {given!r} is inside protected root "
        f"{str(host.repo)!r} (rule protected_root: vp.coder.primary may not touch the host's own repo or runtime "
        "roots; set UA_VP_HANDOFF_ROOT for hand-offs)"
    )


def test_symlink_planted_in_the_workspace_pointing_at_the_package_is_refused(host: Host) -> None:
    (host.workspace / "pkg").symlink_to(PACKAGE_DIR)
    err = refusal(host.policy(), {"file": "pkg/guard.py"}, base=host.workspace)
    assert err.details["rule"] == "protected_root"
    assert resolved(err) == str(PACKAGE_DIR / "guard.py")
    assert err.details["root"] == str(PACKAGE_DIR)


def test_symlink_planted_in_the_handoff_root_pointing_at_a_protected_root_is_refused(host: Host) -> None:
    (host.handoff / "drop").symlink_to(host.repo)
    err = refusal(host.policy(), {"output": f"{host.handoff}/drop/new-file.txt"})
    assert err.details["rule"] == "protected_root"
    assert resolved(err) == str(host.repo / "new-file.txt")


def test_tilde_expands_to_home(host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(host.handoff))
    check_constraints(host.policy(), {"notes_file": "~/notes.md"}, base=None)
    monkeypatch.setenv("HOME", str(host.repo))
    err = refusal(host.policy(), {"notes_file": "~/notes.md"})
    assert (err.details["rule"], resolved(err)) == ("protected_root", str(host.repo / "notes.md"))


@pytest.mark.parametrize("suffix", ["/", "//", "/./"])
def test_trailing_slashes_do_not_matter(host: Host, suffix: str) -> None:
    policy = host.policy()
    assert refusal(policy, {"dir": f"{host.repo}{suffix}"}).resolved == host.repo
    check_constraints(policy, {"dir": f"{host.handoff}{suffix}"}, base=None)
    check_constraints(policy, {"dir": f"src{suffix}"}, base=host.workspace)


def test_relative_paths_resolve_against_the_mission_workspace(host: Host) -> None:
    policy = host.policy()
    check_constraints(policy, {"files": ["src/main.py", "./README.md", "."]}, base=host.workspace)
    err = refusal(policy, {"file": "../../../../outside.txt"}, base=host.workspace)
    assert (err.details["rule"], resolved(err)) == ("outside_allowed_roots", str(host.tmp / "outside.txt"))
    err = refusal(policy, {"file": "../../../ua_vp.db"}, base=host.workspace)
    assert (err.details["rule"], resolved(err)) == ("protected_root", str(host.state / "ua_vp.db"))


def test_relative_paths_at_dispatch_resolve_under_the_workspace_root(host: Host) -> None:
    policy = host.policy()
    check_constraints(policy, {"file": "src/main.py"}, base=None)
    # <root>/_dispatch_ sits as deep as a mission workspace, so the same escape lands in the same place.
    err = refusal(policy, {"file": "../../../../outside.txt"}, base=None)
    assert resolved(err) == str(host.tmp / "outside.txt")


# --- which values are paths ---------------------------------------------------------


def test_nested_keys_and_lists_are_walked_in_document_order(host: Host) -> None:
    constraints = {
        "build": {"Output_Dir": "out", "steps": [{"cwd": "/srv"}, {"name": "lint"}]},
        "files": ["a.py", ["b.py"], 7, str(host.repo / "x.py")],
        "repo-path": ".",
    }
    assert mission_paths(constraints) == [
        ("constraints.build.Output_Dir", "out"),
        ("constraints.build.steps[0].cwd", "/srv"),
        ("constraints.files[0]", "a.py"),
        ("constraints.files[1][0]", "b.py"),
        ("constraints.files[3]", str(host.repo / "x.py")),
        ("constraints.repo-path", "."),
    ]
    err = refusal(host.policy(), constraints, base=host.workspace)
    assert (err.details["key"], err.details["rule"]) == ("constraints.build.steps[0].cwd", "outside_allowed_roots")
    del constraints["build"]
    assert refusal(host.policy(), constraints, base=host.workspace).details["key"] == "constraints.files[3]"


def test_strings_that_do_not_look_like_paths_are_ignored_unless_under_a_path_key(host: Host) -> None:
    constraints = {
        "hint": "fix the bug in host-repo/pyproject.toml",
        "url": "https://example.com/a/b",
        "language": "python",
        "max_files": 3,
        "file": None,
        "paths": [1, True, 2.5],
    }
    assert mission_paths(constraints) == []
    check_constraints(host.policy(), constraints, base=host.workspace)


def test_strings_that_look_like_paths_are_checked_under_any_key(host: Host) -> None:
    assert mission_paths({"note": "/srv", "a": "~/x", "b": "../y", "c": ".."}) == [
        ("constraints.note", "/srv"),
        ("constraints.a", "~/x"),
        ("constraints.b", "../y"),
        ("constraints.c", ".."),
    ]
    err = refusal(host.policy(), {"note": str(host.repo)})
    assert (err.details["key"], err.details["rule"]) == ("constraints.note", "protected_root")


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("src/a\x00.py", "null byte"),
        ("", "empty"),
        ("\ud800", "cannot be resolved"),
        (b"/srv", "bytes, not a string"),
        (object(), "object, not a string"),
    ],
)
def test_junk_under_a_path_key_is_an_invalid_path_not_a_crash(host: Host, value: Any, problem: str) -> None:
    err = refusal(host.policy(), {"files": ["ok.py", value]}, base=host.workspace)
    assert (err.details["rule"], err.details["key"], resolved(err)) == (
        "invalid_path",
        "constraints.files[1]",
        None,
    )
    assert problem in err.message


def test_a_cyclic_constraint_does_not_hang_the_guard(host: Host) -> None:
    loop: dict[str, Any] = {"file": "a.py"}
    loop["again"] = loop
    assert mission_paths(loop) == [("constraints.file", "a.py")]


# --- allowed roots and start-up errors ---------------------------------------------------


def test_the_handoff_root_is_accepted(host: Host) -> None:
    check_constraints(host.policy(), {"output": f"{host.handoff}/drop/result.md"}, base=None)


def test_paths_outside_every_allowed_root_are_refused(host: Host) -> None:
    err = refusal(host.policy(), {"file": "/srv/data.csv"})
    assert err.details["rule"] == "outside_allowed_roots"
    assert str(host.handoff) in err.message and "UA_VP_HANDOFF_ROOT" in err.message


@pytest.mark.parametrize("inside", ["state", "repo", "package"])
def test_a_handoff_root_inside_a_protected_root_is_a_config_error(host: Host, inside: str) -> None:
    protected = {"state": host.state, "repo": host.repo, "package": PACKAGE_DIR}[inside]
    with pytest.raises(ConfigError) as caught:
        host.policy(handoff_root=protected / "handoff")
    message = caught.value.message
    assert "UA_VP_HANDOFF_ROOT" in message
    assert str(protected / "handoff") in message
    assert f"inside protected root {str(protected)!r}" in message


def test_an_extra_allowed_root_inside_a_protected_root_is_a_config_error(host: Host) -> None:
    settings = host.settings()
    with pytest.raises(ConfigError, match="ua_vp_allowed_roots"):
        build_policy(host.profile(settings), settings, extra_protected=[], extra_allowed=[host.repo / "scratch"])


def test_a_plugin_protected_root_is_enforced(host: Host) -> None:
    vault = host.handoff / "vault"
    err = refusal(host.policy(extra_protected=[vault]), {"file": f"{vault}/key.pem"})
    assert (err.details["rule"], err.details["root"]) == ("protected_root", str(vault))


def test_the_default_workspace_under_the_state_dir_is_carved_out(host: Host) -> None:
    policy = host.policy()
    check_constraints(policy, {"file": "src/main.py"}, base=host.workspace)
    # The carve-out is the profile's own root, not the whole state dir: a sibling profile's is refused.
    err = refusal(policy, {"file": str(host.state / "workspaces" / "general" / "m2" / "x")})
    assert (err.details["rule"], err.details["root"]) == ("protected_root", str(host.state))


@pytest.mark.parametrize(
    "where", ["repo", "state dir itself", "workspaces folder itself", "under a protected workspaces folder"]
)
def test_a_workspace_root_inside_a_protected_root_is_a_config_error_outside_the_carve_out(
    host: Host, where: str
) -> None:
    settings = host.settings()
    if where == "under a protected workspaces folder":
        settings = host.settings(protected_roots=[host.repo, host.state / "workspaces"])
    root = {
        "repo": host.repo / "ws",
        "state dir itself": host.state,
        "workspaces folder itself": host.state / "workspaces",
        "under a protected workspaces folder": host.state / "workspaces" / "coder",
    }[where]
    with pytest.raises(ConfigError, match=r"the workspace root of vp\.coder\.primary"):
        build_policy(host.profile(settings, workspace_root=root), settings, extra_protected=[], extra_allowed=[])


def test_without_hard_block_only_the_allowed_roots_are_enforced(host: Host) -> None:
    secret = host.handoff / "Secret"
    secret.mkdir()
    overrides: dict[str, Any] = {"protected_roots": [host.repo, secret]}
    generalist = host.policy(hard_block=False, **overrides)
    check_constraints(generalist, {"file": f"{secret}/x"}, base=None)
    err = refusal(generalist, {"file": f"{host.repo}/x"})
    assert err.details["rule"] == "outside_allowed_roots"
    assert refusal(host.policy(**overrides), {"file": f"{secret}/x"}).details["rule"] == "protected_root"


def test_a_folder_that_is_both_protected_and_allowed_counts_as_protected(host: Host) -> None:
    # build_policy never produces this; a hand-made policy must still fail closed.
    policy = GuardPolicy("vp.coder.primary", (host.handoff,), (host.handoff,), hard_block=True)
    assert refusal(policy, {"file": f"{host.handoff}/x"}).details["rule"] == "protected_root"


# --- look-alikes and aliases ---------------------------------------------------------------


def test_a_case_look_alike_is_judged_as_the_directory_it_really_is(host: Host) -> None:
    secret = host.handoff / "Secret"
    secret.mkdir()
    lower = host.handoff / "secret"
    folding = lower.exists()  # a case-insensitive filesystem already shows "Secret" under this name
    if not folding:
        lower.mkdir()
    policy = host.policy(protected_roots=[host.repo, secret])
    assert refusal(policy, {"file": f"{secret}/x"}).details["rule"] == "protected_root"
    if folding:
        assert refusal(policy, {"file": f"{lower}/x"}).details["rule"] == "protected_root"
    else:
        check_constraints(policy, {"file": f"{lower}/x"}, base=None)


def test_a_unicode_look_alike_counts_as_the_protected_root(host: Host) -> None:
    nfc = host.handoff / unicodedata.normalize("NFC", "café")
    nfc.mkdir()
    nfd = f"{host.handoff}/{unicodedata.normalize('NFD', 'café')}/x"
    assert nfd != f"{nfc}/x"
    err = refusal(host.policy(protected_roots=[host.repo, nfc]), {"file": nfd})
    assert (err.details["rule"], err.details["root"]) == ("protected_root", str(nfc))


def test_a_protected_root_moved_behind_a_symlink_is_still_recognised_by_inode(host: Host) -> None:
    vault = host.handoff / "vault" / "keys"
    vault.mkdir(parents=True)
    policy = host.policy(extra_protected=[vault])
    # After start-up the folder moves and a symlink takes its old name: the policy's string for
    # the root is now an alias that no realpath of a mission path will ever spell.
    (host.handoff / "vault").rename(host.handoff / "moved")
    (host.handoff / "vault").symlink_to(host.handoff / "moved")
    err = refusal(policy, {"file": f"{host.handoff}/moved/keys/id.pem"})
    assert (err.details["rule"], err.details["root"]) == ("protected_root", str(vault))
    check_constraints(policy, {"file": f"{host.handoff}/moved/other.txt"}, base=None)


BIND_SCRIPT = """
import sys
from pathlib import Path
from ua_vp.errors import GuardViolation
from ua_vp.guard import GuardPolicy, check_constraints
protected, allowed, *paths = sys.argv[1:]
policy = GuardPolicy("vp.coder.primary", (Path(protected),), (Path(allowed),), True)
for path in paths:
    try:
        check_constraints(policy, {"file": path}, base=None)
        print("accepted")
    except GuardViolation as err:
        print(err.details["rule"])
"""


def test_a_bind_mount_of_a_protected_root_is_refused(host: Host) -> None:
    unshare = shutil.which("unshare")
    probe = [unshare or "unshare", "--mount", "--propagation", "private", "true"]
    if unshare is None or subprocess.run(probe, capture_output=True).returncode != 0:
        pytest.skip("needs unshare --mount (root or user namespaces) to make a private bind mount")
    alias = host.handoff / "mnt"
    alias.mkdir()
    shell = 'mount --bind "$1" "$2" && shift 2 && exec "$@"'
    paths = [f"{alias}/pyproject.toml", f"{host.handoff}/plain.txt"]
    command = [*probe[:-1], "sh", "-c", shell, "sh", str(host.repo), str(alias), sys.executable, "-c", BIND_SCRIPT]
    run = subprocess.run(
        [*command, str(host.repo), str(host.handoff), *paths],
        capture_output=True,
        text=True,
        env=os.environ | {"PYTHONPATH": str(PACKAGE_DIR.parent)},
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["protected_root", "accepted"]


# --- the host's own roots ------------------------------------------------------------------


def test_host_protected_roots_include_package_state_dir_and_configured_roots(host: Host) -> None:
    roots = host_protected_roots(host.settings())
    assert {PACKAGE_DIR, host.state, host.repo} <= set(roots)


@pytest.mark.parametrize(
    ("layout", "protected"),
    [("pyproject naming ua-vp", True), (".git next to ua_vp/", True), ("pyproject naming ua-vp-coder", False)],
)
def test_a_checkout_above_the_working_directory_is_protected(
    host: Host, monkeypatch: pytest.MonkeyPatch, layout: str, protected: bool
) -> None:
    checkout = host.tmp / "checkout"
    (checkout / "docs" / "deep").mkdir(parents=True)
    if layout == ".git next to ua_vp/":
        (checkout / ".git").mkdir()
        (checkout / "ua_vp").mkdir()
    else:
        name = "ua_vp" if layout == "pyproject naming ua-vp" else "ua-vp-coder"
        (checkout / "pyproject.toml").write_text(f'[project]\nname = "{name}"\n')
    monkeypatch.chdir(checkout / "docs" / "deep")
    assert (checkout in host_protected_roots(host.settings())) is protected


def test_a_hard_link_in_the_handoff_root_to_a_protected_file_is_refused(tmp_path: Path) -> None:
    # Suspected from reading (issue 11): only the ancestors' identities were compared.
    from ua_vp import guard
    from ua_vp.config import Settings
    from ua_vp.errors import GuardViolation
    from ua_vp.profiles import Profile

    state, handoff = tmp_path / "state", tmp_path / "handoff"
    handoff.mkdir()
    state.mkdir()
    (state / "ua_vp.db").write_text("the database")
    os.link(state / "ua_vp.db", handoff / "innocent.txt")
    settings = Settings(_env_file=None, state_dir=state, handoff_root=handoff)  # type: ignore[call-arg]
    profile = Profile(vp_id="vp.t", name="T", description="t", workspace_root=tmp_path / "ws", hard_block=True)
    policy = guard.build_policy(profile, settings, extra_protected=[], extra_allowed=[])
    with pytest.raises(GuardViolation, match="rule hard_link"):
        guard.check_constraints(policy, {"path": str(handoff / "innocent.txt")}, base=None)
    (handoff / "plain.txt").write_text("mine")
    guard.check_constraints(policy, {"path": str(handoff / "plain.txt")}, base=None)
