#!/usr/bin/env bash
# cluster.sh runs Mohr as a small cluster on this machine, for tests, demos and the failure suite:
#
#   PostgreSQL 15 primary (127.0.0.1:$PG1) with a synchronous streaming-replication standby ($PG2)
#   three `mohr serve` nodes sharing one configuration (API ports $API1..3, public ports $PUB1..3)
#   HAProxy in front: API (TLS passed through, mTLS ends at the nodes) on $LB_API, public HTTP on $LB_PUB,
#   both health-checked on each node's /readyz; HAProxy answers repeated OCSP requests (GET, and POST of at
#   most 255 bytes) from its own cache for at most $MOHR_OCSP_CACHE_SECONDS (default 2) seconds
#
# Usage: scripts/cluster.sh up|down|status|env|promote|bench
#   up       builds mohr (unless MOHR_BIN is set), starts everything, waits until HAProxy answers
#   down     stops everything it started (by the pids it recorded) and keeps the data directory
#   status   one line per component
#   env      prints the addresses as shell variables (eval "$(scripts/cluster.sh env)")
#   promote  promotes the standby (after the primary was lost); the nodes find it through the DSN's host list
#   bench    OCSP POST and GET and issuance (POST /v1/certificates over mTLS) with cmd/mohr-bench through HAProxy
#            and to node1 alone, interleaved in one run, medians of $MOHR_BENCH_ROUNDS (3) rounds and their ratios,
#            and what each certificate cost in CPU and database commits (needs a cluster that is up).
#            MOHR_BENCH_SCENARIOS (ocsp-post ocsp-get issue), MOHR_BENCH_CONC (8 clients),
#            MOHR_BENCH_DURATION (3s; issuance: MOHR_BENCH_ISSUE_DURATION, 5s, then MOHR_BENCH_SETTLE, 3 s)
#
# Everything lives under $MOHR_CLUSTER_DIR (default /tmp/mohr-cluster) and listens on loopback only.
set -euo pipefail
W=${MOHR_CLUSTER_DIR:-/tmp/mohr-cluster}
BASE=${MOHR_CLUSTER_PORT:-55400}
PG1=$((BASE + 32)) PG2=$((BASE + 33))
API1=$((BASE + 41)) API2=$((BASE + 42)) API3=$((BASE + 43))
PUB1=$((BASE + 81)) PUB2=$((BASE + 82)) PUB3=$((BASE + 83))
LB_API=$((BASE + 40)) LB_PUB=$((BASE + 80)) LB_STATS=$((BASE + 90))
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PGBIN=$(ls -d /usr/lib/postgresql/15/bin 2>/dev/null || ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
RUN=""
[ "$(id -u)" -eq 0 ] && RUN="runuser -u postgres --"
DSN="postgres://postgres@127.0.0.1:$PG1,127.0.0.1:$PG2/mohr?sslmode=disable&target_session_attrs=read-write&connect_timeout=10"

log() { echo "cluster: $*" >&2; }

pg() { # pg NAME ARGS...: pg_ctl on one server's data directory
  local name=$1; shift
  $RUN "$PGBIN/pg_ctl" -D "$W/$name/data" "$@"
}

pg_up() { # pg_up NAME PORT [EXTRA OPTIONS]
  local name=$1 port=$2 extra=${3:-}
  pg "$name" status >/dev/null 2>&1 && return 0
  pg "$name" -l "$W/$name/log" -w -t 60 \
    -o "-p $port -k $W/$name -c listen_addresses=127.0.0.1 -c max_connections=200 $extra" start >/dev/null
}

psql_on() { # psql_on PORT SQL
  psql "postgres://postgres@127.0.0.1:$1/postgres?sslmode=disable" -Atqc "$2"
}

wait_http() { # wait_http URL SECONDS
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null)" = 200 ] && return 0
    sleep 0.1
  done
  return 1
}

