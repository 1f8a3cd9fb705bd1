"""External MySQL: bad combinations stop pre-flight naming the variable; a good configuration
converges twice against the control plane with changed=0 and without the in-cluster server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.render.harness import CONFIGS, make_inventory, run_playbooks
from tests.render.test_external_mysql import EXTERNAL_TLS, HOST, PORT
from tests.platform_api.conftest import NO_WAIT, changed_tasks, install_test_crds, parse_recap
from tests.platform_api.test_bad_input import PREFLIGHT, UNREACHABLE_KUBECONFIG

EXTERNAL = {"mysql_external_host": HOST, "vault_mysql_password": "Extern4lPassw0rd"}
BAD = [
    ("no-password", {**EXTERNAL, "vault_mysql_password": ""}, "mysql_password (vault_mysql_password"),
    ("root-password", {**EXTERNAL, "vault_mysql_root_password": "R00tPassword"},
     "mysql_root_password (vault_mysql_root_password) only applies to the in-cluster"),
    ("wait", {**EXTERNAL, "mysql_wait": True}, "mysql_wait only applies to the in-cluster"),
    ("tls-without-ca", {**EXTERNAL, "mysql_external_tls": True}, "mysql_external_tls is true: set mysql_external_tls_ca_secret"),
    ("ca-without-tls", {**EXTERNAL, "mysql_external_tls_ca_secret": "mysql-ca"},
     "mysql_external_tls_ca_secret is set but mysql_external_tls is false"),
    ("tls-without-host", {"mysql_external_tls": True}, "mysql_external_tls is set but mysql_external_host is empty"),
    ("bad-host", {**EXTERNAL, "mysql_external_host": "db host"}, "mysql_external_host must be the DNS name"),
    ("bad-port", {**EXTERNAL, "mysql_external_port": 70000}, "mysql_external_port a TCP port"),
]


@pytest.mark.parametrize(("case", "extra", "message"), BAD, ids=[c[0] for c in BAD])
def test_bad_external_mysql_settings_stop_preflight(tmp_path: Path, case: str, extra: dict, message: str) -> None:
    """preflight.yml's controller play fails in a Validate task with a message naming the variable."""
    config = CONFIGS["single-localpath-nginx-notls"]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(UNREACHABLE_KUBECONFIG)
    inventory = make_inventory(tmp_path, config, kubeconfig=kubeconfig)
    result = run_playbooks(inventory, {**config.extra, **extra}, "--limit", "localhost", playbooks=[PREFLIGHT])
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert message in " ".join(output.split()), output[-3000:]
    assert "Validate |" in output.rsplit("TASK [", 1)[1].split("]", 1)[0], output[-3000:]
    for secret in ("Extern4lPassw0rd", "R00tPassword"):
        assert secret not in output


def test_good_external_mysql_settings_pass_preflight(tmp_path: Path) -> None:
    """The external TLS configuration passes the same play (the cases above fail for their reason)."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(UNREACHABLE_KUBECONFIG)
    inventory = make_inventory(tmp_path, EXTERNAL_TLS, kubeconfig=kubeconfig)
    result = run_playbooks(inventory, EXTERNAL_TLS.extra, "--limit", "localhost", playbooks=[PREFLIGHT])
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


@pytest.mark.controlplane
def test_external_mysql_converges_idempotently(kube_api: Any, tmp_path: Path) -> None:
    """platform.yml + seek.yml twice: second run changed=0; no MySQL server objects; SEEK points
    at the external host."""
    install_test_crds(kube_api)
    namespace = "seek-external"
    inventory = make_inventory(tmp_path, EXTERNAL_TLS, kubeconfig=kube_api.kubeconfig)
    extra = {**EXTERNAL_TLS.extra, **NO_WAIT, "seek_namespace": namespace}
    del extra["mysql_wait"]  # its default follows mysql_external_host (false)
    first = parse_recap(run_playbooks(inventory, extra, env=kube_api.env))
    assert first.returncode == 0, first.output[-6000:]
    second = parse_recap(run_playbooks(inventory, extra, env=kube_api.env))
    assert second.returncode == 0, second.output[-6000:]
    assert second.changed == 0, changed_tasks(second.output)
    for kind, name in (("statefulset", "mysql"), ("service", "mysql"), ("configmap", "mysql-config")):
        missing = kube_api.run_kubectl("-n", namespace, "get", kind, name, check=False)
        assert missing.returncode != 0 and "NotFound" in missing.stderr, (kind, missing.stdout)
    keys = kube_api.run_kubectl("-n", namespace, "get", "secret", "mysql-credentials",
                                "-o", "go-template={{range $k, $v := .data}}{{$k}} {{end}}")
    assert sorted(keys.stdout.split()) == ["database", "password", "user"]
    env = kube_api.run_kubectl("-n", namespace, "get", "configmap", "seek-env",
                               "-o", "jsonpath={.data.MYSQL_HOST} {.data.MYSQL_TCP_PORT}")
    assert env.stdout.split() == [HOST, str(PORT)]
    url = kube_api.run_kubectl("-n", namespace, "get", "deployment", "seek-web", "-o",
                               "jsonpath={.spec.template.spec.containers[0].env[?(@.name=='DATABASE_URL')].value}")
    assert f"@{HOST}:{PORT}/" in url.stdout and "sslverify=true" in url.stdout
