#!/usr/bin/env bash
# Prove the declared lower bounds: install ua-vp and both profiles with every direct dependency
# at its lowest allowed version (uv, from PyPI, --resolution lowest-direct) into a fresh venv,
# then run scripts/smoke.py there: import, `ua-vp serve`, /schema, /readyz, an in-process mission.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/ua-vp-lowest.XXXXXX)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/uv"
"$work/uv/bin/python" -m pip install -q uv
uv="$work/uv/bin/uv"
"$uv" venv -q --python "$(command -v python3)" "$work/env"
"$uv" pip install -q --python "$work/env/bin/python" --resolution lowest-direct . ./plugins/vp_general ./plugins/vp_coder
"$work/env/bin/python" - <<'PY'
import importlib.metadata as md
names = ["litestar", "uvicorn", "pluggy", "sqlalchemy", "psycopg", "alembic", "structlog", "tenacity",
         "pydantic", "pydantic-settings", "click", "httpx", "anyio", "msgspec", "prometheus-client",
         "swagger-ui-bundle-v2"]
print("lowest-direct:", ", ".join(f"{n} {md.version(n)}" for n in names))
PY
"$work/env/bin/python" scripts/smoke.py
