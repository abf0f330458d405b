#!/usr/bin/env bash
# bench-ocsp.sh: pre-signed OCSP responses per second from ca/revocation's Responder behind net/http,
# against a trivial net/http server returning a fixed response of the same size, in the same run, with
# wrk on loopback. Bounded in time: ROUNDS x 3 runs of DURATION seconds, plus build and setup.
#
#   scripts/bench-ocsp.sh                 # 5 rounds of 5 s per server, 32 connections, 1 wrk thread
#   DURATION=3 ROUNDS=9 CONNS=64 scripts/bench-ocsp.sh
#
# The servers come from the test binary (TestOCSPBenchServer in ca/revocation/bench_test.go): a
# responder with 1,000 certificates (a tenth revoked), mounted twice (with and without caching headers),
# and the baseline. wrk sends GET requests (RFC 6960
# Appendix A.1) rotating over the 1,000 certificates, SHA-1 and SHA-256 CertIDs, to both servers (the
# baseline ignores the path). Both listen on 127.0.0.1 only.
set -euo pipefail

DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-5}
CONNS=${CONNS:-32}
THREADS=${THREADS:-1}

cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null 2>&1; then
	echo "installing wrk" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends wrk >/dev/null
fi

work=$(mktemp -d)
server=
cleanup() {
	touch "$work/stop" 2>/dev/null || true
	if [ -n "$server" ]; then wait "$server" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

go test -c -o "$work/revocation.test" ./ca/revocation/
MOHR_BENCH_DIR="$work" MOHR_BENCH_SERVE_SECONDS=$((ROUNDS * DURATION * 3 + 120)) \
	"$work/revocation.test" -test.run '^TestOCSPBenchServer$' -test.v >"$work/server.log" 2>&1 &
server=$!

for _ in $(seq 1 600); do
	[ -f "$work/ready" ] && break
	if ! kill -0 "$server" 2>/dev/null; then cat "$work/server.log" >&2; exit 1; fi
	sleep 0.2
done
[ -f "$work/ready" ] || { echo "server not ready" >&2; exit 1; }

fixed="http://$(cat "$work/fixed.addr")"
mohr="http://$(cat "$work/mohr.addr")"
bare="http://$(cat "$work/bare.addr")"
echo "response size: $(cat "$work/resp.bytes") bytes; wrk -t$THREADS -c$CONNS -d${DURATION}s, $ROUNDS rounds, $(nproc) CPUs"

# Server CPU time (user+sys clock ticks) of the test binary, which serves both servers; only one is
# loaded at a time, so the CPU it burns during a run is that server's.
ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }
hz=$(getconf CLK_TCK)

# rps URL prints "requests/s server-CPU-µs/request" for one wrk run.
rps() {
	local t0 t1 out
	t0=$(ticks)
	out=$(wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" -s "$work/paths.lua" "$1/")
	t1=$(ticks)
	if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then echo "wrk: $out" >&2; fi
	awk -v t0="$t0" -v t1="$t1" -v hz="$hz" '
		/requests in/ {n = $1}
		/Requests\/sec/ {r = $2}
		END {printf "%s %.2f\n", r, (t1 - t0) / hz * 1e6 / n}' <<<"$out"
}

# Three servers in one process: "fixed" (the baseline), "ocsp" (the responder with RFC 5019 caching headers,
# as production serves GET) and "bare" (the responder with only Content-Type, the baseline's HTTP shape).
# Rounds rotate the order, and each round's ratios compare runs next to each other in time. On a shared
# machine throughput follows the neighbours' load; server CPU time per request does much less, so its ratio
# is the steadier measure.
declare -a fr fc mr mc br bc rr rb
for r in $(seq 1 "$ROUNDS"); do
	case $((r % 3)) in
	1) order="fixed ocsp bare" ;;
	2) order="ocsp bare fixed" ;;
	0) order="bare fixed ocsp" ;;
	esac
	for s in $order; do
		case $s in
		fixed) read -r f fcpu < <(rps "$fixed") ;;
		ocsp) read -r m mcpu < <(rps "$mohr") ;;
		bare) read -r b bcpu < <(rps "$bare") ;;
		esac
	done
	fr+=("$f"); fc+=("$fcpu"); mr+=("$m"); mc+=("$mcpu"); br+=("$b"); bc+=("$bcpu")
	rr+=("$(awk -v f="$f" -v m="$m" 'BEGIN {printf "%.3f", m / f}')")
	rb+=("$(awk -v f="$f" -v m="$b" 'BEGIN {printf "%.3f", m / f}')")
	printf 'round %d: fixed %6.0f req/s %5.1f us | ocsp %6.0f req/s %5.1f us (x%s) | bare %6.0f req/s %5.1f us (x%s)\n' \
		"$r" "$f" "$fcpu" "$m" "$mcpu" "${rr[-1]}" "$b" "$bcpu" "${rb[-1]}"
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "(us = server CPU time per request)"
printf 'median req/s: fixed %.0f, ocsp %.0f, bare %.0f; median per-round ratio to fixed: ocsp %s, bare %s\n' \
	"$(median "${fr[@]}")" "$(median "${mr[@]}")" "$(median "${br[@]}")" "$(median "${rr[@]}")" "$(median "${rb[@]}")"
awk -v f="$(median "${fc[@]}")" -v m="$(median "${mc[@]}")" -v b="$(median "${bc[@]}")" 'BEGIN {
	printf "median CPU us/request: fixed %.1f, ocsp %.1f, bare %.1f; capacity ratio to fixed: ocsp %.3f, bare %.3f\n", f, m, b, f / m, f / b }'

touch "$work/stop"
wait "$server" || { cat "$work/server.log" >&2; exit 1; }
server=
echo "signatures while serving: $(cat "$work/signatures.while.serving" 2>/dev/null || echo '?')"
