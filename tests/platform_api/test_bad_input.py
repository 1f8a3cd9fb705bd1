"""Bad input fails in the validation pre-tasks, before any API call, naming the variable.

The kubeconfig points at a closed port: if any task talked to the API before the validation
failed, the failure would be a connection error rather than the validation message.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.render.harness import CONFIGS, make_inventory, run_playbooks

UNREACHABLE_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
  - name: nowhere
    cluster:
      server: https://127.0.0.1:1
      insecure-skip-tls-verify: true
contexts:
  - name: nowhere
    context: {cluster: nowhere, user: nobody}
current-context: nowhere
users:
  - name: nobody
    user: {token: not-a-token}
"""

REPO_ROOT = Path(__file__).resolve().parents[2]
PLATFORM = REPO_ROOT / "playbooks" / "platform.yml"
SEEK = REPO_ROOT / "playbooks" / "seek.yml"

CASES = [
    ("no-ingress-host", SEEK, {"seek_ingress_host": ""}, {}, "seek_ingress_host"),
    ("bad-ingress-host", SEEK, {"seek_ingress_host": "Not A Host"}, {}, "seek_ingress_host"),
    ("unknown-tls-mode-seek", SEEK, {"seek_tls": "letsencrypt"}, {}, "seek_tls"),
    ("unknown-tls-mode-platform", PLATFORM, {"seek_tls": "letsencrypt"}, {}, "seek_tls"),
    ("tls-secret-unnamed", SEEK, {"seek_tls": "secret"}, {}, "seek_tls_secret_name"),
    ("rwx-on-local-path", SEEK, {"seek_filestore_access_mode": "ReadWriteMany"}, {},
     "seek_filestore_access_mode"),
    ("rwx-cache-on-local-path", SEEK, {"seek_cache_access_mode": "ReadWriteMany"}, {},
     "seek_cache_access_mode"),
    ("zero-web-replicas", SEEK, {"seek_web_replicas": 0}, {}, "seek_web_replicas"),
    ("negative-web-replicas", SEEK, {"seek_web_replicas": -1}, {}, "seek_web_replicas"),
    ("zero-puma-workers", SEEK, {"seek_puma_workers": 0}, {}, "seek_puma_workers"),
    ("unpinned-seek-image", SEEK, {"seek_image": "fairdom/seek:main"}, {}, "seek_image"),
    ("unpinned-mysql-image", SEEK, {"mysql_image": "mysql:latest"}, {}, "mysql_image"),
    # Issue 9: SEEK releases before 1.18 lack /up and script/check_worker_pids.sh; the version
    # must be readable from the tag.
    ("seek-image-below-1.18", SEEK, {"seek_image": "fairdom/seek:1.17.4"}, {}, "seek_image"),
    ("seek-image-digest-only", SEEK, {"seek_image": "fairdom/seek@sha256:" + "a" * 64}, {}, "seek_image"),
    ("seek-image-not-a-release", SEEK, {"seek_image": "fairdom/seek:1.18-dev"}, {}, "seek_image"),
    # Issue 9, bad input: Kubernetes quantities that are not ones.
    ("mysql-storage-size-gb", SEEK, {"mysql_storage_size": "20GB"}, {}, "mysql_storage_size"),
    ("solr-storage-size-space", SEEK, {"solr_storage_size": "10 Gi"}, {}, "solr_storage_size"),
    ("filestore-size-gb", SEEK, {"seek_filestore_size": "50GB"}, {}, "seek_filestore_size"),
    ("cache-size-zero", SEEK, {"seek_cache_size": "0Gi"}, {}, "seek_cache_size"),
    ("web-memory-limit-gb", SEEK, {"seek_web_memory_limit": "4GB"}, {}, "seek_web_memory_limit"),
    ("mysql-cpu-limit-word", SEEK, {"mysql_cpu_limit": "two"}, {}, "mysql_cpu_limit"),
    # Issue 9, item 8: SEEK's scripts pass the MySQL password unquoted.
    ("mysql-password-space", SEEK, {"vault_mysql_password": "pass word"}, {}, "vault_mysql_password"),
    ("mysql-root-password-dollar", SEEK, {"vault_mysql_root_password": "r00t$HOME"}, {},
     "vault_mysql_root_password"),
    ("acme-without-email", PLATFORM, {"seek_tls": "cert-manager"}, {}, "tls_acme_email"),
    ("nfs-without-server", PLATFORM, {}, {"storage_backend": "nfs"}, "nfs_server_host"),
    ("unknown-ingress-controller", PLATFORM, {}, {"ingress_controller": "haproxy"},
     "ingress_controller"),
]


