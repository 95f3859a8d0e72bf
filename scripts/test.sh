#!/usr/bin/env bash
# Runs every test. On a fresh machine it first installs what is missing (the PostgreSQL server); when
# O365GW_TEST_DATABASE_URL is not set it starts a private PostgreSQL cluster for the run and stops it afterwards.
# Extra arguments go to `swift test` (for example: scripts/test.sh --filter TenantStore).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source "$root/scripts/lib/postgres.sh"

if [[ -z "${O365GW_TEST_DATABASE_URL:-}" ]]; then
  ensure_postgres_installed
  # Under /tmp, not in the checkout: the server runs as the postgres user, which may not reach the checkout.
  start_private_postgres "$(mktemp -d /tmp/o365gw-test-pg.XXXXXX)"
  trap stop_private_postgres EXIT
  export O365GW_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:${PG_PORT}/postgres?sslmode=disable"
  echo "test: private PostgreSQL on 127.0.0.1:${PG_PORT}"
fi

swift test "$@"
