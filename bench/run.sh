#!/usr/bin/env bash
# ua-vp benchmarks, one command:  bench/run.sh [--quick] [--full] [--scenario NAME ...] [--rounds N]
#
# Builds bench/.venv (its own, apart from the project's: ua-vp editable, the benchmark's
# no-op profile, and the peers procrastinate, pgqueuer and asyncpg), starts a throwaway
# PostgreSQL 15 on port 54340 unless UA_VP_BENCH_DATABASE_URL names a server, runs
# bench/bench.py, and writes bench/results/results.json and results.md.
# Every figure is a ratio to baselines measured in the same run; nothing fails on time.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
venv="$here/.venv"
pg_dir="${UA_VP_BENCH_PG_DIR:-/tmp/ua-vp-bench-pg}"
pg_port="${UA_VP_BENCH_PG_PORT:-54340}"

python="${PYTHON:-$(command -v python3.11 || command -v python3)}"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "bench/run.sh: needs Python 3.11 or newer (set PYTHON=...)" >&2; exit 2; }

# Reinstall only when a pyproject changed since the last install.
stamp="$(cat "$root/pyproject.toml" "$here/noop_profile/pyproject.toml" | sha256sum | cut -c1-16)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.bench-stamp" 2>/dev/null)" != "$stamp" ]; then
  echo "bench/run.sh: building $venv" >&2
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -e "$root" -e "$here/noop_profile" procrastinate pgqueuer asyncpg
  echo "$stamp" > "$venv/.bench-stamp"
fi

started_pg=0
if [ -z "${UA_VP_BENCH_DATABASE_URL:-}" ]; then
  if ! /usr/lib/postgresql/15/bin/pg_isready -q -h 127.0.0.1 -p "$pg_port"; then
    started_pg=1
  fi
  UA_VP_BENCH_DATABASE_URL="$("$root/scripts/pg_test_server.sh" start "$pg_dir" "$pg_port")"
  export UA_VP_BENCH_DATABASE_URL
fi
stop_pg() { if [ "$started_pg" = 1 ]; then "$root/scripts/pg_test_server.sh" stop "$pg_dir"; fi; }
trap stop_pg EXIT

export UA_VP_BENCH_COMMAND="bench/run.sh${*:+ $*}"
cd "$root"
"$venv/bin/python" "$here/bench.py" --out "$here/results" "$@"
