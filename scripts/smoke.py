"""Smoke test of an installed ua-vp (used by scripts/lowest_deps.sh): import, `ua-vp serve`,
/schema, /readyz, and one mission through the in-process lane. Exits non-zero on any failure.

    python scripts/smoke.py            # with the interpreter of the environment to check
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

import ua_vp
from ua_vp.cli import cli  # noqa: F401 - the console script's module imports


def main() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    state = Path(tempfile.mkdtemp(prefix="ua-vp-smoke-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("UA_VP_")}
    env.update(UA_VP_STATE_DIR=str(state), UA_VP_LOG_FORMAT="json")
    script = Path(sys.executable).with_name("ua-vp")
    log = open(state / "serve.log", "wb")  # noqa: SIM115 - closed with the server
    server = subprocess.Popen([str(script), "serve", "--port", str(port)], env=env, cwd=state, stdout=log, stderr=log)
    try:
        for _ in range(300):
            if server.poll() is not None:
                raise SystemExit(f"ua-vp serve exited {server.returncode}:\n{(state / 'serve.log').read_text()}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        for path in ("/schema/openapi.json", "/readyz"):
            r = httpx.get(url + path, timeout=10)
            assert r.status_code == 200, f"{path} answered {r.status_code}: {r.text[:300]}"
        body = {"vp_id": "vp.general.primary", "objective": "smoke", "constraints": {}, "budget": {}}
        r = httpx.post(f"{url}/api/v1/ops/vp/missions/dispatch", json=body, timeout=10)
        assert r.status_code == 201 and r.json()["lane"] == "in_process", r.text[:300]
        mission_id = r.json()["mission"]["mission_id"]
        for _ in range(300):
            mission = httpx.get(f"{url}/api/v1/ops/vp/missions/{mission_id}", timeout=10).json()["mission"]
            if mission["status"] in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.1)
        assert mission["status"] == "completed", mission
        print(f"smoke ok: ua-vp {ua_vp.__version__}, /schema, /readyz, mission {mission_id} completed in-process")
        return 0
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=30)
        log.close()
        if code != 0:
            print((state / "serve.log").read_text(), file=sys.stderr)
            raise SystemExit(f"ua-vp serve exited {code} on SIGTERM")


if __name__ == "__main__":
    sys.exit(main())
