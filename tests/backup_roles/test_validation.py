"""Bad settings stop playbooks/backup-install.yml in its first (validation) play, before any API call
or change on a host, with a message that names the variable to change."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pyrage
import pytest
import yaml

from tests.backup_roles.helpers import REPO, run_playbook
from tests.render.harness import CONFIGS, make_inventory, run_playbooks

# A real age public key and the same key with its last character changed (bech32 checksum fails).
VALID_RECIPIENT = str(pyrage.x25519.Identity.generate().to_public())
MISTYPED_RECIPIENT = VALID_RECIPIENT[:-1] + ("q" if VALID_RECIPIENT[-1] != "q" else "p")

# The validation play reaches the backup host (node-a in the test inventory) for one check: systemd
# parses the off-site timer's calendar there. As extra vars these reach every host, so node-a is
# this machine, reached locally (the controller, localhost, already is).
BACKUP_HOST_HERE = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}

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
                          {"cluster_kubeconfig": str(kubeconfig), **BACKUP_HOST_HERE})
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
                           **BACKUP_HOST_HERE})
    output = result.stdout + result.stderr
    # Both validation files passed: the play reached its next check (what follows needs a cluster).
    assert "TASK [Check there is exactly one backup host]" in output, output[-4000:]


SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(SYSTEMD_ANALYZE is None,
                                           reason="systemd-analyze is not installed (Debian package systemd)")


def systemd_says(expression: str) -> str:
    """What systemd's own parser on this machine says of ``expression`` (its stderr line)."""
    import subprocess

    proc = subprocess.run([str(SYSTEMD_ANALYZE), "calendar", "--", expression], capture_output=True, text=True,
                          check=False)
    assert proc.returncode != 0, f"systemd accepts {expression!r}: not a bad expression"
    return proc.stderr.strip()


@needs_systemd_analyze
@pytest.mark.parametrize("expression", ["every hour", "*-*-* 25:00:00", "Mon..Fri 02:30 Mars/Olympus"])
def test_calendar_systemd_refuses_stops_validation(tmp_path: Path, expression: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 20, item 10: an OnCalendar expression the backup host's systemd refuses (prose, an hour
    25, a time zone the host does not know) passed the shape check and failed only when systemd
    loaded the timer. Now systemd-analyze parses it on the backup host (the task runs there:
    `localhost -> node-a`) in the validation play: the refusal names the variable, quotes
    systemd, and no later play runs."""
    # Results as JSON: the message stays one string, quotes and all (YAML would fold and re-quote it).
    monkeypatch.setenv("ANSIBLE_CALLBACK_RESULT_FORMAT", "json")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    result = run_playbook(REPO / "playbooks" / "backup-install.yml", tmp_path,
                          {"cluster_kubeconfig": str(kubeconfig), "backup_offsite_on_calendar": expression,
                           **BACKUP_HOST_HERE})
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "ok: [localhost -> node-a]" in output, output[-4000:]
    failed = output.split("fatal: [localhost]", 1)[-1]
    assert "Validate | Check systemd accepts the off-site timer's calendar" in output.split("fatal: [localhost]")[0]
    flat = " ".join(failed.replace("\\n", " ").split())
    for text in ("backup_host_on_calendar (backup_offsite_on_calendar)", "systemd on node-a accepts",
                 systemd_says(expression), "Nothing was changed."):
        assert " ".join(text.split()) in flat, f"{text!r} not in:\n{failed[:3000]}"
    assert "Off-site tool and timer on the backup host" not in output, "a later play ran"
    assert "Backup CronJobs ***" not in output, "a later play ran"


@needs_systemd_analyze
@pytest.mark.parametrize("expression", ["hourly", "Mon..Fri 02:30 Europe/Berlin"])
def test_calendar_systemd_accepts_passes_validation(tmp_path: Path, expression: str) -> None:
    """Expressions systemd accepts (a shorthand, days with a zone) pass to the play's next check."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    result = run_playbook(REPO / "playbooks" / "backup-install.yml", tmp_path,
                          {"cluster_kubeconfig": str(kubeconfig), "backup_offsite_on_calendar": expression,
                           **BACKUP_HOST_HERE})
    output = result.stdout + result.stderr
    assert "ok: [localhost -> node-a]" in output, output[-4000:]
    assert "TASK [Check there is exactly one backup host]" in output, output[-4000:]


@needs_systemd_analyze
@pytest.mark.parametrize("expression", ["every hour", "*-*-* *:45:00"], ids=["refused", "accepted"])
def test_preflight_parses_the_calendar_on_the_backup_host(tmp_path: Path, expression: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """site.yml's pre-flight (playbooks/preflight.yml, its controller play runs backup_host's
    validate.yml) has the backup host parse the calendar: `every hour` stops it naming the variable
    and quoting systemd; the default passes (the lab settings, as tests/platform_api do)."""
    monkeypatch.setenv("ANSIBLE_CALLBACK_RESULT_FORMAT", "json")
    config = CONFIGS["single-localpath-nginx-notls"]
    kubeconfig = tmp_path / "kubeconfig"
    # An API server that does not answer, as tests/platform_api's pre-flight tests use.
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "nowhere",
        "clusters": [{"name": "nowhere", "cluster": {"server": "https://127.0.0.1:1", "insecure-skip-tls-verify": True}}],
        "contexts": [{"name": "nowhere", "context": {"cluster": "nowhere", "user": "nobody"}}],
        "users": [{"name": "nobody", "user": {"token": "not-a-token"}}]}))
    inventory = make_inventory(tmp_path, config, kubeconfig=kubeconfig)
    hosts = yaml.safe_load((inventory / "hosts.yml").read_text())
    # The first server is the backup host (the lab's shape); reached locally, it is this machine.
    hosts["all"]["children"]["backup_hosts"] = {"hosts": {"seek-server-1": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    result = run_playbooks(inventory, {**config.extra, "vault_mysql_password": "Alphanumeric0nly",
                                       "backup_offsite_on_calendar": expression},
                           "--limit", "localhost", playbooks=[REPO / "playbooks" / "preflight.yml"])
    output = result.stdout + result.stderr
    # `localhost -> seek-server-1(192.0.2.11)`: delegated to the backup host (its ansible_host shown)
    assert "ok: [localhost -> seek-server-1" in output, output[-4000:]
    if expression == "*-*-* *:45:00":
        assert result.returncode == 0, output[-4000:]
        return
    assert result.returncode != 0, output[-3000:]
    failed = output.split("fatal: [localhost]", 1)[-1]
    assert "backup_host_on_calendar (backup_offsite_on_calendar)" in failed, failed[:3000]
    assert systemd_says(expression) in failed, failed[:3000]


def test_calendar_check_runs_on_the_backup_host(tmp_path: Path) -> None:
    """The parse runs on the backup host, not the controller: with node-a out of reach (a closed
    port) the validation play stops at that task, before any later play."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    result = run_playbook(REPO / "playbooks" / "backup-install.yml", tmp_path,
                          {"cluster_kubeconfig": str(kubeconfig), "ansible_host": "127.0.0.1",
                           "ansible_port": "1", "ansible_ssh_common_args": "-o ConnectTimeout=2"})
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    last_task = output.rsplit("TASK [", 1)[1].split("]", 1)[0]
    assert last_task == "backup_host : Validate | Parse the off-site timer's calendar with systemd on the backup host" \
        or last_task.endswith("Validate | Parse the off-site timer's calendar with systemd on the backup host"), \
        output[-3000:]
    assert "UNREACHABLE" in output and "node-a" in output, output[-3000:]
    assert "TASK [Check there is exactly one backup host]" not in output, output[-3000:]


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
