"""ua-vp benchmarks: every figure is a ratio to baselines measured in the same run.

    bench/run.sh [--quick] [--full] [--scenario NAME ...] [--seconds S]

or, with a server of your own and ``bench/.venv`` built:

    bench/.venv/bin/python bench/bench.py --database-url postgresql://... --quick

These machines are noisy: nothing here passes or fails on absolute time. The goals
from the issue are reported as ratios, met or missed.
"""

from __future__ import annotations

import argparse
import functools
import os
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import report
from baselines import scenario_pgbench, scenario_raw
from common import Figure, Options, scalar
from peer_pgqueuer import scenario_pgqueuer
from peer_procrastinate import scenario_procrastinate
from prototypes import scenario_prototypes
from prune_load import ROWS as PRUNE_ROWS
from prune_load import scenario_prune
from sustained import goals as sustained_goals
from sustained import scenario_sustained
from ua_store import scenario_depth, scenario_store
from workers import scenario_e2e, scenario_idle_rss, scenario_latency, scenario_wakeups

HERE = Path(__file__).resolve().parent
BASELINES = ("pgbench", "raw")
SCENARIOS: dict[str, Callable[[Options], list[Figure]]] = {
    "pgbench": scenario_pgbench,
    "raw": scenario_raw,
    "store": scenario_store,
    "prototypes": scenario_prototypes,
    "procrastinate": scenario_procrastinate,
    "pgqueuer": scenario_pgqueuer,
    "e2e": scenario_e2e,
    "latency": scenario_latency,
    "depth": scenario_depth,
    "sustained": scenario_sustained,
    "wakeups": scenario_wakeups,
    "rss": scenario_idle_rss,
    "prune": scenario_prune,
}
ONCE = ("sustained", "prune")
"""Long scenarios that run in the first round only."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), help="repeatable; default: all")
    p.add_argument("--quick", action="store_true", help="one short round of everything (about 4 minutes)")
    p.add_argument("--full", action="store_true", help="longer runs, and the 1M-mission depth")
    p.add_argument("--seconds", type=float, default=None, help="per throughput variant (default 3 quick, 5 else)")
    p.add_argument(
        "--rounds", type=int, default=None, help="repeat everything, report medians (default 1 quick, 3 else)"
    )
    p.add_argument(
        "--sustained-seconds", type=float, default=None, help="length of the sustained run (default 60 quick, 600 else)"
    )
    p.add_argument(
        "--prune-rows", type=int, default=PRUNE_ROWS, help=f"finished missions to prune (default {PRUNE_ROWS:,})"
    )
    p.add_argument("--no-baselines", action="store_true", help="do not add pgbench and raw to a --scenario run")
    p.add_argument(
        "--database-url",
        default=os.environ.get("UA_VP_BENCH_DATABASE_URL"),
        help="maintenance database of the server to use (default $UA_VP_BENCH_DATABASE_URL)",
    )
    p.add_argument("--out", type=Path, default=HERE / "results", help="where results.json and results.md go")
    args = p.parse_args(argv)
    if not args.database_url:
        p.error("no server: pass --database-url or set UA_VP_BENCH_DATABASE_URL (bench/run.sh starts one)")
    return args


def chosen(args: argparse.Namespace) -> list[str]:
    names = args.scenario or list(SCENARIOS)
    if args.scenario and not args.no_baselines:
        names = [*BASELINES, *names]
    return [n for n in SCENARIOS if n in names]


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        "?",
    )
    return f"{os.cpu_count()} CPUs ({cpu}), Python {sys.version.split()[0]}"


def server(url: str) -> str:
    version = scalar(url, "SHOW server_version")
    settings = {k: scalar(url, f"SHOW {k}") for k in ("fsync", "synchronous_commit", "shared_buffers")}
    return f"PostgreSQL {version} ({', '.join(f'{k}={v}' for k, v in settings.items())})"


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    seconds = args.seconds or (3.0 if args.quick else 5.0)
    rounds = args.rounds or (1 if args.quick else 3)
    started, t0, load0 = datetime.now(UTC), time.monotonic(), os.getloadavg()
    results: list[list[Figure]] = []
    skipped: list[str] = []
    if args.sustained_seconds:
        SCENARIOS["sustained"] = functools.partial(scenario_sustained, seconds=args.sustained_seconds)
    SCENARIOS["prune"] = functools.partial(scenario_prune, rows=args.prune_rows)
    with tempfile.TemporaryDirectory(prefix="ua-vp-bench-") as tmp:
        opts = Options(args.database_url, args.quick, args.full, seconds, Path(tmp))
        for r in range(rounds):
            names = [n for n in chosen(args) if r == 0 or n not in ONCE]
            results.append(run_round(opts, names, skipped, f"round {r + 1}/{rounds}"))
    figures = report.combine(results)
    report.add_ratios(figures)
    goal_rows = report.goals(figures) + sustained_goals(figures)
    meta = {
        "command": os.environ.get("UA_VP_BENCH_COMMAND") or shlex.join(["bench/bench.py", *argv]),
        "started_at": started.isoformat(timespec="seconds"),
        "seconds": time.monotonic() - t0,
        "machine": machine(),
        "load_average": f"{load0[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end (1-minute)",
        "rounds": rounds,
        "seconds_per_variant": seconds,
        "server": server(args.database_url),
        "git": _git_head(),
        "skipped": skipped,
    }
    report.write(args.out, figures, goal_rows, meta)
    print(report.text_table(figures))
    for g in goal_rows:
        print(f"{report.status(g['met']):6} {g['goal']}: {g['compared']} = {g['measured']} ({g['target']})")
    for s in skipped:
        print(f"NOT RUN {s}")
    print(f"\nwrote {args.out / 'results.json'} and {args.out / 'results.md'}")
    return 1 if skipped else 0


def run_round(opts: Options, names: list[str], skipped: list[str], label: str) -> list[Figure]:
    figures: list[Figure] = []
    for name in names:
        print(f"== {name} ({label})", file=sys.stderr, flush=True)
        s0 = time.monotonic()
        try:
            got = SCENARIOS[name](opts)
        except Exception as exc:  # one scenario failing must not lose the others' figures
            traceback.print_exc()
            skipped.append(f"{name} ({label}): {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            continue
        figures += got
        for f in got:
            print(f"   {f.variant}: {f.value:,.2f} {f.unit}", file=sys.stderr, flush=True)
        print(f"   ({time.monotonic() - s0:.0f} s)", file=sys.stderr, flush=True)
    return figures


def _git_head() -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(HERE), "describe", "--always", "--dirty"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
