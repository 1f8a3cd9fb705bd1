"""Bad settings stop playbooks/backup-install.yml in its first (validation) play, before any API call
or SSH connection, with a message that names the variable to change."""

from __future__ import annotations

from pathlib import Path

import pyrage
import pytest

from tests.backup_roles.helpers import REPO, run_playbook

# A real age public key and the same key with its last character changed (bech32 checksum fails).
VALID_RECIPIENT = str(pyrage.x25519.Identity.generate().to_public())
MISTYPED_RECIPIENT = VALID_RECIPIENT[:-1] + ("q" if VALID_RECIPIENT[-1] != "q" else "p")

# (extra vars, text the failure message must contain)
BAD = {
    "unknown-storage-backend": ({"storage_backend": "ceph"}, "backups_storage_backend must be local-path or nfs"),
    "deadline-equal-interval": ({"backups_mysql_active_deadline_seconds": 86400},
                                "backups_mysql_active_deadline_seconds"),
    "deadline-above-interval": ({"backups_etcd_schedule": "*/10 * * * *"}, "backups_etcd_active_deadline_seconds"),
    "invalid-schedule": ({"backups_filestore_schedule": "61 * * * *"}, "backups_filestore_schedule must be"),
    "unpinned-image": ({"mysql_image": "mysql:latest"}, "backups_mysql_image must name an image pinned"),
    "untagged-image": ({"backups_filestore_image": "debian"}, "backups_filestore_image must name an image pinned"),
    "failed-history-zero": ({"backups_failed_jobs_history_limit": 0}, "backups_failed_jobs_history_limit"),
    "root-backup-uid": ({"backup_uid": 0}, "backups_run_as_user"),
    "nfs-without-server": ({"storage_backend": "nfs", "nfs_server_host": ""}, "backups_nfs_server"),
    "retention-below-one": ({"backup_keep_daily": 0}, "backup_host_keep_daily (backup_keep_daily) must be at least 1"),
    "local-retention-zero": ({"backup_local_keep_daily": 0}, "backup_host_local_keep_daily"),
    "bucket-without-recipient": ({"backup_s3_bucket": "seek-backups", "vault_backup_s3_access_key": "a",
                                  "vault_backup_s3_secret_key": "b"}, "backup_host_age_recipients"),
    "secret-key-as-recipient": ({"backup_s3_bucket": "seek-backups", "vault_backup_s3_access_key": "a",
                                 "vault_backup_s3_secret_key": "b",
                                 "backup_age_recipients": ["AGE-SECRET-KEY-1QQQQ"]}, "never an AGE-SECRET-KEY"),
    # Issue 9, bad input: each refused in the validation play, naming the variable.
    "unknown-timezone": ({"backup_timezone": "Mars/Olympus"},
                         "backups_timezone (backup_timezone) must be an IANA time zone name"),
    "local-timezone": ({"backup_timezone": "Local"}, "Local is not an explicit time zone"),
    "malformed-recipient": ({"backup_age_recipients": ["age1notakey"]},
                            "backup_host_age_recipients (backup_age_recipients) must hold age public keys"),
    "mistyped-recipient": ({"backup_age_recipients": [MISTYPED_RECIPIENT]},
                           "not a valid age1 public key (a character is wrong or missing)"),
    "recipients-not-a-list": ({"backup_age_recipients": VALID_RECIPIENT}, "must be a list of public keys"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_setting_fails_before_any_change(case: str, tmp_path: Path) -> None:
    """The validation play fails, naming the variable; no task of a later play ran."""
    extra, message = BAD[case]
    # An API server that does not exist: reaching it would fail differently.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    result = run_playbook(REPO / "playbooks" / "backup-install.yml", tmp_path,
                          {"cluster_kubeconfig": str(kubeconfig), **extra})
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert message in output, f"expected {message!r} in:\n{output[-4000:]}"
    assert "Off-site tool and timer on the backup host" not in output, "a later play ran"
    assert "Backup CronJobs ***" not in output, "a later play ran"


def test_good_settings_pass_validation(tmp_path: Path) -> None:
    """The same playbook with the defaults gets past both validation files (then stops: the node
    check that follows reads the cluster's Nodes, and there is no cluster here)."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    result = run_playbook(REPO / "playbooks" / "backup-install.yml", tmp_path,
                          {"cluster_kubeconfig": str(kubeconfig), "ansible_host": "127.0.0.1",
                           "ansible_port": "1", "ansible_ssh_common_args": "-o ConnectTimeout=2"})
    output = result.stdout + result.stderr
    assert "TASK [Check there is exactly one backup host]" in output, output[-4000:]
    assert "Validate |" not in output.split("fatal:", 1)[0].rsplit("TASK [", 1)[-1], output[-4000:]


def test_valid_recipients_and_timezone_pass_validation(tmp_path: Path) -> None:
    """A real age key (with a bucket) and a real zone get past validation to the next play."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    result = run_playbook(REPO / "playbooks" / "backup-install.yml", tmp_path,
                          {"cluster_kubeconfig": str(kubeconfig), "backup_timezone": "America/Argentina/Buenos_Aires",
                           "backup_s3_bucket": "seek-backups", "vault_backup_s3_access_key": "a",
                           "vault_backup_s3_secret_key": "b", "backup_age_recipients": [VALID_RECIPIENT],
                           "ansible_host": "127.0.0.1", "ansible_port": "1",
                           "ansible_ssh_common_args": "-o ConnectTimeout=2"})
    output = result.stdout + result.stderr
    # Both validation files passed: the play reached its next check (what follows needs a cluster).
    assert "TASK [Check there is exactly one backup host]" in output, output[-4000:]


def test_bad_reindex_timeout_stops_restore_before_any_change(tmp_path: Path) -> None:
    """The post-restore Job's timeout (role seek_reindex) is checked in restore.yml's first play,
    naming the variable, before any set is looked for or SEEK is scaled down."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    result = run_playbook(REPO / "playbooks" / "restore.yml", tmp_path,
                          {"cluster_kubeconfig": str(kubeconfig), "restore_confirm": True,
                           "seek_reindex_timeout_seconds": "soon"})
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "seek_reindex_timeout_seconds" in output, output[-4000:]
    assert "Find or fetch the backup sets" not in output, "a later play ran"