@pytest.mark.parametrize(("case", "playbook", "extra", "cluster", "variable"), CASES,
                         ids=[case[0] for case in CASES])
def test_bad_input_fails_before_any_api_call(tmp_path: Path, case: str, playbook: Path,
                                             extra: dict, cluster: dict, variable: str) -> None:
    """The run fails in a Validate task with a message naming the variable."""
    base = CONFIGS["single-localpath-nginx-notls"]
    config = type(base)(name=case, cluster={**base.cluster, **cluster}, extra=base.extra)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(UNREACHABLE_KUBECONFIG)
    inventory = make_inventory(tmp_path, config, kubeconfig=kubeconfig)
    result = run_playbooks(inventory, {**config.extra, **extra}, playbooks=[playbook])
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    # A plain task fails with "fatal:", an item of a looped check with "failed: [host] (item=...)".
    failed = [index for index, line in enumerate(output.splitlines())
              if line.startswith(("fatal:", "failed: ["))]
    assert failed, output[-3000:]
    assert variable in "\n".join(output.splitlines()[failed[0]:]), output[-3000:]
    # The failing task is a validation task and no API-facing task ran before it.
    assert "Validate |" in output.rsplit("TASK [", 1)[1].split("]", 1)[0], output[-3000:]
    for marker in ("Objects |", "Namespace |", "Cert manager |", "Connection refused",
                   "Max retries exceeded"):
        assert marker not in output, f"{marker!r} appeared before validation failed"
    # A refused secret is named, never shown.
    for key in ("vault_mysql_password", "vault_mysql_root_password"):
        if key in extra:
            assert extra[key] not in output, f"the value of {key} appeared in the output"


PREFLIGHT = REPO_ROOT / "playbooks" / "preflight.yml"
# Issue 9, bad input: each stops playbooks/preflight.yml (its controller play, which runs every
# Kubernetes-facing role's validate.yml) before site.yml touches any node.
PREFLIGHT_CASES = [
    ("quantity", {"mysql_storage_size": "20GB"}, "mysql_storage_size must be a positive Kubernetes quantity"),
    ("password-space", {"vault_mysql_password": "pass word"}, "mysql_password (vault_mysql_password"),
    ("timezone", {"backup_timezone": "Europe/Atlantis"}, "backups_timezone (backup_timezone) must be an IANA"),
    ("age-recipient", {"backup_age_recipients": ["age1" + "q" * 58]},
     "backup_host_age_recipients (backup_age_recipients) must hold age public keys"),
    ("seek-below-1.18", {"seek_image": "fairdom/seek:1.17.4"}, "older than SEEK 1.18"),
]


@pytest.mark.parametrize(("case", "extra", "message"), PREFLIGHT_CASES, ids=[c[0] for c in PREFLIGHT_CASES])
def test_bad_input_stops_preflight(tmp_path: Path, case: str, extra: dict, message: str) -> None:
    """preflight.yml's controller play fails in a Validate task with the message; the value of a
    refused password is never shown."""
    config = CONFIGS["single-localpath-nginx-notls"]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(UNREACHABLE_KUBECONFIG)
    inventory = make_inventory(tmp_path, config, kubeconfig=kubeconfig)
    # --limit localhost: the node plays need SSH; the controller play is the one under test.
    result = run_playbooks(inventory, {**config.extra, **extra}, "--limit", "localhost", playbooks=[PREFLIGHT])
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert message in output, output[-3000:]
    assert "Validate |" in output.rsplit("TASK [", 1)[1].split("]", 1)[0], output[-3000:]
    assert "pass word" not in output


def test_good_input_passes_preflight(tmp_path: Path) -> None:
    """The same play with the lab settings passes (so the cases above fail for their reason)."""
    config = CONFIGS["single-localpath-nginx-notls"]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(UNREACHABLE_KUBECONFIG)
    inventory = make_inventory(tmp_path, config, kubeconfig=kubeconfig)
    result = run_playbooks(inventory, {**config.extra, "vault_mysql_password": "Alphanumeric0nly"},
                           "--limit", "localhost", playbooks=[PREFLIGHT])
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
