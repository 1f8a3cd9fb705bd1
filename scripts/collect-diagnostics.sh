#!/usr/bin/env bash
# After a failed molecule scenario (CI keeps its containers): the cluster's events, every pod's
# description and logs, and each node's k3s journal, into one directory for upload.
#   MOLECULE_EPHEMERAL_DIRECTORY=... scripts/collect-diagnostics.sh SCENARIO OUTDIR
set -uo pipefail
scenario=${1:?scenario}
out=${2:?output directory}
mkdir -p "$out"
# CI sets MOLECULE_EPHEMERAL_DIRECTORY, so the scenario's files are at a known place.
ephemeral=${MOLECULE_EPHEMERAL_DIRECTORY:?set MOLECULE_EPHEMERAL_DIRECTORY to the scenario's ephemeral directory}
kubeconfig="$ephemeral/artifacts/kubeconfig"
cp -r "$ephemeral"/*.log "$out"/ 2>/dev/null
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
for node in $(docker ps --format '{{.Names}}'); do  # CI runs one scenario per machine
  docker exec "$node" journalctl --no-pager -n 2000 -u k3s -u k3s-agent >"$out/journal-$node.txt" 2>&1
done
echo "diagnostics in $out: $(ls "$out" | wc -l) files"
