"""The single-server local-path + ingress-nginx + no-TLS configuration converges, then re-runs
without change (the lab's default shape; once molecule's `api` scenario converged it)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.render.harness import CONFIGS, make_inventory, run_playbooks
from tests.platform_api.conftest import NO_WAIT, changed_tasks, install_test_crds, parse_recap

pytestmark = pytest.mark.controlplane

NAMESPACE = "seek-localpath"


def test_localpath_nginx_converges_idempotently(kube_api: Any, tmp_path) -> None:
    """Every object the layers rely on is stored, the controllers act on them, second run changed=0."""
    install_test_crds(kube_api)
    config = CONFIGS["single-localpath-nginx-notls"]
    inventory = make_inventory(tmp_path, config, kubeconfig=kube_api.kubeconfig)
    extra = {**config.extra, **NO_WAIT, "seek_namespace": NAMESPACE}
    first = parse_recap(run_playbooks(inventory, extra, env=kube_api.env))
    assert first.returncode == 0, first.output[-6000:]
    assert first.changed > 0
    second = parse_recap(run_playbooks(inventory, extra, env=kube_api.env))
    assert second.returncode == 0, second.output[-6000:]
    assert second.changed == 0, changed_tasks(second.output)

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
