"""upgrade.yml's drain around an agent, against a real kube-apiserver + kube-controller-manager
(tests/controlplane): Nodes and Pods are API objects there; no kubelet runs.

Pods come from a real ReplicaSet and are bound to the Node through the Binding subresource, as the
scheduler binds them. With no kubelet, a pod deleted with a grace period stays Terminating until the
period ends; pods whose own terminationGracePeriodSeconds is 0 are removed by the API server at once
when evicted. The ReplicaSet recreates evicted pods unbound, as it would elsewhere in a cluster.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import yaml

from tests.controlplane_selftest.helpers import apply, eventually, get_json, namespace
from tests.controlplane.fixture import KubeAPI
from tests.k3s_nodes.test_version_guard import set_node_version

ROOT = Path(__file__).resolve().parents[2]
NODE = "drain-agent-1"

DRAIN = textwrap.dedent("""\
    - name: Drain as upgrade.yml does before upgrading an agent
      hosts: k3s_agents
      gather_facts: true
      tasks:
        - name: Cordon and drain
          ansible.builtin.include_role:
            name: k3s_upgrade
            tasks_from: drain.yml
    """)

UNCORDON = DRAIN.replace("Drain as", "Uncordon as").replace("Cordon and drain", "Uncordon").replace(
    "drain.yml", "uncordon.yml")

# The agent step of upgrade.yml: agent.yml loads the agent settings, then (the installed binary
# runs another version) agent_upgrade.yml drains, upgrades with k3s_agent, waits, uncordons, and
# uncordons in its rescue.
AGENT = textwrap.dedent("""\
    - name: Upgrade an agent as upgrade.yml does
      hosts: k3s_agents
      gather_facts: true
      tasks:
        - name: Check the agent settings (and load the shared k3s settings)
          ansible.builtin.include_role:
            name: k3s_agent
            tasks_from: validate.yml
            public: true
        - name: Drain, upgrade and uncordon the agent
          ansible.builtin.include_role:
            name: k3s_upgrade
            tasks_from: agent_upgrade.yml
    """)


def write_inventory(kube_api: KubeAPI, tmp_path: Path, **variables) -> Path:
    """One server and one agent, both this machine over the local connection, never escalating.

    Every k3s path points into tmp_path, and k3s_airgap_dir at a bundle whose binary does not match
    its checksum file (a corrupted download): the k3s_agent role refuses it before it installs anything.
    """
    airgap = tmp_path / "airgap"
    airgap.mkdir(exist_ok=True)
    (airgap / "k3s").write_bytes(b"not the release binary\n")
    (airgap / "sha256sum-amd64.txt").write_text(f"{'0' * 64}  k3s\n")
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
             "ansible_become": False}
    inventory = {"all": {
        "vars": {"k3s_version": "v1.34.2+k3s1", "cluster_kubeconfig": str(kube_api.kubeconfig),
                 "cluster_artifacts_dir": str(tmp_path / "artifacts"), "k3s_token": "not-a-real-cluster",
                 "k3s_install_dir": str(tmp_path / "bin"), "k3s_config_dir": str(tmp_path / "etc"),
                 "k3s_data_dir": str(tmp_path / "data"), "k3s_airgap_dir": str(airgap),
                 "k3s_upgrade_drain_timeout": 20, **variables},
        "children": {"k3s_cluster": {"children": {
            "k3s_servers": {"hosts": {"drain-server-1": {**local, "k3s_node_name": "drain-server-1"}}},
            "k3s_agents": {"hosts": {NODE: {**local, "k3s_node_name": NODE}}}}},
            "controller": {"hosts": {"localhost": local}}}}}
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(inventory))
    return path


def run(kube_api: KubeAPI, tmp_path: Path, play: str, inventory: Path, *args: str) -> subprocess.CompletedProcess:
    """Run `play` with the project's configuration, the kubeconfig only through the inventory."""
    playbook = tmp_path / f"play-{abs(hash(play))}.yml"
    playbook.write_text(play)
    env = dict(kube_api.env, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_ROLES_PATH=str(ROOT / "roles"))
    env.pop("K8S_AUTH_KUBECONFIG", None)
    return subprocess.run(["ansible-playbook", "-v", str(playbook), "-i", str(inventory), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def replicaset(ns: str, name: str, replicas: int, grace: int) -> dict:
    """A ReplicaSet whose pods have `grace` seconds of terminationGracePeriodSeconds."""
    labels = {"app.kubernetes.io/name": name}
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"terminationGracePeriodSeconds": grace,
                                           "containers": [{"name": "app", "image": "busybox:1.36"}]}}}}


