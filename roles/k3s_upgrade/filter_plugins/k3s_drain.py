"""Filter of the k3s_upgrade role: which pods left on a drained node keep the drain from finishing."""

from __future__ import annotations

from typing import Any

# kubectl drain's rules, as kubernetes.core.k8s_drain 6.2.0 applies them: mirror pods (static pods
# the kubelet mirrors to the API) cannot be evicted, DaemonSet pods are ignored with
# --ignore-daemonsets, and finished pods hold nothing.
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
FINISHED_PHASES = ("Succeeded", "Failed")


def k3s_drain_blocking(pods: list[dict[str, Any]]) -> list[str]:
    """Return ``namespace/name`` of each pod (as k8s_info lists them) that still blocks a drain.

    A pod blocks while it is not a mirror pod, not owned by a DaemonSet and not finished; a pod
    that is terminating (deletionTimestamp set) still blocks until it is gone.
    """
    blocking = []
    for pod in pods or []:
        metadata = pod.get("metadata") or {}
        if MIRROR_ANNOTATION in (metadata.get("annotations") or {}):
            continue
        if any(owner.get("kind") == "DaemonSet" for owner in metadata.get("ownerReferences") or []):
            continue
        if (pod.get("status") or {}).get("phase") in FINISHED_PHASES:
            continue
        blocking.append(f"{metadata.get('namespace', '')}/{metadata.get('name', '')}")
    return sorted(blocking)


class FilterModule:
    """Ansible filter: ``k3s_drain_blocking``."""

    def filters(self) -> dict[str, Any]:
        """Return the filters this module provides."""
        return {"k3s_drain_blocking": k3s_drain_blocking}
