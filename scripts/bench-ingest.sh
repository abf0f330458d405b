#!/usr/bin/env bash
# bench-ingest.sh: ingestion through a real `mohr serve` over mTLS (a facility adapter's client certificate,
# 32 kept-alive connections), POST /v1/prescriptions of real B-B prescriptions (HIX-Rx-CAdES, FHIR bundles from
# signing/rxgen) signed before the run by PHYSICIANS registered physicians, each request a new prescription;
# against the bare cryptographic operations one ingestion needs, measured in the same run at the same
# concurrency (cmd/mohr-bench scenarios ingest and bare-ingest): ECDSA P-256 verification of the signature and
# of the signing certificate by its CA, and three P-256 signatures (TSA token, fresh OCSP response, report seal).
# Prints prescriptions/s, p50/p99, the server's CPU per prescription (from /proc) and the ratio to the bare sum;
# then the split of the server's CPU by stage (its CPU profile) and what it allocated per prescription (its
# allocation profile, mohr serve --memprofile, when the build has the flag).
# SQLite in WAL with synchronous=FULL (durable). Knobs: DURATION (10s), ROUNDS (3; report medians),
# PHYSICIANS (8), CONC (32), MOHR_BIN (another build of mohr), BASE_BIN (a previous build, measured in every
# round just before MOHR_BIN on the same data and reported as a ratio to it), PROFILE_OUT (a directory to keep
# the binary and the server's CPU profile in, for go tool pprof), MOHR_ENV (environment settings for MOHR_BIN's
# server only, e.g. MOHR_ENV=GOGC=400 with BASE_BIN the same build: a runtime setting against the default).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
W=$(mktemp -d)
SRV=
trap '[ -n "$SRV" ] && kill "$SRV" 2>/dev/null; wait 2>/dev/null; rm -rf "$W"' EXIT
dur=${DURATION:-10s} rounds=${ROUNDS:-3} nphy=${PHYSICIANS:-8} conc=${CONC:-32}
if [ -n "${MOHR_BIN:-}" ]; then cp "$MOHR_BIN" "$W/mohr"; else go build -o "$W/mohr" ./cmd/mohr; fi
[ -z "${BASE_BIN:-}" ] || cp "$BASE_BIN" "$W/mohr-base"
go build -o "$W/bench" ./cmd/mohr-bench
M="$W/mohr --data-dir $W/data"
API=127.0.0.1:18643 PUB=127.0.0.1:18280
mkdir -p "$W/data"
printf 'listen: %s\npublic_listen: %s\napi: {rate_limit: 100000000, public_rate_limit: 100000000}\n' "$API" "$PUB" > "$W/data/mohr.yaml"
$M ca init --dev 2>/dev/null

# Registries: one facility, nphy physicians (valid national codes: check digit per the national algorithm).
printf 'siam_id,name,licence_number,licence_status,licence_from,licence_until,system_id,system_status,system_from,system_until\nSIAM-10001,Bench Hospital,LIC/1402/77,active,2024-01-01,2030-06-30,SYS-42,active,2024-01-01,2030-06-30\n' > "$W/fac.csv"
$M facility import "$W/fac.csv" >/dev/null
natcode() { # 9 digits -> 10 with check digit
	echo "$1" | awk '{ s = 0; for (i = 1; i <= 9; i++) s += substr($0, i, 1) * (11 - i); r = s % 11; printf "%s%d\n", $0, (r < 2 ? r : 11 - r) }'
}
echo 'national_code,council_no,name,specialty,status,valid_from,valid_until' > "$W/phy.csv"
: > "$W/signers"
for i in $(seq 1 "$nphy"); do
	nc=$(natcode "$(printf '0%08d' $((49937000 + i * 7)))") council=$((120000 + i))
	echo "$nc,$council,Dr Bench $i,General Practice,active,2020-01-01,2030-12-31" >> "$W/phy.csv"
	echo "$W/dr$i.key $W/dr$i.pem $nc $council" >> "$W/signers"
done
$M physician import "$W/phy.csv" >/dev/null
while read -r key pem nc council; do
	openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out "$key"
	openssl req -new -key "$key" -subj /CN=x -out "$key.csr"
	$M cert issue --profile physician-signing --csr "$key.csr" --name "Dr Bench $council" --national-code "$nc" --council-no "$council" > "$pem"
done < "$W/signers"
# The facility adapter's API credential.
openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out "$W/fac.key"
openssl req -new -key "$W/fac.key" -subj /CN=x -out "$W/fac.csr"
$M cert issue --profile facility-adapter --csr "$W/fac.csr" --siam-id SIAM-10001 --licence LIC/1402/77 --system-cert SYS-42 > "$W/fac.pem"

