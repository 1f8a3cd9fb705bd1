"""pytest fixture `kube_api`: one real control plane per test session.

Register it with `pytest_plugins = ["tests.controlplane.fixture"]` (tests/conftest.py does).
The fixture builds the binaries when they are not cached (a cold build takes a while), skips
with a printed reason only when Go is missing, starts the control plane on free loopback ports
in a temporary directory and stops it at the end of the session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.controlplane import cluster

REPO_ROOT = Path(__file__).resolve().parents[2]


class KubeAPI:
    """What a test needs to talk to the control plane."""

    def __init__(self, plane: cluster.ControlPlane) -> None:
        self.plane = plane
        self.kubeconfig: Path = plane.kubeconfig
        self.kubectl: Path = plane.kubectl
        self.server: str = plane.server
        env = plane.env
        # The venv's bin first after kubectl: ansible-playbook, ansible-galaxy, molecule.
        venv_bin = str(Path(sys.executable).parent)
        env["PATH"] = f"{plane.binaries}{os.pathsep}{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"
        self.env: dict[str, str] = env

    def run_kubectl(self, *args: str, check: bool = True, input: str | None = None
                    ) -> subprocess.CompletedProcess:
        """Run kubectl with the admin kubeconfig."""
        return self.plane.run_kubectl(*args, check=check, input=input)

    def ansible_playbook(self, playbook: str | Path, *args: str, cwd: Path = REPO_ROOT
                         ) -> subprocess.CompletedProcess:
        """Run the venv's ansible-playbook against this API server (K8S_AUTH_KUBECONFIG set)."""
        binary = Path(sys.executable).with_name("ansible-playbook")
        return subprocess.run([str(binary), str(playbook), *args], cwd=cwd, env=self.env,
                              capture_output=True, text=True, timeout=900, check=False)

    def api_client(self):
        """A kubernetes.client.ApiClient configured with the admin kubeconfig."""
        from kubernetes import config  # imported lazily: only tests that use it need it

        return config.new_client_from_config(config_file=str(self.kubeconfig))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses kube_api `controlplane`, so `-m "not controlplane"` skips them."""
    for item in items:
        if "kube_api" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.controlplane)


@pytest.fixture(scope="session")
def kube_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPI]:
    """A running etcd + kube-apiserver + kube-controller-manager, stopped after the session.

    Its logs stay in pytest's temporary directory (printed on a start failure).
    """
    try:
        cluster.build()
    except cluster.GoMissingError as error:
        pytest.skip(str(error))
    names = ("etcd", "etcd_peer", "apiserver", "controller_manager")
    plane = cluster.ControlPlane(state_dir=tmp_path_factory.mktemp("controlplane"),
                                 ports=dict(zip(names, cluster.free_ports(len(names)))))
    plane.start(log=lambda message: print(message, file=sys.stderr))
    try:
        yield KubeAPI(plane)
    finally:
        # Kept for the record (resident memory after the session's work), then stopped.
        (plane.state_dir / "status-at-stop.json").write_text(
            json.dumps(plane.status(), indent=2) + "\n", encoding="utf-8")
        plane.stop(log=lambda *_: None)
