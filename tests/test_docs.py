"""Cheap guards that the docs keep up with the code."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from ua_vp import hookspecs
from ua_vp.config import ENV_PREFIX, Settings, variable_name

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_in_env_sample_and_readme() -> None:
    sample = (ROOT / ".env.sample").read_text()
    readme = (ROOT / "README.md").read_text()
    for name in Settings.model_fields:
        variable = ENV_PREFIX + name.upper()
        assert re.search(rf"^{variable}=", sample, re.M), f"{variable} missing from .env.sample"
        assert variable in readme, f"{variable} missing from README.md"


def test_every_hook_is_documented_where_it_is_declared() -> None:
    hooks = [f for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("ua_vp_")]
    assert len(hooks) >= 7
    for hook in hooks:
        assert hook.__doc__ and len(hook.__doc__.strip()) > 40, f"{hook.__name__} needs a docstring"


def test_the_shipped_profiles_settings_are_in_env_sample_and_readme() -> None:
    from ua_vp_coder.plugin import CoderSettings
    from ua_vp_general.plugin import GeneralSettings

    sample = (ROOT / ".env.sample").read_text()
    readme = (ROOT / "README.md").read_text()
    for model in (CoderSettings, GeneralSettings):
        for name in model.model_fields:
            variable = variable_name(model, name)
            assert re.search(rf"^{variable}=", sample, re.M), f"{variable} missing from .env.sample"
            assert variable in readme, f"{variable} missing from README.md"


def test_the_profile_template_is_what_profile_new_generates() -> None:
    from ua_vp import scaffold

    template = ROOT / "contrib" / "profile-template"
    expected = scaffold.render(scaffold.names("example", "vp.example.echo", "ECHO"))
    found = {
        str(p.relative_to(template)): p.read_text()
        for p in template.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and ".egg-info" not in str(p)
    }
    assert found == expected, (
        "contrib/profile-template drifted from the generator: rerun "
        "`ua-vp profile new example --vp-id vp.example.echo --display-name ECHO --dir contrib/profile-template`"
    )
