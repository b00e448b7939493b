"""The built-in runtimes arrive through the plugin hook, as a third party's would."""

from __future__ import annotations

from runtime_harness import Harness, make_mission

from ua_vp.plugins import make_plugin_manager
from ua_vp.profiles import Executor
from ua_vp.runtimes import builtin


def test_the_hook_offers_every_builtin_runtime() -> None:
    pm = make_plugin_manager(load_entrypoints=False).pm
    assert pm.get_plugin("ua_vp.runtimes.builtin") is builtin
    (offered,) = pm.hook.ua_vp_client_runtimes()
    assert sorted(offered) == ["claude-cli", "codex-cli", "command", "dry-run", "openai"]


def test_a_factory_builds_an_executor_that_runs(harness: Harness) -> None:
    factory = builtin.ua_vp_client_runtimes()["dry-run"]
    executor = factory(harness.profile(), harness.settings())
    assert isinstance(executor, Executor)
    assert harness.run(executor, make_mission()).model_ran is False
