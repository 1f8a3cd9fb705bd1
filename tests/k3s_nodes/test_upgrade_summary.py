"""upgrade.yml's version summary (versions.yml before, summary.yml after) against the control plane,
and the k3s_upgrade filters it and the drain check use."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.controlplane.fixture import KubeAPI
from tests.k3s_nodes.test_version_guard import set_node_version

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "roles" / "k3s_upgrade" / "filter_plugins"))
from k3s_drain import k3s_drain_blocking  # noqa: E402
from k3s_version import k3s_version_summary  # noqa: E402

NODES = ["summary-server-1", "summary-agent-1"]

BEFORE = textwrap.dedent("""\
    - name: Record the versions before, as upgrade.yml's second play does
      hosts: controller
      gather_facts: false
      tasks:
        - name: Read the version every Node reports
          ansible.builtin.include_role:
            name: k3s_upgrade
            tasks_from: versions.yml
          vars:
            k3s_upgrade_phase: before
        - name: Upgrade the Nodes (a kubelet reporting its new version)
          ansible.builtin.command: "{{ upgrade_command }}"
          changed_when: true
        - name: Show and check the versions, as upgrade.yml's last play does
          ansible.builtin.include_role:
            name: k3s_upgrade
            tasks_from: summary.yml
    """)


def pod(name: str, phase: str = "Running", owner: str | None = None, mirror: bool = False) -> dict:
    """A pod as k8s_info returns it, with only what the drain check reads."""
    metadata: dict = {"name": name, "namespace": "ns"}
    if owner:
        metadata["ownerReferences"] = [{"kind": owner, "name": "x"}]
    if mirror:
        metadata["annotations"] = {"kubernetes.io/config.mirror": "abc"}
    return {"metadata": metadata, "status": {"phase": phase}}


def test_drain_blocking() -> None:
    """DaemonSet, mirror and finished pods never block; anything else still on the node does."""
    pods = [pod("ds", owner="DaemonSet"), pod("static", mirror=True), pod("done", phase="Succeeded"),
            pod("failed", phase="Failed"), pod("web", owner="ReplicaSet"), pod("bare")]
    assert k3s_drain_blocking(pods) == ["ns/bare", "ns/web"]
    assert k3s_drain_blocking([]) == [] and k3s_drain_blocking(None) == []


def test_version_summary() -> None:
    before = {"a": "v1.33.6+k3s1", "b": "v1.34.2+k3s1", "gone": "v1.33.6+k3s1"}
    after = {"a": "v1.34.2+k3s1", "b": "v1.34.2+k3s1", "new": "v1.34.2+k3s1"}
    assert k3s_version_summary(before, after) == [
        "a: v1.33.6+k3s1 -> v1.34.2+k3s1", "b: v1.34.2+k3s1 (unchanged)",
        "gone: v1.33.6+k3s1 -> (gone)", "new: (not there) -> v1.34.2+k3s1"]


def run_summary(kube_api: KubeAPI, tmp_path: Path, upgrade: list[str]) -> subprocess.CompletedProcess:
    """Run versions.yml, move the Nodes in `upgrade` to v1.34.2+k3s1, then summary.yml."""
    commands = [f"kubectl --kubeconfig {kube_api.kubeconfig} patch node {name} --subresource=status "
                "--type=merge -p '{\"status\":{\"nodeInfo\":{\"kubeletVersion\":\"v1.34.2+k3s1\"}}}'"
                for name in upgrade]
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory = {"all": {"vars": {"k3s_version": "v1.34.2+k3s1", "cluster_kubeconfig": str(kube_api.kubeconfig),
                                  "k3s_upgrade_version_timeout": 5,
                                  "upgrade_command": "sh -c \"" + " && ".join(commands).replace('"', '\\"') + "\""},
                         "children": {"controller": {"hosts": {"localhost": local}}}}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "summary.yml").write_text(BEFORE)
    env = dict(kube_api.env, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_ROLES_PATH=str(ROOT / "roles"))
    env.pop("K8S_AUTH_KUBECONFIG", None)
    return subprocess.run(["ansible-playbook", str(tmp_path / "summary.yml"), "-i", str(tmp_path / "hosts.yml")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture()
def old_nodes(kube_api: KubeAPI):
    # The plays read every Node of the cluster. Other test files of the session (which ones
    # depends on pytest-xdist's distribution) register Nodes of their own and leave them: start
    # from a cluster that has only these.
    names = kube_api.run_kubectl("get", "nodes", "-o", "name").stdout.split()
    strangers = [name.removeprefix("node/") for name in names if name.removeprefix("node/") not in NODES]
    if strangers:
        kube_api.run_kubectl("delete", "node", *strangers, "--ignore-not-found")
    for name in NODES:
        set_node_version(kube_api, name, "v1.33.6+k3s1")
    yield NODES
    kube_api.run_kubectl("delete", "node", *NODES, "--ignore-not-found", check=False)


def test_summary_shows_before_and_after(kube_api: KubeAPI, tmp_path: Path, old_nodes: list[str]) -> None:
    result = run_summary(kube_api, tmp_path, upgrade=NODES)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    for name in NODES:
        assert f"{name}: v1.33.6+k3s1 -> v1.34.2+k3s1" in out, out


def test_summary_fails_when_a_node_kept_its_old_version(kube_api: KubeAPI, tmp_path: Path,
                                                        old_nodes: list[str]) -> None:
    result = run_summary(kube_api, tmp_path, upgrade=NODES[:1])
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "summary-agent-1: v1.33.6+k3s1 (unchanged)" in out, out
    assert "Not every Node reports k3s_version=v1.34.2+k3s1: summary-agent-1" in out, out
