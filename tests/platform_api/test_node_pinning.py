"""The declared node of the local-path volumes is checked against the real API server's Nodes.

seek.yml pins every pod that mounts a local-path volume to seek_node_name. Before anything changes
it reads the cluster's Node and PersistentVolume objects: an unknown node, or a volume already
bound on another node (local-path volumes never move), stops the run with a message naming the
variable. Node and PersistentVolume objects are created here as plain API objects (no kubelet).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.render.harness import CONFIGS, REPO_ROOT, make_inventory, run_playbooks
from tests.platform_api.conftest import NO_WAIT, install_test_crds

pytestmark = pytest.mark.controlplane

SEEK = REPO_ROOT / "playbooks" / "seek.yml"
NAMESPACE = "seek-nodecheck"


def _run(kube_api: Any, tmp_path: Path, **extra: Any) -> tuple[int, str]:
    config = CONFIGS["single-localpath-nginx-notls"]
    inventory = make_inventory(tmp_path, config, kubeconfig=kube_api.kubeconfig)
    result = run_playbooks(inventory, {**config.extra, **NO_WAIT, "seek_namespace": NAMESPACE, **extra},
                           env=kube_api.env, playbooks=[SEEK])
    return result.returncode, result.stdout + result.stderr


def _fatal(output: str) -> tuple[str, str]:
    """Return the failing task's name and its message."""
    task = output.split("fatal:", 1)[0].rsplit("TASK [", 1)[1].split("]", 1)[0]
    return task, output.split("fatal:", 1)[1]


def _namespace_exists(kube_api: Any) -> bool:
    return kube_api.run_kubectl("get", "namespace", NAMESPACE, check=False).returncode == 0


def test_unknown_node_is_refused_before_any_change(kube_api: Any, tmp_path: Path) -> None:
    """seek_node_name naming no Node fails in a Nodes check that lists the real Node names."""
    install_test_crds(kube_api)
    code, output = _run(kube_api, tmp_path, seek_node_name="no-such-node")
    assert code != 0, output[-3000:]
    task, message = _fatal(output)
    assert "Nodes |" in task, task
    assert "seek_node_name" in message and "'no-such-node'" in message, message[:2000]
    assert "seek-server-1" in message, "the message lists the cluster's Nodes"
    assert not _namespace_exists(kube_api), "the namespace was created before the check failed"


def test_volume_bound_on_another_node_is_refused(kube_api: Any, tmp_path: Path) -> None:
    """A filestore volume already on another node stops the run and names that node."""
    install_test_crds(kube_api)
    other = "seek-agent-7"
    kube_api.run_kubectl("apply", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "Node",
         "metadata": {"name": other, "labels": {"kubernetes.io/hostname": other}}}))
    volume = {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": "nodecheck-filestore"},
        "spec": {
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "local-path-retain",
            "claimRef": {"namespace": NAMESPACE, "name": "seek-filestore"},
            "hostPath": {"path": "/var/lib/rancher/k3s/storage/pvc-nodecheck"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [other]}]}]}},
        },
    }
    kube_api.run_kubectl("apply", "-f", "-", input=json.dumps(volume))
    try:
        code, output = _run(kube_api, tmp_path)
        assert code != 0, output[-3000:]
        task, message = _fatal(output)
        assert task == "seek : Nodes | Check the filestore and cache volumes are on seek_node_name", \
            (task, message[:1500])
        assert "seek_node_name" in message and other in message and "'seek-server-1'" in message
        assert not _namespace_exists(kube_api)
        # Declaring the node that holds the volume passes the check (and the run converges).
        code, output = _run(kube_api, tmp_path, seek_node_name=other)
        assert code == 0, output[-4000:]
        web = json.loads(kube_api.run_kubectl("-n", NAMESPACE, "get", "deployment", "seek-web",
                                              "-o", "json").stdout)
        assert web["spec"]["template"]["spec"]["nodeSelector"] == {"kubernetes.io/hostname": other}
    finally:
        kube_api.run_kubectl("delete", "pv", "nodecheck-filestore", "--wait=false", check=False)
        kube_api.run_kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


BACKUPS_NODES = """\
- name: Check the backup node
  hosts: controller
  gather_facts: false
  tasks:
    - name: Check the node of the backup root and SEEK's filestore
      ansible.builtin.include_role:
        name: backups
        tasks_from: nodes.yml
"""


@pytest.mark.parametrize(("node", "passes"), [("seek-server-1", True), ("Seek-Server-1", False)])
def test_backups_node_name_is_checked(kube_api: Any, tmp_path: Path, node: str, passes: bool) -> None:
    """backup-install.yml's check: the registered (lower-case) name passes; any other name is refused."""
    install_test_crds(kube_api)
    playbook = tmp_path / "backups-nodes.yml"
    playbook.write_text(BACKUPS_NODES)
    config = CONFIGS["single-localpath-nginx-notls"]
    inventory = make_inventory(tmp_path, config, kubeconfig=kube_api.kubeconfig)
    result = run_playbooks(inventory, {"seek_node_name": node}, env=kube_api.env, playbooks=[playbook])
    output = result.stdout + result.stderr
    if passes:
        assert result.returncode == 0, output[-3000:]
    else:
        assert result.returncode != 0, output[-3000:]
        task, message = _fatal(output)
        assert task == "backups : Nodes | Check backups_node_name is a Node of the cluster", task
        assert "'Seek-Server-1'" in message and "seek-server-1" in message and "seek_node_name" in message
