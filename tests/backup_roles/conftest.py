"""Fixtures of the backup Kubernetes tests: rendered configurations and a MariaDB server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.backup_tools.servers import MariaDB, Missing
from tests.backup_roles.helpers import render, rendered_dir

# Two configurations users run: the lab default (local-path, first server is the backup host)
# and an NFS one with another time zone, its own schedules, the drill disabled and a MySQL
# image taken from the mysql role's variable.
CONFIGS: dict[str, dict[str, Any]] = {
    "local-path": {},
    "nfs": {
        "storage_backend": "nfs",
        "nfs_server_host": "nfs.lab.test",
        "nfs_export_path": "/srv/nfs/seek",
        "backup_root": "/srv/nfs/seek/seek-backups",
        "backup_timezone": "Europe/Berlin",
        "backups_etcd_schedule": "*/30 * * * *",
        "backups_etcd_active_deadline_seconds": 900,
        "backups_mysql_schedule": "0 */12 * * *",
        "backups_mysql_active_deadline_seconds": 3600,
        "backups_filestore_active_deadline_seconds": 3600,
        "backups_drill_schedule": "",
        "mysql_image": "mysql:8.4.6",
        "seek_namespace": "seek-prod",
        "backup_uid": 20001,
        "backup_gid": 20002,
    },
}


@pytest.fixture(scope="session", params=sorted(CONFIGS))
def rendered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[str, dict[str, Any], dict[str, dict[str, Any]], Path]:
    """(name, extra vars, {file: object}, output dir) for each configuration."""
    tmp = tmp_path_factory.mktemp(f"render-{request.param}")
    objects = render(tmp, CONFIGS[request.param])
    return request.param, CONFIGS[request.param], objects, rendered_dir(tmp)


@pytest.fixture(scope="session")
def mariadb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    """A MariaDB server from Debian (MySQL 8.4 is not packaged): the drill and restore scripts run on it."""
    try:
        db = MariaDB(tmp_path_factory.mktemp("mariadb-k8s")).start()
    except Missing as exc:
        pytest.skip(f"MariaDB is not installed: {exc}")
    yield db
    db.stop()
