"""remove-node.yml (and reset.yml --limit) take nodes out of the cluster through the API, with guards.

Against a real kube-apiserver + kube-controller-manager (tests/controlplane): Nodes and Pods are
API objects there; no kubelet and no k3s run, so the host part (stopping k3s, role k3s_reset) is
skipped with `--skip-tags reset`, as a user does for a dead machine. The inventory hosts point at
TEST-NET addresses nothing answers on: a task that tried to reach a host would fail the run.

Server Nodes carry what k3s puts on a server running an etcd member (the etcd role label and the
etcd.k3s.cattle.io/node-name annotation; k3s pkg/etcd/metadata_controller.go) and a Ready
condition. k3s's member removal controller is not here: a server Node without k3s's finalizer is
deleted at once, and one with the finalizer (nobody releases it) stays, as when k3s cannot remove
the etcd member.
"""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.controlplane_selftest.helpers import apply, eventually, get_json, namespace
from tests.controlplane.fixture import KubeAPI

ROOT = Path(__file__).resolve().parents[2]
ETCD_LABEL = "node-role.kubernetes.io/etcd"
FINALIZER = "wrangler.cattle.io/managed-etcd-controller"


class Cluster:
    """Node objects for `servers` servers and `agents` agents, and an inventory naming them."""

    def __init__(self, kube_api: KubeAPI, tmp_path: Path, servers: int, agents: int) -> None:
        self.kube_api = kube_api
        self.tmp_path = tmp_path
        self.prefix = f"rm{uuid.uuid4().hex[:6]}"
        self.servers = [f"{self.prefix}-server-{i}" for i in range(1, servers + 1)]
        self.agents = [f"{self.prefix}-agent-{i}" for i in range(1, agents + 1)]
        for name in self.servers:
            self.create_node(name, server=True)
        for name in self.agents:
            self.create_node(name, server=False)
        self.inventory = self.write_inventory()

    def create_node(self, name: str, server: bool, ready: bool = True, finalizer: bool = False) -> None:
        """A Node as k3s registers it, with a Ready condition (heartbeat now)."""
        labels = {"kubernetes.io/hostname": name}
        annotations = {}
        if server:
            labels |= {ETCD_LABEL: "true", "node-role.kubernetes.io/control-plane": "true"}
            annotations = {"etcd.k3s.cattle.io/node-name": f"{name}-1a2b3c4d",
                           "etcd.k3s.cattle.io/node-address": "192.0.2.10"}
        metadata = {"name": name, "labels": labels, "annotations": annotations}
        if finalizer:
            metadata["finalizers"] = [FINALIZER]
        self.kube_api.run_kubectl("apply", "-f", "-", input=json.dumps(
            {"apiVersion": "v1", "kind": "Node", "metadata": metadata}))
        self.set_ready(name, ready)

    def set_ready(self, name: str, ready: bool) -> None:
        """Post the Node's status as a kubelet would (Ready, and EtcdIsVoter for servers)."""
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        status = "True" if ready else "False"
        conditions = [{"type": "Ready", "status": status, "reason": "KubeletReady" if ready else "KubeletNotReady",
                       "message": "test", "lastHeartbeatTime": now, "lastTransitionTime": now}]
        self.kube_api.run_kubectl("patch", "node", name, "--subresource=status", "--type=merge",
                                  "-p", json.dumps({"status": {"conditions": conditions}}))

    def write_inventory(self) -> Path:
        """Hosts named like their Nodes, at addresses nothing answers on."""
        def hosts(names: list[str], first: int) -> dict:
            return {name: {"ansible_host": f"192.0.2.{first + i}", "k3s_node_name": name,
                           "ansible_ssh_common_args": "-o ConnectTimeout=3"} for i, name in enumerate(names)}

        inventory = {"all": {
            "vars": {"cluster_kubeconfig": str(self.kube_api.kubeconfig),
                     "cluster_artifacts_dir": str(self.tmp_path / "artifacts"),
                     "k3s_remove_node_drain_timeout": 30, "k3s_remove_node_delete_timeout": 30},
            "children": {
                "k3s_cluster": {"children": {"k3s_servers": {"hosts": hosts(self.servers, 10)},
                                             "k3s_agents": {"hosts": hosts(self.agents, 20)}}},
                "controller": {"hosts": {"localhost": {
                    "ansible_connection": "local", "ansible_become": False,
                    "ansible_python_interpreter": "{{ ansible_playbook_python }}"}}},
            },
        }}
        path = self.tmp_path / "hosts.yml"
        path.write_text(yaml.safe_dump(inventory))
        return path

    def run(self, playbook: str, *args: str) -> subprocess.CompletedProcess:
        """Run a project playbook (API part only) against the inventory; kubeconfig from the inventory."""
        env = dict(self.kube_api.env, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_FORCE_COLOR="0", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default")
        env.pop("K8S_AUTH_KUBECONFIG", None)
        return subprocess.run(["ansible-playbook", str(ROOT / "playbooks" / playbook), "-i", str(self.inventory),
                               "--skip-tags", "reset", *args],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)

    def node(self, name: str) -> dict | None:
        """The Node object, or None when it is gone."""
        result = self.kube_api.run_kubectl("get", "node", name, "-o", "json", "--ignore-not-found", check=False)
        return json.loads(result.stdout) if result.stdout.strip() else None

    def cleanup(self) -> None:
        """Delete every Node of this cluster, releasing the finalizer a test may have left."""
        for name in self.servers + self.agents:
            self.kube_api.run_kubectl("patch", "node", name, "--type=merge", "-p",
                                      '{"metadata":{"finalizers":null}}', check=False)
            self.kube_api.run_kubectl("delete", "node", name, "--ignore-not-found", "--wait=false", check=False)


@pytest.fixture
def make_cluster(kube_api: KubeAPI, tmp_path: Path) -> Iterator:
    """Build a Cluster; its Nodes are deleted after the test."""
    made: list[Cluster] = []

    def make(servers: int, agents: int = 0) -> Cluster:
        cluster = Cluster(kube_api, tmp_path, servers, agents)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.cleanup()


def output(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


def assert_refused(cluster: Cluster, result: subprocess.CompletedProcess, *needles: str) -> None:
    """The run failed before any change: message given, every Node still there and schedulable."""
    out = output(result)
    assert result.returncode != 0, out
    for needle in needles:
        assert needle in " ".join(out.split()), f"{needle!r} not in:\n{out}"
    for name in cluster.servers + cluster.agents:
        node = cluster.node(name)
        assert node is not None, f"Node {name} was deleted"
        assert not node["spec"].get("unschedulable"), f"Node {name} was cordoned"


def recap(result: subprocess.CompletedProcess, host: str) -> dict[str, int]:
    match = re.search(rf"{re.escape(host)}\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)",
                      output(result))
    assert match, output(result)
    return dict(zip(["ok", "changed", "unreachable", "failed"], map(int, match.groups())))


def replicaset_pod_on(kube_api: KubeAPI, ns: str, node: str) -> str:
    """A ReplicaSet's pod (grace period 0) bound to `node` through a Binding, as the scheduler does."""
    labels = {"app.kubernetes.io/name": "web"}
    apply(kube_api, {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web", "namespace": ns},
                     "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                              "template": {"metadata": {"labels": labels},
                                           "spec": {"terminationGracePeriodSeconds": 0,
                                                    "containers": [{"name": "web", "image": "busybox:1.36"}]}}}})
    pods = eventually(lambda: get_json(kube_api, "pods", "-n", ns, "-l", "app.kubernetes.io/name=web")["items"],
                      what="the ReplicaSet's pod")
    pod = pods[0]["metadata"]["name"]
    kube_api.run_kubectl("create", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod, "namespace": ns},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node}}))
    return pod


