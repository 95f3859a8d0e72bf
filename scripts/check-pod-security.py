#!/usr/bin/env python3
"""Checks the pods of rendered Kubernetes manifests against the Pod Security Standards, offline.

Usage: check-pod-security.py [--level baseline|restricted] FILE...   (default: restricted)
       check-pod-security.py --self-test

Every pod template in the files (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, with its
containers, init containers and ephemeral containers) is checked against the controls of the Pod Security Standards
as the Kubernetes 1.31 admission plugin enforces them (policy version v1.31; docs: concepts/security/pod-security-
standards). `restricted` includes `baseline`. Prints each violation as `file: Kind/name: control: what`, and exits 1
when there is one. Pods are taken as Linux pods (spec.os.name windows would exempt some restricted controls; this
checker does not apply those exemptions, which makes it stricter, never looser).

--self-test breaks a pod that passes `restricted` in one way per control and checks that each is refused by the
control that should refuse it (and by `baseline` exactly when the control is a baseline one).
"""
import copy
import sys

import yaml

# Baseline: capabilities beyond the container runtime's default set may not be added.
BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE", "SETFCAP",
    "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}
# Baseline: the "safe" sysctls (v1.0 set, net.ipv4.ip_local_reserved_ports from v1.27, the TCP keepalive and FIN
# timeout ones from v1.29).
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
# Baseline: SELinux types a pod may ask for (user and role may not be set at all).
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
# Restricted: the only volume types (those backed by PersistentVolumes or made by the kubelet from the API).
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
}
VOLUME_META = {"name"}

APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
SECCOMP_POD_ANNOTATION = "seccomp.security.alpha.kubernetes.io/pod"
SECCOMP_CONTAINER_ANNOTATION = "container.seccomp.security.alpha.kubernetes.io/"


def pod_templates(doc):
    """(metadata, spec) of the pod a manifest makes, or None."""
    kind = doc.get("kind")
    if kind == "Pod":
        return doc.get("metadata") or {}, doc.get("spec") or {}
    spec = doc.get("spec") or {}
    if kind == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    elif kind not in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "ReplicationController"):
        return None
    template = spec.get("template") or {}
    return template.get("metadata") or {}, template.get("spec") or {}


def containers(spec):
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(field) or []:
            yield f"{field}[{c.get('name', '?')}]", c


