#!/usr/bin/env bash
# Runs the product on its embedded default: installs what is missing, builds, and starts `o365-gateway demo`
# (a private PostgreSQL cluster in a temporary folder plus the gateway). Arguments go to `demo` (see --help).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source "$root/scripts/lib/postgres.sh"
ensure_postgres_installed
swift build --product o365-gateway
exec "$root/.build/debug/o365-gateway" demo "$@"