def pods_on(kube_api: KubeAPI, ns: str, node: str) -> list[str]:
    pods = get_json(kube_api, "pods", "-n", ns, "--field-selector", f"spec.nodeName={node}")["items"]
    return sorted(p["metadata"]["name"] for p in pods)


def test_agent_is_drained_and_deleted(kube_api: KubeAPI, make_cluster) -> None:
    cluster = make_cluster(servers=1, agents=2)
    agent = cluster.agents[0]
    ns = namespace(kube_api, f"{cluster.prefix}-apps")
    try:
        pod = replicaset_pod_on(kube_api, ns, agent)
        assert pods_on(kube_api, ns, agent) == [pod]

        result = cluster.run("remove-node.yml", "-e", f"remove_node={agent}")
        assert result.returncode == 0, output(result)
        out = output(result)
        assert "Cordon the Node and evict its pods" in out and f"{agent}" in out, out
        assert cluster.node(agent) is None, "the agent's Node is still there"
        assert pods_on(kube_api, ns, agent) == []
        # The other agent and the server were not touched.
        for name in (cluster.servers[0], cluster.agents[1]):
            node = cluster.node(name)
            assert node is not None and not node["spec"].get("unschedulable"), name

        # Removing it again finds nothing to do.
        again = cluster.run("remove-node.yml", "-e", f"remove_node={agent}")
        assert again.returncode == 0, output(again)
        assert recap(again, agent)["changed"] == 0, output(again)
    finally:
        kube_api.run_kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_failed_drain_leaves_the_node_schedulable(kube_api: KubeAPI, make_cluster) -> None:
    """A pod no controller manages blocks the drain: the Node is uncordoned and kept, the pod too."""
    cluster = make_cluster(servers=1, agents=1)
    agent = cluster.agents[0]
    ns = namespace(kube_api, f"{cluster.prefix}-bare")
    try:
        apply(kube_api, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bare", "namespace": ns},
                         "spec": {"nodeName": agent, "terminationGracePeriodSeconds": 0,
                                  "containers": [{"name": "c", "image": "busybox:1.36"}]}})
        result = cluster.run("remove-node.yml", "--limit", agent)
        out = " ".join(output(result).split())
        assert result.returncode != 0, out
        assert f"Draining Node {agent} ({agent}) failed" in out, out
        assert "k3s_remove_node_drain_force=true" in out, out
        node = cluster.node(agent)
        assert node is not None and not node["spec"].get("unschedulable"), node
        assert pods_on(kube_api, ns, agent) == ["bare"]
    finally:
        kube_api.run_kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_two_of_three_servers_leave_one(make_cluster) -> None:
    """3 -> 1 keeps an odd etcd cluster: both Nodes are drained and deleted, one at a time."""
    cluster = make_cluster(servers=3)
    result = cluster.run("remove-node.yml", "-e", f"remove_node={cluster.servers[1]},{cluster.servers[2]}")
    assert result.returncode == 0, output(result)
    assert cluster.node(cluster.servers[1]) is None and cluster.node(cluster.servers[2]) is None
    assert cluster.node(cluster.servers[0]) is not None


