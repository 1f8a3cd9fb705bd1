"""Filters of the k3s_upgrade role: what keeps a node's drain from finishing, before and after it.

``k3s_drain_plan`` judges, before upgrade.yml changes anything, whether the drain of each agent to
upgrade can finish and move its pods elsewhere; ``k3s_drain_blocking`` checks, after a drain, which
pods are still on the node.

Where the rules were read (none of that code is copied here):

- Which pods the drain evicts: kubernetes.core 6.2.0 (as shipped in the ``ansible`` 12.3.0
  package) ``plugins/modules/k8s_drain.py`` ``filter_pods``: mirror pods are skipped, finished pods
  deleted, pods with an emptyDir volume need ``delete_emptydir_data``, pods without any owner
  need ``force``, DaemonSet pods are ignored with ``ignore_daemonsets``; ``disable_eviction``
  deletes instead of evicting.
- When an eviction is refused: Kubernetes v1.34.2 (the release k3s v1.34.2+k3s1 is built on)
  ``pkg/registry/core/pod/storage/eviction.go``: a Pending, finished or terminating pod is deleted
  without looking at budgets (``canIgnorePDB``); a pod selected by more than one
  PodDisruptionBudget of its namespace is refused (500); a pod that is not Ready passes when its
  budget's ``unhealthyPodEvictionPolicy`` is ``AlwaysAllow`` or the budget has
  ``currentHealthy >= desiredHealthy > 0``; otherwise ``status.disruptionsAllowed`` 0 refuses it
  (429, which the drain retries until ``k3s_upgrade_drain_retries`` runs out). A budget selects
  with ``metav1.LabelSelectorAsSelector``: a null selector matches nothing, an empty one everything.
- Where a replacement may run: a PersistentVolume's ``spec.nodeAffinity.required`` and a pod's
  ``nodeSelector`` and required node affinity (node selector terms are ORed, the requirements of a
  term ANDed; an empty term matches no node). rancher/local-path-provisioner v0.0.32 (the version
  k3s v1.34.2+k3s1 ships) ``provisioner.go`` ``provisionFor`` gives every volume it creates a
  required affinity ``kubernetes.io/hostname In [<the node's hostname label>]`` (none only for a
  shared filesystem path), so a pod using one can only ever run on that node.
"""

from __future__ import annotations

from typing import Any

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover - the unit tests import this file without Ansible's path
    AnsibleFilterError = ValueError  # type: ignore[misc,assignment]

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
FINISHED_PHASES = ("Succeeded", "Failed")
MODES = ("auto", "always", "never")

# What the user may do about each kind of blocker (the refusal lists the kinds it met).
REMEDIES = {
    "pdb": "relax the PodDisruptionBudget (maxUnavailable: 1, or delete it for the upgrade) or run more "
           "replicas on other nodes",
    "pdbs": "leave one PodDisruptionBudget per pod (the eviction API refuses a pod that two select)",
    "pinned": "move the workload off the node (a local-path volume stays on its node: back it up and "
              "restore it elsewhere) or widen its nodeSelector/affinity",
    "unmanaged": "run the pod under a controller (Deployment, StatefulSet) or set "
                 "k3s_upgrade_drain_force=true to delete it for good",
    "emptydir": "set k3s_upgrade_drain_delete_emptydir_data=true (the emptyDir data is lost)",
}


class K3sDrainError(AnsibleFilterError):
    """A drain plan asked for with settings that are not valid."""


def _name(obj: dict[str, Any]) -> str:
    metadata = obj.get("metadata") or {}
    namespace = metadata.get("namespace")
    return f"{namespace}/{metadata.get('name', '')}" if namespace else str(metadata.get("name", ""))