common=(-signers "$W/signers" -chain "$W/data/ca/intermediate.pem")
# start BIN [PROFILE]: serve with that build (GOMAXPROCS=2), warmed up (and checked: any non-201 answer fails the
# run); stop: SIGTERM and wait (the profile is written then).
start() {
	local mem=
	[ -z "${2:-}" ] || ! "$1" serve --help 2>/dev/null | grep -q -- --memprofile || mem="--memprofile=${2%.pprof}.alloc.pprof"
	local envs=()
	[ "$1" != "$W/mohr" ] || read -r -a envs <<< "${MOHR_ENV:-}"
	env "${envs[@]}" GOMAXPROCS=2 "$1" --data-dir "$W/data" serve ${2:+--cpuprofile "$2"} $mem >> "$W/serve.log" 2>&1 &
	SRV=$!
	for _ in $(seq 1 200); do curl -sf "http://$PUB/healthz" >/dev/null && break; sleep 0.1; done
	curl -sf "http://$PUB/healthz" >/dev/null || { cat "$W/serve.log" >&2; exit 1; }
	"$W/bench" -url "https://$API" -cacert "$W/data/ca/root.pem" -cert "$W/fac.pem" -key "$W/fac.key" \
		-scenario ingest "${common[@]}" -pool 200 -c "$conc" -d 2s -warmup 0 -timeout 60s >"$W/warm.out" 2>"$W/warm.err" ||
		grep -q 'pool of 200' "$W/warm.err" || { cat "$W/warm.err" "$W/serve.log" >&2; exit 1; }
}
stop() { kill -TERM "$SRV"; wait "$SRV" 2>/dev/null || true; SRV=; }
cpu() { awk '{print $14 + $15}' "/proc/$SRV/stat"; }
ingest() { # -> "rps p50 p99 cpu_us_per_rx errors"
	local c0 out c1
	c0=$(cpu)
	out=$("$W/bench" -url "https://$API" -cacert "$W/data/ca/root.pem" -cert "$W/fac.pem" -key "$W/fac.key" \
		-scenario ingest "${common[@]}" -pool 40000 -c "$conc" -d "$dur" -warmup 0 -timeout 60s)
	c1=$(cpu)
	printf "%s\n%s\n" "$out" "$(cat "$W/warm.out")" | sed -nE 's/^scenario=.* requests=([0-9]+).*/\1/p' | awk '{ n += $1 } END { print n }' > "$W/served"
	echo "$out" | awk -v cpu=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" '/^scenario=/ {
		for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
		printf "%s %s %s %.0f %s\n", v["rps"], v["p50"], v["p99"], cpu / hz * 1e6 / v["requests"], v["errors"] }'
}
bare() { "$W/bench" -scenario bare-ingest "${common[@]}" -ca-key "$W/data/ca/intermediate.key" -c "$conc" -d "$dur" -warmup 0 > "$W/bare.out"
	echo "$(sed -nE 's/.* rps=([0-9]+) .*/\1/p' "$W/bare.out") $(sed -nE 's/.*cpu_us_per_op=([0-9.]+).*/\1/p' "$W/bare.out")"; }

echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), SQLite durable, $nphy physicians, $conc clients, $dur per run"
openssl speed -seconds 1 -multi 2 ecdsap256 2>/dev/null | tail -1 | awk '{print "# openssl speed -multi 2 ecdsap256: " $7 " signs/s"}'
profiles=()
for r in $(seq 1 "$rounds"); do
	if [ -n "${BASE_BIN:-}" ]; then
		start "$W/mohr-base"
		read -r brps bp50 bp99 bcpurx berrs < <(ingest)
		stop
		[ "$berrs" = 0 ] || { echo "bench-ingest: $berrs requests to the base build failed" >&2; tail -5 "$W/serve.log" >&2; exit 1; }
	fi
	start "$W/mohr" "$W/cpu.$r.pprof"
	profiles+=("$W/cpu.$r.pprof")
	read -r rps p50 p99 cpurx errs < <(ingest)
	stop
	[ "$errs" = 0 ] || { echo "bench-ingest: $errs requests failed" >&2; tail -5 "$W/serve.log" >&2; exit 1; }
	read -r b bcpu < <(bare)
	awk -v r="$r" -v rps="$rps" -v p50="$p50" -v p99="$p99" -v cpu="$cpurx" -v b="$b" -v bcpu="$bcpu" 'BEGIN {
		printf "round %d: ingest %s rx/s p50 %s p99 %s, server CPU %s us/rx | bare sum of the operations %s/s, CPU %s us | ratio rate %.3f, CPU %.3f\n",
			r, rps, p50, p99, cpu, b, bcpu, rps / b, bcpu / cpu }'
	[ -z "${BASE_BIN:-}" ] || awk -v r="$r" -v rps="$brps" -v p50="$bp50" -v p99="$bp99" -v cpu="$bcpurx" -v b="$b" -v bcpu="$bcpu" -v nrps="$rps" -v ncpu="$cpurx" 'BEGIN {
		printf "round %d: base build %s rx/s p50 %s p99 %s, server CPU %s us/rx | ratio to bare: rate %.3f, CPU %.3f | MOHR_BIN / base: rate %.2f, CPU per rx %.2f\n",
			r, rps, p50, p99, cpu, rps / b, bcpu / cpu, nrps / rps, ncpu / cpu }'
