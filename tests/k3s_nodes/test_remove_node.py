"""remove-node.yml (and reset.yml --limit) take nodes out of the cluster through the API, with guards.

Against a real kube-apiserver + kube-controller-manager (tests/controlplane): Nodes and Pods are
API objects there; no kubelet and no k3s run, so the host part (stopping k3s, role k3s_reset) is
skipped with `--skip-tags reset`, as a user does for a dead machine. The inventory hosts point at
TEST-NET addresses nothing answers on: a task that tried to reach one would fail the run. Two
exceptions: the first server is reached locally (it stays; the run asks it for the etcd member
list, `/db/info` on its loopback, answered there by a test double), and the order test resets a
systemd node container standing for the removed server.

Server Nodes carry what k3s puts on a server running an etcd member (the etcd role label and the
etcd.k3s.cattle.io/node-name annotation; k3s pkg/etcd/metadata_controller.go) and a Ready
condition. k3s's member removal controller is not here: a server Node without k3s's finalizer is
deleted at once, and one with the finalizer stays until the test itself plays that controller
(MemberControllerStandIn: it drops the member from the /db/info double, then releases the
finalizer, in k3s's order: main-line pkg/etcd/member_controller.go onRemove) or, when nobody
releases it, as when k3s cannot remove the etcd member.
"""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tests.controlplane_selftest.helpers import apply, eventually, get_json, namespace
from tests.controlplane.fixture import KubeAPI
from tests.k3s_nodes.db_info_double import DbInfoDouble, member
from tests.k3s_nodes.node_container import running_node, wait_booted

ROOT = Path(__file__).resolve().parents[2]
ETCD_LABEL = "node-role.kubernetes.io/etcd"
MEMBER_ANNOTATION = "etcd.k3s.cattle.io/node-name"
FINALIZER = "wrangler.cattle.io/managed-etcd-controller"


def member_name(node: str) -> str:
    """The etcd member name k3s gives a server: its node name, '-' and 8 hex digits (etcd.go setName)."""
    return f"{node}-1a2b3c4d"