def check_pod(metadata, spec):
    """Violations as (level, control, message); level is the first profile that refuses it."""
    found = []

    def refuse(level, control, message):
        found.append((level, control, message))

    pod_sc = spec.get("securityContext") or {}
    annotations = metadata.get("annotations") or {}
    all_containers = list(containers(spec))

    # --- baseline ---
    if (pod_sc.get("windowsOptions") or {}).get("hostProcess"):
        refuse("baseline", "HostProcess", "securityContext.windowsOptions.hostProcess is true")
    for where, c in all_containers:
        if ((c.get("securityContext") or {}).get("windowsOptions") or {}).get("hostProcess"):
            refuse("baseline", "HostProcess", f"{where}: windowsOptions.hostProcess is true")
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            refuse("baseline", "Host Namespaces", f"{field} is true")
    for where, c in all_containers:
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            refuse("baseline", "Privileged Containers", f"{where}: privileged is true")
        for cap in (sc.get("capabilities") or {}).get("add") or []:
            if cap not in BASELINE_CAPABILITIES:
                refuse("baseline", "Capabilities", f"{where}: adds capability {cap}")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                refuse("baseline", "Host Ports", f"{where}: hostPort {port['hostPort']}")
        if sc.get("procMount") not in (None, "Default"):
            refuse("baseline", "/proc Mount Type", f"{where}: procMount {sc['procMount']}")
    for volume in spec.get("volumes") or []:
        if "hostPath" in volume:
            refuse("baseline", "HostPath Volumes",
                   f"volume {volume.get('name')} is a hostPath ({volume['hostPath'].get('path')})")
    # AppArmor: the field (1.30+) and the annotation.
    contexts = [("pod", pod_sc)] + [(w, c.get("securityContext") or {}) for w, c in all_containers]
    for where, sc in contexts:
        profile = (sc.get("appArmorProfile") or {}).get("type")
        if profile not in (None, "RuntimeDefault", "Localhost"):
            refuse("baseline", "AppArmor", f"{where}: appArmorProfile.type {profile}")
    for key, value in annotations.items():
        if key.startswith(APPARMOR_ANNOTATION) and value != "runtime/default" and not value.startswith("localhost/"):
            refuse("baseline", "AppArmor", f"annotation {key}: {value}")
    for where, sc in contexts:
        selinux = sc.get("seLinuxOptions")
        if selinux is None:
            continue
        if selinux.get("type", "") not in SELINUX_TYPES:
            refuse("baseline", "SELinux", f"{where}: seLinuxOptions.type {selinux.get('type')}")
        for field in ("user", "role"):
            if selinux.get(field):
                refuse("baseline", "SELinux", f"{where}: seLinuxOptions.{field} is set")
    for where, sc in contexts:
        if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
            refuse("baseline", "Seccomp", f"{where}: seccompProfile.type Unconfined")
    for key, value in annotations.items():
        if (key == SECCOMP_POD_ANNOTATION or key.startswith(SECCOMP_CONTAINER_ANNOTATION)) and value == "unconfined":
            refuse("baseline", "Seccomp", f"annotation {key}: unconfined")
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            refuse("baseline", "Sysctls", f"sysctl {sysctl.get('name')} is not in the safe set")

    # --- restricted ---
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - VOLUME_META
        for kind in kinds - RESTRICTED_VOLUMES:
            if kind != "hostPath":  # already refused by baseline
                refuse("restricted", "Volume Types", f"volume {volume.get('name')} is of type {kind}")
    for where, c in all_containers:
        sc = c.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            refuse("restricted", "Privilege Escalation", f"{where}: allowPrivilegeEscalation is not false")
    pod_non_root = pod_sc.get("runAsNonRoot") is True
    for where, c in all_containers:
        value = (c.get("securityContext") or {}).get("runAsNonRoot")
        if value is False:
            refuse("restricted", "Running as Non-root", f"{where}: runAsNonRoot is false")
        elif value is None and not pod_non_root:
            refuse("restricted", "Running as Non-root", f"{where}: runAsNonRoot is not true (nor the pod's)")
    if pod_sc.get("runAsUser") == 0:
        refuse("restricted", "Running as Non-root user", "pod: runAsUser is 0")
    for where, c in all_containers:
        if (c.get("securityContext") or {}).get("runAsUser") == 0:
            refuse("restricted", "Running as Non-root user", f"{where}: runAsUser is 0")
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    for where, c in all_containers:
        own = ((c.get("securityContext") or {}).get("seccompProfile") or {}).get("type")
        effective = own if own is not None else pod_seccomp
        if effective not in ("RuntimeDefault", "Localhost"):
            refuse("restricted", "Seccomp", f"{where}: seccompProfile.type is {effective or 'unset'}, "
                   "not RuntimeDefault or Localhost")
    for where, c in all_containers:
        capabilities = (c.get("securityContext") or {}).get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            refuse("restricted", "Capabilities", f"{where}: capabilities.drop does not include ALL")
        for cap in capabilities.get("add") or []:
            if cap != "NET_BIND_SERVICE" and cap in BASELINE_CAPABILITIES:
                refuse("restricted", "Capabilities", f"{where}: adds capability {cap} (only NET_BIND_SERVICE)")
    return found


def check_files(paths, level):
    problems, pods = [], 0
    for path in paths:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if not isinstance(doc, dict):
                    continue
                pod = pod_templates(doc)
                if pod is None:
                    continue
                pods += 1
                name = f"{doc['kind']}/{(doc.get('metadata') or {}).get('name', '?')}"
                for found_level, control, message in check_pod(*pod):
                    if level == "restricted" or found_level == "baseline":
                        problems.append(f"{path}: {name}: {control} ({found_level}): {message}")
    return pods, problems


