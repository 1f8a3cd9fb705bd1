"""The k3s version guard (defect 5 of issue 8): its filter's cases, then its task file against a real
kube-apiserver whose Node objects report the versions a k3s cluster would (tests/controlplane)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.controlplane_selftest.helpers import apply, get_json
from tests.controlplane.fixture import KubeAPI

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "roles" / "k3s_upgrade" / "filter_plugins"))
from k3s_version import K3sVersionError, k3s_upgrade_check, k3s_version_parse  # noqa: E402


# --- the filter ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, parts", [
    ("v1.34.2+k3s1", (1, 34, 2, None, 1)),
    ("k3s version v1.34.2+k3s1 (9e4e6bd3)\ngo version go1.24.9\n", (1, 34, 2, None, 1)),
    ("v1.33.10+k3s2", (1, 33, 10, None, 2)),
    ("v1.35.0-rc1+k3s1", (1, 35, 0, 1, 1)),
])
def test_parse(text: str, parts: tuple) -> None:
    """A tag, `k3s --version` output and a kubeletVersion all read as the same parts."""
    parsed = k3s_version_parse(text)
    assert (parsed["major"], parsed["minor"], parsed["patch"], parsed["rc"], parsed["k3s"]) == parts


@pytest.mark.parametrize("text", ["1.34.2", "v1.34+k3s1", "latest", "v1.34.2", "v1.34.2+k3s", "", "v1.34.2+k3s1x", 1.34])
def test_parse_malformed(text) -> None:
    """No release version in it: refused, never guessed."""
    with pytest.raises(K3sVersionError):
        k3s_version_parse(text)


def test_release_sorts_after_its_candidates_and_k3s_revisions_count() -> None:
    versions = ["v1.34.2+k3s2", "v1.34.2-rc1+k3s1", "v1.33.7+k3s1", "v1.34.2+k3s1", "v1.34.10+k3s1"]
    ordered = sorted(versions, key=lambda v: k3s_version_parse(v)["key"])
    assert ordered == ["v1.33.7+k3s1", "v1.34.2-rc1+k3s1", "v1.34.2+k3s1", "v1.34.2+k3s2", "v1.34.10+k3s1"]


@pytest.mark.parametrize("running, target, upgrades", [
    ({"server-1": "v1.34.2+k3s1"}, "v1.34.2+k3s1", []),                     # same version
    ({"server-1": "v1.34.1+k3s1"}, "v1.34.2+k3s1", ["server-1"]),           # patch bump
    ({"server-1": "v1.34.2+k3s1"}, "v1.34.2+k3s2", ["server-1"]),           # k3sN bump
    ({"server-1": "v1.33.7+k3s1"}, "v1.34.2+k3s1", ["server-1"]),           # +1 minor (older patch target)
    ({"server-1": "v1.34.2+k3s1", "agent-1": "v1.33.6+k3s1"}, "v1.34.2+k3s1", ["agent-1"]),  # half done
    ({}, "v1.34.2+k3s1", []),                                               # nothing installed yet
])
def test_allowed(running: dict, target: str, upgrades: list) -> None:
    result = k3s_upgrade_check(running, target)
    assert result["allowed"], result["message"]
    assert result["problems"] == [] and result["steps"] == []
    assert result["upgrades"] == upgrades


def test_downgrade_refused() -> None:
    result = k3s_upgrade_check({"server-1": "v1.34.2+k3s1", "agent-1": "v1.34.2+k3s1"}, "v1.34.1+k3s1")
    assert not result["allowed"]
    assert len(result["problems"]) == 2
    assert "k3s_version=v1.34.1+k3s1" in result["message"] and "not downgraded" in result["message"]
    assert "Set k3s_version=v1.34.2+k3s1 or newer" in result["message"]


def test_k3s_revision_downgrade_refused() -> None:
    result = k3s_upgrade_check({"server-1": "k3s version v1.34.2+k3s2 (abc)"}, "v1.34.2+k3s1")
    assert not result["allowed"] and "newer than k3s_version=v1.34.2+k3s1" in result["message"]


def test_skipped_minor_refused_with_the_steps() -> None:
    result = k3s_upgrade_check({"server-1": "v1.33.2+k3s1", "agent-1": "v1.32.9+k3s1"}, "v1.35.1+k3s1")
    assert not result["allowed"]
    assert result["problems"] == [
        f"{node} runs {version}: k3s_version=v1.35.1+k3s1 skips minor versions "
        "(k3s upgrades one minor version at a time)." for node, version in
        (("agent-1", "v1.32.9+k3s1"), ("server-1", "v1.33.2+k3s1"))]
    # From the oldest node: 1.33, then 1.34, then the target.
    assert result["steps"] == ["v1.33.x+k3sN (the newest v1.33 release)",
                               "v1.34.x+k3sN (the newest v1.34 release)", "v1.35.1+k3s1"]
    assert "set k3s_version to each of v1.33.x+k3sN" in result["message"]
    assert "playbooks/upgrade.yml" in result["message"]


def test_nodes_more_than_one_minor_apart_refused_without_steps() -> None:
    """Servers at 1.34 and an agent at 1.32: no one k3s_version is a valid step for both."""
    result = k3s_upgrade_check({"server-1": "v1.34.2+k3s1", "agent-1": "v1.32.9+k3s1"}, "v1.34.2+k3s1")
    assert not result["allowed"] and result["steps"] == []
    assert "more than one minor apart (v1.32.9+k3s1 to v1.34.2+k3s1)" in result["message"]


def test_major_change_refused() -> None:
    result = k3s_upgrade_check({"server-1": "v1.34.2+k3s1"}, "v2.0.0+k3s1")
    assert not result["allowed"] and "major" in result["message"]


@pytest.mark.parametrize("target", ["1.34.2", "v1.34.2", "latest", "v1.34.2+k3s1 "])
def test_malformed_target_refused(target: str) -> None:
    result = k3s_upgrade_check({"server-1": "v1.34.2+k3s1"}, target)
    assert not result["allowed"] and "k3s_version=" in result["message"]


def test_unreadable_running_version_refused() -> None:
    result = k3s_upgrade_check({"server-1 (binary)": "segmentation fault"}, "v1.34.2+k3s1")
    assert not result["allowed"] and "server-1 (binary)" in result["message"]


# --- the guard task file against the control plane -----------------------------------------------

GUARD_PLAY = textwrap.dedent("""\
    - name: Run the version guard as preflight.yml and upgrade.yml do
      hosts: k3s_cluster
      gather_facts: true
      any_errors_fatal: true
      tasks:
        - name: Check the k3s version step
          ansible.builtin.include_role:
            name: k3s_upgrade
            tasks_from: guard.yml
    """)


def node_object(name: str, version: str) -> dict:
    """A Node as a k3s kubelet registers it, reporting `version`."""
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"nodeInfo": {"kubeletVersion": version, "kubeProxyVersion": version,
                                    "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "",
                                    "osImage": "", "containerRuntimeVersion": "", "operatingSystem": "linux",
                                    "architecture": "amd64"}}}


def set_node_version(kube_api: KubeAPI, name: str, version: str) -> None:
    """Create the Node and write its status, as the kubelet does (status is a subresource)."""
    apply(kube_api, {k: v for k, v in node_object(name, version).items() if k != "status"})
    patch = json.dumps({"status": node_object(name, version)["status"]})
    kube_api.run_kubectl("patch", "node", name, "--subresource=status", "--type=merge", "-p", patch)


def run_guard(kube_api: KubeAPI, tmp_path: Path, nodes: list[str], target: str) -> subprocess.CompletedProcess:
    """Run the guard for an inventory whose hosts are this machine, under the names of `nodes`.

    No k3s binary exists under the (empty) install directory, so the Nodes' versions decide.
    """
    install_dir = tmp_path / "bin"
    install_dir.mkdir(exist_ok=True)
    hosts = {name: {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                    "k3s_node_name": name} for name in nodes}
    inventory = {"all": {
        "vars": {"k3s_version": target, "k3s_install_dir": str(install_dir),
                 "cluster_kubeconfig": str(kube_api.kubeconfig),
                 "cluster_artifacts_dir": str(tmp_path / "artifacts")},
        "children": {"k3s_cluster": {"children": {"k3s_servers": {"hosts": {nodes[0]: hosts[nodes[0]]}},
                                                  "k3s_agents": {"hosts": {n: hosts[n] for n in nodes[1:]}}}},
                     "controller": {"hosts": {"localhost": {"ansible_connection": "local",
                                                            "ansible_python_interpreter": sys.executable}}}}}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "guard.yml").write_text(GUARD_PLAY)
    env = dict(kube_api.env, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_ROLES_PATH=str(ROOT / "roles"))
    env.pop("K8S_AUTH_KUBECONFIG", None)  # the guard must use cluster_kubeconfig itself
    return subprocess.run(["ansible-playbook", str(tmp_path / "guard.yml"), "-i", str(tmp_path / "hosts.yml")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def nodes_snapshot(kube_api: KubeAPI, names: list[str]) -> dict[str, tuple]:
    """What the guard must not change: each Node's labels, annotations, unschedulable flag and
    version, and who has written it. The controller-manager's node lifecycle controller updates
    Nodes without a kubelet at any time (taints, conditions), so neither its writes nor the
    resourceVersion they bump count; any other writer (the playbook) would."""
    snapshot = {}
    for name in names:
        node = get_json(kube_api, "node", name)
        writers = sorted({entry["manager"] for entry in node["metadata"].get("managedFields", [])}
                         - {"kube-controller-manager"})
        snapshot[name] = (node["metadata"].get("labels"), node["metadata"].get("annotations"),
                          node["spec"].get("unschedulable", False), node["status"]["nodeInfo"]["kubeletVersion"],
                          writers)
    return snapshot


@pytest.fixture()
def guard_nodes(kube_api: KubeAPI) -> list[str]:
    """A server at v1.34.2+k3s1 and an agent still at v1.33.6+k3s1 (an upgrade half done)."""
    nodes = ["guard-server-1", "guard-agent-1"]
    set_node_version(kube_api, nodes[0], "v1.34.2+k3s1")
    set_node_version(kube_api, nodes[1], "v1.33.6+k3s1")
    yield nodes
    kube_api.run_kubectl("delete", "node", *nodes, "--ignore-not-found")


@pytest.mark.parametrize("target, needles", [
    ("v1.34.1+k3s1", ["k3s_version=v1.34.1+k3s1", "guard-server-1 runs v1.34.2+k3s1", "not downgraded"]),
    ("v1.35.0+k3s1", ["k3s_version=v1.35.0+k3s1", "guard-agent-1 runs v1.33.6+k3s1", "skips minor versions",
                      "v1.34.x+k3sN (the newest v1.34 release), then v1.35.0+k3s1"]),
])
def test_guard_refuses_and_changes_nothing(kube_api: KubeAPI, tmp_path: Path, guard_nodes: list[str],
                                           target: str, needles: list[str]) -> None:
    before = nodes_snapshot(kube_api, guard_nodes)
    result = run_guard(kube_api, tmp_path, guard_nodes, target)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    for needle in needles:
        assert needle in out, f"{needle!r} not in:\n{out}"
    recap = out.split("PLAY RECAP", 1)[1]
    assert "changed=0" in recap and "changed=1" not in recap, recap
    assert nodes_snapshot(kube_api, guard_nodes) == before
    assert not (tmp_path / "artifacts").exists()


@pytest.mark.parametrize("target", ["v1.34.2+k3s1", "v1.34.3+k3s1"])
def test_guard_allows_the_next_step(kube_api: KubeAPI, tmp_path: Path, guard_nodes: list[str], target: str) -> None:
    result = run_guard(kube_api, tmp_path, guard_nodes, target)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "changed=0" in result.stdout.split("PLAY RECAP", 1)[1]



def test_guard_refuses_a_binary_that_does_not_run(kube_api: KubeAPI, tmp_path: Path) -> None:
    """The installed binary is read on every node: one that cannot run (a corrupted file here, no
    stand-in for k3s) leaves the version unknown, and the guard refuses with what it printed."""
    install_dir = tmp_path / "bin"
    install_dir.mkdir()
    binary = install_dir / "k3s"
    binary.write_bytes(b"\x00corrupted download\x00")
    binary.chmod(0o755)
    result = run_guard(kube_api, tmp_path, ["broken-server-1"], "v1.34.2+k3s1")
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "broken-server-1 (binary) reports 'exit" in out, out
    assert "not a k3s release version" in out, out