def _owners(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return list((pod.get("metadata") or {}).get("ownerReferences") or [])


def _is_daemonset_pod(pod: dict[str, Any]) -> bool:
    return any(owner.get("kind") == "DaemonSet" for owner in _owners(pod))


def _is_mirror_pod(pod: dict[str, Any]) -> bool:
    return MIRROR_ANNOTATION in ((pod.get("metadata") or {}).get("annotations") or {})


def _phase(pod: dict[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


def _is_ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def k3s_drain_blocking(pods: list[dict[str, Any]]) -> list[str]:
    """Return ``namespace/name`` of each pod (as k8s_info lists them) that still blocks a drain.

    A pod blocks while it is not a mirror pod, not owned by a DaemonSet and not finished; a pod
    that is terminating (deletionTimestamp set) still blocks until it is gone.
    """
    blocking = []
    for pod in pods or []:
        if _is_mirror_pod(pod) or _is_daemonset_pod(pod) or _phase(pod) in FINISHED_PHASES:
            continue
        blocking.append(_name(pod))
    return sorted(blocking)


def label_selector_matches(selector: dict[str, Any] | None, labels: dict[str, str] | None) -> bool:
    """Return whether a LabelSelector (``matchLabels``, ``matchExpressions``) selects ``labels``.

    A null selector selects nothing and an empty one everything, as the eviction API reads a
    PodDisruptionBudget's selector.
    """
    if selector is None:
        return False
    labels = labels or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False  # an invalid selector matches nothing (eviction.go skips it)
    return True


def _requirement_matches(requirement: dict[str, Any], value: str | None) -> bool:
    operator = requirement.get("operator")
    values = requirement.get("values") or []
    if operator == "In":
        return value is not None and value in values
    if operator == "NotIn":
        return value is None or value not in values
    if operator == "Exists":
        return value is not None
    if operator == "DoesNotExist":
        return value is None
    if operator in ("Gt", "Lt") and value is not None and len(values) == 1:
        try:
            return int(value) > int(values[0]) if operator == "Gt" else int(value) < int(values[0])
        except ValueError:
            return False
    return False


def node_selector_matches(terms: list[dict[str, Any]] | None, node: dict[str, Any]) -> bool:
    """Return whether a Node satisfies required node selector terms (ORed; a term's parts ANDed).

    ``matchExpressions`` read the Node's labels, ``matchFields`` its ``metadata.name``; a term with
    neither matches no node.
    """
    metadata = node.get("metadata") or {}
    labels = metadata.get("labels") or {}
    for term in terms or []:
        expressions = term.get("matchExpressions") or []
        fields = term.get("matchFields") or []
        if not expressions and not fields:
            continue
        if all(_requirement_matches(e, labels.get(e.get("key"))) for e in expressions) and all(
                _requirement_matches(f, metadata.get("name") if f.get("key") == "metadata.name" else None)
                for f in fields):
            return True
    return False


def _drain_refusal(pod: dict[str, Any], force: bool, delete_emptydir_data: bool) -> tuple[bool, dict | None]:
    """Whether k8s_drain evicts ``pod``, and the blocker when it refuses the whole drain for it."""
    if _is_mirror_pod(pod) or _phase(pod) in FINISHED_PHASES:
        return False, None
    spec = pod.get("spec") or {}
    if any("emptyDir" in (volume or {}) for volume in spec.get("volumes") or []):
        if not delete_emptydir_data:
            return False, {"kind": "emptydir", "reason": "uses an emptyDir volume and "
                           "k3s_upgrade_drain_delete_emptydir_data is false: the drain refuses it"}
        return True, None
    if not _owners(pod):
        if not force:
            return False, {"kind": "unmanaged", "reason": "has no controller (a bare pod): the drain refuses it "
                           "without k3s_upgrade_drain_force and nothing would recreate it"}
        return True, None
    if _is_daemonset_pod(pod):
        return False, None
    return True, None


def _budget_blockers(pod: dict[str, Any], budgets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The PodDisruptionBudget reasons the eviction API would refuse ``pod`` for, none or one."""
    metadata = pod.get("metadata") or {}
    if metadata.get("deletionTimestamp") or _phase(pod) == "Pending":
        return []  # deleted without looking at budgets
    selecting = [pdb for pdb in budgets
                 if (pdb.get("metadata") or {}).get("namespace") == metadata.get("namespace")
                 and label_selector_matches((pdb.get("spec") or {}).get("selector"), metadata.get("labels"))]
    if len(selecting) > 1:
        return [{"kind": "pdbs", "reason": "is selected by more than one PodDisruptionBudget ("
                 + ", ".join(sorted(_name(pdb) for pdb in selecting))
                 + "): the eviction API refuses such a pod", "pdbs": sorted(_name(p) for p in selecting)}]
    if not selecting:
        return []
    pdb = selecting[0]
    status = pdb.get("status") or {}
    if not _is_ready(pod):
        if (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy") == "AlwaysAllow":
            return []
        if int(status.get("currentHealthy") or 0) >= int(status.get("desiredHealthy") or 0) > 0:
            return []
    allowed = int(status.get("disruptionsAllowed") or 0)
    if allowed > 0:
        return []
    return [{"kind": "pdb", "pdbs": [_name(pdb)],
             "reason": f"is selected by PodDisruptionBudget {_name(pdb)}, which allows {allowed} disruptions "
                       f"({status.get('currentHealthy', 0)} healthy, {status.get('desiredHealthy', 0)} needed): "
                       "its eviction is refused until the drain retries run out"}]


def _pin_blockers(pod: dict[str, Any], node: str, nodes: list[dict[str, Any]], claims: dict[str, Any],
                  volumes: dict[str, Any]) -> list[dict[str, Any]]:
    """Why ``pod`` can run on no Node but ``node`` (its volumes' and its own node constraints)."""
    metadata = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    others = [n for n in nodes if (n.get("metadata") or {}).get("name") != node
              and not (n.get("spec") or {}).get("unschedulable")]
    constraints: list[tuple[str, list[dict[str, Any]]]] = []
    for volume in spec.get("volumes") or []:
        claim_name = ((volume or {}).get("persistentVolumeClaim") or {}).get("claimName")
        if not claim_name:
            continue
        claim = claims.get(f"{metadata.get('namespace')}/{claim_name}") or {}
        pv_name = (claim.get("spec") or {}).get("volumeName")
        pv = volumes.get(pv_name) if pv_name else None
        terms = (((pv or {}).get("spec") or {}).get("nodeAffinity") or {}).get("required", {}) or {}
        if pv and terms.get("nodeSelectorTerms") is not None:
            constraints.append((f"its volume {metadata.get('namespace')}/{claim_name} is PersistentVolume "
                                f"{pv_name}, whose node affinity", terms.get("nodeSelectorTerms") or []))
    selector = spec.get("nodeSelector") or {}
    if selector:
        constraints.append(("its nodeSelector", [{"matchExpressions": [
            {"key": key, "operator": "In", "values": [value]} for key, value in selector.items()]}]))
    required = ((((spec.get("affinity") or {}).get("nodeAffinity") or {})
                 .get("requiredDuringSchedulingIgnoredDuringExecution")) or {})
    if required:
        constraints.append(("its required node affinity", required.get("nodeSelectorTerms") or []))
    if not constraints:
        return []
    # The replacement needs a Node that satisfies all of them at once.
    if any(all(node_selector_matches(terms, other) for _, terms in constraints) for other in others):
        return []
    reasons = [what for what, terms in constraints if not any(node_selector_matches(terms, o) for o in others)]
    why = "; ".join(f"{what} admits no other schedulable Node" for what in reasons) or \
        "its volumes' and its own node constraints together admit no other schedulable Node"
    return [{"kind": "pinned", "reason": f"can only run on {node}: {why}; "
                                         "a drain would evict it to nowhere (its replacement stays Pending)"}]


def _by_key(items: list[dict[str, Any]] | None, namespaced: bool) -> dict[str, dict[str, Any]]:
    result = {}
    for item in items or []:
        metadata = item.get("metadata") or {}
        key = f"{metadata.get('namespace')}/{metadata.get('name')}" if namespaced else str(metadata.get("name"))
        result[key] = item
    return result


def k3s_drain_plan(nodes: list[str], cluster: dict[str, Any], mode: str = "auto", force: bool = False,
                   delete_emptydir_data: bool = True, disable_eviction: bool = False) -> dict[str, Any]:
    """Judge, for each Node name in ``nodes``, whether its drain can finish, and plan its upgrade.

    ``cluster`` holds the objects as ``kubernetes.core.k8s_info`` returns them: ``nodes`` (Node),
    ``pods`` (Pod), ``pdbs`` (PodDisruptionBudget), ``claims`` (PersistentVolumeClaim) and
    ``volumes`` (PersistentVolume). A node's drain cannot finish, or cannot move a pod, when a pod
    the drain would evict on it

    - is refused by the drain itself (no controller without ``force``; an emptyDir volume without
      ``delete_emptydir_data``);
    - is refused by the eviction API: its PodDisruptionBudget allows 0 disruptions, or two budgets
      select it (not with ``disable_eviction``, which deletes instead);
    - can run on no other schedulable Node (a volume whose PersistentVolume's node affinity, or
      its own nodeSelector or required node affinity, admits only this node).

    ``mode`` (``k3s_upgrade_drain``): ``auto`` drains each node that has no blocker and upgrades
    the others in place; ``always`` drains every node and is not ``allowed`` when any has a
    blocker; ``never`` drains none (the cluster is not read for it). Returns ``nodes`` (per node:
    ``drain`` bool and ``blockers``, each ``{"pod", "kind", "reason"}``), ``drain`` and
    ``in_place`` (node names), ``allowed``, ``summary`` (one line per node) and ``message`` (the
    refusal for ``always``, naming each node, pod and budget and what to do; else the summary).
    """
    if mode not in MODES:
        raise K3sDrainError(f"k3s_upgrade_drain={mode!r}: set it to one of {', '.join(MODES)}.")
    cluster = cluster or {}
    all_nodes = list(cluster.get("nodes") or [])
    budgets = list(cluster.get("pdbs") or [])
    claims = _by_key(cluster.get("claims"), namespaced=True)
    volumes = _by_key(cluster.get("volumes"), namespaced=False)
    plan: dict[str, dict[str, Any]] = {}
    for node in sorted(set(nodes or [])):
        blockers: list[dict[str, Any]] = []
        if mode != "never":
            for pod in sorted((p for p in cluster.get("pods") or []
                               if (p.get("spec") or {}).get("nodeName") == node), key=_name):
                evicted, refusal = _drain_refusal(pod, force, delete_emptydir_data)
                found = [refusal] if refusal else []
                if evicted:
                    if not disable_eviction:
                        found += _budget_blockers(pod, budgets)
                    found += _pin_blockers(pod, node, all_nodes, claims, volumes)
                blockers += [{"pod": _name(pod), **reason} for reason in found]
        plan[node] = {"drain": mode == "always" or (mode == "auto" and not blockers), "blockers": blockers}

    def describe(node: str) -> str:
        entry = plan[node]
        reasons = "; ".join(f"pod {b['pod']} {b['reason']}" for b in entry["blockers"])
        if mode == "never":
            return f"{node}: in place, not drained (k3s_upgrade_drain=never)"
        if entry["drain"]:
            return f"{node}: drain" + (f" (k3s_upgrade_drain=always, although {reasons})" if reasons else "")
        return f"{node}: in place, not drained ({reasons})"

    summary = [describe(node) for node in plan]
    blocked = [node for node, entry in plan.items() if entry["blockers"]]
    allowed = mode != "always" or not blocked
    if allowed:
        message = "; ".join(summary) if summary else "no agent to upgrade"
    else:
        kinds = sorted({b["kind"] for node in blocked for b in plan[node]["blockers"]}, key=list(REMEDIES).index)
        message = (
            "k3s_upgrade_drain=always, but the drain of "
            + ", ".join(blocked)
            + " cannot finish or cannot move every pod; nothing was changed. "
            + " ".join(f"Node {node}: " + "; ".join(f"pod {b['pod']} {b['reason']}" for b in plan[node]["blockers"])
                       + "." for node in blocked)
            + " To drain: " + "; ".join(REMEDIES[k] for k in kinds)
            + ". Or set k3s_upgrade_drain=auto to upgrade these nodes in place without a drain (k3s restarts"
            " without stopping the pods' containers), or k3s_upgrade_drain=never to drain no node."
        )
    return {"nodes": plan, "drain": [n for n in plan if plan[n]["drain"]],
            "in_place": [n for n in plan if not plan[n]["drain"]], "allowed": allowed,
            "summary": summary, "message": message}


class FilterModule:
    """Ansible filters: ``k3s_drain_blocking``, ``k3s_drain_plan``."""

    def filters(self) -> dict[str, Any]:
        """Return the filters this module provides."""
        return {"k3s_drain_blocking": k3s_drain_blocking, "k3s_drain_plan": k3s_drain_plan}
