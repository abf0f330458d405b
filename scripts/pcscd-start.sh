#!/usr/bin/env bash
# pcscd-start.sh starts pcscd (with the vsmartcard vpcd reader driver) without systemd, as DEPS.md says:
# the virtual readers listen on 127.0.0.1:35963 and :35964 for a virtual card to connect.
# Safe to run twice: a running pcscd that already serves the vpcd readers is kept; one started before the
# vpcd driver was installed (apt may start pcscd mid-transaction) is restarted.
set -euo pipefail
# vpcd_listening: is something listening on TCP 35963 (0x8C7B; state 0A = LISTEN)?
vpcd_listening() { awk '$2 ~ /:8C7B$/ && $4 == "0A" {found=1} END {exit !found}' /proc/net/tcp /proc/net/tcp6 2>/dev/null; }
if pgrep -x pcscd >/dev/null 2>&1 && [ -S /run/pcscd/pcscd.comm ] && vpcd_listening; then
  echo "pcscd-start: pcscd already running with the vpcd readers"; exit 0
fi
pkill -x pcscd 2>/dev/null || true
for _ in $(seq 1 50); do pgrep -x pcscd >/dev/null || break; sleep 0.1; done
rm -f /run/pcscd/pcscd.pid /run/pcscd/pcscd.comm
install -d /run/pcscd
/usr/sbin/pcscd
for _ in $(seq 1 100); do [ -S /run/pcscd/pcscd.comm ] && vpcd_listening && break; sleep 0.1; done
[ -S /run/pcscd/pcscd.comm ] || { echo "pcscd-start: pcscd did not start" >&2; exit 1; }
vpcd_listening || { echo "pcscd-start: pcscd runs but the vpcd reader is not listening on 35963 (package vsmartcard-vpcd)" >&2; exit 1; }
echo "pcscd-start: pcscd running with the vpcd readers"
