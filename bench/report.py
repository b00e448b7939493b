"""Ratios against the same run's baselines, the goals from the issue, and the three outputs:
a table on stdout, ``results.json`` and ``results.md``."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from common import Figure

COLUMNS = ("scenario", "variant", "figure", "unit", "ratio_to_pgbench", "ratio_to_raw", "notes")
LEGEND = (
    "ratio_to_pgbench: a rate divided by pgbench -c 8 tps (TPC-B-like, 7 round trips per transaction, "
    "so a 2-round-trip job loop can exceed 1); a latency divided by pgbench -c 1 mean latency (1000/tps). "
    "ratio_to_raw: divided by the raw psycopg loop with the same claimers and claim size "
    "(for enqueue: single-row INSERTs)."
)


SCENARIOS = (
    "pgbench: the server's ceiling for simple transactions (`pgbench -i -s 10`, then -c 8 -j 2 and -c 1).",
    "raw: the floor any queue pays: psycopg, a minimal table, one SKIP LOCKED claim statement and one finish"
    " statement per job (claim10: one claim per 10 jobs), autocommit; claimers are processes.",
    "store: ua-vp's MissionStore: enqueue, and claim + finalize of no-op missions (each finalized on its own),"
    " 1 connection per claimer process; the round trips come from libpq's protocol trace.",
    "proto-*: prototypes of a store change (SQL in bench/prototypes.py only), to size it before making it.",
    "procrastinate, pgqueuer: the same no-op jobs through the peers' own workers, same server.",
    "e2e: real `ua-vp worker --profile vp.bench.noop` processes (UA_VP_MAX_CONCURRENT_MISSIONS=8), woken by one"
    " NOTIFY after a bulk insert; first started_at to last finished_at.",
    "latency: one worker, missions enqueued one at a time; started_at - created_at (database clock) with LISTEN.",
    "depth: one claimer's claim(limit=1) + finalize latency with that many missions waiting (bulk-loaded).",
    "prune: `ua-vp db prune --older-than 7d` of bulk-loaded finished missions (4 events each) while 8 claimer"
    " processes claim(limit=1) + finalize; every claim timed, before the prune (baseline) and during it.",
)


def combine(rounds: list[list[Figure]]) -> list[Figure]:
    """One figure per (scenario, variant): the median over the rounds, in first-seen order.
    Rounds interleave every scenario, so a burst of noise hits baselines and subjects alike."""
    seen: dict[tuple[str, str], list[Figure]] = {}
    for figures in rounds:
        for f in figures:
            seen.setdefault((f.scenario, f.variant), []).append(f)
    out = []
    for group in seen.values():
        ordered = sorted(group, key=lambda f: f.value)
        median = ordered[(len(ordered) - 1) // 2]
        if len(group) > 1:
            median.notes += f"; median of {len(group)} rounds ({ordered[0].value:,.4g} to {ordered[-1].value:,.4g})"
        out.append(median)
    return out


def _find(figures: list[Figure], scenario: str, variant: str) -> Figure | None:
    return next((f for f in figures if f.scenario == scenario and f.variant == variant), None)


def add_ratios(figures: list[Figure]) -> None:
    c8 = _find(figures, "pgbench", "tpcb -c 8")
    c1 = _find(figures, "pgbench", "tpcb -c 1")
    for f in figures:
        if f.kind == "rate" and c8 and c8.value:
            f.ratio_to_pgbench = f.value / c8.value
        elif f.kind == "latency" and c1 and c1.value:
            f.ratio_to_pgbench = f.value / (1000.0 / c1.value)
        raw = _find(figures, "raw", f.raw_variant) if f.raw_variant else None
        if raw and raw.value:
            f.ratio_to_raw = f.value / raw.value


# -- goals ----------------------------------------------------------------------------------
def _goal(goal: str, compared: str, value: float, target: str, met: bool) -> dict[str, Any]:
    return {"goal": goal, "compared": compared, "measured": round(value, 3), "target": target, "met": met}


def _ratio_goals(figures: list[Figure]) -> list[dict[str, Any]]:
    out = []
    pairs = [
        ("store claim+finalize >= pgqueuer", "claim+finalize x8", "pgqueuer", "batch_size=1 x8", 1.0),
        ("store claim+finalize >= pgqueuer", "claim10+finalize x8", "pgqueuer", "batch_size=10 x8", 1.0),
        ("store claim+finalize >= 5x procrastinate", "claim+finalize x8", "procrastinate", "x8 concurrency=1", 5.0),
        ("store claim+finalize >= 5x procrastinate", "claim+finalize x1", "procrastinate", "x1 concurrency=1", 5.0),
        ("store claim+finalize >= 0.8 of raw", "claim+finalize x1", "raw", "claim+finish x1", 0.8),
        ("store claim+finalize >= 0.8 of raw", "claim+finalize x8", "raw", "claim+finish x8", 0.8),
        ("store claim+finalize >= 0.8 of raw", "claim10+finalize x8", "raw", "claim10+finish x8", 0.8),
    ]
    for goal, ours, peer, theirs, target in pairs:
        a, b = _find(figures, "store", ours), _find(figures, peer, theirs)
        if a and b and b.value:
            ratio = a.value / b.value
            out.append(_goal(goal, f"store {ours} / {peer} {theirs}", ratio, f">= {target:g}", ratio >= target))
    return out


def _issue13_goals(figures: list[Figure]) -> list[dict[str, Any]]:
    """The goals of issue 13, each beside its figure; a missing figure is reported as such."""
    out = []

    def ratio(goal: str, a: tuple[str, str], b: tuple[str, str], target: float, *, at_most: bool = False) -> None:
        fa, fb = _find(figures, *a), _find(figures, *b)
        compared = f"{a[0]} {a[1]} / {b[0]} {b[1]}"
        if not (fa and fb and fb.value):
            out.append({"goal": goal, "compared": compared, "measured": None, "target": "", "met": None})
            return
        r = fa.value / fb.value
        met = r <= target if at_most else r >= target
        out.append(_goal(goal, compared, r, f"{'<=' if at_most else '>='} {target:g}", met))

    ratio("worker x8 >= pgqueuer batch 10", ("e2e", "1 worker(s) x8"), ("pgqueuer", "batch_size=10 x1"), 1.0)
    ratio("worker x1 >= procrastinate", ("e2e", "1 worker(s) x1"), ("procrastinate", "x1 concurrency=1"), 1.0)
    ratio("worker x1 >= 0.5 raw 1-worker loop", ("e2e", "1 worker(s) x1"), ("raw", "claim+finish x1"), 0.5)
    ratio("enqueue >= 0.8 raw INSERT loop", ("store", "enqueue x1"), ("raw", "insert x1"), 0.8)
    ratio(
        "enqueue->started p50 <= 1.5x raw LISTEN/NOTIFY",
        ("latency", "enqueue->started LISTEN p50"),
        ("latency", "raw LISTEN/NOTIFY p50"),
        1.5,
        at_most=True,
    )
    ratio(
        "16 idle workers: tx per mission <= 1.5x 1 worker",
        ("wakeups", "16 idle worker(s) transactions per mission"),
        ("wakeups", "1 idle worker(s) transactions per mission"),
        1.5,
        at_most=True,
    )
    worst, before = _find(figures, "prune", "claim during prune max"), _find(figures, "prune", "claim before prune max")
    duration = _find(figures, "prune", "prune duration")
    if worst:
        compared = f"max claim while {duration.notes.split(' (')[0] if duration else 'the prune ran'}"
        if before:
            compared += f" (before the prune: {before.value:.1f} ms)"
        goal = "db prune under 8 claimers: no claim > 100 ms"
        out.append(_goal(goal, compared, worst.value, "<= 100", worst.value <= 100))
    rss = _find(figures, "rss", "idle worker x256")
    if rss:
        out.append(_goal("idle worker x256 <= 100 MB RSS", "VmRSS (MB)", rss.value, "<= 100", rss.value <= 100))
    return out


def goals(figures: list[Figure]) -> list[dict[str, Any]]:
    out = _issue13_goals(figures) + _ratio_goals(figures)
    p50 = _find(figures, "latency", "enqueue->started LISTEN p50")
    if p50:
        out.append(
            _goal("enqueue-to-started p50 < 10 ms (LISTEN)", "latency p50 (ms)", p50.value, "< 10", p50.value < 10)
        )
    base = _find(figures, "depth", "1k queued p50")
    for label in ("100k queued", "1k queued + 100k finished", "1M queued"):
        deep = _find(figures, "depth", f"{label} p50")
        if base and deep and base.value:
            ratio = deep.value / base.value
            out.append(_goal("claim latency at depth within 2x of 1k", f"p50 {label} / 1k", ratio, "<= 2", ratio <= 2))
    return out


# -- output -----------------------------------------------------------------------------------
def _cell(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def rows(figures: list[Figure]) -> list[list[str]]:
    return [
        [
            f.scenario,
            f.variant,
            _cell(f.value),
            f.unit,
            _cell(f.ratio_to_pgbench, 3),
            _cell(f.ratio_to_raw, 3),
            f.notes,
        ]
        for f in figures
    ]


def text_table(figures: list[Figure]) -> str:
    table = [list(COLUMNS[:-1]), *[r[:-1] for r in rows(figures)]]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in table)


def _md_table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in body]
    return "\n".join(lines)


def markdown(figures: list[Figure], goal_rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    parts = [
        "# ua-vp benchmark results",
        "",
        f"Command: `{meta['command']}`  ",
        f"Started: {meta['started_at']}, took {meta['seconds']:.0f} s  ",
        f"Machine: {meta['machine']}; load average {meta['load_average']}  ",
        f"Rounds: {meta['rounds']} (figures are medians), {meta['seconds_per_variant']:g} s per throughput variant  ",
        f"Server: {meta['server']}  ",
        f"Commit: {meta['git']}",
        "",
        _md_table(list(COLUMNS), rows(figures)),
        "",
        LEGEND,
        "",
        "## Scenarios",
        "",
        *[f"- {line}" for line in SCENARIOS],
        "",
    ]
    if goal_rows:
        body = [[g["goal"], g["compared"], _cell(g["measured"], 3), g["target"], status(g["met"])] for g in goal_rows]
        parts += ["## Goals", "", _md_table(["goal", "compared", "measured", "target", "status"], body), ""]
    if meta.get("skipped"):
        parts += ["## Not run", "", *[f"- {s}" for s in meta["skipped"]], ""]
    return "\n".join(parts)


def status(met: bool | None) -> str:
    return "not measured" if met is None else "met" if met else "MISSED"


def write(out_dir: Path, figures: list[Figure], goal_rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {**meta, "figures": [asdict(f) for f in figures], "goals": goal_rows}
    (out_dir / "results.json").write_text(json.dumps(data, indent=2) + "\n")
    (out_dir / "results.md").write_text(markdown(figures, goal_rows, meta))
