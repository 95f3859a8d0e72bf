#!/usr/bin/env bash
# Builds the o365-gateway OCI image with Debian's buildah, pulling nothing from a registry: a release binary with the
# Swift runtime linked in, the shared libraries `ldd` says it needs (taken from this machine), CA certificates, a
# non-root user, and nothing else. Writes an OCI archive (load it with `podman load -i`, `skopeo copy
# oci-archive:FILE docker://REGISTRY/o365-gateway:TAG`, or `ctr images import`).
# Usage: scripts/build-image.sh [OUTPUT.tar]   (default .build-image/o365-gateway-VERSION.oci.tar)
# Containerfile is the same image for machines that reach a registry.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' helm/o365-gateway/Chart.yaml)
output=${1:-$root/.build-image/o365-gateway-$version.oci.tar}
mkdir -p "$(dirname "$output")"

if ! command -v buildah >/dev/null 2>&1; then
  echo "build-image: installing buildah (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q buildah >/dev/null
fi

echo "build-image: release build (about 10 minutes from clean)"
swift build -c release --static-swift-stdlib --product o365-gateway
binary="$(swift build -c release --static-swift-stdlib --show-bin-path)/o365-gateway"

# The root file system: the binary, its shared libraries (and the loader), CA certificates, users, /tmp.
rootfs=$(mktemp -d)
chmod 0755 "$rootfs"
trap 'rm -rf "$rootfs"' EXIT
install -D -m 0755 "$binary" "$rootfs/usr/local/bin/o365-gateway"
# Debug information is most of the binary's size; backtraces keep the symbol names.
strip --strip-debug "$rootfs/usr/local/bin/o365-gateway"
for library in $(ldd "$binary" | awk '/=> \//{print $3} /^\t\//{print $1}'); do
  install -D -m 0755 "$(readlink -f "$library")" "$rootfs$library"
done
install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
mkdir -p "$rootfs/etc" "$rootfs/tmp" && chmod 1777 "$rootfs/tmp"
printf 'root:x:0:0:root:/root:/sbin/nologin\ngateway:x:65532:65532:o365-gateway:/nonexistent:/sbin/nologin\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\ngateway:x:65532:\n' >"$rootfs/etc/group"
# Foundation reads the time zone database when formatting dates in local time; UTC is enough.
[[ -e /usr/share/zoneinfo/UTC ]] && install -D -m 0644 /usr/share/zoneinfo/UTC "$rootfs/usr/share/zoneinfo/UTC"

# The file system is complete when the binary runs inside it alone, as a container runtime would start it (as root,
# chroot is at hand; /proc as the runtime mounts it, which Swift reads its arguments from).
if [[ $(id -u) == 0 ]]; then
  mkdir -p "$rootfs/proc"
  mount -t proc proc "$rootfs/proc"
  help=$(chroot --userspec=65532:65532 "$rootfs" /usr/local/bin/o365-gateway report secret-expiry --help 2>&1) || true
  umount "$rootfs/proc"
  rmdir "$rootfs/proc"
  grep -q "within-days" <<<"$help" || { echo "build-image: the binary does not run in the image: $help" >&2; exit 1; }
  echo "build-image: the binary runs in the image's file system (chroot, uid 65532)"
fi

export STORAGE_DRIVER=vfs
container=$(buildah --storage-driver vfs from scratch)
trap 'buildah --storage-driver vfs rm "$container" >/dev/null 2>&1 || true; rm -rf "$rootfs"' EXIT
buildah --storage-driver vfs copy "$container" "$rootfs/" / >/dev/null
buildah --storage-driver vfs config \
  --user 65532:65532 --port 8080 --env O365GW_LISTEN=0.0.0.0:8080 --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --entrypoint '["/usr/local/bin/o365-gateway"]' --cmd serve \
  --label org.opencontainers.image.title=o365-gateway --label org.opencontainers.image.version="$version" \
  "$container"
rm -f "$output"
buildah --storage-driver vfs commit --format oci "$container" "oci-archive:$output:o365-gateway:$version" >/dev/null
echo "build-image: $output ($(du -h "$output" | cut -f1)), o365-gateway:$version, user 65532"
