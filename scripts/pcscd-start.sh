#!/usr/bin/env bash
# pcscd-start.sh starts pcscd (with the vsmartcard vpcd reader driver) without systemd, as DEPS.md says:
# the virtual readers listen on 127.0.0.1:35963 and :35964 for a virtual card to connect.
# Safe to run twice: a running pcscd is kept.
set -euo pipefail
if pgrep -x pcscd >/dev/null 2>&1 && [ -S /run/pcscd/pcscd.comm ]; then
  echo "pcscd-start: pcscd already running"; exit 0
fi
pkill -x pcscd 2>/dev/null || true
rm -f /run/pcscd/pcscd.pid /run/pcscd/pcscd.comm
install -d /run/pcscd
/usr/sbin/pcscd
for _ in $(seq 1 100); do [ -S /run/pcscd/pcscd.comm ] && break; sleep 0.1; done
[ -S /run/pcscd/pcscd.comm ] || { echo "pcscd-start: pcscd did not start" >&2; exit 1; }
echo "pcscd-start: pcscd running"
