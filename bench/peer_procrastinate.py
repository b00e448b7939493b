"""procrastinate: no-op jobs through its own worker (``run_worker_async(wait=False)``).

Variants: 1 and 8 worker processes at ``concurrency=1``, and one process at
``concurrency=8`` (its in-process async concurrency, sharing one connection pool).
procrastinate fetches one job per call (no batched claim) and finishes each in its own call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from baselines import raw_claim_variant
from common import Figure, Options, execute, run_claimers, scratch_database, throughput

QUEUE = "bench"
TASK = "noop"


def _app(url: str, pool_max: int, done: list[int] | None = None) -> Any:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url, min_size=1, max_size=pool_max))

    @app.task(queue=QUEUE, name=TASK)
    async def noop() -> None:
        if done is not None:
            done[0] += 1

    return app


async def _install(url: str) -> None:
    app = _app(url, 2)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()


async def _prefill(url: str, n: int) -> None:
    app = _app(url, 2)
    async with app.open_async():
        task = app.tasks[TASK]
        for start in range(0, n, 2000):
            await task.batch_defer_async(*([{}] * min(2000, n - start)))


async def _drain(index: int, ready: Callable[[], None], args: dict[str, Any]) -> dict[str, Any]:
    logging.getLogger("procrastinate").setLevel(logging.WARNING)
    done = [0]
    concurrency = args["concurrency"]
    app = _app(args["url"], concurrency + 2, done)
    async with app.open_async():
        ready()
        t0 = time.monotonic()
        # On time-out wait_for cancels the worker, which stops gracefully.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                app.run_worker_async(
                    queues=[QUEUE], wait=False, concurrency=concurrency, install_signal_handlers=False
                ),
                timeout=args["seconds"],
            )
        t1 = time.monotonic()
    return {"count": done[0], "t0": t0, "t1": t1}


def procrastinate_claimer(index: int, ready: Callable[[], None], args: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(_drain(index, ready, args))


def scenario_procrastinate(opts: Options) -> list[Figure]:
    import procrastinate

    version = getattr(procrastinate, "__version__", "?")
    figures = []
    with scratch_database(opts, "procrastinate") as url:
        asyncio.run(_install(url))
        for processes, concurrency in ((1, 1), (8, 1), (1, 8)):
            execute(url, "TRUNCATE procrastinate_jobs CASCADE")
            asyncio.run(_prefill(url, int(3_000 * opts.seconds)))
            execute(url, "VACUUM ANALYZE")
            args = {"url": url, "concurrency": concurrency, "seconds": opts.seconds}
            rate, count, secs = throughput(run_claimers(procrastinate_claimer, processes, args))
            figures.append(
                Figure(
                    "procrastinate",
                    f"x{processes} concurrency={concurrency}",
                    rate,
                    "jobs/s",
                    f"{count} in {secs:.1f} s; procrastinate {version}, psycopg pool, {processes} worker"
                    f" process(es), wait=False",
                    raw_variant=raw_claim_variant(1, processes * concurrency),
                )
            )
    return figures
