#!/usr/bin/env bash
# Runs schemathesis (PyPI) against a running gateway with every check, the stateful phase included: the server must
# do what its OpenAPI document says, and the document must say what the server does. Fails on any failure reported.
# Starts its own PostgreSQL (or uses O365GW_TEST_DATABASE_URL's server), the Microsoft simulator and `serve` from
# the debug build (built by `swift test`, or here when missing). Run by scripts/test.sh.
# Usage: scripts/check-api.sh [extra schemathesis options]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source "$root/scripts/lib/postgres.sh"
schemathesis_version=4.32.5

if ! command -v schemathesis >/dev/null 2>&1 || [[ $(schemathesis --version 2>/dev/null) != *"$schemathesis_version"* ]]; then
  echo "check-api: installing schemathesis $schemathesis_version (pip)"
  python3 -m pip install -q --disable-pip-version-check "schemathesis==$schemathesis_version" >&2
fi
binary="$root/.build/debug/o365-gateway"
[[ -x $binary ]] || swift build --product o365-gateway

work=$(mktemp -d /tmp/o365gw-api.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ -n ${own_postgres:-} ]] && stop_private_postgres
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() {
  for _ in $(seq 1 150); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.2; done
  echo "check-api: $1 did not answer" >&2; cat "$work"/*.log >&2; return 1
}

if [[ -n "${O365GW_TEST_DATABASE_URL:-}" ]]; then
  database="schemathesis_$RANDOM$RANDOM"
  psql -q "$O365GW_TEST_DATABASE_URL" -c "CREATE DATABASE $database"
  url="${O365GW_TEST_DATABASE_URL%%\?*}"
  database_url="${url%/*}/$database?sslmode=disable"
else
  ensure_postgres_installed
  # Under /tmp on its own: the server runs as the postgres user, which may not reach $work.
  start_private_postgres "$(mktemp -d /tmp/o365gw-api-pg.XXXXXX)"
  own_postgres=1
  database_url="postgres://postgres@127.0.0.1:${PG_PORT}/postgres?sslmode=disable"
fi

simulator_port=$(free_port)
"$binary" simulator --listen "127.0.0.1:$simulator_port" --tenants 2 --frozen --history-hours 0.1 >"$work/simulator.log" 2>&1 &
pids+=($!)
gateway_port=$(free_port)
token="schemathesis-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
export O365GW_DATABASE_URL="$database_url" O365GW_ADMIN_TOKEN="$token" O365GW_LISTEN="127.0.0.1:$gateway_port"
export O365GW_ENCRYPTION_KEYS="k1:$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')"
export O365GW_LOGIN_URL="http://127.0.0.1:$simulator_port" O365GW_MANAGE_URL="http://127.0.0.1:$simulator_port"
export O365GW_GRAPH_URL="http://127.0.0.1:$simulator_port" O365GW_UTMSTACK_SOCKET="$work/engine.sock"
export O365GW_LOG_LEVEL=warning
"$binary" migrate >/dev/null
"$binary" serve >"$work/gateway.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$gateway_port/readyz"

base="http://127.0.0.1:$gateway_port"
echo "check-api: schemathesis $schemathesis_version against $base (every check, stateful phase included)"
set +e
schemathesis --config-file "$root/scripts/schemathesis.toml" run "$base/api/v1/openapi.yaml" --url "$base" -H "Authorization: Bearer $token" \
  --checks all --workers 1 --seed 1 --max-examples 30 --no-color "$@" >"$work/schemathesis.txt" 2>&1
status=$?
set -e
# The summary, and every failure in full.
grep -v '^\s*$' "$work/schemathesis.txt" | tail -n 60
if [[ $status != 0 ]]; then
  echo "check-api: schemathesis reported failures (exit $status); the whole report:" >&2
  cat "$work/schemathesis.txt" >&2
  exit 1
fi
echo "check-api: the server and its OpenAPI document agree"
