"""RBAC denies a ServiceAccount what no Role grants, and allows it once a Role is bound."""

from __future__ import annotations

import json

import pytest
from kubernetes import client

from tests.controlplane_selftest.helpers import apply, eventually, namespace
from tests.controlplane.fixture import KubeAPI

SA = "system:serviceaccount:rbac-test:backup"


def _can_i(kube_api: KubeAPI, *args: str) -> bool:
    result = kube_api.run_kubectl("auth", "can-i", *args, f"--as={SA}", check=False)
    assert result.stdout.strip() in {"yes", "no"}, result.stdout + result.stderr
    return result.stdout.strip() == "yes"


def _token_client(kube_api: KubeAPI, token: str) -> client.CoreV1Api:
    configuration = client.Configuration()
    configuration.host = kube_api.server
    configuration.ssl_ca_cert = str(kube_api.plane.state_dir / "pki" / "ca.crt")
    configuration.api_key = {"authorization": f"Bearer {token}"}
    return client.CoreV1Api(client.ApiClient(configuration))


def test_serviceaccount_denied_then_allowed_by_role(kube_api: KubeAPI) -> None:
    ns = namespace(kube_api, "rbac-test")
    kube_api.run_kubectl("create", "serviceaccount", "backup", "-n", ns)
    assert not _can_i(kube_api, "create", "jobs.batch", "-n", ns)
    assert not _can_i(kube_api, "list", "pods", "-n", ns)

    # A real token issued by the API server (TokenRequest), signed with the service-account key.
    token = kube_api.run_kubectl("create", "token", "backup", "-n", ns, "--duration=10m").stdout.strip()
    as_sa = _token_client(kube_api, token)
    with pytest.raises(client.ApiException) as denied:
        as_sa.list_namespaced_pod(ns)
    assert denied.value.status == 403
    message = json.loads(denied.value.body)["message"]
    assert 'User "system:serviceaccount:rbac-test:backup" cannot list resource "pods"' in message

    apply(kube_api, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "backup", "namespace": ns},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
                  {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get"]}],
    })
    assert not _can_i(kube_api, "list", "pods", "-n", ns), "a Role alone grants nothing"
    apply(kube_api, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "backup", "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "backup"},
        "subjects": [{"kind": "ServiceAccount", "name": "backup", "namespace": ns}],
    })
    eventually(lambda: _can_i(kube_api, "list", "pods", "-n", ns), what="the RoleBinding to apply")
    assert _can_i(kube_api, "create", "jobs.batch", "-n", ns)
    assert not _can_i(kube_api, "delete", "jobs.batch", "-n", ns), "verb not granted"
    assert not _can_i(kube_api, "list", "secrets", "-n", ns), "resource not granted"
    assert not _can_i(kube_api, "list", "pods", "-n", "default"), "Role is namespaced"
    assert as_sa.list_namespaced_pod(ns).items == []
