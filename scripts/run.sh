#!/usr/bin/env bash
# run.sh sets up and starts Mohr on its embedded default: SQLite in ./mohr-data, software keys, and a
# DEVELOPMENT root and intermediate created on first start. Stop it with Ctrl-C. Extra arguments go to
# `mohr serve` (for example --data-dir DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
export HOME=${HOME:-/root}
export CGO_ENABLED=1
bash scripts/install-deps.sh
mkdir -p bin
go build -o bin/mohr ./cmd/mohr
exec ./bin/mohr serve "$@"
