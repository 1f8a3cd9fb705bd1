"""An external MySQL server (mysql_external_host with TLS) renders without the in-cluster server.

The configuration is rendered by the same playbooks as the others (platform.yml + seek.yml), then
checked: no MySQL StatefulSet, Services or server ConfigMap; the credentials Secret without a root
password; SEEK's web, workers and Jobs connect to the external host and port over verified TLS;
every built-in manifest passes kubernetes-validate --strict.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.render.harness import Config, load_manifests, render

KUBERNETES_VERSION = "1.34.0"
HOST, PORT = "db.example.org", 3307

EXTERNAL_TLS = Config(
    name="external-mysql-tls",
    cluster={"ingress_controller": "ingress-nginx", "storage_backend": "local-path"},
    extra={"seek_tls": "none", "seek_ingress_host": "seek.example.org",
           "mysql_external_host": HOST, "mysql_external_port": PORT,
           "mysql_external_tls": True, "mysql_external_tls_ca_secret": "mysql-ca",
           "vault_mysql_password": "Extern4lPassw0rd"},
)


@pytest.fixture(scope="module")
def objects(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, dict[str, Any]]]:
    """The rendered manifests of the external-MySQL configuration."""
    return load_manifests(render(tmp_path_factory.mktemp("render-external-mysql"), EXTERNAL_TLS))


def find(objects: list[tuple[Path, dict[str, Any]]], kind: str, name: str) -> dict[str, Any]:
    """The one object of ``kind`` called ``name``."""
    found = [obj for _, obj in objects if obj["kind"] == kind and obj["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def test_no_in_cluster_server_is_rendered(objects: list[tuple[Path, dict[str, Any]]]) -> None:
    """Only the credentials Secret comes from the mysql role; it holds no root password."""
    kinds = {(obj["kind"], obj["metadata"]["name"]) for _, obj in objects}
    for absent in (("StatefulSet", "mysql"), ("Service", "mysql"), ("Service", "mysql-headless"),
                   ("ConfigMap", "mysql-config"), ("NetworkPolicy", "mysql")):
        assert absent not in kinds, absent
    secret = find(objects, "Secret", "mysql-credentials")
    assert set(secret["data"]) == {"password", "user", "database"}
    assert ("StatefulSet", "solr") in kinds and ("Deployment", "seek-web") in kinds


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]


def test_seek_connects_to_the_external_server_over_verified_tls(
        objects: list[tuple[Path, dict[str, Any]]]) -> None:
    """web, workers and the db-setup Job: host, port, CA mounted, DATABASE_URL with sslca."""
    env = find(objects, "ConfigMap", "seek-env")["data"]
    assert env["MYSQL_HOST"] == HOST
    assert env["MYSQL_TCP_PORT"] == str(PORT)
    assert env["MYSQL_HOME"] == "/etc/seek-mysql-client"
    client = find(objects, "ConfigMap", "seek-mysql-client")["data"]["my.cnf"]
    assert "ssl-ca=/etc/seek-mysql-tls/ca.crt" in client and "ssl-verify-server-cert" in client
    for kind, name in (("Deployment", "seek-web"), ("Deployment", "seek-workers"), ("Job", "seek-db-setup")):
        spec = _pod_spec(find(objects, kind, name))
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["mysql-tls"]["secret"]["secretName"] == "mysql-ca", name
        for container in spec.get("initContainers", []) + spec["containers"]:
            names = [e["name"] for e in container.get("env", [])]
            if "MYSQL_PASSWORD" not in names:
                continue
            url = next(e["value"] for e in container["env"] if e["name"] == "DATABASE_URL")
            assert url == (f"mysql2://$(MYSQL_USER):$(MYSQL_PASSWORD)@{HOST}:{PORT}/$(MYSQL_DATABASE)"
                           "?sslca=/etc/seek-mysql-tls/ca.crt&sslverify=true"), (name, url)
            # $(VAR) only expands variables defined earlier in the list.
            assert names.index("DATABASE_URL") > max(names.index(n) for n in
                                                     ("MYSQL_USER", "MYSQL_PASSWORD", "MYSQL_DATABASE"))
            mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
            assert mounts.get("mysql-tls") == "/etc/seek-mysql-tls", (name, container["name"])
            assert mounts.get("mysql-client") == "/etc/seek-mysql-client", (name, container["name"])
            secret_refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"]
                           if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]}
            assert secret_refs == {"mysql-credentials"}, (name, secret_refs)


def test_builtin_kinds_pass_kubernetes_validate_strict(objects: list[tuple[Path, dict[str, Any]]]) -> None:
    """kubernetes-validate --strict for 1.34 accepts every built-in manifest."""
    files = sorted({str(path) for path, obj in objects
                    if not obj["apiVersion"].startswith(("helm.cattle.io/", "cert-manager.io/"))})
    assert len(files) >= 15
    binary = Path(sys.executable).with_name("kubernetes-validate")
    result = subprocess.run([str(binary), "--strict", "-k", KUBERNETES_VERSION, *files],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(files), result.stdout
