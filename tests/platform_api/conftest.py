"""Fixtures of the API tests: the test CRDs and a converged SEEK platform on the control plane.

A bare kube-apiserver has no k3s helm-controller and no cert-manager, so their CRDs do not
exist. The tests install minimal stand-ins (crds/, written for these tests) before converging,
so the HelmChart, HelmChartConfig and ClusterIssuer objects are really stored, defaulted and
re-applied by the API server. The playbooks do not skip objects whose CRD is missing: on a
real k3s the HelmChart CRDs always exist, and skipping silently would hide a broken cluster.

There is no kubelet: pods stay Pending, so every wait is disabled (``*_wait: false``).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.render.harness import CONFIGS, Config, make_inventory, run_playbooks

CRD_DIR = Path(__file__).resolve().parent / "crds"
NO_WAIT = {"storage_wait": False, "ingress_wait": False, "tls_wait": False, "mysql_wait": False,
           "solr_wait": False, "seek_wait": False}
RECAP = re.compile(r"^localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)",
                   re.MULTILINE)


@dataclass
class Recap:
    """The PLAY RECAP line of one run, with its output."""

    ok: int
    changed: int
    failed: int
    returncode: int
    output: str


def parse_recap(result: subprocess.CompletedProcess) -> Recap:
    """Sum every PLAY RECAP line for localhost of ``result``."""
    output = result.stdout + result.stderr
    lines = RECAP.findall(result.stdout)
    assert lines, f"no recap in the output:\n{output[-4000:]}"
    ok = sum(int(line[0]) for line in lines)
    changed = sum(int(line[1]) for line in lines)
    failed = sum(int(line[3]) for line in lines)
    return Recap(ok=ok, changed=changed, failed=failed, returncode=result.returncode, output=output)


def changed_tasks(output: str) -> list[str]:
    """Return the names of the tasks that reported a change (for failure messages)."""
    names, current = [], ""
    for line in output.splitlines():
        if line.startswith("TASK ["):
            current = line
        elif line.startswith("changed:") and current not in names:
            names.append(current)
    return names


@dataclass
class Platform:
    """A configuration applied to the control plane, and a way to run the playbooks again."""

    kube_api: Any
    inventory: Path
    config: Config
    first: Recap

    def run(self, *args: str, **extra: Any) -> Recap:
        """Run platform.yml + seek.yml again with optional extra variables."""
        result = run_playbooks(self.inventory, {**self.config.extra, **NO_WAIT, **extra}, *args,
                               env=self.kube_api.env)
        return parse_recap(result)

    def kubectl_json(self, *args: str) -> dict[str, Any]:
        """Run kubectl with -o json and return the parsed document."""
        import json

        return json.loads(self.kube_api.run_kubectl(*args, "-o", "json").stdout)


def install_test_crds(kube_api: Any) -> None:
    """Create the stand-in CRDs and wait until the API serves them."""
    for path in sorted(CRD_DIR.glob("*.yaml")):
        kube_api.run_kubectl("apply", "-f", str(path))
    kube_api.run_kubectl("wait", "--for=condition=Established", "--timeout=60s",
                         "crd/helmcharts.helm.cattle.io", "crd/helmchartconfigs.helm.cattle.io",
                         "crd/clusterissuers.cert-manager.io")
    kube_api.run_kubectl("create", "namespace", "kube-system", check=False)
    create_nodes(kube_api, [f"seek-server-{i}" for i in range(1, 4)])


def create_nodes(kube_api: Any, names: list[str]) -> None:
    """Register Node objects (no kubelet behind them) so the node-pinning checks find them.

    The harness inventories name their servers seek-server-N without k3s_node_name, so the
    declared node (seek_node_name's default) is seek-server-1.
    """
    import json

    for name in names:
        node = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}}
        kube_api.run_kubectl("apply", "-f", "-", input=json.dumps(node))


@pytest.fixture(scope="module")
def platform(kube_api: Any, tmp_path_factory: pytest.TempPathFactory) -> Platform:
    """The HA + NFS + cert-manager configuration converged once, starting from SEEK 1.18.0.

    1.18.0 and 1.18.1 are the only releases the project accepts (seek_image >= 1.18), so the
    upgrade test goes 1.18.0 -> 1.18.1.
    """
    install_test_crds(kube_api)
    config = CONFIGS["ha-nfs-certmanager"]
    directory = tmp_path_factory.mktemp("seek-api")
    inventory = make_inventory(directory, config, kubeconfig=kube_api.kubeconfig)
    first = parse_recap(run_playbooks(inventory, {**config.extra, **NO_WAIT,
                                                  "seek_image": "fairdom/seek:1.18.0"},
                                      env=kube_api.env))
    return Platform(kube_api=kube_api, inventory=inventory, config=config, first=first)


def converge_twice(kube_api: Any, directory: Path, config_name: str, namespace: str) -> None:
    """Converge platform.yml + seek.yml for ``config_name`` into ``namespace``, then again:
    both runs succeed and the second reports changed=0."""
    install_test_crds(kube_api)
    config = CONFIGS[config_name]
    inventory = make_inventory(directory, config, kubeconfig=kube_api.kubeconfig)
    extra = {**config.extra, **NO_WAIT, "seek_namespace": namespace}
    first = parse_recap(run_playbooks(inventory, extra, env=kube_api.env))
    assert first.returncode == 0, first.output[-6000:]
    assert first.changed > 0
    second = parse_recap(run_playbooks(inventory, extra, env=kube_api.env))
    assert second.returncode == 0, second.output[-6000:]
    assert second.changed == 0, changed_tasks(second.output)