def bind_pods(kube_api: KubeAPI, ns: str, name: str, count: int) -> list[str]:
    """Wait for the ReplicaSet's pods and bind them to NODE (a Binding, as the scheduler posts)."""
    def pending() -> list[str]:
        pods = get_json(kube_api, "pods", "-n", ns, "-l", f"app.kubernetes.io/name={name}")["items"]
        return [p["metadata"]["name"] for p in pods if not p["spec"].get("nodeName")] if len(pods) >= count else []

    names = eventually(pending, what=f"{count} pods of ReplicaSet {name}")[:count]
    for pod in names:
        kube_api.run_kubectl("create", "-f", "-", input=yaml.safe_dump({
            "apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod, "namespace": ns},
            "target": {"apiVersion": "v1", "kind": "Node", "name": NODE}}))
    return names


def pods_on_node(kube_api: KubeAPI, ns: str) -> list[str]:
    pods = get_json(kube_api, "pods", "-n", ns, "--field-selector", f"spec.nodeName={NODE}")["items"]
    return sorted(p["metadata"]["name"] for p in pods)


def unschedulable(kube_api: KubeAPI) -> bool:
    return bool(get_json(kube_api, "node", NODE)["spec"].get("unschedulable", False))


def recap(output: str, host: str) -> dict[str, int]:
    match = re.search(rf"{re.escape(host)}\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)"
                      r"\s+skipped=(\d+)\s+rescued=(\d+)", output)
    assert match, output
    return dict(zip(("ok", "changed", "unreachable", "failed", "skipped", "rescued"), map(int, match.groups())))


@pytest.fixture()
def ns(kube_api: KubeAPI) -> str:
    """The agent's Node (at the previous minor) and a new namespace for its pods; removed afterwards."""
    set_node_version(kube_api, NODE, "v1.33.6+k3s1")
    ns = namespace(kube_api, f"upgrade-drain-{uuid.uuid4().hex[:6]}")
    yield ns
    # Pods left Terminating (no kubelet to confirm) are removed with grace 0, as an operator would.
    kube_api.run_kubectl("delete", "pods", "--all", "-n", ns, "--grace-period=0", "--force",
                         "--ignore-not-found", check=False)
    kube_api.run_kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)
    kube_api.run_kubectl("delete", "node", NODE, "--ignore-not-found", check=False)


def test_drain_cordons_and_evicts_then_uncordon_restores(kube_api: KubeAPI, tmp_path: Path, ns: str) -> None:
    apply(kube_api, replicaset(ns, "web", replicas=2, grace=0))
    bound = bind_pods(kube_api, ns, "web", 2)
    assert pods_on_node(kube_api, ns) == sorted(bound)
    inventory = write_inventory(kube_api, tmp_path)

    dry = run(kube_api, tmp_path, DRAIN, inventory, "--check")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert not unschedulable(kube_api) and pods_on_node(kube_api, ns) == sorted(bound)

    drained = run(kube_api, tmp_path, DRAIN, inventory)
    assert drained.returncode == 0, drained.stdout + drained.stderr
    assert "marked unschedulable" in drained.stdout
    # During the upgrade window: cordoned, and the ReplicaSet's pods are gone from the node and
    # replaced (unbound) by the controller.
    assert unschedulable(kube_api)
    assert pods_on_node(kube_api, ns) == []
    replacements = eventually(lambda: [p for p in get_json(kube_api, "pods", "-n", ns)["items"]
                                       if p["metadata"]["name"] not in bound] or None,
                              what="the ReplicaSet's replacement pods")
    assert len(replacements) == 2

    again = run(kube_api, tmp_path, DRAIN, inventory)
    assert again.returncode == 0, again.stdout
    assert recap(again.stdout, NODE)["changed"] == 0, again.stdout

    uncordoned = run(kube_api, tmp_path, UNCORDON, inventory)
    assert uncordoned.returncode == 0, uncordoned.stdout + uncordoned.stderr
    assert not unschedulable(kube_api)


