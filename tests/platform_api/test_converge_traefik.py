"""The traefik + secret TLS configuration converges and re-runs without change."""

from __future__ import annotations

from typing import Any

import pytest

from tests.platform_api.conftest import converge_twice

pytestmark = pytest.mark.controlplane

NAMESPACE = "seek-traefik"


def test_traefik_secret_tls_converges_idempotently(kube_api: Any, tmp_path) -> None:
    """HelmChartConfig for traefik, an Ingress on the user's TLS Secret; second run changed=0."""
    converge_twice(kube_api, tmp_path, "traefik-secret-tls", NAMESPACE)
    kube_api.run_kubectl("-n", "kube-system", "get", "helmchartconfig", "traefik")
    ingress = kube_api.run_kubectl("-n", NAMESPACE, "get", "ingress", "seek", "-o",
                                   "jsonpath={.spec.ingressClassName} {.spec.tls[0].secretName}")
    assert ingress.stdout.split() == ["traefik", "seek-example-tls"]
    policy = kube_api.run_kubectl("-n", NAMESPACE, "get", "networkpolicy", "seek-web", "-o",
                                  "jsonpath={.spec.ingress[0].from[0].namespaceSelector"
                                  ".matchLabels.kubernetes\\.io/metadata\\.name}")
    assert policy.stdout == "kube-system"
