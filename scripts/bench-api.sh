#!/usr/bin/env bash
# Load test of the Mohr API on loopback: verification and OCSP at a fixed concurrency for a fixed time.
#
# Without MOHR_BENCH_URL it loads an in-process API server with stub services (cmd/mohr-bench starts it), which
# measures the API layer alone. With MOHR_BENCH_URL it loads a running `mohr serve` on this machine:
#
#   MOHR_BENCH_URL=https://127.0.0.1:8443 MOHR_BENCH_CACERT=tls-ca.pem \
#   MOHR_BENCH_CERT=pharmacy.pem MOHR_BENCH_KEY=pharmacy.key \
#   MOHR_BENCH_CMS=rx.p7s MOHR_BENCH_OCSP_REQ=req.der scripts/bench-api.sh
#
# Knobs: BENCH_CONCURRENCY (32), BENCH_DURATION (10s, at most 5m), BENCH_SCENARIOS ("verify ocsp-post ocsp-get").
# Every run is bounded by `timeout`; any error (transport or non-2xx) makes the script fail.
set -euo pipefail
cd "$(dirname "$0")/.."

conc=${BENCH_CONCURRENCY:-32}
dur=${BENCH_DURATION:-10s}
scenarios=${BENCH_SCENARIOS:-verify ocsp-post ocsp-get}

bin=$(mktemp -d)/mohr-bench
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./cmd/mohr-bench

args=()
if [[ -n "${MOHR_BENCH_URL:-}" ]]; then
	args+=(-url "$MOHR_BENCH_URL")
	[[ -n "${MOHR_BENCH_CACERT:-}" ]] && args+=(-cacert "$MOHR_BENCH_CACERT")
	[[ -n "${MOHR_BENCH_CERT:-}" ]] && args+=(-cert "$MOHR_BENCH_CERT" -key "${MOHR_BENCH_KEY:?MOHR_BENCH_KEY is needed with MOHR_BENCH_CERT}")
	[[ -n "${MOHR_BENCH_CMS:-}" ]] && args+=(-body "$MOHR_BENCH_CMS")
	[[ -n "${MOHR_BENCH_OCSP_REQ:-}" ]] && args+=(-ocsp-req "$MOHR_BENCH_OCSP_REQ")
fi

# Hard bound per run: duration + warm-up + 30 s of slack.
secs=$(awk -v d="$dur" 'BEGIN { if (d ~ /ms$/) print 1; else if (d ~ /m$/) print int(d)*60; else print int(d) }')
limit=$((secs + 31))

echo "# $(date -u +%FT%TZ) $(nproc) cores, go $(go env GOVERSION), concurrency $conc, duration $dur"
for s in $scenarios; do
	timeout --signal=INT --kill-after=5 "$limit" "$bin" -scenario "$s" -c "$conc" -d "$dur" "${args[@]}"
done
