"""The configuration backup_host writes drives the real off-site tool: the commands of the
systemd unit (offsite --no-prune, verify, prune) and backup-now.yml's `summary --json` run against
moto on loopback with a set made by the MySQL producer script, and leave an age-encrypted copy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import boto3
import pytest
from pyrage import x25519

from tests.backup_tools.servers import MariaDB, Missing, Moto
from tests.backup_roles.helpers import FILES, REPO, run_playbook

CONFIGURE = textwrap.dedent("""\
    - name: Write the off-site tool configuration as the backup host gets it
      hosts: controller
      gather_facts: false
      tasks:
        - name: Validate
          ansible.builtin.include_role:
            name: backup_host
            tasks_from: validate.yml
        - name: Configure
          ansible.builtin.include_role:
            name: backup_host
            tasks_from: configure.yml
    """)
BUCKET = "seek-backup-host-test"


@pytest.fixture()
def moto_server(tmp_path: Path):
    """moto in server mode on a loopback port, with the bucket."""
    try:
        server = Moto().start(tmp_path)
    except Missing as exc:
        pytest.skip(str(exc))
    boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1", aws_access_key_id="k",
                 aws_secret_access_key="s").create_bucket(Bucket=BUCKET)
    yield server
    server.stop()


def tool(config: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m seek_backup ARGS` as the systemd unit runs it (config from SEEK_BACKUP_CONFIG)."""
    env = {**os.environ, "SEEK_BACKUP_CONFIG": str(config), "PYTHONPATH": str(REPO / "tools")}
    return subprocess.run([sys.executable, "-m", "seek_backup", *args], env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def test_timer_pass_with_the_role_configuration(tmp_path: Path, moto_server: Moto,
                                                mariadb_server: MariaDB) -> None:
    """validate + configure, then one timer pass and the summary: the set is off-site and verified."""
    identity = x25519.Identity.generate()
    root, etc = tmp_path / "root", tmp_path / "etc"
    root.mkdir()
    evars = {
        "backup_root": str(root), "backup_host_config_dir": str(etc), "backup_s3_bucket": BUCKET,
        "backup_s3_endpoint": moto_server.endpoint, "backup_s3_addressing_style": "path",
        "vault_backup_s3_access_key": "testing", "vault_backup_s3_secret_key": "testing-secret",
        "backup_age_recipients": [str(identity.to_public())], "backup_keep_daily": 3,
        # validate.yml has systemd parse the timer's calendar on the backup host (node-a in the
        # test inventory): here that host is this machine, reached locally like the controller.
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
    }
    playbook = tmp_path / "configure.yml"
    playbook.write_text(CONFIGURE)
    result = run_playbook(playbook, tmp_path, evars)
    assert result.returncode == 0, result.stdout[-4000:]
    config = etc / "config.json"
    assert oct(config.stat().st_mode & 0o777) == "0o600"
    assert "AGE-SECRET-KEY" not in config.read_text()

    db = "seek_pass"
    mariadb_server.sql(f"DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db};"
                       f"CREATE TABLE {db}.t (id INT PRIMARY KEY); INSERT INTO {db}.t VALUES (1), (2);")
    env = {**os.environ, **mariadb_server.env(db), "BACKUP_ROOT": str(root)}
    made = subprocess.run(["bash", str(FILES / "mysql-backup.sh")], env=env, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr

    for step in (["offsite", "--no-prune"], ["verify"], ["prune"]):
        ran = tool(config, *step)
        assert ran.returncode == 0, f"{step}: {ran.stdout}\n{ran.stderr}"

    summary = tool(config, "--quiet", "summary", "--json")
    rows = {row["kind"]: row for row in json.loads(summary.stdout)}
    assert "off-site verified" in rows["mysql"]["status"], rows
    objects = boto3.client("s3", endpoint_url=moto_server.endpoint, region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing-secret"
                           ).list_objects_v2(Bucket=BUCKET)["Contents"]
    keys = [o["Key"] for o in objects]
    assert any(k.startswith("seek-k3s/mysql/") for k in keys), keys
    body = boto3.client("s3", endpoint_url=moto_server.endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing-secret"
                        ).get_object(Bucket=BUCKET, Key=next(k for k in keys if k.endswith(".age")))["Body"].read()
    assert body.startswith(b"age-encryption.org/v1"), "the bucket holds only age ciphertext"
