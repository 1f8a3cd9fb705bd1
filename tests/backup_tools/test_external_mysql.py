"""The MySQL backup CronJob dumps from an external server over verified TLS (mysql_external_*).

The CronJob is rendered by the backups role for an external-MySQL configuration; its container
environment (host, port, CA path) is then given, as Kubernetes would, to mysql-backup.sh, which
dumps from a real MariaDB that only accepts TLS connections (require_secure_transport). The same
dump with another CA must fail: the server certificate is really verified.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.backup_tools.conftest import _start, run_script
from tests.backup_tools.servers import MariaDB, make_tls
from tests.backup_roles.helpers import REPO, run_playbook

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
- name: Render one template with its role's settings
  hosts: controller
  gather_facts: false
  tasks:
    - name: Load and check the role's settings
      ansible.builtin.include_role:
        name: {name}
        tasks_from: validate.yml
        public: true
    - name: Render the object
      ansible.builtin.template:
        src: {role}/templates/{template}
        dest: {out}
        mode: "0600"
      vars:
        role_path: {role}
"""
EXTERNAL = {"mysql_external_tls": True, "mysql_external_tls_ca_secret": "mysql-ca",
            "mysql_external_host": "127.0.0.1"}


def render_object(tmp: Path, role: str, template: str, extra: dict[str, Any]) -> dict[str, Any]:
    """Render ``template`` of ``role`` with the role's own defaults and vars plus ``extra``."""
    tmp.mkdir(parents=True, exist_ok=True)
    out = tmp / template.removesuffix(".j2")
    playbook = tmp / "render.yml"
    playbook.write_text(RENDER.format(name=role, role=REPO / "roles" / role, template=template, out=out))
    result = run_playbook(playbook, tmp, {"cluster_kubeconfig": str(tmp / "kubeconfig"), **extra})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return yaml.safe_load(out.read_text())


def cronjob_env(tmp: Path, port: int) -> dict[str, Any]:
    """Render the MySQL backup CronJob for an external server; return its plain env values and volumes."""
    cronjob = render_object(tmp, "backups", "mysql-backup-cronjob.yaml.j2", {**EXTERNAL, "mysql_external_port": port})
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


def test_restore_job_loads_into_the_external_server_as_the_seek_account(tls_mariadb, tmp_path: Path) -> None:
    """The restore Job connects as the SEEK account (no root on an external server), over verified
    TLS, and restore-mysql.sh recreates the database from a dump of it."""
    db, tls = tls_mariadb
    root = tmp_path / "backups"
    env = cronjob_env(tmp_path / "render-dump", db.port)["env"]
    run_script("mysql-backup.sh", {**db.env("seek_ext"), "MYSQL_SSL_CA": str(tls["ca.crt"]),
                                   "BACKUP_ROOT": str(root), "SEEK_IMAGE": "fairdom/seek:1.18.1"})
    set_dir = sorted((root / "mysql").iterdir())[-1]
    job = render_object(tmp_path / "render-restore", "backup_restore", "restore-mysql-job.yaml.j2", {
        **EXTERNAL, "mysql_external_port": db.port, "backup_restore_mysql_dir": f"mysql/{set_dir.name}",
        "__backup_restore_id": "t1", "__backup_restore_job_name": "seek-restore-mysql-t1"})
    container = job["spec"]["template"]["spec"]["containers"][0]
    plain = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    keys = {e["name"]: e["valueFrom"]["secretKeyRef"]["key"] for e in container["env"] if "valueFrom" in e}
    assert keys == {"MYSQL_DATABASE": "database", "MYSQL_USER": "user", "MYSQL_PASSWORD": "password"}
    assert (plain["MYSQL_HOST"], plain["MYSQL_PORT"]) == ("127.0.0.1", str(db.port)) == (env["MYSQL_HOST"], env["MYSQL_PORT"])
    assert {m["name"]: m["mountPath"] for m in container["volumeMounts"]}["mysql-tls"] == CA_MOUNT
    db.sql("DELETE FROM seek_ext.users WHERE id = 2")
    secret = {"database": "seek_ext", "user": db.user, "password": db.password}
    script = REPO / "roles" / "backup_restore" / "files" / "restore-mysql.sh"
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=600, env={
        **os.environ, **{name: secret[key] for name, key in keys.items()},
        "MYSQL_HOST": plain["MYSQL_HOST"], "MYSQL_PORT": plain["MYSQL_PORT"],
        "MYSQL_SSL_CA": plain["MYSQL_SSL_CA"].replace(f"{CA_MOUNT}/ca.crt", str(tls["ca.crt"])),
        "RESTORE_SET_DIR": str(set_dir), "SEEK_IMAGE": "fairdom/seek:1.18.1", "TMPDIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert db.sql("SELECT login FROM seek_ext.users ORDER BY id").split() == ["alice", "bob"]
