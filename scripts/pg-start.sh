#!/usr/bin/env bash
# pg-start.sh starts a throwaway PostgreSQL 15 cluster for tests on 127.0.0.1:${MOHR_PG_PORT:-54329}
# under ${MOHR_PG_DIR:-/tmp/mohr-pg} and prints its DSN. Safe to run twice: it reuses a running cluster.
set -euo pipefail
PORT=${MOHR_PG_PORT:-54329}
W=${MOHR_PG_DIR:-/tmp/mohr-pg}
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$PGBIN" ] || { echo "pg-start: PostgreSQL server not installed (scripts/install-deps.sh)" >&2; exit 1; }
RUN=""
if [ "$(id -u)" -eq 0 ]; then RUN="runuser -u postgres --"; fi
install -d -m 0755 "$W"
[ "$(id -u)" -eq 0 ] && chown postgres:postgres "$W"
if ! [ -f "$W/data/PG_VERSION" ]; then
  $RUN "$PGBIN/initdb" -D "$W/data" -U postgres -A trust --no-sync -E UTF8 --locale=C.UTF-8 >"$W/initdb.log" 2>&1 \
    || { cat "$W/initdb.log" >&2; exit 1; }
fi
if ! $RUN "$PGBIN/pg_ctl" -D "$W/data" status >/dev/null 2>&1; then
  $RUN "$PGBIN/pg_ctl" -D "$W/data" -l "$W/log" -w -t 60 \
    -o "-p $PORT -k $W -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
fi
echo "postgres://postgres@127.0.0.1:$PORT/postgres?sslmode=disable"
