"""The judgement of upgrade.yml's drain check (roles/k3s_upgrade/filter_plugins/k3s_drain.py,
``k3s_drain_plan``): which agents' drains cannot finish or cannot move a pod, and what each
k3s_upgrade_drain mode plans for them. The same judgement against a real API server is in
tests/k3s_nodes/test_upgrade_drain_check.py."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "roles" / "k3s_upgrade" / "filter_plugins"))
from k3s_drain import (  # noqa: E402
    K3sDrainError, k3s_drain_plan, label_selector_matches, node_selector_matches)

NS = "seek"


def node(name: str, unschedulable: bool = False, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **labels}},
            "spec": {"unschedulable": unschedulable}}


def pod(name: str, on: str, labels: dict | None = None, owner: str | None = "ReplicaSet", phase: str = "Running",
        ready: bool = True, claims: tuple[str, ...] = (), **spec: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": NS, "labels": labels or {"app": name}}
    if owner:
        metadata["ownerReferences"] = [{"kind": owner, "name": f"{name}-owner", "controller": True}]
    volumes = [{"name": c, "persistentVolumeClaim": {"claimName": c}} for c in claims] + spec.pop("volumes", [])
    return {"metadata": metadata, "spec": {"nodeName": on, "volumes": volumes, **spec},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def pdb(name: str, selector: dict | None, allowed: int, healthy: int = 1, desired: int = 1,
        policy: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": selector}
    if policy:
        spec["unhealthyPodEvictionPolicy"] = policy
    return {"metadata": {"name": name, "namespace": NS}, "spec": spec,
            "status": {"disruptionsAllowed": allowed, "currentHealthy": healthy, "desiredHealthy": desired}}


def local_path(claim: str, pv: str, on: str) -> tuple[dict, dict]:
    """A claim bound to a PersistentVolume as local-path-provisioner v0.0.32 creates it."""
    return ({"metadata": {"name": claim, "namespace": NS}, "spec": {"volumeName": pv}},
            {"metadata": {"name": pv}, "spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [on]}]}]}}}})


NODES = [node("server-1"), node("agent-1"), node("agent-2")]


def cluster(pods=(), pdbs=(), volumes=(), nodes=NODES) -> dict[str, Any]:
    return {"nodes": list(nodes), "pods": list(pods), "pdbs": list(pdbs),
            "claims": [c for c, _ in volumes], "volumes": [v for _, v in volumes]}


PINNED = cluster(
    pods=[pod("db-0", "agent-1", owner="StatefulSet", claims=("data-db-0",)), pod("web-1", "agent-2")],
    pdbs=[pdb("db", {"matchLabels": {"app": "db-0"}}, allowed=0)],
    volumes=[local_path("data-db-0", "pvc-1234", "agent-1")])


def test_auto_plans_in_place_for_the_pinned_node_and_drains_the_other() -> None:
    plan = k3s_drain_plan(["agent-1", "agent-2"], PINNED, mode="auto")
    assert plan["allowed"]
    assert plan["drain"] == ["agent-2"] and plan["in_place"] == ["agent-1"]
    kinds = {b["kind"] for b in plan["nodes"]["agent-1"]["blockers"]}
    assert kinds == {"pdb", "pinned"}
    assert plan["nodes"]["agent-2"] == {"drain": True, "blockers": []}
    line = plan["summary"][0]
    assert line.startswith("agent-1: in place, not drained (")
    assert "pod seek/db-0" in line and "PodDisruptionBudget seek/db, which allows 0 disruptions" in line
    assert "PersistentVolume pvc-1234" in line and "can only run on agent-1" in line
    assert plan["summary"][1] == "agent-2: drain"


def test_always_refuses_naming_node_pod_budget_and_what_to_do() -> None:
    plan = k3s_drain_plan(["agent-1", "agent-2"], PINNED, mode="always")
    assert not plan["allowed"]
    message = plan["message"]
    assert message.startswith("k3s_upgrade_drain=always, but the drain of agent-1 cannot finish")
    assert "nothing was changed" in message
    assert "Node agent-1: pod seek/db-0" in message and "PodDisruptionBudget seek/db" in message
    assert "agent-2" not in message  # its drain is fine
    assert "relax the PodDisruptionBudget" in message and "move the workload off the node" in message
    assert "set k3s_upgrade_drain=auto" in message and "k3s_upgrade_drain=never" in message


def test_never_drains_nothing_and_judges_nothing() -> None:
    plan = k3s_drain_plan(["agent-1", "agent-2"], PINNED, mode="never")
    assert plan["allowed"] and plan["drain"] == [] and plan["in_place"] == ["agent-1", "agent-2"]
    assert all(not entry["blockers"] for entry in plan["nodes"].values())
    # upgrade.yml does not read the cluster for never: the plan needs no objects.
    assert k3s_drain_plan(["agent-1"], {}, mode="never")["in_place"] == ["agent-1"]


def test_nothing_blocks_an_ordinary_node() -> None:
    """ReplicaSet pods with a budget that allows a disruption, DaemonSet, mirror and finished pods."""
    mirror = pod("kube-proxy", "agent-1", owner=None)
    mirror["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "x"}
    state = cluster(pods=[pod("web-1", "agent-1", labels={"app": "web"}), pod("web-2", "agent-2", labels={"app": "web"}),
                          pod("svclb", "agent-1", owner="DaemonSet"), mirror,
                          pod("job-1", "agent-1", owner=None, phase="Succeeded")],
                    pdbs=[pdb("web", {"matchLabels": {"app": "web"}}, allowed=1, healthy=2)])
    for mode in ("auto", "always"):
        plan = k3s_drain_plan(["agent-1"], state, mode=mode)
        assert plan["allowed"] and plan["drain"] == ["agent-1"], plan


def test_budget_alone_blocks() -> None:
    state = cluster(pods=[pod("web-1", "agent-1", labels={"app": "web"})],
                    pdbs=[pdb("web", {"matchLabels": {"app": "web"}}, allowed=0)])
    blockers = k3s_drain_plan(["agent-1"], state)["nodes"]["agent-1"]["blockers"]
    assert [(b["pod"], b["kind"], b["pdbs"]) for b in blockers] == [("seek/web-1", "pdb", ["seek/web"])]


def test_budget_ignored_with_disable_eviction_but_pinning_still_counts() -> None:
    plan = k3s_drain_plan(["agent-1"], PINNED, disable_eviction=True)
    assert [b["kind"] for b in plan["nodes"]["agent-1"]["blockers"]] == ["pinned"]


@pytest.mark.parametrize("case, blocked", [
    ("pending", False),          # eviction deletes a Pending pod without looking at budgets
    ("terminating", False),      # as a pod already being deleted
    ("unready-always-allow", False),
    ("unready-budget-met", False),
    ("unready-budget-short", True),
    ("ready", True),
])
def test_eviction_rules_for_budgets(case: str, blocked: bool) -> None:
    web = pod("web-1", "agent-1", labels={"app": "web"}, phase="Pending" if case == "pending" else "Running",
              ready=case == "ready" or case == "terminating")
    if case == "terminating":
        web["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    budget = pdb("web", {"matchLabels": {"app": "web"}}, allowed=0,
                 healthy=2 if case == "unready-budget-met" else 0, desired=2,
                 policy="AlwaysAllow" if case == "unready-always-allow" else None)
    plan = k3s_drain_plan(["agent-1"], cluster(pods=[web], pdbs=[budget]))
    assert bool(plan["nodes"]["agent-1"]["blockers"]) is blocked, plan


def test_two_budgets_on_one_pod_block() -> None:
    state = cluster(pods=[pod("web-1", "agent-1", labels={"app": "web", "tier": "front"})],
                    pdbs=[pdb("web", {"matchLabels": {"app": "web"}}, allowed=1, healthy=3),
                          pdb("front", {"matchLabels": {"tier": "front"}}, allowed=1, healthy=3)])
    blockers = k3s_drain_plan(["agent-1"], state)["nodes"]["agent-1"]["blockers"]
    assert len(blockers) == 1 and blockers[0]["kind"] == "pdbs"
    assert "more than one PodDisruptionBudget (seek/front, seek/web)" in blockers[0]["reason"]


def test_budget_in_another_namespace_does_not_select() -> None:
    other = pdb("web", {"matchLabels": {"app": "web"}}, allowed=0)
    other["metadata"]["namespace"] = "elsewhere"
    plan = k3s_drain_plan(["agent-1"], cluster(pods=[pod("web-1", "agent-1", labels={"app": "web"})], pdbs=[other]))
    assert plan["drain"] == ["agent-1"]


@pytest.mark.parametrize("force, emptydir, kinds", [
    (False, False, ["unmanaged"]),
    (True, False, []),
    (False, True, []),    # k8s_drain 6.2.0 deletes an emptyDir pod before it looks at owners
])
def test_bare_pod(force: bool, emptydir: bool, kinds: list[str]) -> None:
    bare = pod("debug", "agent-1", owner=None, volumes=[{"name": "tmp", "emptyDir": {}}] if emptydir else [])
    plan = k3s_drain_plan(["agent-1"], cluster(pods=[bare]), force=force)
    assert [b["kind"] for b in plan["nodes"]["agent-1"]["blockers"]] == kinds


def test_emptydir_refused_without_delete_emptydir_data() -> None:
    cache = pod("cache-1", "agent-1", volumes=[{"name": "tmp", "emptyDir": {}}])
    plan = k3s_drain_plan(["agent-1"], cluster(pods=[cache]), delete_emptydir_data=False)
    blockers = plan["nodes"]["agent-1"]["blockers"]
    assert [b["kind"] for b in blockers] == ["emptydir"]
    assert "k3s_upgrade_drain_delete_emptydir_data" in blockers[0]["reason"]


def test_pinned_without_budget_blocks_and_a_volume_elsewhere_does_not() -> None:
    """A local-path volume on agent-1 pins its pod; a volume on another node, or none, does not."""
    pinned = cluster(pods=[pod("solr-0", "agent-1", claims=("data-solr-0",))],
                     volumes=[local_path("data-solr-0", "pvc-9", "agent-1")])
    assert [b["kind"] for b in k3s_drain_plan(["agent-1"], pinned)["nodes"]["agent-1"]["blockers"]] == ["pinned"]
    free = cluster(pods=[pod("solr-0", "agent-1", claims=("data-solr-0",))],
                   volumes=[({"metadata": {"name": "data-solr-0", "namespace": NS}, "spec": {"volumeName": "nfs-1"}},
                             {"metadata": {"name": "nfs-1"}, "spec": {"nfs": {"server": "x", "path": "/"}}})])
    assert k3s_drain_plan(["agent-1"], free)["drain"] == ["agent-1"]


def test_pinned_by_nodeselector_and_cordoned_others() -> None:
    """SEEK pins local-path users with nodeSelector kubernetes.io/hostname; a label every node has
    pins nothing, unless the only other matching node is cordoned."""
    seek = pod("seek-web-1", "agent-1", nodeSelector={"kubernetes.io/hostname": "agent-1"})
    blockers = k3s_drain_plan(["agent-1"], cluster(pods=[seek]))["nodes"]["agent-1"]["blockers"]
    assert blockers and "its nodeSelector admits no other schedulable Node" in blockers[0]["reason"]
    linux = pod("web-1", "agent-1", nodeSelector={"kubernetes.io/os": "linux"})
    nodes = [node("agent-1", **{"kubernetes.io/os": "linux"}), node("agent-2", **{"kubernetes.io/os": "linux"})]
    assert k3s_drain_plan(["agent-1"], cluster(pods=[linux], nodes=nodes))["drain"] == ["agent-1"]
    nodes[1]["spec"]["unschedulable"] = True
    assert k3s_drain_plan(["agent-1"], cluster(pods=[linux], nodes=nodes))["in_place"] == ["agent-1"]


def test_required_node_affinity_pins() -> None:
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["agent-1"]}]}]}}}
    plan = k3s_drain_plan(["agent-1"], cluster(pods=[pod("gpu-1", "agent-1", affinity=affinity)]))
    assert "its required node affinity admits no other" in plan["nodes"]["agent-1"]["blockers"][0]["reason"]


def test_unknown_mode_refused_naming_the_variable() -> None:
    with pytest.raises(K3sDrainError, match="k3s_upgrade_drain='sometimes': set it to one of auto, always, never"):
        k3s_drain_plan(["agent-1"], PINNED, mode="sometimes")


def test_no_agent_to_upgrade() -> None:
    plan = k3s_drain_plan([], PINNED, mode="always")
    assert plan["allowed"] and plan["nodes"] == {} and plan["message"] == "no agent to upgrade"


@pytest.mark.parametrize("selector, labels, matches", [
    (None, {"app": "web"}, False),                     # null selects nothing
    ({}, {"app": "web"}, True),                        # empty selects everything
    ({"matchLabels": {"app": "web"}}, {"app": "web", "x": "y"}, True),
    ({"matchLabels": {"app": "web"}}, {"app": "db"}, False),
    ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "db"]}]}, {"app": "db"}, True),
    ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}, {}, True),
    ({"matchExpressions": [{"key": "app", "operator": "Exists"}]}, {}, False),
    ({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, {}, True),
    ({"matchExpressions": [{"key": "app", "operator": "Bogus"}]}, {"app": "web"}, False),
])
def test_label_selector(selector, labels, matches) -> None:
    assert label_selector_matches(selector, labels) is matches


@pytest.mark.parametrize("terms, matches", [
    ([], False),
    ([{}], False),                                     # an empty term matches no node
    ([{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
      {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}], True),   # ORed
    ([{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]},
                            {"key": "disk", "operator": "Exists"}]}], False),              # ANDed
    ([{"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]}], True),
    ([{"matchExpressions": [{"key": "cores", "operator": "Lt", "values": ["4"]}]}], False),
    ([{"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["agent-1"]}]}], False),
])
def test_node_selector_terms(terms, matches) -> None:
    assert node_selector_matches(terms, node("agent-1", zone="a", cores="8")) is matches
