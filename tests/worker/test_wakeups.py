"""A NOTIFY wakes one idle worker, not all of them."""

from __future__ import annotations

from collections import Counter

from ua_vp.worker import is_chosen


def test_each_mission_wakes_exactly_one_of_the_idle_workers_and_they_share_the_load() -> None:
    peers = [f"worker-{i}" for i in range(16)]
    woken = Counter()
    for n in range(1600):
        chosen = [me for me in peers if is_chosen(peers, me, f"vpm_{n:032x}")]
        assert len(chosen) == 1
        woken[chosen[0]] += 1
    assert len(woken) == 16 and min(woken.values()) > 50


def test_a_worker_missing_from_the_list_answers_every_notify() -> None:
    # Just started, or its last touch said it was full: it must not sleep through work.
    assert all(is_chosen(["a", "b"], "c", key) for key in ("x", "y", "z"))
    assert all(is_chosen([], "a", key) for key in ("x", "y", "z"))
