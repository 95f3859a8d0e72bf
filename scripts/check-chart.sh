#!/usr/bin/env bash
# Checks the Helm chart with real tools: helm lint --strict, helm template with the default and the HA values, the
# rendered manifests validated offline against the Kubernetes schemas (kubernetes-validate, from PyPI), values that
# must be refused (a typo, a missing secret), and the chart's settings against docs/configuration.md.
# helm comes from ../shared/tools/get-helm.sh (cached in .build-tools/). Run by scripts/test.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
chart="$root/helm/o365-gateway"
kube_version=1.31.0
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

get_helm="$root/../shared/tools/get-helm.sh"
[[ -x $get_helm || -f $get_helm ]] || { echo "check-chart: $get_helm is missing" >&2; exit 1; }
helm=$(bash "$get_helm" "$root/.build-tools/helm" | tail -n 1)
if ! command -v kubernetes-validate >/dev/null 2>&1; then
  echo "check-chart: installing kubernetes-validate (pip)"
  python3 -m pip install -q --disable-pip-version-check kubernetes-validate >&2
fi
python3 -c "import yaml" 2>/dev/null || python3 -m pip install -q --disable-pip-version-check pyyaml >&2
validate=(kubernetes-validate -k "$kube_version" --strict --quiet)

for values in default-values.yaml ha-values.yaml; do
  "$helm" lint --strict "$chart" -f "$chart/ci/$values" >"$out/lint.txt" || { cat "$out/lint.txt"; exit 1; }
  "$helm" template gw "$chart" -f "$chart/ci/$values" >"$out/${values%.yaml}.rendered.yaml"
  # ServiceMonitor is a CRD: it has no schema offline (a warning); everything else must validate.
  if ! "${validate[@]}" "$out/${values%.yaml}.rendered.yaml" >"$out/validate.txt" 2>&1; then
    cat "$out/validate.txt" >&2
    echo "check-chart: $values renders manifests Kubernetes $kube_version refuses" >&2; exit 1
  fi
  echo "check-chart: $values: lint and Kubernetes $kube_version schemas pass"
done

# Values that must fail at install, with the words that say why.
refuse() {
  local why=$1; shift
  if "$helm" template gw "$chart" "$@" >"$out/refused.txt" 2>&1; then
    echo "check-chart: accepted what it must refuse ($why): $*" >&2; exit 1
  fi
  grep -q "$why" "$out/refused.txt" || { echo "check-chart: refused without saying '$why':" >&2; cat "$out/refused.txt" >&2; exit 1; }
}
refuse "replicaCont" -f "$chart/ci/default-values.yaml" --set replicaCont=3
refuse "secrets.databaseURL" --set secrets.adminToken=0123456789abcdef
refuse "utmstackConnectionKey" -f "$chart/ci/default-values.yaml" --set utmstack.mode=network,utmstack.network.address=u:50051
refuse "mode" -f "$chart/ci/default-values.yaml" --set utmstack.mode=grpc
refuse "terminationGracePeriodSeconds" -f "$chart/ci/default-values.yaml" --set terminationGracePeriodSeconds=20
echo "check-chart: typos and missing settings are refused"

# Every O365GW_ variable the chart sets exists in docs/configuration.md, and where the chart sets a plain value its
# default agrees with the gateway's, except where a container needs another one.
python3 - "$root/docs/configuration.md" "$out"/*.rendered.yaml <<'PY'
import re, sys, yaml
docs, rendered = open(sys.argv[1]).read(), sys.argv[2:]
documented = {}
for line in docs.splitlines():
    if not line.startswith("| `O365GW_"):
        continue
    cells = [c.strip() for c in line.strip("|").split("|")]
    default = re.match(r"`([^`]*)`", cells[-1])
    for name in re.findall(r"`(O365GW_[A-Z0-9_]+)`", cells[0]):
        documented[name] = default.group(1) if default else None
different_on_purpose = {"O365GW_LISTEN": "the container listens on every interface"}
problems = []
for path in rendered:
    defaults = path.endswith("default-values.rendered.yaml")
    for doc in yaml.safe_load_all(open(path)):
        if not doc or doc.get("kind") not in ("Deployment", "Job"):
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                name = env["name"]
                if name not in documented:
                    problems.append(f"{doc['kind']} sets {name}, which docs/configuration.md does not list")
                elif defaults and "value" in env and name not in different_on_purpose and documented[name] is not None \
                        and env["value"] != documented[name]:
                    problems.append(f"{name}: the chart's default {env['value']!r} is not the gateway's {documented[name]!r}")
if problems:
    print("\n".join("check-chart: " + p for p in problems), file=sys.stderr)
    sys.exit(1)
print(f"check-chart: every O365GW_ setting of the chart is documented, and its defaults are the gateway's")
PY
