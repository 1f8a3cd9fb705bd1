"""upgrade.yml's drain check (issue 19, item 7) against a real kube-apiserver + kube-controller-manager
(tests/controlplane): the plays of playbooks/upgrade.yml that judge and upgrade the agents, run as
they are written there (pre-flight and the servers' play left out: they need real nodes).

The cluster: agent check-agent-1 holds db-0, the one pod of a StatefulSet, whose volume is a
PersistentVolume shaped as local-path-provisioner v0.0.32 creates them (required node affinity
kubernetes.io/hostname In [check-agent-1]), behind a PodDisruptionBudget with minAvailable 1; the
disruption controller of the running kube-controller-manager computes its disruptionsAllowed (0).
Agent check-agent-2 holds two pods of a ReplicaSet and nothing that pins them.

What cannot run here is the k3s binary replacement itself: as in test_upgrade_drain.py, the
k3s_agent role is given an airgap bundle whose binary does not match its checksum and refuses it
before it installs anything, and the agent step's rescue uncordons the node. Everything before
that (the check, the plan, the cordon or drain of each agent) and after (the rescue) is real.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from tests.controlplane.fixture import KubeAPI
from tests.controlplane_selftest.helpers import apply, eventually, get_json, namespace
from tests.k3s_nodes.test_upgrade_drain import recap, replicaset
from tests.k3s_nodes.test_version_guard import set_node_version

ROOT = Path(__file__).resolve().parents[2]
PINNED, FREE = "check-agent-1", "check-agent-2"
OLD = "v1.33.6+k3s1"
# The plays of upgrade.yml this test runs, by name.
PLAYS = ("Upgrade | Check each agent's drain can finish, before any change",
         "Upgrade | Agents in batches, cordoned and drained first")


def upgrade_plays(tmp_path: Path, names: tuple[str, ...] = PLAYS) -> Path:
    """The named plays of playbooks/upgrade.yml, unchanged, in a playbook of their own."""
    plays = yaml.safe_load((ROOT / "playbooks" / "upgrade.yml").read_text())
    chosen = [play for play in plays if play.get("name") in names]
    assert [play["name"] for play in chosen] == list(names), "upgrade.yml no longer has these plays"
    path = tmp_path / "upgrade-agents.yml"
    path.write_text(yaml.safe_dump(chosen, sort_keys=False))
    return path


def write_inventory(kube_api: KubeAPI, tmp_path: Path, **variables) -> Path:
    """Two agents (and a server for the groups), all this machine over the local connection.

    Each agent has a k3s binary that reports OLD, so agent.yml and the check see one to upgrade;
    the airgap bundle's binary does not match its checksum, so the k3s_agent role refuses it.
    """
    airgap = tmp_path / "airgap"
    airgap.mkdir(exist_ok=True)
    (airgap / "k3s").write_bytes(b"not the release binary\n")
    (airgap / "sha256sum-amd64.txt").write_text(f"{'0' * 64}  k3s\n")
    install = tmp_path / "bin"
    install.mkdir(exist_ok=True)
    (install / "k3s").write_text(f"#!/bin/sh\necho 'k3s version {OLD} (1f9e0f5e)'\necho 'go version go1.24.9'\n")
    (install / "k3s").chmod(0o755)
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, "ansible_become": False}
    inventory = {"all": {
        "vars": {"k3s_version": "v1.34.2+k3s1", "cluster_kubeconfig": str(kube_api.kubeconfig),
                 "cluster_artifacts_dir": str(tmp_path / "artifacts"), "k3s_token": "not-a-real-cluster",
                 "k3s_install_dir": str(install), "k3s_config_dir": str(tmp_path / "etc"),
                 "k3s_data_dir": str(tmp_path / "data"), "k3s_airgap_dir": str(airgap),
                 "k3s_upgrade_drain_timeout": 20, **variables},
        "children": {"k3s_cluster": {"children": {
            "k3s_servers": {"hosts": {"check-server-1": {**local, "k3s_node_name": "check-server-1"}}},
            "k3s_agents": {"hosts": {name: {**local, "k3s_node_name": name} for name in (PINNED, FREE)}}}},
            "controller": {"hosts": {"localhost": local}}}}}
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(inventory))
    return path


def run(kube_api: KubeAPI, playbook: Path, inventory: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(kube_api.env, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_ROLES_PATH=str(ROOT / "roles"))
    env.pop("K8S_AUTH_KUBECONFIG", None)
    return subprocess.run(["ansible-playbook", "-v", str(playbook), "-i", str(inventory), *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)


def flat(output: str) -> str:
    """The output with every run of white space made one space (the stdout callback wraps long lines)."""
    return " ".join(output.split())


def bind(kube_api: KubeAPI, ns: str, pod: str, node: str) -> None:
    """Bind a pod to a Node as the scheduler does (a Binding)."""
    kube_api.run_kubectl("create", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod, "namespace": ns},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node}}))


def run_and_ready(kube_api: KubeAPI, ns: str, pod: str) -> None:
    """Report the pod Running and Ready, as its kubelet would (status is a subresource)."""
    kube_api.run_kubectl("patch", "pod", pod, "-n", ns, "--subresource=status", "--type=merge", "-p", json.dumps(
        {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}))


def pods_on(kube_api: KubeAPI, ns: str, node: str) -> dict[str, dict]:
    items = get_json(kube_api, "pods", "-n", ns, "--field-selector", f"spec.nodeName={node}")["items"]
    return {p["metadata"]["name"]: p for p in items}


def unschedulable(kube_api: KubeAPI, node: str) -> bool:
    return bool(get_json(kube_api, "node", node)["spec"].get("unschedulable", False))


@pytest.fixture()
def cluster(kube_api: KubeAPI):
    """The two agents' Nodes at OLD and their workloads; everything removed afterwards."""
    for name in (PINNED, FREE):
        set_node_version(kube_api, name, OLD)
    ns = namespace(kube_api, f"drain-check-{uuid.uuid4().hex[:6]}")
    pv = f"pvc-{uuid.uuid4()}"
    # As local-path-provisioner v0.0.32 provisionFor writes it (hostPath under k3s's default
    # storage path, required node affinity on the node's kubernetes.io/hostname label).
    apply(kube_api, {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
                     "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                              "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "local-path",
                              "volumeMode": "Filesystem",
                              "hostPath": {"path": f"/var/lib/rancher/k3s/storage/{pv}_{ns}_data-db-0",
                                           "type": "DirectoryOrCreate"},
                              "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                                  {"key": "kubernetes.io/hostname", "operator": "In", "values": [PINNED]}]}]}}}})
    apply(kube_api, {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data-db-0", "namespace": ns},
                     "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local-path", "volumeName": pv,
                              "resources": {"requests": {"storage": "1Gi"}}}})
    eventually(lambda: get_json(kube_api, "pvc", "data-db-0", "-n", ns)["status"].get("phase") == "Bound",
               what="the PV controller to bind data-db-0")
    labels = {"app.kubernetes.io/name": "db"}
    apply(kube_api, {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": ns},
                     "spec": {"replicas": 1, "serviceName": "db", "selector": {"matchLabels": labels},
                              "template": {"metadata": {"labels": labels}, "spec": {
                                  "terminationGracePeriodSeconds": 0,
                                  "containers": [{"name": "db", "image": "busybox:1.36",
                                                  "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}},
                              "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                                  "accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
                                  "resources": {"requests": {"storage": "1Gi"}}}}]}})
    eventually(lambda: get_json(kube_api, "pods", "-n", ns, "-l", "app.kubernetes.io/name=db")["items"],
               what="the StatefulSet's pod db-0")
    bind(kube_api, ns, "db-0", PINNED)
    run_and_ready(kube_api, ns, "db-0")
    apply(kube_api, {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "db", "namespace": ns},
                     "spec": {"minAvailable": 1, "selector": {"matchLabels": labels}}})

    def budget_computed():
        pdb = get_json(kube_api, "pdb", "db", "-n", ns)
        status = pdb.get("status") or {}
        return status if status.get("observedGeneration") == pdb["metadata"]["generation"] \
            and status.get("expectedPods") == 1 else None

    # The disruption controller (kube-controller-manager) fills the status; nothing here writes it.
    status = eventually(budget_computed, what="the disruption controller to compute PodDisruptionBudget db")
    assert status["disruptionsAllowed"] == 0 and status["desiredHealthy"] == 1, status

    apply(kube_api, replicaset(ns, "web", replicas=2, grace=0))
    eventually(lambda: len(get_json(kube_api, "pods", "-n", ns, "-l", "app.kubernetes.io/name=web")["items"]) >= 2,
               what="two web pods")
    web = [p["metadata"]["name"] for p in get_json(kube_api, "pods", "-n", ns, "-l", "app.kubernetes.io/name=web")["items"]]
    for pod in web:
        bind(kube_api, ns, pod, FREE)
    yield {"ns": ns, "pv": pv, "web": sorted(web), "db_uid": get_json(kube_api, "pod", "db-0", "-n", ns)["metadata"]["uid"]}
    kube_api.run_kubectl("delete", "pods", "--all", "-n", ns, "--grace-period=0", "--force", "--ignore-not-found",
                         check=False)
    kube_api.run_kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)
    kube_api.run_kubectl("delete", "pv", pv, "--wait=false", "--ignore-not-found", check=False)
    for name in (PINNED, FREE):
        kube_api.run_kubectl("delete", "node", name, "--ignore-not-found", check=False)


