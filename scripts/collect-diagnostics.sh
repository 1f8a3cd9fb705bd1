#!/usr/bin/env bash
# After a failed or cancelled molecule scenario (CI keeps its containers): Ansible's log of every
# molecule action, molecule's inventory and state, the cluster's events, every pod's description
# and logs, and each node's k3s journal, into one directory for upload.
#   MOLECULE_EPHEMERAL_DIRECTORY=... [ANSIBLE_LOG_PATH=...] scripts/collect-diagnostics.sh SCENARIO OUTDIR
# Each part is collected when it exists: a scenario can stop before the cluster (or the nodes) are.
set -uo pipefail
scenario=${1:?usage: collect-diagnostics.sh SCENARIO OUTDIR}
out=${2:?usage: collect-diagnostics.sh SCENARIO OUTDIR}
# CI sets MOLECULE_EPHEMERAL_DIRECTORY, so the scenario's files are at a known place.
ephemeral=${MOLECULE_EPHEMERAL_DIRECTORY:?set MOLECULE_EPHEMERAL_DIRECTORY to the ephemeral directory of the scenario}
mkdir -p "$out"
kubeconfig="$ephemeral/artifacts/kubeconfig"
if [ -n "${ANSIBLE_LOG_PATH:-}" ] && [ -f "$ANSIBLE_LOG_PATH" ]; then
  cp "$ANSIBLE_LOG_PATH" "$out/ansible.log"
fi
if [ -d "$ephemeral" ]; then
  mkdir -p "$out/molecule"
  # The inventory and state molecule wrote; never the kubeconfig (a credential) or the age identity.
  cp -r "$ephemeral/inventory" "$ephemeral/state.yml" "$out/molecule/" 2>/dev/null
  cp "$ephemeral"/*.log "$out/molecule/" 2>/dev/null
fi
if [ -f "$kubeconfig" ] && command -v kubectl >/dev/null; then
  k() { kubectl --kubeconfig "$kubeconfig" --request-timeout=20s "$@"; }
  k get nodes -o wide >"$out/nodes.txt" 2>&1
  k get events --all-namespaces --sort-by=.lastTimestamp >"$out/events.txt" 2>&1
  k get all,pvc,ingress,jobs,cronjobs --all-namespaces -o wide >"$out/objects.txt" 2>&1
  k describe pods --all-namespaces >"$out/pods-describe.txt" 2>&1
  k get pods --all-namespaces -o jsonpath='{range .items[*]}{.metadata.namespace}{" "}{.metadata.name}{"\n"}{end}' 2>/dev/null |
    while read -r namespace pod; do
      k -n "$namespace" logs "$pod" --all-containers --prefix --tail=500 >"$out/logs-$namespace-$pod.txt" 2>&1
    done
fi
# The scenario's node containers (molecule labels what it creates owner=molecule).
for node in $(docker ps --filter label=owner=molecule --format '{{.Names}}'); do
  docker exec "$node" journalctl --no-pager -n 2000 -u k3s -u k3s-agent >"$out/journal-$node.txt" 2>&1
done
echo "diagnostics of $scenario in $out: $(find "$out" -type f | wc -l) files"
