"""Bad SEEK administrator, site address and SMTP settings fail in seek.yml's validation, before any
API call, naming the variable (and the vault variable for a password); a refused password is never
shown. The kubeconfig points at a closed port, as in test_bad_input.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.platform_api.test_bad_input import SEEK, UNREACHABLE_KUBECONFIG
from tests.render.harness import CONFIGS, make_inventory, run_playbooks

SMTP = {"seek_smtp_address": "smtp.example.org", "seek_smtp_user_name": "seek",
        "vault_seek_smtp_password": "smtp-password"}

CASES = [
    ("login-space", {"seek_admin_login": "the admin"}, "seek_admin_login must be 3 to 120"),
    ("login-short", {"seek_admin_login": "ad"}, "seek_admin_login must be 3 to 120"),
    ("email-no-at", {"seek_admin_email": "admin.example.org"}, "seek_admin_email must be an email address"),
    ("password-short", {"vault_seek_admin_password": "Short-9ch"},
     "seek_admin_password (vault_seek_admin_password in group_vars/all/vault.yml) must have at least"),
    ("password-spaces", {"vault_seek_admin_password": "            "},
     "seek_admin_password (vault_seek_admin_password"),
    ("site-with-path", {"seek_site_base_host": "https://seek.example.org/seek"}, "seek_site_base_host must be"),
    ("site-no-scheme", {"seek_site_base_host": "seek.example.org"}, "seek_site_base_host must be"),
    ("smtp-port-zero", {**SMTP, "seek_smtp_port": 0}, "seek_smtp_port a TCP port (1-65535)"),
    ("smtp-port-big", {**SMTP, "seek_smtp_port": 70000}, "seek_smtp_port a TCP port (1-65535)"),
    ("smtp-port-word", {**SMTP, "seek_smtp_port": "submission"}, "seek_smtp_port"),
    ("smtp-address", {**SMTP, "seek_smtp_address": "smtp example"},
     "seek_smtp_address must be the SMTP server's host name"),
    ("smtp-user-no-password", {**SMTP, "vault_seek_smtp_password": ""},
     "needs seek_smtp_password: set vault_seek_smtp_password"),
    ("smtp-auth-no-user", {**SMTP, "seek_smtp_user_name": "", "seek_smtp_authentication": "plain"},
     "needs seek_smtp_user_name"),
    ("smtp-auth-unknown", {**SMTP, "seek_smtp_authentication": "oauth"}, "seek_smtp_authentication"),
    ("sender", {**SMTP, "seek_noreply_sender": "nobody"}, "seek_noreply_sender must be an email address"),
    ("workers-stop", {"seek_workers_stop_seconds": 5}, "seek_workers_stop_seconds must be at least 10"),
]


def _run(tmp_path: Path, extra: dict) -> tuple[int, str]:
    config = CONFIGS["single-localpath-nginx-notls"]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(UNREACHABLE_KUBECONFIG)
    inventory = make_inventory(tmp_path, config, kubeconfig=kubeconfig)
    result = run_playbooks(inventory, {**config.extra, **extra}, playbooks=[SEEK])
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize(("case", "extra", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_settings_fail_in_validation(tmp_path: Path, case: str, extra: dict, message: str) -> None:
    returncode, output = _run(tmp_path, extra)
    assert returncode != 0, output[-3000:]
    flat = " ".join(output.split())  # the YAML callback wraps long messages
    assert message in flat, output[-3000:]
    assert "Validate |" in output.rsplit("TASK [", 1)[1].split("]", 1)[0], output[-3000:]
    for marker in ("Objects |", "Namespace |", "Settings |", "Connection refused", "Max retries exceeded"):
        assert marker not in output, f"{marker!r} appeared before validation failed"
    for key in ("vault_seek_admin_password", "vault_seek_smtp_password"):
        if extra.get(key, "").strip():
            assert extra[key] not in output, f"the value of {key} appeared in the output"


def test_good_settings_pass_validation(tmp_path: Path) -> None:
    """With good values the run gets past validation and fails only where the API is needed (so
    the cases above fail for their reason)."""
    returncode, output = _run(tmp_path, {**SMTP, "vault_seek_admin_password": "Long-enough-password",
                                         "seek_smtp_port": 465, "seek_smtp_authentication": "login",
                                         "seek_site_base_host": "https://seek.example.org:8443"})
    assert returncode != 0
    failing_task = output.rsplit("TASK [", 1)[1].split("]", 1)[0]
    assert "Validate |" not in failing_task, output[-3000:]
    assert "must be" not in " ".join(output.split()), output[-3000:]
