"""The single-server local-path + ingress-nginx + no-TLS configuration converges, then re-runs
without change (the lab's default shape; once molecule's `api` scenario converged it)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.platform_api.conftest import converge_twice

pytestmark = pytest.mark.controlplane

NAMESPACE = "seek-localpath"


def test_localpath_nginx_converges_idempotently(kube_api: Any, tmp_path) -> None:
    """Every object the layers rely on is stored, the controllers act on them, second run changed=0."""
    converge_twice(kube_api, tmp_path, "single-localpath-nginx-notls", NAMESPACE)

    for kind, name in [("secret", "mysql-credentials"), ("service", "mysql"),
                       ("statefulset", "mysql"), ("statefulset", "solr"),
                       ("pvc", "seek-filestore"), ("deployment", "seek-web"),
                       ("deployment", "seek-workers"), ("ingress", "seek")]:
        kube_api.run_kubectl("-n", NAMESPACE, "get", kind, name)
    ingress = kube_api.run_kubectl("-n", NAMESPACE, "get", "ingress", "seek", "-o",
                                   "jsonpath={.spec.ingressClassName} {.spec.tls}")
    assert ingress.stdout.split() == ["nginx"], ingress.stdout
    # The controller manager made the web Deployment's ReplicaSet, and owns it.
    owners = kube_api.run_kubectl(
        "-n", NAMESPACE, "get", "replicasets", "-l", "app.kubernetes.io/component=web", "-o",
        "jsonpath={range .items[*]}{.metadata.ownerReferences[0].kind}/"
        "{.metadata.ownerReferences[0].name}{'\\n'}{end}")
    assert owners.stdout.split() == ["Deployment/seek-web"], owners.stdout
    # Every local-path pod is pinned to the declared node.
    mysql = kube_api.run_kubectl("-n", NAMESPACE, "get", "statefulset", "mysql", "-o",
                                 "jsonpath={.spec.template.spec.nodeSelector}")
    assert "seek-server-1" in mysql.stdout, mysql.stdout
