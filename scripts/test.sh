#!/usr/bin/env bash
# Runs every test: the Helm chart's checks (scripts/check-chart.sh), `swift test`, then schemathesis against a running
# gateway (scripts/check-api.sh). On a fresh machine it first installs what is missing (the PostgreSQL server, Go and
# grpc-go, helm, kubernetes-validate and schemathesis); when
# O365GW_TEST_DATABASE_URL is not set it starts a private PostgreSQL cluster for the run and stops it afterwards, and
# when O365GW_GO_ENGINE is not set it builds the grpc-go engine the forwarder is tested against (Tests/GoEngine).
# Extra arguments go to `swift test` (for example: scripts/test.sh --filter TenantStore).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source "$root/scripts/lib/postgres.sh"
source "$root/scripts/lib/go-engine.sh"

if [[ -z "${O365GW_GO_ENGINE:-}" ]]; then
  ensure_go_installed
  build_go_engine "$root/.build-go"
  export O365GW_GO_ENGINE="$root/.build-go/utmstack-engine"
  echo "test: grpc-go engine $O365GW_GO_ENGINE"
fi

if [[ -z "${O365GW_TEST_DATABASE_URL:-}" ]]; then
  ensure_postgres_installed
  # Under /tmp, not in the checkout: the server runs as the postgres user, which may not reach the checkout.
  start_private_postgres "$(mktemp -d /tmp/o365gw-test-pg.XXXXXX)"
  trap stop_private_postgres EXIT
  export O365GW_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:${PG_PORT}/postgres?sslmode=disable"
  echo "test: private PostgreSQL on 127.0.0.1:${PG_PORT}"
fi

# The Helm chart: lint, render, Kubernetes schemas, settings against docs/configuration.md (a few seconds).
bash "$root/scripts/check-chart.sh"

swift test "$@"

# The admin API against its OpenAPI document: schemathesis, every check, stateful phase included (about 10 s).
bash "$root/scripts/check-api.sh"
