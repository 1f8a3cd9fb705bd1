"""The one restore and drill implementation, run from the tests as the cluster runs it: the
restore Job's restore-mysql.sh (role backup_restore) and the drill CronJob's backup-drill.sh (role
backups). A set that is only off-site is first fetched (download, decrypt, both digests checked)
by ``seek_backup fetch``, as the backup_fetch role does, then restored from the volume."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import time
from pathlib import Path

from tests.backup_tools.conftest import run_tool
from tests.backup_tools.servers import MariaDB

REPO = Path(__file__).resolve().parents[2]
RESTORE_MYSQL = REPO / "roles" / "backup_restore" / "files" / "restore-mysql.sh"
DRILL_TEMPLATE = REPO / "roles" / "backups" / "templates" / "backup-drill.sh.j2"
ROOT_PASSWORD = "restore-root-pw"
IMAGE = "fairdom/seek:1.18.1"


def drill_script(tmp: Path) -> Path:
    """backup-drill.sh as the backups role ships it: the template's only Jinja is its managed header."""
    text = DRILL_TEMPLATE.read_text()
    jinja = re.findall(r"\{\{.*?\}\}|\{%.*?%\}", text)
    assert jinja == ["{{ ansible_managed | comment }}"], f"the drill template gained Jinja: {jinja}"
    path = tmp / "backup-drill.sh"
    path.write_text(text.replace("{{ ansible_managed | comment }}\n", "# rendered for the tests\n"))
    path.chmod(0o755)
    return path


def run_drill(db: MariaDB, root: Path, tmp: Path, **extra: str) -> subprocess.CompletedProcess:
    """The drill against the test server's socket, as the drill Job runs it against its sidecar."""
    env = {**os.environ, "BACKUP_ROOT": str(root), "DRILL_SOCKET": str(db.socket), **extra}
    return subprocess.run(["bash", str(drill_script(tmp))], env=env, capture_output=True, text=True, check=False)


# The Job passes its restore id (YYYYMMDDHHMMSS) as RESTORE_STAMP; here every run gets its own, so
# two restores into one database within a second do not share <db>_pre_restore_<stamp>.
_STAMPS = itertools.count(int(time.strftime("%Y%m%d%H%M%S", time.gmtime())))


def restore_mysql(db: MariaDB, set_dir: Path, target: str, **extra: str) -> subprocess.CompletedProcess:
    """restore-mysql.sh over TCP as root, as the restore Job runs it (SEEK_IMAGE: the deployed one;
    RESTORE_PREVIOUS_DIR: pre-restore/mysql next to the set's kind directory, as under /backup)."""
    db.sql(f"CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '{ROOT_PASSWORD}';"
           f"ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY '{ROOT_PASSWORD}';"
           "GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;")
    env = {**os.environ, "RESTORE_SET_DIR": str(set_dir), "MYSQL_HOST": "127.0.0.1", "MYSQL_PORT": str(db.port),
           "MYSQL_DATABASE": target, "MYSQL_ROOT_PASSWORD": ROOT_PASSWORD, "SEEK_IMAGE": IMAGE,
           "RESTORE_STAMP": str(next(_STAMPS)),
           "RESTORE_PREVIOUS_DIR": str(set_dir.parent.parent / "pre-restore" / "mysql"), **extra}
    env = {k: v for k, v in env.items() if v is not None}
    return subprocess.run(["bash", str(RESTORE_MYSQL)], env=env, capture_output=True, text=True, check=False)


def fetch(tool_config: Path, dest: Path, kind: str = "mysql") -> subprocess.CompletedProcess:
    """``seek_backup fetch`` of the newest set with the operator's identity, as backup_fetch runs it."""
    identity = json.loads(tool_config.read_text())["age"]["identity_file"]
    return run_tool(tool_config, "--quiet", "fetch", "--kind", kind, "--stamp", "latest", "--identity", identity,
                    "--dest", str(dest), check=False)


def fetch_and_restore(db: MariaDB, tool_config: Path, dest: Path, target: str,
                      **extra: str) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess | None]:
    """restore.yml's path for a set that is only off-site: fetch it, then restore it from the volume
    (the restore is not run when the fetch failed: backup_fetch stops the play there)."""
    fetched = fetch(tool_config, dest)
    if fetched.returncode != 0:
        return fetched, None
    return fetched, restore_mysql(db, Path(fetched.stdout.strip().splitlines()[-1]), target, **extra)


RESTORE_FILESTORE = REPO / "roles" / "backup_restore" / "files" / "restore-filestore.sh"


def restore_filestore(set_dir: Path, target: Path) -> subprocess.CompletedProcess:
    """restore-filestore.sh as the filestore restore Job runs it (FILESTORE_DIR: the volume)."""
    env = {**os.environ, "RESTORE_SET_DIR": str(set_dir), "FILESTORE_DIR": str(target)}
    return subprocess.run(["bash", str(RESTORE_FILESTORE)], env=env, capture_output=True, text=True, check=False)