def self_test():
    good = {
        "metadata": {},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "securityContext": {
                "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}],
            "volumes": [{"name": "tmp", "emptyDir": {}}, {"name": "s", "secret": {"secretName": "x"}}],
        },
    }

    def container(pod):
        return pod["spec"]["containers"][0]["securityContext"]

    breaks = [  # (what, level of the control, control, mutation)
        ("hostNetwork", "baseline", "Host Namespaces", lambda p: p["spec"].update(hostNetwork=True)),
        ("hostPID", "baseline", "Host Namespaces", lambda p: p["spec"].update(hostPID=True)),
        ("hostIPC", "baseline", "Host Namespaces", lambda p: p["spec"].update(hostIPC=True)),
        ("hostProcess", "baseline", "HostProcess",
         lambda p: container(p).update(windowsOptions={"hostProcess": True})),
        ("privileged", "baseline", "Privileged Containers", lambda p: container(p).update(privileged=True)),
        ("SYS_ADMIN", "baseline", "Capabilities", lambda p: container(p)["capabilities"]["add"].append("SYS_ADMIN")),
        ("hostPort", "baseline", "Host Ports",
         lambda p: p["spec"]["containers"][0].update(ports=[{"containerPort": 80, "hostPort": 80}])),
        ("hostPath", "baseline", "HostPath Volumes",
         lambda p: p["spec"]["volumes"].append({"name": "h", "hostPath": {"path": "/"}})),
        ("procMount", "baseline", "/proc Mount Type", lambda p: container(p).update(procMount="Unmasked")),
        ("apparmor field", "baseline", "AppArmor",
         lambda p: container(p).update(appArmorProfile={"type": "Unconfined"})),
        ("apparmor annotation", "baseline", "AppArmor",
         lambda p: p["metadata"].update(annotations={APPARMOR_ANNOTATION + "c": "unconfined"})),
        ("selinux type", "baseline", "SELinux", lambda p: container(p).update(seLinuxOptions={"type": "spc_t"})),
        ("selinux user", "baseline", "SELinux",
         lambda p: p["spec"]["securityContext"].update(seLinuxOptions={"user": "system_u"})),
        ("seccomp unconfined", "baseline", "Seccomp",
         lambda p: container(p).update(seccompProfile={"type": "Unconfined"})),
        ("sysctl", "baseline", "Sysctls",
         lambda p: p["spec"]["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}])),
        ("nfs volume", "restricted", "Volume Types",
         lambda p: p["spec"]["volumes"].append({"name": "n", "nfs": {"server": "s", "path": "/"}})),
        ("allowPrivilegeEscalation unset", "restricted", "Privilege Escalation",
         lambda p: container(p).pop("allowPrivilegeEscalation")),
        ("runAsNonRoot unset", "restricted", "Running as Non-root",
         lambda p: p["spec"]["securityContext"].pop("runAsNonRoot")),
        ("runAsNonRoot false", "restricted", "Running as Non-root", lambda p: container(p).update(runAsNonRoot=False)),
        ("runAsUser 0", "restricted", "Running as Non-root user", lambda p: container(p).update(runAsUser=0)),
        ("seccomp unset", "restricted", "Seccomp", lambda p: p["spec"]["securityContext"].pop("seccompProfile")),
        ("drop not ALL", "restricted", "Capabilities", lambda p: container(p)["capabilities"].update(drop=["NET_RAW"])),
        ("CHOWN", "restricted", "Capabilities", lambda p: container(p)["capabilities"]["add"].append("CHOWN")),
    ]
    failures = []
    if check_pod(good["metadata"], good["spec"]):
        failures.append(f"the good pod is refused: {check_pod(good['metadata'], good['spec'])}")
    for what, level, control, mutate in breaks:
        pod = copy.deepcopy(good)
        mutate(pod)
        found = check_pod(pod["metadata"], pod["spec"])
        if not any(c == control and lv == level for lv, c, _ in found):
            failures.append(f"{what}: not refused by {control} ({level}); found {found}")
    # Seccomp set on every container instead of the pod passes.
    pod = copy.deepcopy(good)
    pod["spec"]["securityContext"].pop("seccompProfile")
    container(pod)["seccompProfile"] = {"type": "Localhost", "localhostProfile": "p.json"}
    if check_pod(pod["metadata"], pod["spec"]):
        failures.append("a container's own Localhost seccomp profile is refused")
    if failures:
        print("\n".join("check-pod-security: self-test: " + f for f in failures), file=sys.stderr)
        return 1
    print(f"check-pod-security: self-test: {len(breaks)} ways of breaking a pod, each refused by its control")
    return 0


def main(argv):
    if argv == ["--self-test"]:
        return self_test()
    level = "restricted"
    if len(argv) >= 2 and argv[0] == "--level":
        level, argv = argv[1], argv[2:]
    if level not in ("baseline", "restricted") or not argv:
        print(__doc__, file=sys.stderr)
        return 2
    pods, problems = check_files(argv, level)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    if pods == 0:
        print(f"check-pod-security: no pod in {' '.join(argv)}", file=sys.stderr)
        return 1
    print(f"check-pod-security: {pods} pod(s) pass Pod Security {level}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
