# Shared shell helpers: install PostgreSQL when missing; start and stop a private cluster.
# Sourced by scripts/test.sh and scripts/demo.sh.

pg_bin_dir() {
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [[ -x "$dir/initdb" ]] && { echo "$dir"; return 0; }
  done
  return 1
}

ensure_postgres_installed() {
  if ! pg_bin_dir >/dev/null; then
    echo "installing the PostgreSQL server (apt-get install postgresql-15)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql-15 >/dev/null || apt-get install -y -qq postgresql >/dev/null
  fi
  if [[ $(id -u) == 0 ]] && ! id postgres >/dev/null 2>&1; then
    useradd --system --no-create-home postgres
  fi
}

# start_private_postgres DIR: initdb into DIR (wiped first) and start on a free loopback port; sets PG_PORT.
start_private_postgres() {
  PG_DIR=$1
  PG_BIN=$(pg_bin_dir)
  rm -rf "$PG_DIR"
  mkdir -p "$PG_DIR/sock"
  PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  local as=()
  if [[ $(id -u) == 0 ]]; then chown -R postgres "$PG_DIR"; as=(runuser -u postgres --); fi
  "${as[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust --encoding=UTF8 --no-locale >/dev/null
  "${as[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 30 \
    -o "-p $PG_PORT -k $PG_DIR/sock -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
  PG_AS=("${as[@]}")
}

stop_private_postgres() {
  [[ -n "${PG_DIR:-}" ]] || return 0
  "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
}
