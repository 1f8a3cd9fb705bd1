"""A bad inventory stops site.yml in the pre-flight layer, naming the variable, before any change.

The hosts are a real systemd container from the node image (tests/harness/build-node-image.sh)
reached over the docker connection; after each failed run the container is checked for the
files the node layer would have written.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.k3s_nodes.node_container import running_node
import yaml

ROOT = Path(__file__).resolve().parents[2]
# What the node and cluster layers write first: none of it may exist after a refused run.
FIRST_CHANGES = ["/etc/modules-load.d/k3s.conf", "/etc/sysctl.d/90-k3s.conf", "/etc/rancher", "/usr/local/bin/k3s"]



@pytest.fixture(scope="module")
def node() -> str:
    """A running systemd container to point the inventories at."""
    with running_node("seek-k3s-badinput") as name:
        yield name


def write_inventory(tmp_path: Path, node: str, servers: int, agents: int, variables: dict) -> Path:
    """An inventory whose hosts are all the same container, each with its own node name."""
    def hosts(prefix: str, count: int) -> dict:
        return {f"{prefix}-{i}": {"ansible_host": node, "k3s_node_name": f"{prefix}-{i}"} for i in range(1, count + 1)}

    inventory = {
        "all": {
            "vars": {"ansible_connection": "community.docker.docker", "node_prereq_min_memory_mb": 256,
                     "cluster_artifacts_dir": str(tmp_path / "artifacts"), **variables},
            "children": {
                "k3s_cluster": {"children": {"k3s_servers": {"hosts": hosts("server", servers)},
                                             "k3s_agents": {"hosts": hosts("agent", agents)}}},
                "nfs_servers": {"hosts": {}},
                "controller": {"hosts": {"localhost": {
                    "ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}}},
            },
        }
    }
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(inventory))
    return path


def run_site(inventory: Path, *extra: str) -> subprocess.CompletedProcess:
    """Run the real site.yml against the inventory; return the finished process."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default")
    return subprocess.run(
        ["ansible-playbook", str(ROOT / "playbooks" / "site.yml"), "-i", str(inventory), *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )


def assert_refused_unchanged(result: subprocess.CompletedProcess, node: str, *needles: str) -> None:
    """The run failed in the pre-flight layer, said why, and the node shows no change."""
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    for needle in needles:
        assert needle in out, f"{needle!r} not in the output:\n{out}"
    assert "PLAY [Nodes |" not in out, "the node layer started:\n" + out
    recap = out.split("PLAY RECAP", 1)[1]
    assert "changed=0" in recap and "changed=1" not in recap, recap
    for path in FIRST_CHANGES:
        probe = subprocess.run(["docker", "exec", node, "test", "-e", path])
        assert probe.returncode == 1, f"{path} exists on the node"


def test_agent_only_run_without_token(tmp_path: Path, node: str) -> None:
    inventory = write_inventory(tmp_path, node, servers=1, agents=1, variables={})
    result = run_site(inventory, "--limit", "k3s_agents")
    assert_refused_unchanged(result, node, "k3s_token (vault_k3s_token)", "No join token")


def test_unknown_storage_backend(tmp_path: Path, node: str) -> None:
    inventory = write_inventory(tmp_path, node, servers=1, agents=0, variables={"storage_backend": "ceph"})
    result = run_site(inventory)
    # The argument specs' choices refuse it first (roles/node_prereq/tasks/validate.yml).
    assert_refused_unchanged(result, node, "node_prereq_storage_backend must be one of: local-path, nfs, got: ceph")


@pytest.mark.parametrize("version", ["1.34.2", "v1.34+k3s1", "latest"])
def test_malformed_version(tmp_path: Path, node: str, version: str) -> None:
    inventory = write_inventory(tmp_path, node, servers=1, agents=0, variables={"k3s_version": version})
    result = run_site(inventory)
    assert_refused_unchanged(result, node, f"k3s_version={version} is not a k3s release tag")


def test_bad_seek_setting_stops_before_the_nodes_change(tmp_path: Path, node: str) -> None:
    """A platform-layer mistake is caught in pre-flight too, not after k3s is installed."""
    inventory = write_inventory(tmp_path, node, servers=1, agents=0,
                                variables={"seek_ingress_host": "seek.example.org", "seek_tls": "bogus"})
    result = run_site(inventory)
    assert_refused_unchanged(result, node, "seek_tls must be one of", "got 'bogus'")
