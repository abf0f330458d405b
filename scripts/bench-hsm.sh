#!/usr/bin/env bash
# bench-hsm.sh: HSM signing through Mohr's pool (verify-after-sign included) against a bare miekg/pkcs11 loop on
# the same SoftHSM2 token key, ECDSA P-256 and RSA-2048, 1 and 2 sessions (hsm.BenchmarkSignRatio: the two run in
# alternating 200 ms slices on sessions opened once, so other processes' load falls on both alike). Prints each
# run's throughput ratio and CPU-per-signature ratio, then their medians. Knobs: COUNT (3), EC_SIGS (30000), RSA_SIGS (4000).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin CGO_ENABLED=1
count=${COUNT:-3}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
date -u; uptime
go test -run '^$' -bench 'BenchmarkSignRatio/EC-P256' -benchtime "${EC_SIGS:-30000}x" -count "$count" ./hsm/ | grep '^Benchmark' | tee -a "$out"
go test -run '^$' -bench 'BenchmarkSignRatio/RSA-2048' -benchtime "${RSA_SIGS:-4000}x" -count "$count" ./hsm/ | grep '^Benchmark' | tee -a "$out"
uptime
echo "# medians (mohr/bare = throughput ratio; cpu-bare/mohr = bare CPU per signature / Mohr's)"
awk '{
  name=$1; sub(/-[0-9]+$/, "", name)
  for (i = 3; i < NF; i += 2) { if ($(i+1) == "mohr/bare") t[name] = t[name] " " $i; if ($(i+1) == "cpu-bare/mohr") c[name] = c[name] " " $i }
} END {
  for (n in t) {
    split(t[n], a, " "); split(c[n], b, " ")
    printf "%s  mohr/bare %s  cpu-bare/mohr %s\n", n, med(a), med(b)
  }
}
function med(x,   n, i, j, tmp) {
  n = 0; for (i in x) n++
  for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (x[j] + 0 < x[i] + 0) { tmp = x[i]; x[i] = x[j]; x[j] = tmp }
  return x[int((n + 1) / 2)]
}' "$out" | sort
