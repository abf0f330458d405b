#!/usr/bin/env bash
# bench-serve.sh loads a real `mohr serve` (SQLite, software keys, development CA) on loopback: verification of
# a signed prescription as a pharmacy over mTLS, and OCSP (POST and GET), at a fixed concurrency for a fixed time
# (scripts/bench-api.sh does the loading). Everything lives in a temporary directory and the server is stopped
# at the end. Knobs: BENCH_CONCURRENCY (32), BENCH_DURATION (10s).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
W=$(mktemp -d)
trap 'kill "$SRV" 2>/dev/null || true; wait "$SRV" 2>/dev/null || true; rm -rf "$W"' EXIT
go build -o "$W/mohr" ./cmd/mohr
M="$W/mohr --data-dir $W/data"
API=127.0.0.1:18443 PUB=127.0.0.1:18080
mkdir -p "$W/data"
printf 'listen: %s\npublic_listen: %s\napi: {rate_limit: 100000000, public_rate_limit: 100000000}\n' "$API" "$PUB" > "$W/data/mohr.yaml"
$M ca init --dev 2>/dev/null
# A physician in the registry, a physician-signing certificate for a file key, a signed prescription.
printf 'national_code,council_no,name,specialty,status,valid_from,valid_until\n0499370899,123456,Dr Sara Ahmadi,General Practice,active,2020-01-01,2030-12-31\n' > "$W/phy.csv"
$M physician import "$W/phy.csv" >/dev/null
openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out "$W/dr.key"
openssl req -new -key "$W/dr.key" -subj /CN=x -out "$W/dr.csr"
$M cert issue --profile physician-signing --csr "$W/dr.csr" --name "Dr Sara Ahmadi" --national-code 0499370899 --council-no 123456 > "$W/dr.pem"
$M rx generate --count 1 --national-code 0499370899 --council 123456 --out "$W/rx" >/dev/null
$M sign --key "file:$W/dr.key" --cert "$W/dr.pem" --chain "$W/data/ca/intermediate.pem" --in "$(ls "$W"/rx/*.json | head -1)" --out "$W/rx.p7s"
# The pharmacy's API credential.
openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out "$W/ph.key"
openssl req -new -key "$W/ph.key" -subj /CN=x -out "$W/ph.csr"
$M cert issue --profile organisation-auth --csr "$W/ph.csr" --name "Razi Pharmacy" --role pharmacy > "$W/ph.pem"
openssl ocsp -issuer "$W/data/ca/intermediate.pem" -sha256 -cert "$W/dr.pem" -no_nonce -reqout "$W/ocsp.req" >/dev/null 2>&1
$M serve > "$W/serve.log" 2>&1 &
SRV=$!
for _ in $(seq 1 100); do curl -sf "http://$PUB/healthz" >/dev/null && break; sleep 0.1; done
# The document must verify, or the load test measures refusals.
ind=$(curl -s --cacert "$W/data/ca/root.pem" --cert "$W/ph.pem" --key "$W/ph.key" -H 'Content-Type: application/cms' \
	--data-binary @"$W/rx.p7s" "https://$API/v1/verify" | grep -o '"indication":"[A-Z_]*"' | head -1)
echo "# verification of the benchmark document: $ind"
[ "$ind" = '"indication":"TOTAL_PASSED"' ] || { echo "bench-serve: the benchmark document does not verify" >&2; exit 1; }
MOHR_BENCH_URL="https://$API" MOHR_BENCH_CACERT="$W/data/ca/root.pem" MOHR_BENCH_CERT="$W/ph.pem" MOHR_BENCH_KEY="$W/ph.key" \
MOHR_BENCH_CMS="$W/rx.p7s" MOHR_BENCH_OCSP_REQ="$W/ocsp.req" bash scripts/bench-api.sh
