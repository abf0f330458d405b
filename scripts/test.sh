#!/usr/bin/env bash
# test.sh sets up everything the tests need on a fresh Debian machine and runs the whole suite:
# Debian packages, a throwaway PostgreSQL cluster, pcscd with the vpcd virtual reader, then
# go vet and go test (with -race for the concurrent packages). SoftHSM2 tokens are initialised by
# the tests themselves in private directories. .ci/run calls this script.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
export HOME=${HOME:-/root}
export CGO_ENABLED=1

bash scripts/install-deps.sh
MOHR_TEST_PG_DSN=$(bash scripts/pg-start.sh)
export MOHR_TEST_PG_DSN
bash scripts/pcscd-start.sh
# Missing services are failures, not skips, under this script.
export MOHR_REQUIRE_SERVICES=1

go version
go vet ./...
# Packages with concurrency (pools, servers, caches, the agent) run under the race detector; the rest run
# plainly. Tests that use the machine's one pcscd serialise themselves with a file lock (internal/testenv).
RACE='/(api|adapter|hsm|cardreader|internal/store|internal/audit|signing|signing/agent|signing/offline|signing/remote|ca/revocation|tokens|tokens/sqlstore)$'
go test -count=1 -race -timeout 40m $(go list ./... | grep -E "$RACE")
go test -count=1 -timeout 40m $(go list ./... | grep -vE "$RACE")
