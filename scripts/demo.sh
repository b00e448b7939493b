#!/usr/bin/env bash
# The main job on one machine: set up, start `ua-vp serve` (SQLite, in-process lane,
# offline dry-run runtime), dispatch the seed's mission over REST, show it complete,
# then keep serving until Ctrl-C.   scripts/demo.sh [--exit]  (--exit: stop after the demo)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${UA_VP_VENV:-.venv}
if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
echo "==> installing ua-vp and the CODIE and GENERALIST profiles into $venv"
"$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
"$venv/bin/python" -m pip install -q -e . -e plugins/vp_coder -e plugins/vp_general

export UA_VP_STATE_DIR=${UA_VP_STATE_DIR:-$PWD/.ua-vp}
port=${UA_VP_PORT:-8002}
api="http://127.0.0.1:$port"
mkdir -p "$UA_VP_STATE_DIR"
log="$UA_VP_STATE_DIR/serve.log"
echo "==> starting ua-vp serve on $api (state in $UA_VP_STATE_DIR, server log in $log)"
"$venv/bin/ua-vp" serve --port "$port" >>"$log" 2>&1 &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 1 100); do
  if "$venv/bin/python" -c "import httpx,sys; sys.exit(httpx.get('$api/healthz').status_code != 200)" 2>/dev/null; then break; fi
  if ! kill -0 $server 2>/dev/null; then echo "ua-vp serve exited:" >&2; tail -20 "$log" >&2; exit 1; fi
  sleep 0.2
done

echo "==> dispatching the seed's mission (POST /api/v1/ops/vp/missions/dispatch)"
body='{"vp_id":"vp.general.primary","mission_type":"task","objective":"Create a concise execution checklist.","constraints":{},"budget":{}}'
mission_id=$("$venv/bin/python" - "$api" "$body" <<'PY'
import json, sys, httpx
api, body = sys.argv[1], sys.argv[2]
r = httpx.post(f"{api}/api/v1/ops/vp/missions/dispatch", content=body, headers={"Content-Type": "application/json"})
r.raise_for_status()
m = r.json()["mission"]
print(f"  HTTP {r.status_code}: mission {m['mission_id']} {m['status']} on lane {r.json()['lane']}", file=sys.stderr)
print(m["mission_id"])
PY
)
echo "==> following its events (GET .../missions/$mission_id/events, Server-Sent Events)"
"$venv/bin/python" - "$api" "$mission_id" <<'PY'
import json, sys, httpx
api, mid = sys.argv[1], sys.argv[2]
with httpx.stream("GET", f"{api}/api/v1/ops/vp/missions/{mid}/events", headers={"Accept": "text/event-stream"}, timeout=60) as r:
    for line in r.iter_lines():
        if line.startswith("data:"):
            e = json.loads(line[5:])
            print(f"  {e['created_at'][11:23]}  {e['event_type']:<28} {json.dumps(e['payload'])[:90]}")
m = httpx.get(f"{api}/api/v1/ops/vp/missions/{mid}").json()["mission"]
print(f"\nmission {mid}: {m['status']}\n  summary: {m['result']['summary'] if m['result'] else m['error']}")
PY
echo
echo "The mission above ran in the server's in-process lane with the offline dry-run runtime (no model)."
echo "The demo keeps its state in $UA_VP_STATE_DIR; point your own ua-vp commands at it with:"
echo "  export UA_VP_STATE_DIR=$UA_VP_STATE_DIR"
echo "Open the dashboard at $api/ (missions live, dispatch form, workers, metrics) and the API docs at $api/schema."
echo "Then try: $venv/bin/ua-vp missions   |   $venv/bin/ua-vp missions --api $api   |   curl $api/api/v1/ops/vp/missions"
if [ "${1:-}" = "--exit" ]; then exit 0; fi
echo "Server still running on $api (log: $log); Ctrl-C to stop."
wait $server
