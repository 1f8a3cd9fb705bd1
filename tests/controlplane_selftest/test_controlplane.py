"""The control plane itself: versions, namespaces made usable by the controllers, clear errors."""

from __future__ import annotations

import json

import pytest

from tests.controlplane_selftest.helpers import eventually, get_json
from tests.controlplane import cluster
from tests.controlplane.fixture import KubeAPI


def test_server_is_kubernetes_1_34(kube_api: KubeAPI) -> None:
    version = json.loads(kube_api.run_kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"].startswith("v1.34."), version
    assert version["clientVersion"]["gitVersion"].startswith("v1.34."), version


def test_readyz_and_all_components_running(kube_api: KubeAPI) -> None:
    status = kube_api.plane.status()
    assert status["ready"] is True
    assert set(status["processes"]) == {"etcd", "kube-apiserver", "kube-controller-manager"}
    assert all(p["running"] and p["rss_kib"] > 0 for p in status["processes"].values()), status
    checks = kube_api.run_kubectl("get", "--raw", "/readyz?verbose").stdout
    assert "[+]etcd ok" in checks and "readyz check passed" in checks


def test_default_serviceaccount_and_root_ca_exist_in_new_namespace(kube_api: KubeAPI) -> None:
    kube_api.run_kubectl("create", "namespace", "cp-sa")
    account = eventually(lambda: kube_api.run_kubectl(
        "get", "serviceaccount", "default", "-n", "cp-sa", "-o", "json", check=False
    ).returncode == 0, what="ServiceAccount cp-sa/default from the serviceaccount controller")
    assert account
    root_ca = eventually(lambda: kube_api.run_kubectl(
        "get", "configmap", "kube-root-ca.crt", "-n", "cp-sa", "-o", "json", check=False).stdout,
        what="ConfigMap kube-root-ca.crt from the root-ca-cert-publisher")
    assert "BEGIN CERTIFICATE" in json.loads(root_ca)["data"]["ca.crt"]


def test_admission_rejects_objects_in_a_missing_namespace(kube_api: KubeAPI) -> None:
    result = kube_api.run_kubectl("create", "configmap", "x", "-n", "does-not-exist", check=False)
    assert result.returncode != 0
    assert 'namespaces "does-not-exist" not found' in result.stderr


def test_kube_system_has_the_controller_service_accounts(kube_api: KubeAPI) -> None:
    names = {item["metadata"]["name"]
             for item in get_json(kube_api, "serviceaccounts", "-n", "kube-system")["items"]}
    assert {"deployment-controller", "job-controller", "cronjob-controller"} <= names, names


def test_start_on_busy_ports_says_so(kube_api: KubeAPI, tmp_path) -> None:
    second = cluster.ControlPlane(state_dir=tmp_path / "second", ports=kube_api.plane.ports,
                                  binaries=kube_api.plane.binaries)
    with pytest.raises(cluster.ControlPlaneError, match="ports are already in use: .*apiserver="):
        second.start()
    assert second.pids == {}


def test_start_without_a_build_says_so(tmp_path) -> None:
    plane = cluster.ControlPlane(state_dir=tmp_path / "cp", binaries=tmp_path / "no-bin")
    with pytest.raises(cluster.ControlPlaneError, match="not built .*tests.controlplane build"):
        plane.start()


def test_failed_start_stops_what_it_started(kube_api: KubeAPI, tmp_path) -> None:
    """A component that dies during start-up stops the ones already started, and says why."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for name in ("etcd", "kube-controller-manager", "kubectl"):
        (fake_bin / name).symlink_to(kube_api.plane.binaries / name)
    broken = fake_bin / "kube-apiserver"
    broken.write_text("#!/bin/sh\necho 'simulated failure: bad flag' >&2\nexit 3\n")
    broken.chmod(0o755)
    names = ("etcd", "etcd_peer", "apiserver", "controller_manager")
    plane = cluster.ControlPlane(state_dir=tmp_path / "cp", binaries=fake_bin,
                                 ports=dict(zip(names, cluster.free_ports(len(names)))))
    with pytest.raises(cluster.ControlPlaneError,
                       match="(?s)kube-apiserver exited with code 3.*simulated failure"):
        plane.start(timeout=60)
    assert "etcd: ready" in (tmp_path / "cp" / "logs" / "etcd.log").read_text(), "etcd never started"
    recorded = json.loads((tmp_path / "cp" / "state.json").read_text())
    assert recorded["pids"] == {}
    assert not cluster.port_in_use(plane.ports["etcd"]), "etcd was left running"


def test_build_without_go_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """What the kube_api fixture prints as its skip reason when Go is missing."""
    monkeypatch.setenv("SEEK_K3S_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(cluster, "find_go", lambda: None)
    assert not cluster.is_built()
    with pytest.raises(cluster.GoMissingError, match="Go >= 1.21 is not installed"):
        cluster.build(log=lambda *_: None)


def test_build_is_a_no_op_when_cached(kube_api: KubeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cached build is reused without calling Go at all."""
    monkeypatch.setattr(cluster, "find_go", lambda: pytest.fail("build() looked for Go"))
    assert cluster.build(log=lambda *_: None) == kube_api.plane.binaries
    assert kube_api.plane.binaries.parent.name == cluster.build_key()
