#!/usr/bin/env bash
# Start a throwaway PostgreSQL 15 for tests and benchmarks, print its URL.
#   scripts/pg_test_server.sh start [DIR] [PORT]   -> prints postgresql://... on stdout
#   scripts/pg_test_server.sh stop  [DIR]
# PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user.
set -euo pipefail
action=${1:-start}
dir=${2:-/tmp/ua-vp-pg}
port=${3:-54329}
bin=${PG_BIN:-/usr/lib/postgresql/15/bin}
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

case "$action" in
  start)
    if [ ! -f "$dir/PG_VERSION" ]; then
      mkdir -p "$dir"
      [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
      as_pg "$bin/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 >/dev/null
    fi
    if ! as_pg "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
      # fsync off: a test server's data is disposable, and fsync only measures the disk.
      as_pg "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start \
        -o "-p $port -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" >/dev/null
    fi
    echo "postgresql://postgres@127.0.0.1:$port/postgres"
    ;;
  stop)
    as_pg "$bin/pg_ctl" -D "$dir" -m fast -w stop >/dev/null 2>&1 || true
    ;;
  *) echo "usage: $0 start|stop [DIR] [PORT]" >&2; exit 2 ;;
esac