def test_always_refuses_before_any_change_naming_node_pod_and_budget(
        kube_api: KubeAPI, tmp_path: Path, cluster: dict) -> None:
    ns = cluster["ns"]
    result = run(kube_api, upgrade_plays(tmp_path), write_inventory(kube_api, tmp_path, k3s_upgrade_drain="always"))
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "Drain check | Refuse when k3s_upgrade_drain=always and a drain cannot finish" in out, out
    message = re.search(r"k3s_upgrade_drain=always, but the drain of .*?never to drain no node\.", flat(out))
    assert message, out
    message = message.group(0)
    assert message.startswith(f"k3s_upgrade_drain=always, but the drain of {PINNED} cannot finish"), message
    assert "nothing was changed" in message
    assert f"Node {PINNED}: pod {ns}/db-0" in message
    assert f"PodDisruptionBudget {ns}/db, which allows 0 disruptions" in message
    assert f"its volume {ns}/data-db-0 is PersistentVolume {cluster['pv']}" in message
    assert FREE not in message  # its drain can finish
    assert "relax the PodDisruptionBudget" in message and "set k3s_upgrade_drain=auto" in message
    # Nothing changed: the agents' play never started, no Node was cordoned, every pod is where it was.
    assert "PLAY [Upgrade | Agents in batches" not in out, out
    for host in (PINNED, FREE):
        assert recap(out, host)["changed"] == 0, out
        assert not unschedulable(kube_api, host)
    assert list(pods_on(kube_api, ns, PINNED)) == ["db-0"]
    assert sorted(pods_on(kube_api, ns, FREE)) == cluster["web"]


