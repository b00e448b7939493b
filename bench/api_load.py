"""API load: dispatch and list requests/s through a real ``ua-vp serve`` on PostgreSQL,
from a second process on loopback, next to pgbench tps from the same run.

    python bench/api_load.py --database-url postgresql://postgres@127.0.0.1:54329/postgres

The server runs with external dispatch on, so what is measured is the API and the
store, not missions running. Figures are ratios to pgbench; absolute numbers are noise.

Two more measures (issue 12):

- **cost of the caller checks**: the same load against a server with the Host
  allow-list and the peer-uid check on (the default) and one with them relaxed
  (``UA_VP_ALLOWED_HOSTS=*``, ``UA_VP_TOKENLESS_CALLERS=any``), alternated
  ``--rounds`` times so drift on a shared machine hits both alike; the ratio of
  medians is the checks' cost (goal: under 5%).
- **/healthz under streams**: ``/healthz`` latency while ``--streams`` Server-Sent
  Event streams follow live missions (claimed by this process, which writes progress
  events to them the whole time), next to ``/healthz`` with no stream open.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fresh_database(admin_url: str) -> str:
    name = f"ua_vp_apibench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return admin_url.rsplit("/", 1)[0] + "/" + name


def pgbench_tps(url: str, seconds: int) -> float:
    subprocess.run(["pgbench", "-i", "-s", "10", "-q", url], check=True, capture_output=True)
    out = subprocess.run(
        ["pgbench", "-c", "8", "-j", "2", "-T", str(seconds), url], check=True, capture_output=True, text=True
    ).stdout
    match = re.search(r"tps = ([\d.]+)", out)
    assert match, out
    return float(match.group(1))


async def load(url: str, make_request, seconds: float, concurrency: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def client(i: int) -> None:
        nonlocal errors
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            n = 0
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                r = await make_request(http, i, n)
                latencies.append(time.perf_counter() - started)
                errors += r.status_code >= 400
                n += 1

    began = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - began
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": q[49] * 1000,
        "p99_ms": q[98] * 1000,
        "errors": errors,
    }


async def dispatch(http: httpx.AsyncClient, i: int, n: int) -> httpx.Response:
    key = f"k-{uuid.uuid4().hex[:8]}-{i}-{n}"
    body = {"vp_id": "vp.general.primary", "objective": f"load {i}-{n}", "idempotency_key": key}
    return await http.post("/api/v1/ops/vp/missions/dispatch", json=body)


async def listing(http: httpx.AsyncClient, i: int, n: int) -> httpx.Response:
    return await http.get("/api/v1/ops/vp/missions", params={"limit": 50})


CHECKS_RELAXED = {"UA_VP_ALLOWED_HOSTS": "*", "UA_VP_TOKENLESS_CALLERS": "any"}


class Server:
    """A ``ua-vp serve`` on a free port over ``db_url`` (external dispatch: nothing runs)."""

    def __init__(self, db_url: str, **extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("UA_VP_")}
        env.update(
            UA_VP_DATABASE_URL=db_url,
            UA_VP_EXTERNAL_DISPATCH_ENABLED="1",
            UA_VP_LOG_LEVEL="warning",
            UA_VP_STATE_DIR=f"/tmp/ua-vp-apibench-{self.port}",
            **extra,
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ua_vp.cli", "serve", "--port", str(self.port)], env=env, stderr=subprocess.DEVNULL
        )
        for _ in range(300):
            try:
                if httpx.get(self.url + "/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("ua-vp serve did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def checks_cost(db_url: str, seconds: float, concurrency: int, rounds: int) -> dict[str, object]:
    runs: dict[str, dict[str, list[dict[str, float]]]] = {
        mode: {"dispatch": [], "list_limit_50": []} for mode in ("checks_on", "checks_relaxed")
    }
    for _ in range(rounds):
        for mode in runs:
            server = Server(db_url, **(CHECKS_RELAXED if mode == "checks_relaxed" else {}))
            try:
                runs[mode]["dispatch"].append(asyncio.run(load(server.url, dispatch, seconds, concurrency)))
                runs[mode]["list_limit_50"].append(asyncio.run(load(server.url, listing, seconds, concurrency)))
            finally:
                server.stop()
    summary: dict[str, object] = {}
    for route in ("dispatch", "list_limit_50"):
        on = {k: statistics.median(r[k] for r in runs["checks_on"][route]) for k in ("rps", "p50_ms", "p99_ms")}
        off = {k: statistics.median(r[k] for r in runs["checks_relaxed"][route]) for k in ("rps", "p50_ms", "p99_ms")}
        summary[route] = {"checks_on": on, "checks_relaxed": off, "rps_cost": 1 - on["rps"] / off["rps"]}
    summary["runs"] = runs
    return summary


async def healthz_latencies(url: str, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        stop_at = time.perf_counter() + seconds
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            (await http.get("/healthz")).raise_for_status()
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0.02)
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"probes": len(latencies), "p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000, "max_ms": max(latencies) * 1000}


async def healthz_under_streams(db_url: str, streams: int, seconds: float) -> dict[str, object]:
    """/healthz alone, then with ``streams`` SSE streams following missions this process
    holds (claimed through the store) and writes progress events to."""
    from ua_vp.missions import MissionSpec, Status
    from ua_vp.store import open_store

    caps = {"UA_VP_MAX_EVENT_STREAMS": str(streams), "UA_VP_MAX_EVENT_STREAMS_PER_CLIENT": str(streams)}
    server = Server(db_url, **caps)
    store = open_store(db_url, lease_ttl_seconds=600)
    vp = "vp.general.primary"
    try:
        idle = await healthz_latencies(server.url, seconds)
        ids = [
            store.enqueue(MissionSpec.create(vp_id=vp, objective=f"live {n}")).mission.mission_id
            for n in range(streams)
        ]
        held = {m.mission_id: m.lease_token or "" for m in store.claim(vp, "bench-worker", limit=streams)}
        assert set(held) == set(ids), "the bench database held other queued missions"
        received = 0
        limits = httpx.Limits(max_connections=streams + 10, max_keepalive_connections=streams + 10)
        async with httpx.AsyncClient(base_url=server.url, timeout=httpx.Timeout(60), limits=limits) as http:

            async def follow(mission_id: str) -> None:
                nonlocal received
                path = f"/api/v1/ops/vp/missions/{mission_id}/events"
                async with http.stream("GET", path, headers={"Accept": "text/event-stream"}) as response:
                    response.raise_for_status()
                    async for line in response.aiter_lines():
                        if line.startswith("data:"):
                            received += 1
                            if '"vp.mission.completed"' in line:
                                return

            followers = [asyncio.create_task(follow(mid)) for mid in ids]
            stop = asyncio.Event()

            async def progress() -> None:
                # About 100 progress events a second, spread over every mission.
                n = 0
                while not stop.is_set():
                    mid = ids[n % len(ids)]
                    await asyncio.to_thread(store.add_progress, mid, held[mid], [{"kind": "tick", "n": n}])
                    n += 1
                    await asyncio.sleep(0.01)

            writer = asyncio.create_task(progress())
            await asyncio.sleep(2)  # every stream connected and replaying
            busy = await healthz_latencies(server.url, seconds)
            stop.set()
            await writer
            for mid, token in held.items():
                await asyncio.to_thread(store.finalize, mid, token, Status.COMPLETED, result={})
            await asyncio.wait_for(asyncio.gather(*followers), timeout=60)
        return {"streams": streams, "idle": idle, "with_streams": busy, "events_received": received}
    finally:
        store.engine.dispose()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("UA_VP_BENCH_DATABASE_URL"), required=False)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="Alternations of checks on/relaxed.")
    parser.add_argument("--streams", type=int, default=200, help="SSE streams open while /healthz is timed.")
    parser.add_argument("--json", type=Path, default=None, help="Also write the figures here.")
    args = parser.parse_args()
    if not args.database_url:
        parser.error("give --database-url or UA_VP_BENCH_DATABASE_URL (a PostgreSQL admin URL)")

    tps = pgbench_tps(fresh_database(args.database_url), args.seconds)
    cost = checks_cost(migrated_database(args.database_url), args.seconds, args.concurrency, args.rounds)
    print_checks(cost, tps)
    # A database of its own: the missions it claims must be the ones its streams follow.
    streams = asyncio.run(healthz_under_streams(migrated_database(args.database_url), args.streams, args.seconds))
    print_streams(streams)
    if args.json:
        args.json.write_text(json.dumps({"pgbench_tps_c8": tps, "checks": cost, "healthz": streams}, indent=2))


def migrated_database(admin_url: str) -> str:
    db_url = fresh_database(admin_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("UA_VP_")}
    env["UA_VP_DATABASE_URL"] = db_url
    subprocess.run([sys.executable, "-m", "ua_vp.cli", "db", "upgrade"], env=env, check=True, capture_output=True)
    return db_url


def print_checks(cost: dict[str, object], tps: float) -> None:

    print(f"| route | checks | requests/s | p50 ms | p99 ms | ratio to pgbench tps ({tps:.0f}) |")
    print("|---|---|---|---|---|---|")
    for route in ("dispatch", "list_limit_50"):
        figures = cost[route]
        assert isinstance(figures, dict)
        for mode in ("checks_relaxed", "checks_on"):
            r = figures[mode]
            print(
                f"| {route} | {mode} | {r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['rps'] / tps:.3f} |"
            )
        print(f"| {route} | cost of the checks | {figures['rps_cost']:+.1%} of requests/s | | | |")
    print()


def print_streams(streams: dict[str, object]) -> None:
    print(f"/healthz while {streams['streams']} SSE streams follow live missions ({streams['events_received']} events)")
    print("| state | probes | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|")
    for state in ("idle", "with_streams"):
        h = streams[state]
        assert isinstance(h, dict)
        print(f"| {state} | {h['probes']} | {h['p50_ms']:.1f} | {h['p99_ms']:.1f} | {h['max_ms']:.1f} |")


if __name__ == "__main__":
    main()