def test_last_server_is_refused(make_cluster) -> None:
    cluster = make_cluster(servers=1, agents=1)
    result = cluster.run("remove-node.yml", "-e", f"remove_node={cluster.servers[0]}")
    assert_refused(cluster, result, "would leave no k3s server", "playbooks/reset.yml without --limit",
                   "Nothing was changed")


def test_leaving_an_even_number_of_servers_is_refused(make_cluster) -> None:
    cluster = make_cluster(servers=3, agents=1)
    result = cluster.run("remove-node.yml", "--limit", cluster.servers[2])
    assert_refused(cluster, result, f"would leave 2 servers ({cluster.servers[0]}, {cluster.servers[1]})",
                   "Remove one more server in the same run", "first add a server (playbooks/site.yml --limit",
                   "Nothing was changed")


def test_reset_of_a_subset_uses_the_same_guards(make_cluster) -> None:
    """reset.yml --limit on one of three servers would leave two: refused before any change."""
    cluster = make_cluster(servers=3)
    result = cluster.run("reset.yml", "--limit", cluster.servers[2], "-e", "reset_confirm=true")
    assert_refused(cluster, result, "would leave 2 servers")
    assert "PLAY [Reset | Remove k3s" not in output(result)


def test_first_server_is_refused_while_others_stay(make_cluster) -> None:
    cluster = make_cluster(servers=3)
    result = cluster.run("remove-node.yml", "-e", f"remove_node={cluster.servers[0]},{cluster.servers[1]}")
    assert_refused(cluster, result, f"{cluster.servers[0]} is the first host of k3s_servers",
                   "Move another server to the top of k3s_servers")


def test_unhealthy_remaining_server_is_refused(make_cluster) -> None:
    cluster = make_cluster(servers=5)
    cluster.set_ready(cluster.servers[4], ready=False)
    result = cluster.run("remove-node.yml", "-e", f"remove_node={cluster.servers[2]},{cluster.servers[3]}")
    assert_refused(cluster, result, f"{cluster.servers[4]} not Ready or not a voting etcd member")


def test_server_whose_etcd_member_stays_is_not_reset(make_cluster) -> None:
    """k3s keeps a server Node (its finalizer) until the etcd member is removed: the run stops there."""
    cluster = make_cluster(servers=3)
    stuck, other = cluster.servers[1], cluster.servers[2]
    cluster.create_node(stuck, server=True, finalizer=True)
    result = cluster.run("remove-node.yml", "-e", f"remove_node={stuck},{other}",
                         "-e", "k3s_remove_node_delete_timeout=5")
    out = " ".join(output(result).split())
    assert result.returncode != 0, out
    assert f"Node {stuck} ({stuck}) is still there after 5 s" in out, out
    assert FINALIZER in out and "Removing etcd member" in out, out
    # The run stopped at the first server: the second was neither drained nor deleted.
    node = cluster.node(other)
    assert node is not None and not node["spec"].get("unschedulable"), node
    assert cluster.node(stuck)["metadata"].get("deletionTimestamp"), "the stuck Node was not deleted"


def test_a_host_must_be_named(make_cluster) -> None:
    cluster = make_cluster(servers=1, agents=1)
    result = cluster.run("remove-node.yml")
    assert_refused(cluster, result, "Name the host to remove: -e remove_node=<inventory host>")


def test_an_unknown_host_is_refused(make_cluster) -> None:
    cluster = make_cluster(servers=1, agents=1)
    result = cluster.run("remove-node.yml", "-e", "remove_node=no-such-host")
    assert_refused(cluster, result, "remove_node=no-such-host: no-such-host is not a host of k3s_cluster")
