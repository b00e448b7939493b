"""The dashboard and /metrics at 100k missions, through a real ``ua-vp serve`` on PostgreSQL.

    python bench/dashboard.py --database-url postgresql://postgres@127.0.0.1:54329/postgres

Prints, as ratios to the JSON list route measured in the same run (as it was before the
dashboard: ``GET /api/v1/ops/vp/missions?limit=50``):
- p50/p99 of each request the missions page makes (first page, filters, id search, a deep page);
- p50/p99 of a ``/metrics`` scrape next to the JSON metrics route;
- bytes and requests of a first load of ``/`` in chromium (when Debian's chromium and
  chromedriver are installed), and of a second load with the browser's cache.
Latencies are measured from a client on loopback, one request at a time (the server's time
plus a loopback round trip). Nothing fails on time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
GENERAL = "vp.general.primary"
CODER = "vp.coder.primary"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fresh_database(admin_url: str) -> tuple[str, str]:
    name = f"ua_vp_dashbench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return name, admin_url.rsplit("/", 1)[0] + "/" + name


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


SEED = """
-- n missions over the last n*36 ms (100k: one hour), newest last: 90% completed, 4% failed
-- (a tenth of them lease_expired), 2% cancelled, 2% running, 2% queued; two vp_ids.
INSERT INTO vp_missions (mission_id, vp_id, mission_type, objective, constraints, budget, status, priority,
  attempt, max_attempts, lane, reply_mode, created_at, started_at, finished_at, error, result, worker_id)
SELECT 'vpm_' || md5(i::text), CASE WHEN i % 3 = 0 THEN 'vp.coder.primary' ELSE 'vp.general.primary' END,
  'task', 'objective number ' || i, '{}'::jsonb, '{}'::jsonb, s.status, 100,
  CASE WHEN s.status = 'queued' THEN 0 ELSE 1 END, 3, 'external', 'async',
  t.created, CASE WHEN s.status IN ('queued') OR (s.status = 'cancelled' AND i % 2 = 0) THEN NULL
                  ELSE t.created + interval '40 ms' END,
  CASE WHEN s.status IN ('completed', 'failed', 'cancelled') THEN t.created + interval '40 ms'
       + (i % 50) * interval '20 ms' END,
  CASE WHEN s.status = 'failed' THEN jsonb_build_object('code', CASE WHEN i % 10 = 0 THEN 'lease_expired'
       ELSE 'tool_error' END, 'message', 'x')
       WHEN s.status = 'cancelled' THEN '{"code": "cancelled", "message": "x"}'::jsonb END,
  CASE WHEN s.status = 'completed' THEN '{"summary": "ok", "artifacts": []}'::jsonb END,
  CASE WHEN s.status = 'running' THEN 'w1' END
FROM generate_series(1, %(n)s) AS i,
LATERAL (SELECT now() - (%(n)s - i) * interval '36 ms' AS created) AS t,
LATERAL (SELECT CASE WHEN i %% 100 < 90 THEN 'completed' WHEN i %% 100 < 94 THEN 'failed'
  WHEN i %% 100 < 96 THEN 'cancelled' WHEN i %% 100 < 98 THEN 'running' ELSE 'queued' END AS status) AS s;

INSERT INTO vp_mission_events (mission_id, vp_id, event_type, payload, created_at)
SELECT mission_id, vp_id, e.kind, '{}'::jsonb, e.at FROM vp_missions,
LATERAL (VALUES ('vp.mission.dispatched', created_at), ('vp.mission.started', started_at),
  ('vp.mission.progress', started_at), ('vp.mission.' || status, finished_at)) AS e(kind, at)