class Cluster:
    """Node objects for `servers` servers and `agents` agents, and an inventory naming them."""

    def __init__(self, kube_api: KubeAPI, tmp_path: Path, servers: int, agents: int,
                 finalizer: bool = False, containers: dict[int, str] | None = None) -> None:
        self.kube_api = kube_api
        self.tmp_path = tmp_path
        self.prefix = f"rm{uuid.uuid4().hex[:6]}"
        self.servers = [f"{self.prefix}-server-{i}" for i in range(1, servers + 1)]
        self.agents = [f"{self.prefix}-agent-{i}" for i in range(1, agents + 1)]
        # Server index (0-based) -> node container reached with the docker connection.
        self.containers = containers or {}
        for name in self.servers:
            self.create_node(name, server=True, finalizer=finalizer)
        for name in self.agents:
            self.create_node(name, server=False)
        self.db = DbInfoDouble(tmp_path / f"{self.prefix}-db-tls",
                               [member(member_name(name), f"192.0.2.{10 + i}", 1000 + i)
                                for i, name in enumerate(self.servers)])
        self.inventory = self.write_inventory()

    def create_node(self, name: str, server: bool, ready: bool = True, finalizer: bool = False) -> None:
        """A Node as k3s registers it, with a Ready condition (heartbeat now)."""
        labels = {"kubernetes.io/hostname": name}
        annotations = {}
        if server:
            labels |= {ETCD_LABEL: "true", "node-role.kubernetes.io/control-plane": "true"}
            annotations = {MEMBER_ANNOTATION: member_name(name),
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
        """Hosts named like their Nodes, at addresses nothing answers on; the first server local,
        servers in `containers` in their node container."""
        def hosts(names: list[str], first: int) -> dict:
            return {name: {"ansible_host": f"192.0.2.{first + i}", "k3s_node_name": name,
                           "ansible_ssh_common_args": "-o ConnectTimeout=3"} for i, name in enumerate(names)}

        servers = hosts(self.servers, 10)
        servers[self.servers[0]] |= {"ansible_connection": "local", "ansible_become": False,
                                     "ansible_python_interpreter": "{{ ansible_playbook_python }}"}
        for index, container in self.containers.items():
            servers[self.servers[index]] |= {"ansible_connection": "community.docker.docker",
                                             "ansible_host": container}

        inventory = {"all": {
            "vars": {"cluster_kubeconfig": str(self.kube_api.kubeconfig),
                     "cluster_artifacts_dir": str(self.tmp_path / "artifacts"),
                     "k3s_remove_node_drain_timeout": 30, "k3s_remove_node_delete_timeout": 30},
            "children": {
                "k3s_cluster": {"children": {"k3s_servers": {"hosts": servers},
                                             "k3s_agents": {"hosts": hosts(self.agents, 20)}}},
                "controller": {"hosts": {"localhost": {
                    "ansible_connection": "local", "ansible_become": False,
                    "ansible_python_interpreter": "{{ ansible_playbook_python }}"}}},
            },
        }}
        path = self.tmp_path / "hosts.yml"
        path.write_text(yaml.safe_dump(inventory))
        return path

    def run(self, playbook: str | Path, *args: str, skip_reset: bool = True) -> subprocess.CompletedProcess:
        """Run a project playbook (API part only, unless skip_reset=False) against the inventory;
        kubeconfig from the inventory, /db/info from the double (internal variables, so extra vars)."""
        env = dict(self.kube_api.env, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_FORCE_COLOR="0", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default")
        env.pop("K8S_AUTH_KUBECONFIG", None)
        return subprocess.run(["ansible-playbook", str(ROOT / "playbooks" / playbook), "-i", str(self.inventory),
                               *(["--skip-tags", "reset"] if skip_reset else []),
                               "-e", f"__k3s_remove_node_db_info_url={self.db.url}",
                               "-e", f"__k3s_remove_node_db_info_ca={self.db.ca}", *args],
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
        self.db.close()


class MemberControllerStandIn:
    """The test playing k3s's etcd member removal controller for a Cluster's Nodes.

    k3s registers it with wrangler's OnRemove (finalizer wrangler.cattle.io/managed-etcd-controller
    on every Node): when a Node labelled node-role.kubernetes.io/etcd=true is deleted it removes
    the etcd member named in etcd.k3s.cattle.io/node-name, and only then is the finalizer
    released (k3s main-line pkg/etcd/member_controller.go onRemove, pkg/etcd/etcd.go RemovePeer;
    rancher/wrangler pkg/generic/remove.go). This stand-in does the same against the real API
    server, dropping the member from the /db/info double, and records when (wall clock):
    ("deleted", node) when it saw the deletion, ("released", node) after releasing the
    finalizer, ("gone", node) when the Node disappeared. `on_delete(node)` runs first, while the
    deletion is being handled (the order test looks at the host's k3s unit there).
    """

    def __init__(self, cluster: Cluster, on_delete: Callable[[str], None] | None = None) -> None:
        from kubernetes import client

        self.cluster = cluster
        self.core = client.CoreV1Api(cluster.kube_api.api_client())
        self.on_delete = on_delete
        self.events: list[tuple[float, str, str]] = []
        self.errors: list[BaseException] = []
        self._names = set(cluster.servers + cluster.agents)
        self._handled: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "MemberControllerStandIn":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def when(self, what: str, node: str) -> float:
        """The time of the first ("what", node) event; fails when there was none."""
        times = [at for at, kind, name in self.events if kind == what and name == node]
        assert times, f"no {what!r} event for {node}: {self.events} {self.errors}"
        return times[0]

    def _run(self) -> None:
        from kubernetes import watch

        version = None
        while not self._stop.is_set():
            try:
                stream = watch.Watch().stream(self.core.list_node, resource_version=version, timeout_seconds=2)
                for event in stream:
                    node = event["object"]
                    version = node.metadata.resource_version
                    if node.metadata.name in self._names:
                        self._handle(event["type"], node)
                    if self._stop.is_set():
                        break
            except Exception as error:  # noqa: BLE001 (kept for the assertion message)
                self.errors.append(error)
                version = None
                time.sleep(0.2)

    def _handle(self, kind: str, node) -> None:
        name = node.metadata.name
        if kind == "DELETED":
            self.events.append((time.time(), "gone", name))
            return
        finalizers = node.metadata.finalizers or []
        if node.metadata.deletion_timestamp is None or FINALIZER not in finalizers or name in self._handled:
            return
        self._handled.add(name)
        self.events.append((time.time(), "deleted", name))
        if self.on_delete:
            self.on_delete(name)
        if (node.metadata.labels or {}).get(ETCD_LABEL) == "true":
            self.cluster.db.remove((node.metadata.annotations or {}).get(MEMBER_ANNOTATION, ""))
        index = finalizers.index(FINALIZER)
        self.core.patch_node(name, [{"op": "test", "path": f"/metadata/finalizers/{index}", "value": FINALIZER},
                                    {"op": "remove", "path": f"/metadata/finalizers/{index}"}])
        self.events.append((time.time(), "released", name))


@pytest.fixture
def make_cluster(kube_api: KubeAPI, tmp_path: Path) -> Iterator:
    """Build a Cluster; its Nodes are deleted after the test."""
    made: list[Cluster] = []

    def make(servers: int, agents: int = 0, **options) -> Cluster:
        cluster = Cluster(kube_api, tmp_path, servers, agents, **options)
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
    """3 -> 1 through 2 of 2 members: one server at a time, the next Node deleted only after the
    first is gone and its etcd member no longer listed (k3s's finalizer, played by the test)."""
    cluster = make_cluster(servers=3, finalizer=True)
    second, third = cluster.servers[1], cluster.servers[2]
    with MemberControllerStandIn(cluster) as controller:
        result = cluster.run("remove-node.yml", "-e", f"remove_node={second},{third}")
    out = " ".join(output(result).split())
    assert result.returncode == 0, out
    assert cluster.node(second) is None and cluster.node(third) is None
    assert cluster.node(cluster.servers[0]) is not None
    assert cluster.db.names() == [member_name(cluster.servers[0])]
    # The second server's Node was deleted only after the first's member was removed.
    assert controller.when("released", second) < controller.when("deleted", third), controller.events
    # Judged together before any change: 3 -> 1 leaves an odd number, no warning.
    assert "Warning: removing" not in out, out


def test_last_server_is_refused(make_cluster) -> None:
    cluster = make_cluster(servers=1, agents=1)
    result = cluster.run("remove-node.yml", "-e", f"remove_node={cluster.servers[0]}")
    assert_refused(cluster, result, "would leave no k3s server", "playbooks/reset.yml without --limit",
                   "Nothing was changed")


def test_leaving_an_even_number_of_servers_warns_and_removes(make_cluster) -> None:
    """3 -> 2 is legal (etcd has quorum with 2 of 2): a warning, then the server leaves, the
    run waiting on /db/info (asked on the first server, which stays) until its member is gone."""
    cluster = make_cluster(servers=3, agents=1, finalizer=True)
    leaving = cluster.servers[2]
    with MemberControllerStandIn(cluster) as controller:
        result = cluster.run("remove-node.yml", "--limit", leaving)
    out = " ".join(output(result).split())
    assert result.returncode == 0, out
    assert (f"Warning: removing {leaving} leaves 2 servers ({cluster.servers[0]}, {cluster.servers[1]}):"
            " etcd keeps its quorum" in out), out
    assert "(with 2 the cluster stops when either fails)" in out, out
    assert cluster.node(leaving) is None
    assert member_name(leaving) not in cluster.db.names()
    assert cluster.db.requests >= 1, "the run never asked /db/info"
    assert controller.when("released", leaving)
    for name in cluster.servers[:2] + cluster.agents:
        node = cluster.node(name)
        assert node is not None and not node["spec"].get("unschedulable"), name


def test_member_wait_times_out_listing_the_members(make_cluster) -> None:
    """The Node is gone but a server that stays still lists the member: the run stops after
    k3s_remove_node_member_timeout, naming the members, before the reset and the next host."""
    cluster = make_cluster(servers=4)
    leaving, next_one = cluster.servers[2], cluster.servers[3]
    result = cluster.run("remove-node.yml", "-e", f"remove_node={leaving},{next_one}",
                         "-e", "k3s_remove_node_member_timeout=4")
    out = " ".join(output(result).split())
    assert result.returncode != 0, out
    members = ", ".join(member_name(name) for name in cluster.servers)
    assert (f"After 4 s (k3s_remove_node_member_timeout) the etcd members listed by {cluster.servers[0]}"
            f" still include {member_name(leaving)}: {members}." in out), out
    assert "The Node is deleted; the host was not reset" in out, out
    assert cluster.node(leaving) is None
    assert cluster.db.requests >= 2, cluster.db.requests
    # The run stopped there: the next server was neither drained nor deleted.
    node = cluster.node(next_one)
    assert node is not None and not node["spec"].get("unschedulable"), node


def test_reset_of_a_subset_uses_the_same_guards(make_cluster) -> None:
    """reset.yml --limit on one of three servers while another is not Ready: refused before any change."""
    cluster = make_cluster(servers=3)
    cluster.set_ready(cluster.servers[1], ready=False)
    result = cluster.run("reset.yml", "--limit", cluster.servers[2], "-e", "reset_confirm=true")
    assert_refused(cluster, result, f"{cluster.servers[1]} not Ready or not a voting etcd member")
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


def test_imported_twice_in_one_run_removes_only_what_each_names(make_cluster, tmp_path: Path) -> None:
    """A playbook importing remove-node.yml twice (molecule/k3s-ha's side effect does) removes in
    the second import only the hosts it names, not again those of the first (re-added meanwhile)."""
    cluster = make_cluster(servers=1, agents=2)
    first, second = cluster.agents
    playbook = tmp_path / "twice.yml"
    playbook.write_text(yaml.safe_dump([
        {"name": "First removal", "ansible.builtin.import_playbook": str(ROOT / "playbooks" / "remove-node.yml"),
         "vars": {"remove_node": first}},
        {"name": "The first agent registers again", "hosts": "localhost", "gather_facts": False,
         "tasks": [{"name": "Create its Node", "kubernetes.core.k8s": {
             "kubeconfig": str(cluster.kube_api.kubeconfig),
             "definition": {"apiVersion": "v1", "kind": "Node", "metadata": {"name": first}}}}]},
        {"name": "Second removal", "ansible.builtin.import_playbook": str(ROOT / "playbooks" / "remove-node.yml"),
         "vars": {"remove_node": second}},
    ]))
    result = cluster.run(playbook)
    assert result.returncode == 0, output(result)
    assert cluster.node(first) is not None, "the second import removed the first import's host again"
    assert cluster.node(second) is None


def stage_k3s_stand_in(container: str) -> None:
    """A running k3s unit whose process only sleeps (k3s cannot run here); when it stops, systemd
    writes the wall-clock time to /srv/k3s-stopped-at (outside what the reset removes)."""
    script = """set -eu
cat > /etc/systemd/system/k3s.service <<'UNIT'
[Unit]
Description=stands in for k3s in the remove-node order test
[Service]
ExecStart=/bin/sleep infinity
ExecStopPost=/bin/sh -c 'date +%%s.%%N > /srv/k3s-stopped-at'
KillMode=process
[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload && systemctl enable --now k3s.service && systemctl is-active k3s.service
"""
    subprocess.run(["docker", "exec", "-i", container, "sh", "-c", script], check=True,
                   capture_output=True, text=True, timeout=120)


def unit_state(container: str) -> str:
    """`systemctl is-active k3s` in the container."""
    return subprocess.run(["docker", "exec", container, "systemctl", "is-active", "k3s.service"],
                          capture_output=True, text=True, timeout=60).stdout.strip()


def test_node_and_member_are_gone_before_k3s_stops(make_cluster) -> None:
    """The order of issue 19: the server's Node is deleted while k3s still runs on the host, k3s's
    member controller (played by the test: MemberControllerStandIn) removes the member and releases
    the finalizer, the run sees the member gone from /db/info (the test double), and only then
    does any task stop k3s (role k3s_reset, here for real in a systemd node container standing for
    the removed server). Stopping k3s first, as before, would leave 1 of 2 etcd members up from 2.
    4 -> 3 servers, so the old code's odd-count guard accepted it too."""
    with running_node("seek-k3s-remove") as container:
        wait_booted(container)
        stage_k3s_stand_in(container)
        cluster = make_cluster(servers=4, finalizer=True, containers={3: container})
        leaving = cluster.servers[3]
        seen: dict[str, str] = {}

        def on_delete(name: str) -> None:
            seen[name] = unit_state(container)

        with MemberControllerStandIn(cluster, on_delete=on_delete) as controller:
            result = cluster.run("remove-node.yml", "-e", f"remove_node={leaving}", skip_reset=False)
        out = output(result)
        assert result.returncode == 0, out
        # k3s still ran on the host when its Node was deleted.
        assert seen.get(leaving) == "active", f"k3s on the host was {seen.get(leaving)!r} when its Node was deleted"
        stopped = subprocess.run(["docker", "exec", container, "cat", "/srv/k3s-stopped-at"],
                                 capture_output=True, text=True, timeout=60)
        assert stopped.returncode == 0, f"k3s was never stopped: {stopped.stderr}\n{out}"
        stopped_at = float(stopped.stdout)
        released_at = controller.when("released", leaving)
        assert released_at < stopped_at, (
            f"k3s stopped {released_at - stopped_at:.2f} s before the finalizer was released")
        assert cluster.node(leaving) is None
        assert member_name(leaving) not in cluster.db.names()
        # The run read /db/info without the member before k3s stopped.
        assert any(at < stopped_at and member_name(leaving) not in names for at, names in cluster.db.log), (
            cluster.db.log, stopped_at)
        # Then the host was reset: the unit is gone.
        assert unit_state(container) in {"inactive", "unknown"}
        gone = subprocess.run(["docker", "exec", container, "test", "-e", "/etc/systemd/system/k3s.service"],
                              timeout=60)
        assert gone.returncode == 1, "the reset left the k3s unit"
