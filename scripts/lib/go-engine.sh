# The grpc-go engine the integration tests talk to (Tests/GoEngine): UTMStack's engine is grpc-go, so this is the
# closest independent peer that runs here. Built offline in GOPATH mode with Debian's Go and grpc-go.
# Sourced by scripts/test.sh.

ensure_go_installed() {
  if ! command -v go >/dev/null || [[ ! -d /usr/share/gocode/src/google.golang.org/grpc ]]; then
    echo "installing Go and grpc-go (apt-get install golang-go golang-google-grpc-dev)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq golang-go golang-google-grpc-dev >/dev/null
  fi
}

# build_go_engine DIR: builds DIR/utmstack-engine (the Go build cache stays in DIR, so rebuilds take seconds).
build_go_engine() {
  local dir=$1 root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  mkdir -p "$dir/gopath/src"
  ln -sfn "$root/Tests/GoEngine/utmstack-engine" "$dir/gopath/src/utmstack-engine"
  GO111MODULE=off GOPATH="$dir/gopath:/usr/share/gocode" GOFLAGS= GOCACHE="$dir/cache" \
    go build -o "$dir/utmstack-engine" utmstack-engine
}
