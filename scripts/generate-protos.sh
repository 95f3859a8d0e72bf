#!/usr/bin/env bash
# Regenerates Sources/UTMStackProtocol/Generated/ from plugins.proto with protoc and the swift-protobuf and
# grpc-swift-protobuf plugins. The output is committed: the build plugin would compile protoc on every clean build.
# Needs protoc (apt-get install -y protobuf-compiler); builds the two plugins once into .build-tools/protoc.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
command -v protoc >/dev/null || { apt-get update -qq && apt-get install -y -qq protobuf-compiler; }
tools="$root/.build-tools/protoc"
bin="$tools/.build/release"
if [[ ! -x "$bin/protoc-gen-swift" || ! -x "$bin/protoc-gen-grpc-swift-2" ]]; then
  mkdir -p "$tools/Dummy" && echo "" > "$tools/Dummy/d.swift"
  cat > "$tools/Package.swift" <<'PKG'
// swift-tools-version:6.0
import PackageDescription
let package = Package(
  name: "protoc-tools",
  dependencies: [
    .package(url: "https://github.com/apple/swift-protobuf", exact: "1.39.0"),
    .package(url: "https://github.com/grpc/grpc-swift-protobuf", exact: "2.4.1"),
  ],
  targets: [.target(name: "Dummy", path: "Dummy")]
)
PKG
  (cd "$tools" && swift build -c release --product protoc-gen-swift && swift build -c release --product protoc-gen-grpc-swift-2)
fi
src="$root/Sources/UTMStackProtocol"
rm -f "$src"/Generated/*.swift
protoc --proto_path="$src" \
  --plugin=protoc-gen-swift="$bin/protoc-gen-swift" --swift_out="$src/Generated" --swift_opt=Visibility=Public \
  --plugin=protoc-gen-grpc-swift-2="$bin/protoc-gen-grpc-swift-2" --grpc-swift-2_out="$src/Generated" \
  --grpc-swift-2_opt=Visibility=Public,Client=true,Server=true \
  "$src/plugins.proto"
echo "generated: $(ls "$src/Generated")"