def test_pod_that_does_not_terminate_fails_the_drain_and_the_node_is_uncordoned(
        kube_api: KubeAPI, tmp_path: Path, ns: str) -> None:
    """A pod stuck Terminating past k3s_upgrade_drain_timeout: the agent is not upgraded, it is
    uncordoned by the rescue, and the play fails naming the pod."""
    apply(kube_api, replicaset(ns, "web", replicas=1, grace=0))
    apply(kube_api, replicaset(ns, "slow", replicas=1, grace=600))
    bind_pods(kube_api, ns, "web", 1)
    slow = bind_pods(kube_api, ns, "slow", 1)[0]
    inventory = write_inventory(kube_api, tmp_path, k3s_upgrade_drain_timeout=4)

    result = run(kube_api, tmp_path, AGENT, inventory)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert f"Node {NODE} still runs {ns}/{slow}" in out, out
    assert f"Upgrading {NODE} (node {NODE}) to k3s_version=v1.34.2+k3s1 failed at" in out, out
    assert "The node was uncordoned." in out, out
    assert "marked unschedulable" in out and "marked schedulable" in out, out  # cordoned, then rescued
    assert recap(out, NODE)["rescued"] == 1, out
    assert not unschedulable(kube_api)
    # The k3s_agent role never ran: nothing was written under the k3s paths.
    assert not (tmp_path / "etc").exists() and not (tmp_path / "bin").exists()
    assert pods_on_node(kube_api, ns) == [slow]  # still Terminating: no kubelet here to finish it
    assert get_json(kube_api, "pod", slow, "-n", ns)["metadata"].get("deletionTimestamp")


def test_failed_upgrade_step_uncordons_the_drained_node(kube_api: KubeAPI, tmp_path: Path, ns: str) -> None:
    """The drain succeeds, then the k3s_agent role refuses the corrupted airgap binary:
    the node was cordoned and emptied, and the rescue makes it schedulable again."""
    apply(kube_api, replicaset(ns, "web", replicas=2, grace=0))
    bind_pods(kube_api, ns, "web", 2)
    inventory = write_inventory(kube_api, tmp_path)

    result = run(kube_api, tmp_path, AGENT, inventory)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "marked unschedulable" in out and "marked schedulable" in out, out
    assert "2 Pod(s) deleted from node" in out, out
    assert f"Upgrading {NODE} (node {NODE}) to k3s_version=v1.34.2+k3s1 failed at" in out, out
    assert "does not match its sha256" in out, out  # k3s_agent's own refusal, reported by the rescue
    assert recap(out, NODE)["rescued"] == 1, out
    assert not unschedulable(kube_api)
    assert pods_on_node(kube_api, ns) == []
    assert not (tmp_path / "bin").exists()


def test_failure_report_says_when_uncordoning_failed_too(kube_api: KubeAPI, tmp_path: Path) -> None:
    """The API cannot find the agent's Node (it was never registered, or was deleted): the drain
    fails, the rescue's uncordon fails as well, and the report keeps the first failure and says
    the node may still be cordoned."""
    kube_api.run_kubectl("delete", "node", NODE, "--ignore-not-found")
    result = run(kube_api, tmp_path, AGENT, write_inventory(kube_api, tmp_path))
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert 'failed at "Drain | Cordon the node and evict its pods"' in out, out
    assert f"Node {NODE} not found" in out, out
    assert "Uncordoning the node failed too" in out and f"kubectl uncordon {NODE}" in out, out