def test_auto_upgrades_the_pinned_node_in_place_and_drains_the_other(
        kube_api: KubeAPI, tmp_path: Path, cluster: dict) -> None:
    """Both agents in one batch: the plan says in place for PINNED and drain for FREE; PINNED is only
    cordoned (db-0 stays, the same pod, never evicted), FREE is drained; both then stop at the k3s
    binary (refused here, see the module docstring) and are uncordoned by the rescue."""
    ns = cluster["ns"]
    result = run(kube_api, upgrade_plays(tmp_path), write_inventory(kube_api, tmp_path),
                 "-e", "k3s_upgrade_agent_batch=2")
    out = result.stdout + result.stderr
    text = flat(out)
    assert result.returncode != 0, out  # the stubbed binary replacement
    assert (f"'{PINNED}: in place, not drained (pod {ns}/db-0 is selected by PodDisruptionBudget {ns}/db, "
            "which allows 0 disruptions") in text, out
    assert (f"pod {ns}/db-0 can only run on {PINNED}: its volume {ns}/data-db-0 is PersistentVolume "
            f"{cluster['pv']}, whose node affinity admits no other schedulable Node") in text, out
    assert f"'{FREE}: drain'" in text, out
    # PINNED: cordoned only; FREE: cordoned and its two pods evicted.
    assert "Cordon | Mark the node unschedulable, its pods left running" in text, out
    assert f"result: node {PINNED} marked unschedulable." in text, out
    assert not re.search(rf"node {PINNED} marked unschedulable\. \d+ Pod", text), out
    assert f"result: node {FREE} marked unschedulable. 2 Pod(s) deleted from node." in text, out
    for host in (PINNED, FREE):
        assert f"Upgrading {host} (node {host}) to k3s_version=v1.34.2+k3s1 failed at" in out, out
        assert recap(out, host)["rescued"] == 1, out
        assert not unschedulable(kube_api, host)
    assert "does not match its sha256" in out, out
    db = pods_on(kube_api, ns, PINNED)
    assert list(db) == ["db-0"] and db["db-0"]["metadata"]["uid"] == cluster["db_uid"], db
    assert not db["db-0"]["metadata"].get("deletionTimestamp")
    assert pods_on(kube_api, ns, FREE) == {}
    # The budget was never spent: no eviction of db-0 was attempted.
    assert get_json(kube_api, "pdb", "db", "-n", ns)["status"].get("disruptedPods") in (None, {})


