"""L4: what callers and agents wrote never drives the operator's terminal: control
characters print as visible escapes in every human-facing `ua-vp` output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ua_vp.missions import MissionSpec
from ua_vp.redact import printable
from ua_vp.store import open_store

HOSTILE = "Build it \x1b]0;pwned\x07 now\r\x1b[2Jdone \u202eevil"


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UA_VP_")}
    env["UA_VP_STATE_DIR"] = str(tmp_path / "state")
    return subprocess.run(
        [sys.executable, "-m", "ua_vp.cli", *args], env=env, cwd=tmp_path, capture_output=True, text=True, check=True
    )


def test_control_characters_print_escaped_even_when_piped(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'state' / 'ua_vp.db'}", auto_upgrade=True)
    spec = MissionSpec.create(vp_id="vp.general.primary", objective=HOSTILE, constraints={"note": HOSTILE})
    mission_id = store.enqueue(spec).mission.mission_id
    store.engine.dispose()

    listing = _cli(tmp_path, "missions").stdout
    shown = _cli(tmp_path, "mission", mission_id).stdout
    for out in (listing, shown):
        assert not any(ch in out for ch in "\x1b\x07\r\u202e"), repr(out)
    assert "Build it \\x1b]0;pwned\\x07 now\\x0d\\x1b[2Jdone \\u202eevil" in shown
    assert "\\x1b]0;pwned" in listing

    # --json is for programs: the objective round-trips exactly (JSON escapes it itself).
    as_json = _cli(tmp_path, "--json", "missions").stdout
    assert "\x1b" not in as_json
    assert json.loads(as_json)["missions"][0]["objective"] == HOSTILE


def test_printable_keeps_lines_unless_asked_for_one() -> None:
    assert printable("a\nb\tc\x1bd") == "a\nb\tc\\x1bd"
    assert printable("a\nb", one_line=True) == "a\\x0ab"