alive() { # alive PID MATCH: PID runs (is not a zombie waiting to be reaped) and its command line holds MATCH
  # One read of /proc/PID/stat decides: a process reaped between two checks is dead, not alive (the old
  # `kill -0 && ! awk ... stat` called a node alive when it was reaped between the two, and `up` then did not
  # restart it). MATCH guards against the PID having been reused by another process since it was recorded.
  local st
  [ -n "$1" ] && st=$(cat "/proc/$1/stat" 2>/dev/null) && [ -n "$st" ] || return 1
  st=${st##*) }
  [ "${st%% *}" != Z ] || return 1
  tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$2"
}

node_up() { # node_up N API PUB
  local n=$1 api=$2 pub=$3 d="$W/node$1"
  mkdir -p "$d"
  if [ -f "$d/pid" ] && alive "$(cat "$d/pid")" "--data-dir $d "; then return 0; fi
  nohup "$MOHR" --data-dir "$d" --config "$W/shared/mohr.yaml" serve \
    --listen "127.0.0.1:$api" --public-listen "127.0.0.1:$pub" >>"$d/serve.log" 2>&1 &
  echo $! >"$d/pid"
  wait_http "http://127.0.0.1:$pub/readyz" 60 || { tail -20 "$d/serve.log" >&2; log "node$n did not come up"; exit 1; }
  log "node$n up (api $api, public $pub, pid $(cat "$d/pid"))"
}

up() {
  [ -n "$PGBIN" ] || { log "PostgreSQL 15 not installed (scripts/install-deps.sh)"; exit 1; }
  command -v haproxy >/dev/null || { log "haproxy not installed (scripts/install-deps.sh)"; exit 1; }
  install -d -m 0755 "$W" "$W/pg1" "$W/pg2"
  [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$W/pg1" "$W/pg2"
  MOHR=${MOHR_BIN:-$W/mohr}
  if [ -z "${MOHR_BIN:-}" ]; then
    (cd "$ROOT" && CGO_ENABLED=1 go build -o "$W/mohr" ./cmd/mohr)
  fi

  # Primary: synchronous_standby_names is given on its command line only, so that a promoted standby (whose
  # data directory is a copy) does not wait for a standby it does not have.
  if ! [ -f "$W/pg1/data/PG_VERSION" ]; then
    $RUN "$PGBIN/initdb" -D "$W/pg1/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$W/pg1/initdb.log" 2>&1
    cat >>"$W/pg1/data/postgresql.conf" <<EOF
wal_level = replica
max_wal_senders = 10
wal_keep_size = 256MB
hot_standby = on
synchronous_commit = on
EOF
    echo "host replication postgres 127.0.0.1/32 trust" >>"$W/pg1/data/pg_hba.conf"
  fi
  pg_up pg1 "$PG1" "-c synchronous_standby_names=standby1"
  if ! [ -f "$W/pg2/data/PG_VERSION" ]; then
    $RUN "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "$PG1" -U postgres -D "$W/pg2/data" -R -X stream \
      -d "application_name=standby1" >"$W/pg2/basebackup.log" 2>&1
  fi
  pg_up pg2 "$PG2"
  for i in $(seq 1 100); do
    [ "$(psql_on "$PG1" "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'standby1' AND sync_state = 'sync'" 2>/dev/null)" = 1 ] && break
    sleep 0.1
  done
  [ "$(psql_on "$PG1" "SELECT 1 FROM pg_database WHERE datname = 'mohr'")" = 1 ] || psql_on "$PG1" "CREATE DATABASE mohr"
  log "PostgreSQL primary :$PG1, synchronous standby :$PG2"

  # One configuration and one set of keys for every node.
  local S="$W/shared"
  mkdir -p "$S"
  if ! [ -f "$S/mohr.yaml" ]; then
    cat >"$S/mohr.yaml" <<EOF
# The cluster's one configuration: every node runs with it (they differ only in --listen/--public-listen).
public_url: http://127.0.0.1:$LB_PUB
database:
  driver: postgres
  dsn: $DSN
ca:
  key: file:$S/ca/intermediate.key
  cert: $S/ca/intermediate.pem
  root: $S/ca/root.pem
services:
  tls_names: [127.0.0.1, localhost]
  # Every node writes each pre-signed OCSP response here, for a static web server (docs/cluster.md).
  ocsp_dir: $W/ocsp
api:
  rate_limit: 1000000
  public_rate_limit: 1000000
audit:
  key: file:$S/audit.skey
  vkeys: $S/audit.vkey
  checkpoint_interval: ${MOHR_CHECKPOINT_INTERVAL:-10s}
EOF
    chmod 600 "$S/mohr.yaml"
    "$MOHR" --data-dir "$S" ca init --dev >/dev/null
    "$MOHR" --data-dir "$S" audit keygen >/dev/null
  fi
  node_up 1 "$API1" "$PUB1"
  node_up 2 "$API2" "$PUB2"
  node_up 3 "$API3" "$PUB3"

  # HAProxy runs one thread: on a machine it shares with the nodes a second thread only takes CPU from them
  # (docs/cluster.md, "OCSP through HAProxy"). Production runs HAProxy on its own machines: raise it there.
  local cache_s=${MOHR_OCSP_CACHE_SECONDS:-2}
  cat >"$W/haproxy.cfg" <<EOF
global
  maxconn 4096
  nbthread ${MOHR_HAPROXY_THREADS:-1}
defaults
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  retries 2
  option redispatch
# The API is mTLS end to end: HAProxy passes TLS through and checks each node's /readyz on its public port.
frontend api
  bind 127.0.0.1:$LB_API
  mode tcp
  default_backend api
backend api
  mode tcp
  balance roundrobin
  option httpchk GET /readyz
  default-server inter 500ms fall 2 rise 2 on-marked-down shutdown-sessions
  server node1 127.0.0.1:$API1 check port $PUB1
  server node2 127.0.0.1:$API2 check port $PUB2
  server node3 127.0.0.1:$API3 check port $PUB3
# OCSP responses are pre-signed and identical for every client: HAProxy keeps those the nodes mark cacheable
# (RFC 5019 §6: Cache-Control max-age up to nextUpdate) for at most $cache_s s, the lower of the two. So a
# response is never served past its nextUpdate, and a revocation shows through HAProxy at most $cache_s s
# after it shows on every node (docs/cluster.md: the propagation time plus this). Error and tryLater
# responses are sent with Cache-Control no-cache and are never kept.
cache ocsp
  total-max-size 64
  max-object-size 16384
  max-age $cache_s
frontend public
  bind 127.0.0.1:$LB_PUB
  mode http
  option http-keep-alive
  # HAProxy's own 503 (no node ready) tells clients when to come back, as the nodes' do.
  http-after-response set-header Retry-After 2 if { status 503 } !{ res.hdr(Retry-After) -m found }
  http-request set-var(txn.ocsp) bool(true) if { method GET } { path_beg /ocsp/ }
  http-request cache-use ocsp if { var(txn.ocsp) -m bool }
  http-response cache-store ocsp if { var(txn.ocsp) -m bool }
  # A small POST is the same request as a GET with it in the path (RFC 6960 A.1, RFC 5019 §5): it goes
  # through the GET cache (HAProxy caches GET only, decided when the request arrives, hence the second pass).
  use_backend ocsp_post if { method POST } { path /ocsp } { req.hdr(content-type) -m str application/ocsp-request } { req.hdr_val(content-length) le 255 }
  default_backend public
backend ocsp_post
  mode http
  http-request wait-for-body time 2s
  http-request set-var(txn.ocspreq) req.body,base64
  http-request set-method GET
  http-request set-path /ocsp/%[var(txn.ocspreq)]
  http-reuse always
  server cache abns@mohr-ocsp-$BASE
frontend ocsp_get
  bind abns@mohr-ocsp-$BASE
  mode http
  http-request cache-use ocsp
  http-response cache-store ocsp
  default_backend public
backend public
  mode http
  balance roundrobin
  option httpchk GET /readyz
  retry-on conn-failure empty-response response-timeout 503
  http-reuse always
  default-server inter 500ms fall 2 rise 2
  server node1 127.0.0.1:$PUB1 check
  server node2 127.0.0.1:$PUB2 check
  server node3 127.0.0.1:$PUB3 check
frontend stats
  bind 127.0.0.1:$LB_STATS
  mode http
  stats enable
  stats uri /
EOF
  if ! { [ -f "$W/haproxy.pid" ] && alive "$(cat "$W/haproxy.pid")" "$W/haproxy.cfg"; }; then
    haproxy -f "$W/haproxy.cfg" -D -p "$W/haproxy.pid"
  fi
  wait_http "http://127.0.0.1:$LB_PUB/readyz" 30 || { log "HAProxy does not answer"; exit 1; }
  log "HAProxy: API https://127.0.0.1:$LB_API, public http://127.0.0.1:$LB_PUB, stats http://127.0.0.1:$LB_STATS"
}

stop_pid() { # stop_pid FILE MATCH (as alive)
  [ -f "$1" ] || return 0
  local pid
  pid=$(cat "$1")
  if alive "$pid" "$2"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do alive "$pid" "$2" || break; sleep 0.1; done
    if alive "$pid" "$2"; then kill -9 "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$1"
}

down() {
  stop_pid "$W/haproxy.pid" "$W/haproxy.cfg"
  for n in 1 2 3; do stop_pid "$W/node$n/pid" "--data-dir $W/node$n "; done
  for s in pg2 pg1; do
    [ -f "$W/$s/data/PG_VERSION" ] && pg "$s" -m fast stop >/dev/null 2>&1 || true
  done
  log "stopped (data kept in $W; rm -rf it for a fresh cluster)"
}

status() {
  for s in pg1:$PG1 pg2:$PG2; do
    local name=${s%%:*} port=${s##*:} role
    role=$(psql_on "$port" "SELECT CASE WHEN pg_is_in_recovery() THEN 'standby' ELSE 'primary' END" 2>/dev/null || echo down)
    echo "$name :$port $role"
  done
  for n in 1 2 3; do
    local pub=$((BASE + 80 + n)) code
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$pub/readyz" 2>/dev/null || true)
    echo "node$n public :$pub readyz ${code:-000}"
  done
  echo "haproxy :$LB_API/:$LB_PUB readyz $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$LB_PUB/readyz" 2>/dev/null || true)"
}

ticks() { # ticks PID...: user + system CPU of the processes, in clock ticks (gone ones count 0)
  local p t=0 st
  for p in "$@"; do
    st=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    st=${st##*) }
    t=$((t + $(echo "$st" | awk '{print $12 + $13}')))
  done
  echo "$t"
}

primary_port() { # the port of the PostgreSQL server that is not in recovery
  local p
  for p in $PG1 $PG2; do
    [ "$(psql_on "$p" "SELECT pg_is_in_recovery()" 2>/dev/null)" = f ] && { echo "$p"; return 0; }
  done
  return 1
}

# pg_counters PORT: commits of the mohr database, WAL records, WAL syncs (pg_stat_wal), in one line
pg_counters() {
  psql_on "$1" "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = 'mohr'), wal_records, wal_sync FROM pg_stat_wal" | tr '|' ' '
}

bench() { # node1 alone against HAProxy over three nodes, same run, same load tool (cmd/mohr-bench), medians
  local S="$W/shared" B="$W/bench" rounds=${MOHR_BENCH_ROUNDS:-3} conc=${MOHR_BENCH_CONC:-8} dur=${MOHR_BENCH_DURATION:-3s}
  local idur=${MOHR_BENCH_ISSUE_DURATION:-5s} settle=${MOHR_BENCH_SETTLE:-3}
  local scenarios=${MOHR_BENCH_SCENARIOS:-ocsp-post ocsp-get issue}
  MOHR=${MOHR_BIN:-$W/mohr}
  mkdir -p "$B"
  local BENCH=${MOHR_BENCH_BIN:-$B/mohr-bench}
  [ -n "${MOHR_BENCH_BIN:-}" ] || (cd "$ROOT" && go build -o "$B/mohr-bench" ./cmd/mohr-bench)
  if ! [ -f "$B/ocsp.req" ]; then # one issued certificate, its OCSP request (SHA-1 CertID, no nonce: RFC 5019)
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$B/leaf.key" -subj /CN=bench \
      -out "$B/leaf.csr" 2>/dev/null
    "$MOHR" --data-dir "$S" --config "$S/mohr.yaml" cert issue --profile organisation-auth --role pharmacy \
      --csr "$B/leaf.csr" --name "OCSP Bench Pharmacy" >"$B/leaf.pem"
    openssl ocsp -issuer "$S/ca/intermediate.pem" -cert "$B/leaf.pem" -no_nonce -reqout "$B/ocsp.req" >/dev/null 2>&1
  fi
  if ! [ -f "$B/ra.pem" ]; then # issuance: an RA officer's client certificate (mTLS to the nodes, through HAProxy's TCP pass)
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$B/ra.key" -subj /CN=x \
      -out "$B/ra.csr" 2>/dev/null
    "$MOHR" --data-dir "$S" --config "$S/mohr.yaml" cert issue --profile operator --role ra-officer \
      --csr "$B/ra.csr" --name "Bench RA Officer" >"$B/ra.pem"
  fi
  local r u sc order pgp hz nodes ha
  hz=$(getconf CLK_TCK)
  pgp=$(primary_port) || { log "no PostgreSQL primary"; exit 1; }
  : >"$B/results"
  : >"$B/issue-costs"
  for ((r = 1; r <= rounds; r++)); do
    # Each round alternates which target goes first, so neither always runs after the other's leftovers.
    order="node1=http://127.0.0.1:$PUB1 haproxy=http://127.0.0.1:$LB_PUB"
    ((r % 2)) || order="haproxy=http://127.0.0.1:$LB_PUB node1=http://127.0.0.1:$PUB1"
    for sc in $scenarios; do
      for u in $order; do
        if [ "$sc" != issue ]; then
          "$BENCH" -url "${u#*=}" -scenario "$sc" -ocsp-req "$B/ocsp.req" -c "$conc" -d "$dur" -warmup 500ms |
            sed -n 's/.*rps=\([0-9]*\).*/\1/p' | sed "s/^/$sc ${u%%=*} /" >>"$B/results"
          continue
        fi
        # Issuance goes to the API (mTLS; HAProxy passes TLS through). Besides the rate, what each
        # certificate cost: CPU of the three nodes, of HAProxy and of the primary's backends, database
        # commits and WAL syncs, counted from the start of the run until $settle s after it, so that the
        # change feeds' work on the run's certificates (on every node) is counted too.
        local target=https://127.0.0.1:$API1
        [ "${u%%=*}" = haproxy ] && target=https://127.0.0.1:$LB_API
        local pids pgpids c0 c1 g0 g1 h0 h1 p0 p1 out
        pids="$(cat "$W/node1/pid" "$W/node2/pid" "$W/node3/pid" 2>/dev/null | tr '\n' ' ')"
        ha=$(cat "$W/haproxy.pid" 2>/dev/null || true)
        pgpids=$(pgrep -P "$(head -1 "$W/$([ "$pgp" = "$PG1" ] && echo pg1 || echo pg2)/data/postmaster.pid")" | tr '\n' ' ')
        c0=$(ticks $pids) h0=$(ticks $ha) g0=$(ticks $pgpids) p0=$(pg_counters "$pgp")
        out=$("$BENCH" -url "$target" -cacert "$S/ca/root.pem" -cert "$B/ra.pem" -key "$B/ra.key" -scenario issue \
          -c "$conc" -d "$idur" -warmup 0)
        sleep "$settle"
        c1=$(ticks $pids) h1=$(ticks $ha) g1=$(ticks $pgpids) p1=$(pg_counters "$pgp")
        echo "$out" | awk -v who="${u%%=*}" -v hz="$hz" -v c="$((c1 - c0))" -v h="$((h1 - h0))" -v g="$((g1 - g0))" \
          -v p0="$p0" -v p1="$p1" '{
            for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
            n = v["requests"]; if (n < 1) n = 1
            split(p0, a, " "); split(p1, b, " ")
            printf "issue %s %s\n", who, v["rps"] > "/dev/stderr"
            printf "%s %s %.2f %.2f %.2f %.2f %.1f %.2f\n", who, v["rps"], c / hz * 1000 / n, g / hz * 1000 / n,
              h / hz * 1000 / n, (b[1] - a[1]) / n, (b[2] - a[2]) / n, (b[3] - a[3]) / n
          }' 2>>"$B/results" >>"$B/issue-costs"
      done
    done
  done
  # Medians per scenario and target, and each HAProxy median over node1's median of the same scenario.
  sort -k1,2 -k3n "$B/results" | awk -v n="$rounds" '
    { v[$1" "$2] = v[$1" "$2] " " $3 }
    END {
      for (k in v) { split(substr(v[k], 2), a, " "); m[k] = a[int((n + 1) / 2)] }
      for (k in m) printf "%s req/s median of %d: %s\n", k, n, m[k]
      for (sc in m) { split(sc, p, " "); if (p[2] == "haproxy") printf "%s ratio haproxy/node1: %.2f%s\n", p[1], m[sc] / m[p[1]" node1"], (p[1] ~ /^ocsp/ && m["ocsp-post node1"] ? sprintf(" (node1 POST as the baseline: %.2f)", m[sc] / m["ocsp-post node1"]) : "") }
    }' | sort
  if [ -s "$B/issue-costs" ]; then # per certificate, medians of the rounds
    echo "issue costs per certificate (medians): target, CPU ms of the 3 nodes, of PostgreSQL's backends, of HAProxy; commits; WAL records; WAL syncs"
    for who in node1 haproxy; do
      local line="$who" col
      for col in 3 4 5 6 7 8; do
        line="$line $(awk -v w="$who" -v c="$col" '$1 == w { print $c }' "$B/issue-costs" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')"
      done
      echo "  $line"
    done
  fi
}

env_vars() {
  cat <<EOF
MOHR_CLUSTER_DIR=$W
MOHR_CLUSTER_API=https://127.0.0.1:$LB_API
MOHR_CLUSTER_PUBLIC=http://127.0.0.1:$LB_PUB
MOHR_CLUSTER_NODES_API="https://127.0.0.1:$API1 https://127.0.0.1:$API2 https://127.0.0.1:$API3"
MOHR_CLUSTER_NODES_PUBLIC="http://127.0.0.1:$PUB1 http://127.0.0.1:$PUB2 http://127.0.0.1:$PUB3"
MOHR_CLUSTER_PG="$PG1 $PG2"
MOHR_CLUSTER_DSN="$DSN"
EOF
}

case "${1:-}" in
up) up ;;
down) down ;;
status) status ;;
env) env_vars ;;
bench) bench ;;
promote) pg pg2 promote -w >/dev/null && log "standby promoted" ;;
*) echo "usage: $0 up|down|status|env|promote|bench" >&2; exit 2 ;;
esac
