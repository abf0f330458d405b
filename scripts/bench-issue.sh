#!/usr/bin/env bash
# bench-issue.sh: issuance through a real `mohr serve` over mTLS (an RA officer's client certificate), POST
# /v1/certificates for organisation-auth certificates, against the bare x509.CreateCertificate with the same CA
# key on the same cores, measured in the same run (cmd/mohr-bench scenarios issue and bare-create):
#   - 1 client (p50) and 32 clients (certificates/s, ratio to bare at 32 goroutines),
#   - the server's CPU per certificate (from /proc),
#   - 32 clients with the server at GOMAXPROCS=1 and 2 (scaling with cores).
# Durable writes: SQLite in WAL with synchronous=FULL (default), or DB=postgres: the script starts its own
# throwaway PostgreSQL 15 cluster (initdb in a temporary directory, port PGPORT, fsync=on, synchronous_commit=on,
# full_page_writes=on, as in production; the test cluster on 54329 runs fsync=off and is not used) and stops it
# at exit. MOHR_BIN measures another build instead of this tree's; BASE_BIN (e.g. main's build) is measured too,
# interleaved with it round by round on the same database, and the ratio of the two is printed.
# Knobs: DB (sqlite), DURATION (10s), ROUNDS (3; report medians), PGPORT (54339), BASE_BIN, PROFILE (a file:
# one more 32-client run of this build with the server's CPU profile written there; `go tool pprof -top FILE`).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
W=$(mktemp -d)
SRV=
trap '[ -n "$SRV" ] && kill "$SRV" 2>/dev/null; wait 2>/dev/null; rm -rf "$W"' EXIT
db=${DB:-sqlite} dur=${DURATION:-10s} rounds=${ROUNDS:-3}
if [ -n "${MOHR_BIN:-}" ]; then cp "$MOHR_BIN" "$W/mohr"; else go build -o "$W/mohr" ./cmd/mohr; fi
builds=mohr
if [ -n "${BASE_BIN:-}" ]; then cp "$BASE_BIN" "$W/base"; builds="mohr base"; fi
go build -o "$W/bench" ./cmd/mohr-bench
M="$W/mohr --data-dir $W/data"
API=127.0.0.1:18543 PUB=127.0.0.1:18180
mkdir -p "$W/data"
printf 'listen: %s\npublic_listen: %s\napi: {rate_limit: 100000000, public_rate_limit: 100000000}\n' "$API" "$PUB" > "$W/data/mohr.yaml"
if [ "$db" = postgres ]; then
	PGBIN=$(ls -d /usr/lib/postgresql/15/bin 2>/dev/null || ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
	[ -n "$PGBIN" ] || { echo "bench-issue: PostgreSQL server not installed (scripts/install-deps.sh)" >&2; exit 1; }
	RUN=""
	[ "$(id -u)" -eq 0 ] && RUN="runuser -u postgres --"
	pgport=${PGPORT:-54339}
	PGW=$(mktemp -d) # its own directory: the server's user must own it (W is root's, mode 0700)
	[ "$(id -u)" -eq 0 ] && chown postgres:postgres "$PGW"
	trap '[ -n "$SRV" ] && kill "$SRV" 2>/dev/null; wait 2>/dev/null; $RUN "$PGBIN/pg_ctl" -D "$PGW/data" -m fast -w stop >/dev/null 2>&1; rm -rf "$W" "$PGW"' EXIT
	$RUN "$PGBIN/initdb" -D "$PGW/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$PGW/initdb.log" 2>&1 ||
		{ cat "$PGW/initdb.log" >&2; exit 1; }
	# The durability settings are PostgreSQL's defaults; they are given explicitly so that the report below is
	# what the server ran with, not what a configuration file elsewhere might say.
	$RUN "$PGBIN/pg_ctl" -D "$PGW/data" -l "$PGW/log" -w -t 60 -o "-p $pgport -k $PGW -c listen_addresses=127.0.0.1 \
		-c fsync=on -c synchronous_commit=on -c full_page_writes=on -c max_connections=200" start >/dev/null ||
		{ cat "$PGW/log" >&2; exit 1; }
	dsn="postgres://postgres@127.0.0.1:$pgport/postgres?sslmode=disable"
	psql -q "$dsn" -c "CREATE DATABASE mohr_bench"
	pgdsn="postgres://postgres@127.0.0.1:$pgport/mohr_bench?sslmode=disable"
	printf 'database: {driver: postgres, dsn: "%s"}\n' "$pgdsn" >> "$W/data/mohr.yaml"
	pgset() { psql -Atq "$dsn" -c "show $1"; }
	echo "# PostgreSQL $(pgset server_version), own cluster on :$pgport: fsync=$(pgset fsync) synchronous_commit=$(pgset synchronous_commit) full_page_writes=$(pgset full_page_writes) wal_sync_method=$(pgset wal_sync_method)"
	[ "$(pgset fsync)" = on ] && [ "$(pgset synchronous_commit)" = on ] || { echo "bench-issue: PostgreSQL is not durable" >&2; exit 1; }
fi
$M ca init --dev 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out "$W/ra.key"
openssl req -new -key "$W/ra.key" -subj /CN=x -out "$W/ra.csr"
$M cert issue --profile operator --role ra-officer --csr "$W/ra.csr" --name "Bench RA Officer" > "$W/ra.pem"

start() { # GOMAXPROCS [build [serve flags]]
	local flags=${3:-}
	"$W/${2:-mohr}" serve --help 2>/dev/null | grep -q -- --log-level && flags="$flags --log-level debug"
	GOMAXPROCS=$1 "$W/${2:-mohr}" --data-dir "$W/data" serve $flags > "$W/serve.log" 2>&1 &
	SRV=$!
	# A start re-signs the OCSP responses an earlier build left unsigned and reads every stored one, which
	# grows with the database (each round adds thousands of certificates): allow it two minutes.
	local t0
	t0=$(date -u +%s.%N)
	for _ in $(seq 1 1200); do
		if curl -sf "http://$PUB/healthz" >/dev/null; then
			UP=$(date -u +%H:%M:%S.%N) STARTUP=$(awk -v a="$t0" -v b="$(date -u +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
			return
		fi
		sleep 0.1
	done
	echo "bench-issue: ${2:-mohr} (GOMAXPROCS=$1) did not answer /healthz within 2 minutes; its log:" >&2
	cat "$W/serve.log" >&2; exit 1
}
stop() { kill -INT "$SRV"; wait "$SRV" 2>/dev/null || true; SRV=; }
cpu() { awk '{print $14 + $15}' "/proc/$SRV/stat"; }
issue() { # concurrency [drain seconds] -> "rps p50 cpu_us_per_cert certs"
	# The server's CPU is counted until drain seconds after the clients stop, so that work the certificates
	# caused afterwards (the change feed's OCSP pre-signing) is counted too, whichever build falls behind.
	# mohr-bench exits non-zero when any request failed; that must not end the script from inside this process
	# substitution (set -e would leave the caller's `read` with nothing): the failures are counted and shown.
	local c0 out c1
	c0=$(cpu)
	out=$("$W/bench" -url "https://$API" -cacert "$W/data/ca/root.pem" -cert "$W/ra.pem" -key "$W/ra.key" \
		-scenario issue -c "$1" -d "$dur" -warmup 0 2>"$W/bench.err") || true
	sleep "${2:-0}"
	c1=$(cpu)
	[ -s "$W/bench.err" ] && sed 's/^/bench-issue: /' "$W/bench.err" >&2
	echo "$out" | awk -v cpu=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" '/requests=/ {
		for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
		p = v["p50"]; ms = p + 0
		if (p ~ /µs$/) ms /= 1000; else if (p !~ /ms$/) ms *= 1000
		# requests counts the answered ones only (2xx); errors are the others
		printf "%s %.3fms %.0f %d\n", v["rps"], ms, (v["requests"] > 0 ? cpu / hz * 1e6 / v["requests"] : 0), v["requests"]; ok = 1 }
		END { if (!ok) print "0 0ms 0 0" }'
}
# presigned -> "changes max_lag_ms in_request": the OCSP pre-signing the server's change feed logged (--log-level debug;
# builds without the flag log nothing). A page's lag runs from its oldest event; events from before the server
# answered (the certificates it issues itself while starting: its responder's and TLS certificates) count from
# the moment it answered (UP), since the change feed only starts then: otherwise the start-up time, which grows
# with the responses stored (the responder reads and verifies each of them), would be reported as the feed's lag.
presigned() { awk -v up="$UP" 'function sod(t, h) { split(t, h, ":"); return h[1] * 3600 + h[2] * 60 + h[3] }
	BEGIN { u = sod(up) }
	/OCSP pre-signed/ { for (i = 1; i <= NF; i++) { split($i, kv, "=")
		if (kv[1] == "time") { split(kv[2], dt, "T"); at = sod(substr(dt[2], 1, length(dt[2]) - 1)); if (at < u - 43200) at += 86400 }
		if (kv[1] == "changes") n += kv[2]
		if (kv[1] == "in_request") q += kv[2]
		if (kv[1] == "lag") { l = kv[2] + 0; if (kv[2] ~ /ms$/) l /= 1000; else if (kv[2] ~ /µs$/) l /= 1e6; else if (kv[2] ~ /m[0-9]/) l = 999 } }
		if (at - l < u) l = at - u
		if (l > m) m = l }
	END { printf "%d %.0f %d\n", n, m * 1000, q }' "$W/serve.log"; }
bare() { "$W/bench" -scenario bare-create -ca-cert "$W/data/ca/intermediate.pem" -ca-key "$W/data/ca/intermediate.key" -c "$1" -d "$dur" -warmup 0 |
	sed -E 's/.* rps=([0-9]+) .*/\1/'; }

echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), db $db, $dur per run, builds: $builds"
[ "$db" = sqlite ] && echo "# SQLite: WAL, synchronous=FULL (every commit fsyncs the WAL)"
openssl speed -seconds 1 -multi 2 ecdsap256 2>/dev/null | tail -1 | awk '{print "# openssl speed -multi 2 ecdsap256: " $7 " signs/s"}'
for b in $builds; do
	start 2 "$b"
	"$W/bench" -url "https://$API" -cacert "$W/data/ca/root.pem" -cert "$W/ra.pem" -key "$W/ra.key" -scenario issue -c 32 -d 2s -warmup 0 >/dev/null
	stop
done
med() { sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
for r in $(seq 1 "$rounds"); do
	bn=$(bare 32)
	echo "$bn" >> "$W/bare"
	order=$builds
	[ $((r % 2)) = 0 ] && order=$(echo "$builds" | awk '{for (i = NF; i > 0; i--) printf "%s ", $i}') # alternate who goes first
	for b in $order; do
		start 2 "$b"
		read -r one p50 cpu1 n1 < <(issue 1)
		read -r many p50m cpum n32 < <(issue 32 5) # 5 s: two change-feed polls
		read -r pre lag inreq < <(presigned)
		stop
		echo "${p50%ms} $many $cpum $(awk -v m="$many" -v b="$bn" 'BEGIN {print m / b}')" >> "$W/$b.rounds"
		awk -v r="$r" -v bd="$b" -v one="$one" -v p50="$p50" -v many="$many" -v p50m="$p50m" -v cpu="$cpum" -v b="$bn" 'BEGIN {
			printf "round %d %s: 1 client %s certs/s p50 %s | 32 clients %s certs/s p50 %s, server CPU %s us/cert | bare 32 %s/s | ratio %.3f\n",
				r, bd, one, p50, many, p50m, cpu, b, many / b }'
		[ "$pre" -gt 0 ] && echo "  OCSP pre-signing: $pre of $((n1 + n32)) issued certificates (and the server's own) pre-signed and stored, $inreq of them signed by the issuing request itself; the change feed stored the last $lag ms after issuance (or after the server answered, for its own); start-up took $STARTUP s"
	done
done
for p in 1 2; do
	for b in $builds; do
		start "$p" "$b"
		read -r rps _ _ _ < <(issue 32)
		stop
		echo "$rps" >> "$W/$b.gmp$p"
		echo "GOMAXPROCS=$p $b: 32 clients $rps certs/s"
	done
done
for b in $builds; do
	col() { awk -v c="$1" '{print $c}' "$W/$b.rounds" | med; }
	echo "median $b: 1-client p50 $(col 1) ms | 32 clients $(col 2) certs/s, server CPU $(col 3) us/cert, ratio to bare $(col 4) | GOMAXPROCS 2/1 $(awk -v a="$(med < "$W/$b.gmp2")" -v b="$(med < "$W/$b.gmp1")" 'BEGIN {printf "%.2f", a / b}')"
done
if [ -n "${PROFILE:-}" ]; then
	start 2 mohr "--cpuprofile $PROFILE"
	read -r rps _ cpum _ < <(issue 32)
	stop
	echo "profiled run: 32 clients $rps certs/s, server CPU $cpum us/cert; profile in $PROFILE"
fi
if [ -n "${BASE_BIN:-}" ]; then
	paste "$W/mohr.rounds" "$W/base.rounds" | awk '{print $2 / $6, $3 / $7, $1 / $5}' > "$W/vs"
	echo "this build / BASE_BIN, same run, medians: 32-client rate $(awk '{print $1}' "$W/vs" | med), CPU per cert $(awk '{print $2}' "$W/vs" | med), 1-client p50 $(awk '{print $3}' "$W/vs" | med)"
fi
