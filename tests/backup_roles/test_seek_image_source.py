"""The image every dump records comes from what the seek role published (issue 20, item 4).

The MySQL dump and filestore archive CronJobs read SEEK_IMAGE from ConfigMap seek-deployed when each
Job's pod starts (never a value fixed when backup-install.yml ran); the producer scripts refuse to
make a set without it, naming the ConfigMap. Rendered by the roles themselves; the scripts run for
real (the filestore archive end to end, the dump up to its first step: no database is needed there).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.backup_roles.helpers import FILES, REPO

SEEK_ROLE = REPO / "roles" / "seek"


def _published_configmap() -> str:
    """The ConfigMap name the seek role publishes the deployed image in (its vars/main.yml)."""
    return yaml.safe_load((SEEK_ROLE / "vars" / "main.yml").read_text())["__seek_deployed_configmap"]


def _env(cronjob: dict[str, Any]) -> dict[str, dict[str, Any]]:
    container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e for e in container["env"]}


def test_dump_and_archive_read_seek_image_from_the_seek_roles_configmap(rendered) -> None:
    """SEEK_IMAGE is an optional reference to the seek role's ConfigMap, no fixed value; the source
    is named for the script. The etcd snapshot (kube-system: no reference across namespaces) keeps
    the value of backups_seek_image."""
    _, _, objects, _ = rendered
    cronjobs = {o["metadata"]["name"]: o for o in objects.values() if o["kind"] == "CronJob"}
    name = _published_configmap()
    for cronjob_name in ("seek-backup-mysql", "seek-backup-filestore"):
        env = _env(cronjobs[cronjob_name])
        assert "value" not in env["SEEK_IMAGE"], env["SEEK_IMAGE"]
        assert env["SEEK_IMAGE"]["valueFrom"] == {
            "configMapKeyRef": {"name": name, "key": "seek_image", "optional": True}}, cronjob_name
        assert name in env["SEEK_IMAGE_SOURCE"]["value"] and "seek_image" in env["SEEK_IMAGE_SOURCE"]["value"]
    etcd = _env(cronjobs["seek-backup-etcd"])
    assert etcd["SEEK_IMAGE"]["value"].startswith("fairdom/seek:")


def _run(script: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(FILES / script)], env={**os.environ, **env},
                          capture_output=True, text=True, check=False, timeout=120)


def test_a_dump_without_the_published_image_stops_before_anything_is_written(tmp_path: Path) -> None:
    """SEEK_IMAGE unset (ConfigMap or key missing: the kubelet then leaves it out) stops both
    scripts at once with a message naming the ConfigMap and seek.yml; no set directory exists."""
    filestore = tmp_path / "filestore"
    filestore.mkdir()
    (filestore / "secret_key_base").write_text("x" * 64)
    source = {"SEEK_IMAGE_SOURCE": "ConfigMap seek-deployed (key seek_image)"}
    for script, extra in (("filestore-backup.sh", {"FILESTORE_DIR": str(filestore)}),
                          ("mysql-backup.sh", {"MYSQL_USER": "seek", "MYSQL_PASSWORD": "x",
                                               "MYSQL_DATABASE": "seek", "MYSQL_HOST": "192.0.2.1"})):
        root = tmp_path / script
        env = {"BACKUP_ROOT": str(root), "BACKUP_COMPRESSION": "gzip", **source, **extra}
        env.pop("SEEK_IMAGE", None)
        result = _run(script, {**env, "SEEK_IMAGE": ""})
        assert result.returncode != 0, result.stderr
        assert "SEEK_IMAGE is empty: it is read from ConfigMap seek-deployed (key seek_image)" in result.stderr
        assert "playbooks/seek.yml" in result.stderr and "No set was made" in result.stderr
        assert not root.exists() or not any(root.rglob("manifest.json")), list(root.rglob("*"))


def test_the_published_image_is_what_the_manifest_records(tmp_path: Path) -> None:
    """With the ConfigMap's value in SEEK_IMAGE, the archive is made and its manifest names it."""
    filestore = tmp_path / "filestore"
    filestore.mkdir()
    (filestore / "secret_key_base").write_text("x" * 64)
    root = tmp_path / "root"
    result = _run("filestore-backup.sh", {
        "BACKUP_ROOT": str(root), "BACKUP_COMPRESSION": "gzip", "FILESTORE_DIR": str(filestore),
        "SEEK_IMAGE_SOURCE": "ConfigMap seek-deployed (key seek_image)", "SEEK_IMAGE": "fairdom/seek:1.18.1",
        "BACKUP_OFFSITE_QUEUE": ""})
    assert result.returncode == 0, result.stderr
    manifests = list(root.rglob("manifest.json"))
    assert len(manifests) == 1
    assert json.loads(manifests[0].read_text())["seek_image"] == "fairdom/seek:1.18.1"
