"""Outcomes of the backup_host role on the systemd container of the `backup-host` scenario."""

import json
import os
import shlex

import pytest
import testinfra.utils.ansible_runner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
HOSTS = RUNNER.get_hosts("backup_hosts")
ROOT = "/var/backups/seek-k3s"
PY = "/opt/seek-backup/venv/bin/python"
TOOL = f"SEEK_BACKUP_CONFIG=/etc/seek-backup/config.json PYTHONPATH=/opt/seek-backup/lib {PY} -m seek_backup"


def pytest_generate_tests(metafunc):
    """Run each test on the backup host."""
    if "name" in metafunc.fixturenames:
        metafunc.parametrize("name", HOSTS)


def host(name):
    """A testinfra host reached the way molecule reaches it."""
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}")


def has_bucket(name):
    """Whether the host is configured with a bucket (the second verify, after side_effect.yml)."""
    return bool(json.loads(host(name).file("/etc/seek-backup/config.json").content_string).get("bucket"))


def test_backup_root_belongs_to_the_backup_uid_only(name):
    root = host(name).file(ROOT)
    assert root.is_directory
    assert (root.uid, root.gid, root.mode) == (10001, 10001, 0o770)


def test_config_is_private_and_holds_no_private_key(name):
    cfg = host(name).file("/etc/seek-backup/config.json")
    assert (cfg.user, cfg.mode) == ("root", 0o600)
    assert host(name).file("/etc/seek-backup").mode == 0o700
    data = json.loads(cfg.content_string)
    assert data["root"] == ROOT and data["local_keep_daily"] == 2 and data["keep_daily"] == 7
    assert "AGE-SECRET-KEY" not in cfg.content_string


def test_tool_runs_from_its_virtualenv(name):
    h = host(name)
    assert h.run(f"{PY} -c 'import boto3, pyrage'").rc == 0
    result = h.run(f"{TOOL} --help")
    assert result.rc == 0 and "offsite" in result.stdout


def test_timer_is_enabled_and_scheduled(name):
    h = host(name)
    timer = h.service("seek-backup-offsite.timer")
    assert timer.is_enabled and timer.is_running
    unit = h.file("/etc/systemd/system/seek-backup-offsite.timer").content_string
    assert "OnCalendar=*-*-* 03:45:00" in unit and "Persistent=true" in unit


def test_path_unit_is_on_with_a_bucket_and_off_without(name):
    """The path unit starts the pass as soon as a set is queued: enabled and active (waiting on the
    queue directory) once a bucket is configured; without one the pass never empties the queue, so
    the role installs it stopped and disabled."""
    h = host(name)
    path = h.service("seek-backup-offsite.path")
    unit = h.file("/etc/systemd/system/seek-backup-offsite.path").content_string
    assert f"DirectoryNotEmpty={ROOT}/.offsite-queue" in unit and "Unit=seek-backup-offsite.service" in unit
    state = h.run("systemctl is-enabled seek-backup-offsite.path; systemctl is-active seek-backup-offsite.path")
    if has_bucket(name):
        assert path.is_enabled and path.is_running, state.stdout
        assert h.run("systemctl is-enabled paths.target").rc == 0
        wants = h.run("systemctl show -p Wants --value paths.target").stdout.split()
        assert "seek-backup-offsite.path" in wants, wants
    else:
        assert not path.is_enabled and not path.is_running, state.stdout


def test_one_pass_applies_the_local_retention(name):
    """Without a bucket no complete set has left the host, so the pass keeps all four; the stale
    incomplete set (no manifest, untouched for three days) is removed."""
    h = host(name)
    if has_bucket(name):
        pytest.skip("ran in the first verify, without a bucket (with one the pass would upload)")
    script = f"""
set -e
for stamp in 20260101T013000Z 20260102T013000Z 20260103T013000Z 20260104T013000Z; do
  d={ROOT}/mysql/$stamp; mkdir -p $d; printf 'dump' > $d/mysql.sql.gz
  sha=$(sha256sum $d/mysql.sql.gz | cut -d' ' -f1)
  printf '{{"kind": "mysql", "stamp": "%s", "artifact": {{"name": "mysql.sql.gz", "size": 4, "sha256": "%s",
    "compression": "gzip"}}, "mysql": {{"tables": {{}}}}, "complete": true}}' $stamp $sha > $d/manifest.json
done
mkdir -p {ROOT}/mysql/20251231T013000Z; printf 'part' > {ROOT}/mysql/20251231T013000Z/mysql.sql.gz.part
chown -R 10001:10001 {ROOT}/mysql
touch -d '3 days ago' {ROOT}/mysql/20251231T013000Z
systemctl start seek-backup-offsite.service
ls {ROOT}/mysql
"""
    result = h.run(f"bash -c {shlex.quote(script)}")
    assert result.rc == 0, result.stderr + h.run("journalctl -u seek-backup-offsite --no-pager -n 30").stdout
    kept = sorted(result.stdout.split())
    assert kept == ["20260101T013000Z", "20260102T013000Z", "20260103T013000Z", "20260104T013000Z"], kept
