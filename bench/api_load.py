"""API load: dispatch and list requests/s through a real ``ua-vp serve`` on PostgreSQL,
from a second process on loopback, next to pgbench tps from the same run.

    python bench/api_load.py --database-url postgresql://postgres@127.0.0.1:54329/postgres

The server runs with external dispatch on, so what is measured is the API and the
store, not missions running. Figures are ratios to pgbench; absolute numbers are noise.
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
    q = statistics.quantiles(latencies, n=100)
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": q[49] * 1000,
        "p99_ms": q[98] * 1000,
        "errors": errors,
    }


async def dispatch(http: httpx.AsyncClient, i: int, n: int) -> httpx.Response:
    body = {"vp_id": "vp.general.primary", "objective": f"load {i}-{n}", "idempotency_key": f"k-{i}-{n}"}
    return await http.post("/api/v1/ops/vp/missions/dispatch", json=body)


async def listing(http: httpx.AsyncClient, i: int, n: int) -> httpx.Response:
    return await http.get("/api/v1/ops/vp/missions", params={"limit": 50})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("UA_VP_BENCH_DATABASE_URL"), required=False)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", type=Path, default=None, help="Also write the figures here.")
    args = parser.parse_args()
    if not args.database_url:
        parser.error("give --database-url or UA_VP_BENCH_DATABASE_URL (a PostgreSQL admin URL)")

    db_url = fresh_database(args.database_url)
    tps = pgbench_tps(fresh_database(args.database_url), args.seconds)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("UA_VP_")}
    env.update(
        UA_VP_DATABASE_URL=db_url,
        UA_VP_EXTERNAL_DISPATCH_ENABLED="1",
        UA_VP_LOG_LEVEL="warning",
        UA_VP_STATE_DIR=f"/tmp/ua-vp-apibench-{port}",
    )
    subprocess.run([sys.executable, "-m", "ua_vp.cli", "db", "upgrade"], env=env, check=True, capture_output=True)
    server = subprocess.Popen(
        [sys.executable, "-m", "ua_vp.cli", "serve", "--port", str(port)], env=env, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        results = {
            "pgbench_tps_c8": tps,
            "dispatch": asyncio.run(load(url, dispatch, args.seconds, args.concurrency)),
            "list_limit_50": asyncio.run(load(url, listing, args.seconds, args.concurrency)),
        }
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"| route | requests/s | p50 ms | p99 ms | errors | ratio to pgbench tps ({tps:.0f}) |")
    print("|---|---|---|---|---|---|")
    for name in ("dispatch", "list_limit_50"):
        r = results[name]
        print(
            f"| {name} | {r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} | "
            f"{r['rps'] / tps:.3f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