def test_always_drains_a_node_without_blockers(kube_api: KubeAPI, tmp_path: Path, cluster: dict) -> None:
    """Limited to FREE, always passes the check and the agent step drains it as before."""
    result = run(kube_api, upgrade_plays(tmp_path), write_inventory(kube_api, tmp_path, k3s_upgrade_drain="always"),
                 "--limit", FREE)
    out = result.stdout + result.stderr
    text = flat(out)
    assert f"'{FREE}: drain'" in text, out
    assert f"result: node {FREE} marked unschedulable. 2 Pod(s) deleted from node." in text, out
    assert "does not match its sha256" in out and recap(out, FREE)["rescued"] == 1, out
    assert not unschedulable(kube_api, FREE)
    assert list(pods_on(kube_api, cluster["ns"], PINNED)) == ["db-0"]


def test_never_judges_nothing_and_plans_every_agent_in_place(kube_api: KubeAPI, tmp_path: Path, cluster: dict) -> None:
    check_only = upgrade_plays(tmp_path, PLAYS[:1])
    result = run(kube_api, check_only, write_inventory(kube_api, tmp_path, k3s_upgrade_drain="never"))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    for host in (PINNED, FREE):
        assert f"'{host}: in place, not drained (k3s_upgrade_drain=never)'" in flat(out), out
    assert "skipping: [" in out and "Drain check | Read the cluster's Nodes" in out


@pytest.mark.parametrize("value, shown", [("sometimes", "sometimes"), ("false", "False"), ("true", "True")])
def test_bad_value_refused_naming_the_variable(kube_api: KubeAPI, tmp_path: Path, value: str, shown: str) -> None:
    """A word that is not a mode, or a YAML boolean (passed as JSON to keep its type), is refused
    before the cluster is read."""
    result = run(kube_api, upgrade_plays(tmp_path), write_inventory(kube_api, tmp_path),
                 "-e", json.dumps({"k3s_upgrade_drain": value if value == "sometimes" else value == "true"}))
    out = result.stdout + result.stderr
    text = flat(out)
    assert result.returncode != 0, out
    assert f"k3s_upgrade_drain={shown} is not one of auto, always, never" in text, out
    assert "Nothing was changed." in text, out
    assert "TASK [k3s_upgrade : Drain check | Read the cluster's" not in out, out
    assert "PLAY [Upgrade | Agents in batches" not in out, out
