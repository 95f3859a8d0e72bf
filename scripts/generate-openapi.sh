#!/usr/bin/env bash
# Regenerates Sources/AdminAPI/Generated/{Types,Server}.swift from Sources/AdminAPI/openapi.yaml.
# The generated code is committed (the build plugin would add minutes to every clean build).
# Usage: scripts/generate-openapi.sh   (builds the generator once into .build-tools/)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.build-tools/openapi"
mkdir -p "$tools"
if [[ ! -x "$tools/.build/release/swift-openapi-generator" ]]; then
  cat > "$tools/Package.swift" <<'PKG'
// swift-tools-version:6.0
import PackageDescription
let package = Package(
  name: "openapi-tools",
  dependencies: [.package(url: "https://github.com/apple/swift-openapi-generator", exact: "1.14.3")],
  targets: [.target(name: "Dummy", path: "Dummy")]
)
PKG
  mkdir -p "$tools/Dummy" && echo "" > "$tools/Dummy/d.swift"
  (cd "$tools" && swift build -c release --product swift-openapi-generator)
fi
src="$root/Sources/AdminAPI"
out="$src/Generated"
mkdir -p "$out"
"$tools/.build/release/swift-openapi-generator" generate "$src/openapi.yaml" \
  --config "$src/openapi-generator-config.yaml" --output-directory "$out"
python3 "$root/scripts/embed-assets.py"
echo "generated into $out"
