#!/usr/bin/env bash
# bench-verify-ocsp.sh: `mohr verify --ocsp`'s pipeline (BatchVerifier on all cores, HTTPRevocation to an OCSP
# responder over HTTP, HTTP CRLs, the fetched-revocation cache, GOGC 400) over a batch of B-B prescriptions of
# one signer, as a ratio to the bare ECDSA P-256 verifications the batch needs, measured in the same run
# (signing.BenchmarkVerifyOCSPOneSigner), then the same without the revocation cache for comparison.
# Knobs: DOCS (10000), COUNT (3 runs each; report the median ratio).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
docs=${DOCS:-10000} count=${COUNT:-3}
echo "# second core check: openssl speed -multi 2 ecdsap256"
openssl speed -seconds 1 -multi 2 ecdsap256 2>/dev/null | tail -1 || true
echo "# with the revocation cache"
MOHR_BENCH_DOCS=$docs go test -run '^$' -bench 'VerifyOCSPOneSigner$' -benchtime 1x -count "$count" ./signing | grep Benchmark
echo "# without it (one OCSP request per document)"
MOHR_BENCH_NO_REVOCATION_CACHE=1 MOHR_BENCH_DOCS=$docs go test -run '^$' -bench 'VerifyOCSPOneSigner$' -benchtime 1x -count "$count" ./signing | grep Benchmark
