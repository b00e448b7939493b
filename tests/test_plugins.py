"""Profiles are plugins found by entry point; the registry refuses what it cannot serve."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from structlog.testing import capture_logs

from ua_vp import Profile, hookimpl
from ua_vp.config import Settings, load_settings
from ua_vp.errors import PluginError, ProfileDisabled, UnknownProfile
from ua_vp.plugins import load_registry


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.chdir(tmp_path)
    return load_settings(state_dir=tmp_path / "state", enabled_ids=["vp.general.primary"])


def plugin_module(name: str, **hooks: Any) -> ModuleType:
    """A plugin as pluggy sees one from an entry point: a module holding hook functions."""
    module = ModuleType(name)
    module.__dict__.update(hooks)
    return module


def run_cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ua_vp.cli", *args],
        env={**os.environ, "UA_VP_STATE_DIR": str(tmp_path / "state"), **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_installed_profiles_are_found_by_entry_point(settings: Settings) -> None:
    registry = load_registry(settings)
    assert {"vp.coder.primary", "vp.general.primary", "vp.example.echo"} <= set(registry.installed)
    assert list(registry.enabled) == ["vp.general.primary"]
    assert registry.providers["vp.coder.primary"] == "vp_coder"
    assert registry.installed["vp.coder.primary"].hard_block is True
    assert {"dry-run", "command", "claude-cli", "codex-cli", "openai"} <= set(registry.runtimes)


def test_a_disabled_or_unknown_vp_id_is_refused_naming_what_exists(settings: Settings) -> None:
    registry = load_registry(settings)
    with pytest.raises(ProfileDisabled) as disabled:
        registry.profile("vp.coder.primary")
    assert "UA_VP_ENABLED_IDS" in disabled.value.message
    assert "enabled: vp.general.primary" in disabled.value.message
    with pytest.raises(UnknownProfile) as unknown:
        registry.profile("vp.nobody")
    assert "vp.coder.primary" in unknown.value.message and "vp.nobody" in unknown.value.message


def test_enabling_an_id_no_plugin_provides_warns_and_its_dispatch_is_422_naming_the_installed(
    tmp_path: Path,
) -> None:
    settings = load_settings(state_dir=tmp_path, enabled_ids=["vp.general.primary", "vp.ghost"])
    with capture_logs() as logs:
        registry = load_registry(settings)
    (warning,) = [e for e in logs if e["event"] == "enabled_id_not_installed"]
    assert warning["missing"] == ["vp.ghost"] and "vp.general.primary" in warning["installed"]
    assert list(registry.enabled) == ["vp.general.primary"], "the other profiles keep working"
    with pytest.raises(UnknownProfile) as refused:
        registry.profile("vp.ghost")
    assert refused.value.http_status == 422
    assert "installed: vp.coder.primary, vp.example.echo, vp.general.primary" in refused.value.message


def test_unset_enabled_ids_means_every_installed_profile(tmp_path: Path) -> None:
    registry = load_registry(load_settings(state_dir=tmp_path))
    assert set(registry.enabled) == set(registry.installed) >= {"vp.coder.primary", "vp.general.primary"}


def test_two_plugins_claiming_one_vp_id_is_an_error_naming_both(settings: Settings) -> None:
    @hookimpl
    def ua_vp_profiles(settings: Settings) -> list[Profile]:
        return [Profile(vp_id="vp.general.primary", name="IMPOSTOR", description="", workspace_root=Path("/tmp"))]

    impostor = plugin_module("impostor", ua_vp_profiles=ua_vp_profiles)
    with pytest.raises(PluginError) as info:
        load_registry(settings, extra_plugins=[impostor])
    assert "vp_general" in info.value.message and "impostor" in info.value.message


def test_a_misspelt_hook_fails_loudly(settings: Settings) -> None:
    @hookimpl
    def ua_vp_profile(settings: Settings) -> list[Profile]:  # missing "s"
        return []

    from pluggy import PluginValidationError

    with pytest.raises(PluginValidationError):
        load_registry(settings, extra_plugins=[plugin_module("typo", ua_vp_profile=ua_vp_profile)])


def test_ua_vp_profiles_lists_installed_and_enabled(tmp_path: Path) -> None:
    out = run_cli(tmp_path, "--json", "profiles", UA_VP_ENABLED_IDS="vp.coder.primary,vp.example.echo")
    assert out.returncode == 0, out.stderr
    rows = {p["vp_id"]: p for p in json.loads(out.stdout)["profiles"]}
    assert rows["vp.coder.primary"]["enabled"] and rows["vp.coder.primary"]["name"] == "CODIE"
    assert not rows["vp.general.primary"]["enabled"]
    assert rows["vp.example.echo"]["plugin"] == "example"


def test_the_profile_template_is_found_and_run_by_a_real_worker(tmp_path: Path) -> None:
    env = {"UA_VP_ENABLED_IDS": "vp.example.echo"}
    dispatched = run_cli(tmp_path, "--json", "dispatch", "vp.example.echo", "hello from a third party", **env)
    assert dispatched.returncode == 0, dispatched.stderr
    mission_id = json.loads(dispatched.stdout)["mission"]["mission_id"]
    worker = run_cli(tmp_path, "worker", "--profile", "vp.example.echo", "--once", **env)
    assert worker.returncode == 0, worker.stderr
    shown = json.loads(run_cli(tmp_path, "--json", "mission", mission_id, **env).stdout)
    assert shown["mission"]["status"] == "completed"
    assert shown["mission"]["result"]["summary"] == "echoed: hello from a third party"
    assert (tmp_path / "state" / "workspaces" / "example" / mission_id / "NOTE.md").exists()


def test_cli_errors_are_one_line_with_a_code_and_write_nothing(tmp_path: Path) -> None:
    bad = run_cli(tmp_path, "dispatch", "vp.coder.primary", "fix it", "--constraints", "{not json")
    assert bad.returncode == 2 and bad.stderr.startswith("error [invalid_request]: --constraints is not valid JSON")
    guarded = run_cli(
        tmp_path, "dispatch", "vp.coder.primary", "fix it", "--constraints", json.dumps({"repo_path": str(tmp_path)})
    )
    assert guarded.returncode == 2 and "error [guard_violation]" in guarded.stderr, guarded.stderr
    assert "Traceback" not in bad.stderr + guarded.stderr
    listing = run_cli(tmp_path, "--json", "missions")
    assert json.loads(listing.stdout) == {"missions": []}


def test_start_vp_worker_script_loads_dotenv_and_runs_the_worker(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parent.parent / "scripts" / "start_vp_worker.sh"
    (tmp_path / ".env").write_text(f"UA_VP_ENABLED_IDS=vp.example.echo\nUA_VP_STATE_DIR={tmp_path / 'state'}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("UA_VP_")}
    queued = subprocess.run(
        [sys.executable, "-m", "ua_vp.cli", "--json", "dispatch", "vp.example.echo", "via the script"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert queued.returncode == 0, queued.stderr
    ran = subprocess.run(
        [str(script), "vp.example.echo", "--once"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    assert '"event": "worker_stopped"' in ran.stderr
    mission_id = json.loads(queued.stdout)["mission"]["mission_id"]
    shown = subprocess.run(
        [sys.executable, "-m", "ua_vp.cli", "--json", "mission", mission_id],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(shown.stdout)["mission"]["status"] == "completed"


def test_the_script_without_a_vp_id_explains_itself() -> None:
    script = Path(__file__).resolve().parent.parent / "scripts" / "start_vp_worker.sh"
    out = subprocess.run([str(script)], capture_output=True, text=True, timeout=10)
    assert out.returncode == 2 and "usage:" in out.stderr


def test_cli_refuses_nan_and_reports_an_unreachable_database_in_one_line(tmp_path: Path) -> None:
    nan = run_cli(tmp_path, "dispatch", "vp.general.primary", "x", "--budget", '{"max_seconds": NaN}')
    assert nan.returncode == 2 and nan.stderr.startswith("error [invalid_request]: --budget contains NaN")
    down = run_cli(tmp_path, "missions", UA_VP_DATABASE_URL="postgresql://nobody@127.0.0.1:1/nothing")
    assert down.returncode == 2 and down.stderr.startswith("error [database_unavailable]:"), down.stderr
    assert "Traceback" not in down.stderr


def test_a_plugins_settings_are_validated_at_start_and_shown_with_secrets_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydantic import SecretStr
    from pydantic_settings import SettingsConfigDict

    from ua_vp import ConfigError, PluginSettings

    class VaultSettings(PluginSettings):
        model_config = SettingsConfigDict(env_prefix="UA_VP_VAULT_")
        api_key: SecretStr | None = None
        retries: int = 3

    @hookimpl
    def ua_vp_plugin_settings() -> type[VaultSettings]:
        return VaultSettings

    @hookimpl
    def ua_vp_profiles(settings: Settings) -> list[Profile]:
        own = settings.plugin(VaultSettings)
        return [
            Profile(
                vp_id="vp.vault.primary", name=f"VAULT{own.retries}", description="", workspace_root=tmp_path / "vault"
            )
        ]

    vault = plugin_module("vault", ua_vp_plugin_settings=ua_vp_plugin_settings, ua_vp_profiles=ua_vp_profiles)
    monkeypatch.setenv("UA_VP_VAULT_API_KEY", "s3cret-value-123")
    monkeypatch.setenv("UA_VP_VAULT_RETRIES", "5")
    registry = load_registry(load_settings(state_dir=tmp_path / "state"), extra_plugins=[vault])
    assert registry.installed["vp.vault.primary"].name == "VAULT5"
    assert registry.effective_settings("vp.vault.primary") == {
        "UA_VP_VAULT_API_KEY": "**********",
        "UA_VP_VAULT_RETRIES": 5,
    }
    monkeypatch.setenv("UA_VP_VAULT_RETRIES", "many")
    with pytest.raises(ConfigError, match=r"UA_VP_VAULT_RETRIES: Input should be a valid integer"):
        load_registry(load_settings(state_dir=tmp_path / "state"), extra_plugins=[vault])


def test_profiles_and_runtimes_are_collected_through_pm_hook_so_wrappers_see_them(settings: Settings) -> None:
    seen: list[str] = []

    @hookimpl(wrapper=True)
    def ua_vp_profiles(settings: Settings) -> Any:
        result = yield
        seen.append("profiles")
        return result

    @hookimpl(wrapper=True)
    def ua_vp_client_runtimes() -> Any:
        result = yield
        seen.append("runtimes")
        return result

    spy = plugin_module("spy", ua_vp_profiles=ua_vp_profiles, ua_vp_client_runtimes=ua_vp_client_runtimes)
    registry = load_registry(settings, extra_plugins=[spy])
    assert "profiles" in seen and "runtimes" in seen
    assert "vp.general.primary" in registry.installed and "dry-run" in registry.runtimes