WHERE e.at IS NOT NULL
ORDER BY e.at;
ANALYZE;
"""


def seed(url: str, n: int) -> float:
    began = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SEED.replace("%(n)s", str(n)).replace("%%", "%"))  # type: ignore[arg-type]
    return time.perf_counter() - began


def timed(http: httpx.Client, path: str, requests: int) -> dict[str, float]:
    for _ in range(5):
        http.get(path).raise_for_status()
    samples = []
    size = 0
    for _ in range(requests):
        began = time.perf_counter()
        r = http.get(path)
        samples.append(time.perf_counter() - began)
        r.raise_for_status()
        size = len(r.content)
    samples.sort()
    return {
        "p50_ms": 1000 * statistics.median(samples),
        "p99_ms": 1000 * samples[min(len(samples) - 1, int(0.99 * len(samples)))],
        "bytes": size,
    }


def first_load(url: str) -> dict[str, Any] | None:
    """Requests and bytes over the wire for a first and a cached load of ``/`` in chromium."""
    if not (shutil.which("/usr/bin/chromium") and shutil.which("/usr/bin/chromedriver")):
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="ua-vp-bench-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    out: dict[str, Any] = {}
    try:
        driver.get("about:blank")
        for label in ("first", "cached"):
            driver.get_log("performance")
            began = time.perf_counter()
            driver.get(url + "/")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not driver.execute_script(
                "return document.querySelectorAll('#missions-body tr[data-mission-id]').length"
            ):
                time.sleep(0.02)
            shown = time.perf_counter() - began
            time.sleep(0.5)
            requests, wire, origins = 0, 0, set()
            ours: set[str] = set()
            host = urlsplit(url).netloc
            for entry in driver.get_log("performance"):
                message = json.loads(entry["message"])["message"]
                # Only the page's own traffic: chromium's internal pages (its new-tab page)
                # log theirs here too, under chrome:// and data: URLs.
                if message["method"] == "Network.requestWillBeSent":
                    target = urlsplit(message["params"]["request"]["url"])
                    if target.scheme in ("http", "https"):
                        origins.add(target.netloc)
                    if target.netloc == host:
                        requests += 1
                        ours.add(message["params"]["requestId"])
                elif message["method"] == "Network.loadingFinished" and message["params"]["requestId"] in ours:
                    wire += int(message["params"]["encodedDataLength"])
            out[label] = {"requests": requests, "bytes": wire, "rows_shown_ms": 1000 * shown, "hosts": sorted(origins)}
            # The list polls every 2 s: stop counting before the next poll of the cached load.
            driver.get("about:blank")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True, help="libpq URL of a PostgreSQL maintenance database")
    parser.add_argument("--missions", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200, help="timed requests per variant")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    name, url = fresh_database(args.database_url)
    sa_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    proc = None
    try:
        from ua_vp.store import db

        engine = db.make_engine(sa_url)
        db.upgrade(engine)
        engine.dispose()
        seeded = seed(url, args.missions)
        print(f"# seeded {args.missions} missions in {seeded:.1f} s", file=sys.stderr, flush=True)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("UA_VP_")}
        env.update(
            UA_VP_DATABASE_URL=sa_url,
            UA_VP_EXTERNAL_DISPATCH_ENABLED="1",
            UA_VP_STATE_DIR=tempfile.mkdtemp(prefix="ua-vp-dashbench-"),
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "ua_vp.cli", "serve", "--port", str(port), "--log-level", "warning"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("ua-vp serve did not start")
            time.sleep(0.2)

        with httpx.Client(base_url=base, timeout=60) as http:
            missions = "/api/v1/ops/vp/missions/"
            page = http.get(missions, params={"limit": 500}).json()["missions"]
            deep_anchor = page[-1]["mission_id"]  # row 500; then walk to row ~5000
            for _ in range(9):
                deep_anchor = http.get(missions, params={"limit": 500, "before": deep_anchor}).json()["missions"][-1][
                    "mission_id"
                ]
            prefix = page[10]["mission_id"][:7]
            variants: dict[str, str] = {
                "baseline: JSON list route (limit=50)": f"{missions}?limit=50",
                "dashboard shell GET /": "/",
                "dashboard list, first page": f"{missions}?limit=50&status=all",
                "dashboard list, status=failed": f"{missions}?limit=50&status=failed",
                "dashboard list, status=queued": f"{missions}?limit=50&status=queued",
                f"dashboard list, vp_id={CODER}": f"{missions}?limit=50&status=all&vp_id={CODER}",
                "dashboard list, vp_id + status=running": f"{missions}?limit=50&status=running&vp_id={GENERAL}",
                f"dashboard list, id search q={prefix}": f"{missions}?limit=50&status=all&q={prefix}",
                "dashboard list, page 101 (before= row 5000)": f"{missions}?limit=50&status=all&before={deep_anchor}",
                "dashboard metrics page: JSON metrics": "/api/v1/ops/metrics/vp",
                "dashboard metrics page: timeline": "/api/v1/ops/metrics/timeline",
                "/metrics (Prometheus scrape)": "/metrics",
            }
            figures = {}
            for label, path in variants.items():
                figures[label] = timed(http, path, args.requests)
                print(f"# {label}: p50 {figures[label]['p50_ms']:.2f} ms", file=sys.stderr, flush=True)
        base_p50 = figures["baseline: JSON list route (limit=50)"]["p50_ms"]
        base_p99 = figures["baseline: JSON list route (limit=50)"]["p99_ms"]
        load = first_load(base)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=20)
        drop_database(args.database_url, name)

    print(f"# dashboard and /metrics at {args.missions:,} missions (PostgreSQL, seeded in {seeded:.1f} s)")
    print(f"# {args.requests} sequential requests per variant from a loopback client; ratios to the baseline row\n")
    print("| request | p50 ms | p99 ms | p50 / baseline | p99 / baseline | bytes |")
    print("|---|---|---|---|---|---|")
    for label, f in figures.items():
        print(
            f"| {label} | {f['p50_ms']:.2f} | {f['p99_ms']:.2f} | {f['p50_ms'] / base_p50:.2f} "
            f"| {f['p99_ms'] / base_p99:.2f} | {f['bytes']:,} |"
        )
    if load:
        print("\n| load of / in chromium | requests | bytes on the wire | rows shown after | hosts asked |")
        print("|---|---|---|---|---|")
        for label, f in load.items():
            hosts = ", ".join(f["hosts"])
            print(f"| {label} | {f['requests']} | {f['bytes']:,} | {f['rows_shown_ms']:.0f} ms | {hosts} |")
    else:
        print("\n(no chromium/chromedriver: first-load figures skipped)")
    if args.json:
        args.json.write_text(json.dumps({"missions": args.missions, "requests": figures, "first_load": load}, indent=2))


if __name__ == "__main__":
    main()
