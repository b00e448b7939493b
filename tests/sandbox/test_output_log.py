"""The full output of a mission's processes, kept by the worker in a bounded log outside every
workspace (issue 11 item 6): written through no link, cut with a note at its cap, hidden from missions."""

from __future__ import annotations

import os
import stat

import pytest

from ua_vp import attempts
from ua_vp.missions import Status
from ua_vp.store import MissionStore

from .conftest import GENERAL, Scene, Workers, dispatch, make_mission, progress, wait_for


def test_a_worker_keeps_the_full_output_cut_at_its_cap(workers: Workers, wstore: MissionStore, scene: Scene) -> None:
    m = dispatch(wstore, GENERAL, [["print", 1500]])
    workers.start(GENERAL, "--once", UA_VP_MISSION_OUTPUT_LOG_MB="1")
    wait_for(lambda: wstore.get(m.mission_id).status.terminal, 60, "the mission to end")
    assert wstore.get(m.mission_id).status is Status.COMPLETED, workers.logs()

    (event,) = progress(wstore, m.mission_id, "output_log")
    path = scene.state / "output" / f"{m.mission_id}.1.log"
    assert event == {"kind": "output_log", "path": str(path), "max_bytes": 1024 * 1024}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    kept, _, note = path.read_bytes().partition(b"\n[ua-vp: output log cut at 1048576 bytes; ")
    assert len(kept) == 1024 * 1024 and note.endswith(b" more not kept]\n")
    assert int(note.split()[0]) > 400_000  # 1500 lines of 1 KiB and the rest
    assert b"out| line 000000 y" in kept and b"err| stderr line 0\n" in kept


def test_the_log_is_made_new_and_never_written_through_a_link(scene: Scene) -> None:
    root = scene.state / "output"
    root.mkdir()
    victim = scene.outside / "readable.txt"
    before = victim.read_text()
    mission = make_mission()
    planted = root / f"{mission.mission_id}.{mission.attempt}.log"
    planted.symlink_to(victim)

    log = attempts.open_output_log(root, mission, 100)
    log.write("stdout", "x" * 150)
    assert log.close() == {"path": str(planted), "bytes": 100, "cut_bytes": 56}
    assert victim.read_text() == before and not planted.is_symlink()
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    os.unlink(planted)
    planted.symlink_to(victim)
    with pytest.raises(OSError):
        attempts.OutputLog(planted, 100)  # O_EXCL | O_NOFOLLOW: not even through a link


def test_the_log_masks_what_events_mask(scene: Scene) -> None:
    log = attempts.open_output_log(scene.state / "output", make_mission(), 1000)
    log.write("stderr", "401: invalid key Bearer sk-live-Qw3rTy8uIo9pAs0dFg1hJk")
    log.close()
    assert log.path.read_text() == "err| 401: invalid key Bearer ***\n"


def test_no_mission_reads_the_output_logs_even_with_read_only_protection(scene: Scene, backend: str) -> None:
    logs = scene.settings().output_root
    logs.mkdir(parents=True)
    (logs / "m-other.1.log").write_text("out| another mission's output\n")
    report, proc = scene.run(
        scene.sandbox(sandbox=backend, sandbox_protected="read-only"),
        [["read", str(logs / "m-other.1.log")], ["read", str(scene.state / "secret.txt")]],
    )
    assert proc.exit_code == 0, proc.stderr_tail
    assert not report[0]["ok"], report
    assert report[1]["ok"], report  # read-only protection lets the rest of the state dir be read
