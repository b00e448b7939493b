#!/usr/bin/env bash
# Start a worker for one VP profile, as in the seed:  scripts/start_vp_worker.sh vp.coder.primary
# Loads .env if present (ua-vp reads it too; exporting it here also serves the shell's children),
# then execs so SIGTERM/SIGINT reach the worker and it drains cleanly.
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 VP_ID [ua-vp worker options...]   e.g. $0 vp.general.primary" >&2
  exit 2
fi
vp_id=$1; shift
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ -f .env ]; then set -a; . ./.env; set +a; fi
ua_vp=${UA_VP_BIN:-}
if [ -z "$ua_vp" ]; then
  if [ -x "$root/.venv/bin/ua-vp" ]; then ua_vp="$root/.venv/bin/ua-vp"; else ua_vp=ua-vp; fi
fi
exec "$ua_vp" worker --profile "$vp_id" "$@"
