"""The traefik + secret TLS configuration converges and re-runs without change."""

from __future__ import annotations

from typing import Any

import pytest

from tests.render.harness import CONFIGS, make_inventory, run_playbooks
from tests.platform_api.conftest import NO_WAIT, changed_tasks, install_test_crds, parse_recap

pytestmark = pytest.mark.controlplane

NAMESPACE = "seek-traefik"


def test_traefik_secret_tls_converges_idempotently(kube_api: Any, tmp_path) -> None:
    """HelmChartConfig for traefik, an Ingress on the user's TLS Secret; second run changed=0."""
    install_test_crds(kube_api)
    config = CONFIGS["traefik-secret-tls"]
    inventory = make_inventory(tmp_path, config, kubeconfig=kube_api.kubeconfig)
    extra = {**config.extra, **NO_WAIT, "seek_namespace": NAMESPACE}
    first = parse_recap(run_playbooks(inventory, extra, env=kube_api.env))
    assert first.returncode == 0, first.output[-6000:]
    second = parse_recap(run_playbooks(inventory, extra, env=kube_api.env))
    assert second.returncode == 0, second.output[-6000:]
    assert second.changed == 0, changed_tasks(second.output)
    kube_api.run_kubectl("-n", "kube-system", "get", "helmchartconfig", "traefik")
    ingress = kube_api.run_kubectl("-n", NAMESPACE, "get", "ingress", "seek", "-o",
                                   "jsonpath={.spec.ingressClassName} {.spec.tls[0].secretName}")
    assert ingress.stdout.split() == ["traefik", "seek-example-tls"]
    policy = kube_api.run_kubectl("-n", NAMESPACE, "get", "networkpolicy", "seek-web", "-o",
                                  "jsonpath={.spec.ingress[0].from[0].namespaceSelector"
                                  ".matchLabels.kubernetes\\.io/metadata\\.name}")
    assert policy.stdout == "kube-system"
