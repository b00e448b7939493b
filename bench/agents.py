"""Real agent CLIs: how long from a claimed mission to the CLI's first stream event, per
sandbox backend, and what a per-mission home costs to set up. Every figure is also given
as a ratio to a baseline measured in the same run.

    sudo .venv/bin/python bench/agents.py [--runs 5] [--homes 200]

Needs the pinned CLIs (``npm ci --prefix tests/agents``) and root (the stub providers
live in a network namespace, as in the tests).

1. *Claim to first stream event*: from just after the claim (the worker's next steps:
   fresh workspace, fresh home, seeding, spawning in the sandbox) to the first JSON line
   the CLI prints. Baseline: the same path running ``echo`` of one JSON line, unsandboxed.
2. *Home setup*: making the attempt's home, seeding it from a user's four agent files,
   scrubbing and removing it, p50 and p95. Baseline: making and removing an empty folder.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import structlog

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.agents.stub_net import stub_internet, why_unavailable  # noqa: E402
from ua_vp import agent_home, attempts, sandbox  # noqa: E402
from ua_vp.config import Settings  # noqa: E402
from ua_vp.missions import Mission, Status  # noqa: E402
from ua_vp.profiles import MissionContext, Profile  # noqa: E402
from ua_vp.runtimes import claude_cli, codex_cli  # noqa: E402
from ua_vp.runtimes.process import run_process  # noqa: E402

STREAM_KINDS = frozenset({"system", "event", "assistant_text", "tool_use", "output"})
"""Progress kinds that come from the CLI's own output (not ua-vp's process bookkeeping)."""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def mission(n: int, objective: str) -> Mission:
    return Mission(
        mission_id=f"vpm_bench{n:06d}",
        vp_id="vp.general.primary",
        mission_type="task",
        objective=objective,
        constraints={},
        budget={},
        status=Status.RUNNING,
        priority=100,
        attempt=1,
        max_attempts=1,
        lane="external",
    )


class FirstEvent(Exception):
    pass


async def claim_to_first_event(
    settings: Settings, box: sandbox.Sandbox, make: Any, n: int, scratch: Path, program: list[str] | None
) -> float:
    """Seconds from the claim to the first stream event, the run stopped there."""
    m = mission(n, "Say hello. STUB-WRITE hello.md hi")
    first: list[float] = []

    def emit(kind: str, payload: dict[str, Any]) -> None:
        if kind in STREAM_KINDS and not first:
            first.append(time.perf_counter())
            raise FirstEvent

    started = time.perf_counter()
    workspace = attempts.fresh_workspace(scratch / "workspaces", m)
    home = attempts.fresh_home(scratch / "homes", m)
    profile = Profile(vp_id=m.vp_id, name="BENCH", description="bench", workspace_root=scratch / "workspaces")
    ctx = MissionContext(
        mission=m,
        profile=profile,
        settings=settings,
        workspace=workspace,
        deadline=None,
        emit=emit,
        log=structlog.get_logger("bench"),
        home=home,
        sandbox=box,
    )
    try:
        if program is None:
            await make(profile, settings).execute(m, ctx)
        else:
            await run_process(program, ctx, on_stdout=lambda line: emit("output", {}), check=False)
    except FirstEvent:
        pass
    finally:
        attempts.remove_home(home)
    if not first:
        raise RuntimeError(f"no stream event from run {n}")
    return first[0] - started


def home_setup(user: Path, scratch: Path, n: int) -> float:
    started = time.perf_counter()
    home = attempts.fresh_home(scratch / "homes", mission(n, "x"))
    seeded = agent_home.seed(home, agent_home.CODEX, template=None, user_home=user)
    agent_home.seed(home, agent_home.CLAUDE, template=None, user_home=user)
    agent_home.scrub(seeded)
    attempts.remove_home(home)
    return time.perf_counter() - started


def empty_folder(scratch: Path, n: int) -> float:
    started = time.perf_counter()
    path = scratch / f"empty-{n}"
    os.mkdir(path, 0o700)
    os.rmdir(path)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="runs per CLI and backend")
    parser.add_argument("--homes", type=int, default=200, help="home setups measured")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    bins = ROOT / "tests" / "agents" / "node_modules" / ".bin"
    if why_unavailable() or not (bins / "claude").exists():
        sys.exit(f"needs root, ip and the CLIs (npm ci --prefix tests/agents): {why_unavailable() or 'no CLIs'}")

    with tempfile.TemporaryDirectory() as tmp_name, stub_internet(Path(tmp_name)) as stub:
        tmp = Path(tmp_name)
        # The CLIs outside the checkout, which the sandbox hides.
        shutil.copytree(bins.parent, tmp / "node_modules", symlinks=True, copy_function=os.link)
        user = tmp / "user"
        (user / ".codex").mkdir(parents=True)
        (user / ".claude").mkdir()
        (user / ".codex" / "config.toml").write_text(
            f'model = "stub"\nmodel_provider = "stub"\n[model_providers.stub]\nname = "stub"\n'
            f'base_url = "{stub.openai_base_url}"\nenv_key = "OPENAI_API_KEY"\nwire_api = "responses"\n'
        )
        (user / ".codex" / "auth.json").write_text('{"OPENAI_API_KEY": "x"}')
        (user / ".claude" / "settings.json").write_text("{}")
        (user / ".claude" / ".credentials.json").write_text("{}")
        os.environ.update(
            HOME=str(user),
            ANTHROPIC_API_KEY=stub.key,
            ANTHROPIC_BASE_URL=stub.anthropic_base_url,
            OPENAI_API_KEY=stub.key,
        )
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            state_dir=tmp / "state",
            claude_bin=str(tmp / "node_modules" / ".bin" / "claude"),
            codex_bin=str(tmp / "node_modules" / ".bin" / "codex"),
        )
        backends = ["none", *(b for b in sandbox.BACKENDS if sandbox.probe(b).works)]
        echo = ["/bin/echo", '{"type": "system"}']
        rows: list[tuple[str, str, list[float]]] = []
        n = 0
        for backend in backends:
            box = sandbox.Sandbox(backend=backend, reason="bench")  # type: ignore[arg-type]
            for name, make, program in (
                ("echo (baseline)", None, echo),
                ("claude", claude_cli.create, None),
                ("codex", codex_cli.create, None),
            ):
                times = []
                for _ in range(args.runs):
                    n += 1
                    times.append(asyncio.run(claim_to_first_event(settings, box, make, n, tmp, program)))
                rows.append((backend, name, times))
        base = statistics.median(next(t for b, nm, t in rows if b == "none" and nm.startswith("echo")))
        print(
            f"claim to first stream event, {args.runs} runs each (baseline: echo unsandboxed, p50 {base * 1000:.1f} ms)"
        )
        print(f"{'backend':10} {'program':16} {'p50 ms':>8} {'max ms':>8} {'p50 / baseline':>15}")
        for backend, name, times in rows:
            p50 = statistics.median(times)
            print(f"{backend:10} {name:16} {p50 * 1000:8.1f} {max(times) * 1000:8.1f} {p50 / base:15.1f}")

        homes = [home_setup(user, tmp, i) for i in range(args.homes)]
        empties = [empty_folder(tmp, i) for i in range(args.homes)]
        print(f"\nper-mission home setup, {args.homes} times (make, seed 4 files, scrub, remove)")
        for label, q in (("p50", 0.5), ("p95", 0.95)):
            h, e = pct(homes, q), pct(empties, q)
            print(f"{label}: {h * 1e6:8.0f} us; empty folder {e * 1e6:6.0f} us; ratio {h / e:6.1f}")


if __name__ == "__main__":
    main()
