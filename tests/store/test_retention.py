"""Retention: old finished missions go with their events; nothing alive is touched."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from ua_vp.errors import InvalidRequest
from ua_vp.missions import MissionSpec, Status
from ua_vp.store import MissionStore
from ua_vp.store.retention import parse_age, prune

VP = "vp.general.primary"


def finished(store: MissionStore, outcome: Status, objective: str) -> str:
    m = store.enqueue(MissionSpec.create(vp_id=VP, objective=objective)).mission
    (running,) = store.claim(VP, "w1")
    store.add_progress(m.mission_id, running.lease_token or "", [{"kind": "step"}])
    store.finalize(m.mission_id, running.lease_token or "", outcome, error={"code": "x", "message": "y"})
    return m.mission_id


def test_prune_deletes_old_finished_missions_with_their_events_in_batches(store: MissionStore) -> None:
    old = [finished(store, Status.COMPLETED, f"old {i}") for i in range(5)]
    old_failed = finished(store, Status.FAILED, "old failure")
    time.sleep(0.5)
    recent = finished(store, Status.COMPLETED, "recent")
    queued = store.enqueue(MissionSpec.create(vp_id=VP, objective="waiting")).mission.mission_id

    counted = prune(store, older_than=timedelta(seconds=0.4), dry_run=True)
    assert (counted.missions, counted.events) == (6, 6 * 4)
    assert len(store.list_missions(limit=500)) == 8, "a dry run deleted something"

    only_failed = prune(store, older_than=timedelta(seconds=0.4), statuses=[Status.FAILED])
    assert (only_failed.missions, only_failed.events) == (1, 4)
    done = prune(store, older_than=timedelta(seconds=0.4), batch=2)
    assert (done.missions, done.events) == (5, 5 * 4)

    left = {m.mission_id for m in store.list_missions(limit=500)}
    assert left == {recent, queued}
    assert all(store.events(mid) == [] for mid in [*old, old_failed])
    assert len(store.events(recent)) == 4
    assert prune(store, older_than=timedelta(0), statuses=[Status.CANCELLED]).missions == 0


def test_prune_refuses_statuses_that_are_not_final(store: MissionStore) -> None:
    with pytest.raises(InvalidRequest, match="only finished missions can be pruned; queued"):
        prune(store, older_than=timedelta(days=1), statuses=[Status.QUEUED, Status.COMPLETED])


@pytest.mark.parametrize(
    ("raw", "seconds"), [("30d", 30 * 86400), ("12h", 43200), ("90m", 5400), ("45s", 45), ("2", 172800)]
)
def test_ages_read_as_people_write_them(raw: str, seconds: int) -> None:
    assert parse_age(raw) == timedelta(seconds=seconds)


@pytest.mark.parametrize("raw", ["", "d", "-1d", "nand", "1e99d", "thirty days"])
def test_an_unreadable_age_is_refused_with_an_example(raw: str) -> None:
    with pytest.raises(InvalidRequest, match=r"e\.g\. 30d"):
        parse_age(raw)


def test_the_cli_prunes_and_says_what_it_did(sqlite_url: str, tmp_path: object) -> None:
    from ua_vp.store import open_store

    store = open_store(sqlite_url)
    finished(store, Status.CANCELLED, "old")
    store.engine.dispose()
    env = {"UA_VP_DATABASE_URL": sqlite_url, "PATH": "/usr/bin:/bin", "UA_VP_STATE_DIR": str(tmp_path)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ua_vp.cli", *args], env=env, capture_output=True, text=True, timeout=60
        )

    dry = cli("db", "prune", "--older-than", "0s", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would delete 1 missions and 4 events" in dry.stdout
    assert json.loads(cli("--json", "db", "prune", "--older-than", "0s").stdout) == {
        "missions": 1,
        "events": 4,
        "dry_run": False,
    }
    bad = cli("db", "prune", "--older-than", "soon")
    assert bad.returncode != 0 and "e.g. 30d" in bad.stderr + bad.stdout
