#!/usr/bin/env bash
# bench-issue.sh: issuance through a real `mohr serve` over mTLS (an RA officer's client certificate), POST
# /v1/certificates for organisation-auth certificates, against the bare x509.CreateCertificate with the same CA
# key on the same cores, measured in the same run (cmd/mohr-bench scenarios issue and bare-create):
#   - 1 client (p50) and 32 clients (certificates/s, ratio to bare at 32 goroutines),
#   - the server's CPU per certificate (from /proc),
#   - 32 clients with the server at GOMAXPROCS=1 and 2 (scaling with cores).
# Durable writes: SQLite in WAL with synchronous=FULL (default), or DB=postgres on the test cluster
# (MOHR_TEST_PG_DSN; fsync and synchronous_commit on). MOHR_BIN compares another build (e.g. main's).
# Knobs: DB (sqlite), DURATION (10s), ROUNDS (3; report medians).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
W=$(mktemp -d)
SRV=
trap '[ -n "$SRV" ] && kill "$SRV" 2>/dev/null; wait 2>/dev/null; rm -rf "$W"' EXIT
db=${DB:-sqlite} dur=${DURATION:-10s} rounds=${ROUNDS:-3}
if [ -n "${MOHR_BIN:-}" ]; then cp "$MOHR_BIN" "$W/mohr"; else go build -o "$W/mohr" ./cmd/mohr; fi
go build -o "$W/bench" ./cmd/mohr-bench
M="$W/mohr --data-dir $W/data"
API=127.0.0.1:18543 PUB=127.0.0.1:18180
mkdir -p "$W/data"
printf 'listen: %s\npublic_listen: %s\napi: {rate_limit: 100000000, public_rate_limit: 100000000}\n' "$API" "$PUB" > "$W/data/mohr.yaml"
if [ "$db" = postgres ]; then
	dsn=${MOHR_TEST_PG_DSN:?DB=postgres needs MOHR_TEST_PG_DSN}
	name=mohr_bench_$$
	psql -q "$dsn" -c "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name"
	trap '[ -n "$SRV" ] && kill "$SRV" 2>/dev/null; wait 2>/dev/null; psql -q "$dsn" -c "DROP DATABASE IF EXISTS $name WITH (FORCE)"; rm -rf "$W"' EXIT
	pgdsn=$(echo "$dsn" | sed -E "s#/[^/?]*(\?|$)#/$name\1#")
	printf 'database: {driver: postgres, dsn: "%s"}\n' "$pgdsn" >> "$W/data/mohr.yaml"
	echo "# PostgreSQL: fsync=$(psql -Atq "$dsn" -c 'show fsync') synchronous_commit=$(psql -Atq "$dsn" -c 'show synchronous_commit')"
fi
$M ca init --dev 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out "$W/ra.key"
openssl req -new -key "$W/ra.key" -subj /CN=x -out "$W/ra.csr"
$M cert issue --profile operator --role ra-officer --csr "$W/ra.csr" --name "Bench RA Officer" > "$W/ra.pem"

start() { # GOMAXPROCS
	GOMAXPROCS=$1 $M serve > "$W/serve.log" 2>&1 &
	SRV=$!
	for _ in $(seq 1 200); do curl -sf "http://$PUB/healthz" >/dev/null && return; sleep 0.1; done
	cat "$W/serve.log" >&2; exit 1
}
stop() { kill "$SRV"; wait "$SRV" 2>/dev/null || true; SRV=; }
cpu() { awk '{print $14 + $15}' "/proc/$SRV/stat"; }
issue() { # concurrency -> "rps p50 cpu_us_per_cert"
	local c0 out c1
	c0=$(cpu)
	out=$("$W/bench" -url "https://$API" -cacert "$W/data/ca/root.pem" -cert "$W/ra.pem" -key "$W/ra.key" \
		-scenario issue -c "$1" -d "$dur" -warmup 0)
	c1=$(cpu)
	echo "$out" | awk -v cpu=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" '{
		for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
		printf "%s %s %.0f\n", v["rps"], v["p50"], cpu / hz * 1e6 / v["requests"] }'
}
bare() { "$W/bench" -scenario bare-create -ca-cert "$W/data/ca/intermediate.pem" -ca-key "$W/data/ca/intermediate.key" -c "$1" -d "$dur" -warmup 0 |
	sed -E 's/.* rps=([0-9]+) .*/\1/'; }

echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), db $db, $dur per run"
openssl speed -seconds 1 -multi 2 ecdsap256 2>/dev/null | tail -1 | awk '{print "# openssl speed -multi 2 ecdsap256: " $7 " signs/s"}'
start 2
"$W/bench" -url "https://$API" -cacert "$W/data/ca/root.pem" -cert "$W/ra.pem" -key "$W/ra.key" -scenario issue -c 32 -d 2s -warmup 0 >/dev/null
for r in $(seq 1 "$rounds"); do
	read -r one p50 cpu1 < <(issue 1)
	read -r many p50m cpum < <(issue 32)
	b=$(bare 32)
	awk -v r="$r" -v one="$one" -v p50="$p50" -v many="$many" -v p50m="$p50m" -v cpu="$cpum" -v b="$b" 'BEGIN {
		printf "round %d: 1 client %s certs/s p50 %s | 32 clients %s certs/s p50 %s, server CPU %s us/cert | bare 32 %s/s | ratio %.3f\n",
			r, one, p50, many, p50m, cpu, b, many / b }'
done
stop
for p in 1 2; do
	start "$p"
	read -r rps _ _ < <(issue 32)
	echo "GOMAXPROCS=$p: 32 clients $rps certs/s"
	stop
done
