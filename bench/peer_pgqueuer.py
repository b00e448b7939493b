"""pgqueuer: no-op jobs through its own QueueManager, asyncpg driver (its fastest).

Each claimer process runs one ``QueueManager`` on one connection in ``drain`` mode; the
variants vary the processes (1, 8) and pgqueuer's dequeue ``batch_size`` (1, 10).
pgqueuer finishes jobs through a buffer that writes completions in batches, so its
per-job cost is below one round trip per finish.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from baselines import raw_claim_variant
from common import Figure, Options, run_claimers, scratch_database, throughput

ENTRYPOINT = "noop"


async def _queries(url: str) -> tuple[Any, Any]:
    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries

    conn = await asyncpg.connect(url)
    return conn, Queries(AsyncpgDriver(conn))


async def _install(url: str) -> None:
    conn, queries = await _queries(url)
    await queries.install()
    await conn.close()


async def _prefill(url: str, n: int) -> None:
    conn, queries = await _queries(url)
    await queries.clear_queue()
    for start in range(0, n, 5000):
        size = min(5000, n - start)
        await queries.enqueue([ENTRYPOINT] * size, [None] * size, [0] * size)
    await conn.execute("VACUUM ANALYZE")
    await conn.close()


async def _drain(index: int, ready: Callable[[], None], args: dict[str, Any]) -> dict[str, Any]:
    from pgqueuer import QueueManager
    from pgqueuer.types import QueueExecutionMode

    logging.getLogger("pgqueuer").setLevel(logging.WARNING)
    conn, queries = await _queries(args["url"])
    qm = QueueManager(queries)
    done = [0]

    @qm.entrypoint(ENTRYPOINT)
    async def noop(job: Any) -> None:
        done[0] += 1

    ready()
    t0 = time.monotonic()
    asyncio.get_running_loop().call_later(args["seconds"], qm.shutdown.set)
    await qm.run(batch_size=args["batch"], mode=QueueExecutionMode.drain, dequeue_timeout=timedelta(seconds=1))
    t1 = time.monotonic()
    await conn.close()
    return {"count": done[0], "t0": t0, "t1": t1}


def pgqueuer_claimer(index: int, ready: Callable[[], None], args: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(_drain(index, ready, args))


def scenario_pgqueuer(opts: Options) -> list[Figure]:
    import pgqueuer

    figures = []
    with scratch_database(opts, "pgqueuer") as url:
        asyncio.run(_install(url))
        for batch in (1, 10):
            for n in (1, 8):
                asyncio.run(_prefill(url, int(12_000 * opts.seconds)))
                rate, count, secs = throughput(
                    run_claimers(pgqueuer_claimer, n, {"url": url, "batch": batch, "seconds": opts.seconds})
                )
                figures.append(
                    Figure(
                        "pgqueuer",
                        f"batch_size={batch} x{n}",
                        rate,
                        "jobs/s",
                        f"{count} in {secs:.1f} s; pgqueuer {pgqueuer.__version__}, asyncpg, {n} QueueManager"
                        " process(es), drain mode, completions buffered",
                        raw_variant=raw_claim_variant(batch, n),
                    )
                )
    return figures
