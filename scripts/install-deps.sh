#!/usr/bin/env bash
# install-deps.sh installs the Debian packages Mohr and its tests need (see ../shared/DEPS.md).
# Safe to run twice: apt-get install is idempotent and we skip the update when everything is present.
set -euo pipefail

PKGS=(softhsm2 opensc pcscd libpcsclite-dev pkg-config vsmartcard-vpcd pcsc-tools
      poppler-utils qpdf libnss3-tools postgresql-15 openssl ca-certificates gcc
      chromium fonts-noto-core haproxy curl)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all Debian packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}"
