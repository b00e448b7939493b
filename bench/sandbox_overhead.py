"""What confinement adds to starting a mission: spawn to first output line, per backend, with and
without the private network (slirp4netns), against no sandbox in the same run.

    .venv/bin/python bench/sandbox_overhead.py [ROUNDS]

The program prints one line and exits; the clock runs from calling ``run_process`` to the
moment its first stdout line reaches the callback. Variants are interleaved round by round
so machine noise hits all alike. Goal (issue 11): at most 50 ms added at p50.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.sandbox.conftest import Scene, make_mission
from ua_vp import sandbox
from ua_vp.runtimes.process import run_process

ARGV = ["/bin/echo", "ready"]


async def first_line_ms(scene: Scene, box: sandbox.Sandbox | None, network: bool) -> float:
    ctx = scene.ctx(box, make_mission(constraints={"network": network}))
    started = time.perf_counter()
    seen: list[float] = []
    await run_process(ARGV, ctx, on_stdout=lambda line: seen.append(time.perf_counter()) if not seen else None)
    return (seen[0] - started) * 1000


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    scene = Scene(Path(tempfile.mkdtemp(prefix="ua-vp-overhead-")))
    variants: dict[str, tuple[sandbox.Sandbox | None, bool]] = {"none": (None, True)}
    for name in sandbox.BACKENDS:
        found = sandbox.probe(name)
        if not found.works:
            print(f"{name}: skipped ({found.reason})")
            continue
        box = scene.sandbox(sandbox=name)
        variants[f"{name} no network"] = (box, False)
        variants[f"{name} private network"] = (box, True)
    times: dict[str, list[float]] = {name: [] for name in variants}

    async def run() -> None:
        for box, network in variants.values():  # warm caches once, uncounted
            await first_line_ms(scene, box, network)
        for _ in range(rounds):
            for name, (box, network) in variants.items():
                times[name].append(await first_line_ms(scene, box, network))

    asyncio.run(run())
    base = statistics.median(times["none"])
    print(f"spawn to first output line of {' '.join(ARGV)}, {rounds} rounds each, interleaved")
    for name, samples in times.items():
        samples.sort()
        p50, p95 = statistics.median(samples), samples[max(0, int(len(samples) * 0.95) - 1)]
        print(
            f"  {name:>25}: p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  added p50 {p50 - base:+6.1f} ms  x{p50 / base:4.1f}"
        )
    shutil.rmtree(scene.tmp, ignore_errors=True)


if __name__ == "__main__":
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    main()
