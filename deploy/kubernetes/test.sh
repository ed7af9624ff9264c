#!/usr/bin/env bash
# Manifest tests (no cluster, no Docker): every file in deploy/kubernetes/ validates against the
# Kubernetes JSON schemas (kubernetes-validate, strict: unknown fields are errors), the
# kustomization lists them all, the ConfigMap is current with config/ and meshgate accepts it.
# Installs kubernetes-validate into target/k8s-venv (pip, once). Last line: `manifest tests: N passed, N failed`.
set -uo pipefail
cd "$(dirname "$0")/../.."
K8S_VERSION="${K8S_VERSION:-1.33.0}"
BIN="${MESHGATE_BIN:-target/debug/meshgate}"
venv=target/k8s-venv
passed=0
failed=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

check() {
  local name=$1
  shift
  if out=$("$@" 2>&1); then
    echo "ok $name"
    passed=$((passed + 1))
  else
    echo "FAIL $name"
    echo "$out" | sed 's/^/    /'
    failed=$((failed + 1))
  fi
}

if ! "$venv/bin/python" -c 'import kubernetes_validate, yaml' 2>/dev/null; then
  python3 -m venv "$venv" && "$venv/bin/pip" install -q --disable-pip-version-check kubernetes-validate==1.37.0 \
    || { echo "manifest tests: cannot install kubernetes-validate"; echo "manifest tests: 0 passed, 1 failed"; exit 1; }
fi

manifests=(deploy/kubernetes/{serviceaccount,configmap,certificates-secret,deployment,service,pdb,hpa}.yaml)

validates_against_the_kubernetes_schemas() {
  "$venv/bin/kubernetes-validate" --strict -k "$K8S_VERSION" "${manifests[@]}"
}

kustomization_lists_every_manifest() {
  "$venv/bin/python" - "${manifests[@]}" <<'PY'
import sys, yaml
k = yaml.safe_load(open("deploy/kubernetes/kustomization.yaml"))
listed = sorted("deploy/kubernetes/" + r for r in k["resources"])
assert listed == sorted(sys.argv[1:]), (listed, sys.argv[1:])
PY
}

configmap_is_rendered_from_config() {
  "$venv/bin/python" deploy/kubernetes/render-configmap.py config/ >"$tmp/cm.yaml"
  diff -u deploy/kubernetes/configmap.yaml "$tmp/cm.yaml"
}

meshgate_validates_the_configmap_contents() {
  # The ConfigMap's keys as files, as the volume mounts them; meshgate validate must accept them.
  "$venv/bin/python" - "$tmp/cm" <<'PY'
import os, sys, yaml
cm = yaml.safe_load(open("deploy/kubernetes/configmap.yaml"))
os.makedirs(sys.argv[1])
for k, v in cm["data"].items():
    open(os.path.join(sys.argv[1], k), "w").write(v)
PY
  "$BIN" validate "$tmp/cm"
}

deployment_matches_the_drain_settings() {
  "$venv/bin/python" <<'PY'
import yaml
d = yaml.safe_load(open("deploy/kubernetes/deployment.yaml"))
spec = d["spec"]["template"]["spec"]
c = spec["containers"][0]
args = dict(a[2:].split("=", 1) for a in c["args"] if a.startswith("--") and "=" in a)
pre = c["lifecycle"]["preStop"]["sleep"]["seconds"]
need = pre + float(args["drain-duration"]) + float(args["drain-timeout"])
grace = spec["terminationGracePeriodSeconds"]
assert grace > need, f"grace {grace} <= preStop {pre} + drain {need - pre}"
assert d["spec"]["replicas"] == 3
assert spec["automountServiceAccountToken"] is False
sc = c["securityContext"]
assert sc["readOnlyRootFilesystem"] and sc["capabilities"]["drop"] == ["ALL"] and not sc["allowPrivilegeEscalation"]
assert spec["securityContext"]["runAsNonRoot"]
assert c["readinessProbe"]["httpGet"]["path"] == "/healthz/ready"
assert c["readinessProbe"]["httpGet"]["port"] == "status-port" and c["livenessProbe"]["tcpSocket"]["port"] == "status-port"
assert "memory" in c["resources"]["limits"] and "memory" in c["resources"]["requests"]
svc = yaml.safe_load(open("deploy/kubernetes/service.yaml"))
assert svc["spec"]["type"] == "LoadBalancer" and svc["spec"]["externalTrafficPolicy"] == "Local"
sa = yaml.safe_load(open("deploy/kubernetes/serviceaccount.yaml"))
assert sa["automountServiceAccountToken"] is False
PY
}

check validates_against_the_kubernetes_schemas validates_against_the_kubernetes_schemas
check kustomization_lists_every_manifest kustomization_lists_every_manifest
check configmap_is_rendered_from_config configmap_is_rendered_from_config
if [ -x "$BIN" ]; then
  check meshgate_validates_the_configmap_contents meshgate_validates_the_configmap_contents
else
  echo "skipped meshgate_validates_the_configmap_contents: no $BIN (cargo build first)"
fi
check deployment_matches_the_drain_settings deployment_matches_the_drain_settings
echo "manifest tests: $passed passed, $failed failed"
[ "$failed" = 0 ]
