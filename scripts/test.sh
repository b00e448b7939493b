#!/usr/bin/env bash
# Set up and run every test: lint, types, then pytest on SQLite and a real PostgreSQL 15.
# Usage: scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${UA_VP_VENV:-.venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
"$venv/bin/python" -m pip install -q -e ".[test]" -e plugins/vp_coder -e plugins/vp_general -e contrib/profile-template

# A real PostgreSQL for the store, worker and API tests, unless one is given.
if [ -z "${UA_VP_TEST_DATABASE_URL:-}" ] && [ -x /usr/lib/postgresql/15/bin/pg_ctl ]; then
  UA_VP_TEST_DATABASE_URL=$(scripts/pg_test_server.sh start "${UA_VP_TEST_PGDATA:-/tmp/ua-vp-test-pg}" "${UA_VP_TEST_PGPORT:-54329}")
  export UA_VP_TEST_DATABASE_URL
fi
echo "PostgreSQL for tests: ${UA_VP_TEST_DATABASE_URL:-none (PostgreSQL tests will skip; they fail under CI=true)}"

"$venv/bin/ruff" check ua_vp tests plugins contrib bench
"$venv/bin/ruff" format --check ua_vp tests plugins contrib bench
"$venv/bin/mypy" ua_vp
"$venv/bin/pytest" "$@"