done
grep '^bare-ingest' "$W/bare.out"

# Where the server's CPU went (the profiles of MOHR_BIN's servers cover their warm-ups and rounds; they did
# nothing else), by the ingestion's stage functions (a build from before the parse-once change named them
# Verify and addSignatureTimestamp; since, verifyParsed and addSignatureTimestampParsed: both are matched).
# Verification runs three times per prescription (the B-B
# input, the B-T signature inside addRevocation for the chain's other statuses, the B-LT result), the later
# passes finding the earlier passes' signature checks in the verifier's cache; OCSP is addRevocation without
# that verification. Background work (GC, the runtime) is not attributed to a stage.
go tool pprof -proto "$W/mohr" "${profiles[@]}" > "$W/cpu.pprof" 2>/dev/null
share() { # focus-regex [ignore-regex] -> fraction of all samples
	go tool pprof -top -nodefraction=0 -edgefraction=0 -nodecount=1000000 -focus="$1" ${2:+-ignore="$2"} "$W/mohr" "$W/cpu.pprof" 2>/dev/null |
		sed -nE 's/^Showing nodes accounting for .*, ([0-9.]+)% of .* total$/\1/p' | head -1 | awk '{print ($1 == "" ? 0 : $1 / 100)}'
}
[ -s "$W/cpu.pprof" ] || { echo "bench-ingest: no CPU profile" >&2; exit 1; }
[ -z "${PROFILE_OUT:-}" ] || cp "$W/mohr" "$W/cpu.pprof" "$W"/cpu.*.alloc.pprof "$PROFILE_OUT"/ 2>/dev/null || true
echo "# CPU by stage (share of the server's samples; us/rx from the last round's CPU per prescription, $cpurx us):"
for st in "ingest (all of IngestAs);signing\.\(\*Ingestor\)\.IngestAs$;" \
	"verify (3 passes);signing\.\(\*Verifier\)\.(Verify|verifyParsed)$;" \
	"  of it: registry lookup (SQL);signing\.\(\*Verifier\)\.registration$;" \
	"TSA (timestamp token);signing\.([aA]ddSignatureTimestamp|addSignatureTimestampParsed)$;" \
	"OCSP (fresh response, B-LT data);signing\.\(\*Ingestor\)\.addRevocation$;signing\.\(\*Verifier\)\.(Verify|verifyParsed)$" \
	"store (SQLite durable, group commit);prescriptionStore\.SavePrescription$;" \
	"seal (sealed report);signing\.sealReport$;" \
	"TLS (handshakes, records);crypto/tls\.;signing\." \
	"GC (background);runtime\.gcBgMarkWorker$;" \
	"across stages: ECDSA verifications (all);(crypto/ecdsa\.VerifyASN1|p256\.\(\*Verifier\)\.Verify)$;" \
	"  of them: verify-after-sign;keys\.verifyingSigner\.Sign$;crypto/ecdsa\.\(\*PrivateKey\)\.Sign$" \
	"across stages: ECDSA signatures (all);crypto/ecdsa\.SignASN1$;"; do
	IFS=';' read -r name focus ignore <<< "$st"
	f=$(share "$focus" "$ignore")
	case $name in ingest*|TLS*|GC*) rest=$(awk -v r="${rest:-1}" -v f="$f" 'BEGIN { print r - f }') ;; esac
	awk -v n="$name" -v f="$f" -v c="$cpurx" 'BEGIN { printf "  %-34s %5.1f%%  %5.0f us/rx\n", n, f * 100, f * c }'
done
awk -v f="$rest" -v c="$cpurx" 'BEGIN { printf "  %-34s %5.1f%%  %5.0f us/rx\n", "rest (HTTP, router, JSON, runtime)", f * 100, f * c }'
# What the server allocated (the last round's server, warm-up and round; bytes per prescription against the
# prescriptions it served, warm-up included), and where.
if [ -s "$W/cpu.$rounds.alloc.pprof" ]; then
	served=$(cat "$W/served")
	for idx in alloc_space alloc_objects; do
		go tool pprof -sample_index=$idx -top -nodecount=0 "$W/mohr" "$W/cpu.$rounds.alloc.pprof" 2>/dev/null |
			sed -nE 's/^Showing nodes accounting for ([0-9.]+)([kMG]?)B?, .*/\1 \2/p' | head -1 |
			awk -v n="$served" -v i=$idx '{ m = ($2 == "k" ? 1e3 : $2 == "M" ? 1e6 : $2 == "G" ? 1e9 : 1)
				printf "# allocations, last round'"'"'s server (%d prescriptions with its warm-up): %s %.0f per prescription\n", n, (i == "alloc_space" ? "bytes" : "objects"), $1 * m / n }'
	done
	go tool pprof -sample_index=alloc_space -top -nodecount=12 "$W/mohr" "$W/cpu.$rounds.alloc.pprof" 2>/dev/null |
		sed -nE '/^ +[0-9.]+[kMG]?B /p' | sed 's/^/  /'
fi
