"""The MySQL backup CronJob dumps from an external server over verified TLS (mysql_external_*).

The CronJob is rendered by the backups role for an external-MySQL configuration; its container
environment (host, port, CA path) is then given, as Kubernetes would, to mysql-backup.sh, which
dumps from a real MariaDB that only accepts TLS connections (require_secure_transport). The same
dump with another CA must fail: the server certificate is really verified.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.backup.conftest import _start, run_script
from tests.backup.servers import MariaDB, make_tls
from tests.backup_k8s.helpers import REPO, run_playbook

CA_MOUNT = "/etc/seek-mysql-tls"


@pytest.fixture(scope="module")
def tls_mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MariaDB, dict[str, Path]]]:
    """A MariaDB that refuses connections without TLS, with its certificates."""
    tls = make_tls(tmp_path_factory.mktemp("mysql-tls"))
    db = _start(lambda: MariaDB(tmp_path_factory.mktemp("mariadb-tls"), extra_args=[
        f"--ssl-ca={tls['ca.crt']}", f"--ssl-cert={tls['server.crt']}", f"--ssl-key={tls['server.key']}",
        "--require-secure-transport=ON"]).start())
    db.sql("DROP DATABASE IF EXISTS seek_ext; CREATE DATABASE seek_ext CHARACTER SET utf8mb4;"
           "CREATE TABLE seek_ext.users (id INT PRIMARY KEY, login VARCHAR(64));"
           "INSERT INTO seek_ext.users VALUES (1, 'alice'), (2, 'bob');")
    yield db, tls
    db.stop()


RENDER = """\
- name: Render the MySQL backup CronJob with the backups role's settings
  hosts: controller
  gather_facts: false
  tasks:
    - name: Load and check the backups role's settings
      ansible.builtin.include_role:
        name: backups
        tasks_from: validate.yml
        public: true
    - name: Render the CronJob
      ansible.builtin.template:
        src: {role}/templates/mysql-backup-cronjob.yaml.j2
        dest: {out}
        mode: "0600"
      vars:
        role_path: {role}
"""


def cronjob_env(tmp: Path, port: int) -> dict[str, Any]:
    """Render the MySQL backup CronJob for an external server; return its plain env values and volumes."""
    tmp.mkdir(parents=True, exist_ok=True)
    out = tmp / "mysql-backup-cronjob.yaml"
    playbook = tmp / "render.yml"
    playbook.write_text(RENDER.format(role=REPO / "roles" / "backups", out=out))
    result = run_playbook(playbook, tmp, {
        "cluster_kubeconfig": str(tmp / "kubeconfig"), "mysql_external_host": "127.0.0.1",
        "mysql_external_port": port, "mysql_external_tls": True, "mysql_external_tls_ca_secret": "mysql-ca"})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    cronjob = yaml.safe_load(out.read_text())
    assert cronjob["metadata"]["name"] == "seek-backup-mysql"
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    secret_volumes = [v for v in pod["volumes"] if "secret" in v]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    return {"env": env, "secret_volumes": secret_volumes, "mounts": mounts}


def test_cronjob_dumps_from_an_external_server_over_verified_tls(tls_mariadb, tmp_path: Path) -> None:
    """Host, port and CA from the rendered CronJob reach the server; the dump is complete."""
    db, tls = tls_mariadb
    job = cronjob_env(tmp_path / "render", db.port)
    env = job["env"]
    assert (env["MYSQL_HOST"], env["MYSQL_PORT"]) == ("127.0.0.1", str(db.port))
    assert env["MYSQL_SSL_CA"] == f"{CA_MOUNT}/ca.crt"
    assert job["secret_volumes"] == [{"name": "mysql-tls", "secret": {
        "secretName": "mysql-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]
    assert job["mounts"]["mysql-tls"] == CA_MOUNT
    # The Secret's ca.crt, where the pod would see it.
    ca_path = str(tls["ca.crt"])
    root = tmp_path / "backups"
    run_env = {**db.env("seek_ext"), "MYSQL_HOST": env["MYSQL_HOST"], "MYSQL_PORT": env["MYSQL_PORT"],
               "MYSQL_SSL_CA": env["MYSQL_SSL_CA"].replace(f"{CA_MOUNT}/ca.crt", ca_path),
               "BACKUP_ROOT": str(root), "SEEK_IMAGE": "fairdom/seek:1.18.1"}
    run_script("mysql-backup.sh", run_env)
    sets = sorted((root / "mysql").iterdir())
    manifest = json.loads((sets[-1] / "manifest.json").read_text())
    assert manifest["complete"] is True
    assert manifest["mysql"]["tables"] == {"users": 2}


def test_dump_with_another_ca_fails(tls_mariadb, tmp_path: Path) -> None:
    """A server whose certificate the given CA did not sign is refused: the certificate is verified,
    and no complete set is left behind."""
    db, _ = tls_mariadb
    other = make_tls(tmp_path / "other-ca")
    root = tmp_path / "backups"
    wrong = run_script("mysql-backup.sh", {**db.env("seek_ext"), "BACKUP_ROOT": str(root),
                                           "MYSQL_SSL_CA": str(other["ca.crt"])}, check=False)
    assert wrong.returncode != 0, wrong.stderr
    assert "cannot connect" in wrong.stderr, wrong.stderr
    complete = [p for p in root.glob("mysql/*/manifest.json") if json.loads(p.read_text()).get("complete")]
    assert complete == []
