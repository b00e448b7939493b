"""What the sandbox costs per mission: start-up of a trivial program through run_process,
without a sandbox and with each backend that works here, interleaved in one run.

    .venv/bin/python -m tests.sandbox.overhead [ROUNDS]

Prints milliseconds from spawn to reaped exit (median, p90) per variant: through
run_process (what a mission pays, including its 20 ms exit polling) and as a bare
``subprocess.run`` of the same wrapped command line (the sandbox's own cost).
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.sandbox.conftest import Scene, make_mission
from ua_vp import sandbox
from ua_vp.runtimes.process import run_process


async def once(scene: Scene, box: sandbox.Sandbox | None, argv: list[str]) -> float:
    ctx = scene.ctx(box, make_mission())
    started = time.perf_counter()
    await run_process(argv, ctx, on_stdout=lambda line: None)
    return (time.perf_counter() - started) * 1000


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    scene = Scene(Path(tempfile.mkdtemp(prefix="ua-vp-overhead-")))
    variants: dict[str, sandbox.Sandbox | None] = {"no sandbox": None}
    for name in sandbox.BACKENDS:
        found = sandbox.probe(name)
        if found.works:
            variants[name] = scene.sandbox(sandbox=name)
        else:
            print(f"{name}: skipped ({found.reason})")
    argv = [shutil.which("true") or "/bin/true"]
    times: dict[str, list[float]] = {name: [] for name in variants}

    async def run() -> None:
        for box in variants.values():  # warm caches once, uncounted
            await once(scene, box, argv)
        for _ in range(rounds):
            for name, box in variants.items():
                times[name].append(await once(scene, box, argv))

    asyncio.run(run())
    bare: dict[str, list[float]] = {name: [] for name in variants}
    lines = {
        name: argv if box is None else box.command(argv, workspace=scene.workspace, constraints={}).argv
        for name, box in variants.items()
    }
    for _ in range(rounds):
        for name, line in lines.items():
            started = time.perf_counter()
            subprocess.run(line, check=True, cwd=scene.workspace)
            bare[name].append((time.perf_counter() - started) * 1000)
    print(f"{argv[0]}, {rounds} rounds each, interleaved; workspace {scene.workspace}")
    for title, table in (("through run_process", times), ("bare subprocess.run", bare)):
        print(title)
        base = statistics.median(table["no sandbox"])
        for name, samples in table.items():
            samples.sort()
            median = statistics.median(samples)
            p90 = samples[int(len(samples) * 0.9) - 1]
            print(f"  {name:>11}: median {median:6.1f} ms  p90 {p90:6.1f} ms  (+{median - base:5.1f} ms)")
    shutil.rmtree(scene.tmp, ignore_errors=True)


if __name__ == "__main__":
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    main()
