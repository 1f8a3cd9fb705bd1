"""etcd snapshots with TLS client certificates against a real etcd from Debian."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

from tests.backup_tools.conftest import run_script, run_tool
from tests.backup_tools.servers import Etcd, free_port


def test_etcd_snapshot_with_tls_passes_status_and_restores_keys(etcd, etcd_tls, tmp_path, tool_config, s3, bucket):
    """Snapshot over mTLS, `snapshot status` in the manifest, restore into a new etcd: keys are back."""
    keys = {f"/registry/seek/{i:03d}": f"value-{i}" for i in range(50)}
    for key, value in keys.items():
        etcd.ctl("put", key, value)
    # the client certificate is really required: without it the server refuses
    no_cert = {k: v for k, v in etcd.env().items() if k not in ("ETCDCTL_CERT", "ETCDCTL_KEY")}
    refused = subprocess.run(["etcdctl", "--dial-timeout=2s", "--command-timeout=3s", "get", "/registry/seek/000"],
                             env={**os.environ, **no_cert}, capture_output=True, text=True)
    assert refused.returncode != 0

    root = Path(json.loads(tool_config.read_text())["root"])
    proc = run_script("etcd-backup.sh", {**etcd.env(), "BACKUP_ROOT": str(root)})
    set_dir = next((root / "etcd").iterdir())
    manifest = json.loads((set_dir / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["artifact"]["name"] == "etcd.db"
    assert manifest["etcd"]["total_keys"] >= len(keys)
    assert manifest["etcd"]["revision"] >= len(keys) + 1
    assert "OK" in proc.stderr
    status = subprocess.run(["etcdctl", "snapshot", "status", str(set_dir / "etcd.db"), "-w", "json"],
                            capture_output=True, text=True, check=True, env={**os.environ, "ETCDCTL_API": "3"})
    assert json.loads(status.stdout)["hash"] == manifest["etcd"]["hash"]

    # off-site and back, then restore the fetched snapshot into a brand-new member
    run_tool(tool_config, "offsite")
    fetched = Path(run_tool(tool_config, "fetch", "--kind", "etcd", "--dest", str(tmp_path / "f")).stdout.strip())
    new = Etcd(tmp_path / "etcd-restored", etcd_tls, name="restored")
    new.peer_port, new.client_port = free_port(), free_port()
    data = tmp_path / "etcd-restored-data"
    subprocess.run(["etcdctl", "snapshot", "restore", str(fetched / "etcd.db"), f"--data-dir={data}",
                    f"--name={new.name}", f"--initial-cluster={new.name}={new.peer_url}",
                    f"--initial-advertise-peer-urls={new.peer_url}"],
                   check=True, capture_output=True, env={**os.environ, "ETCDCTL_API": "3"})
    new.start(datadir=data)
    try:
        got = new.ctl("get", "--prefix", "/registry/seek/", "-w", "json").stdout
        kvs = json.loads(got)["kvs"]
        restored = {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv["value"]).decode() for kv in kvs}
        assert restored == keys
    finally:
        new.stop()


def test_etcd_backup_fails_without_certs(etcd, tmp_path):
    """Unreadable client certs: non-zero with a message, no set left."""
    root = tmp_path / "backups"
    env = {**etcd.env(), "ETCDCTL_KEY": str(tmp_path / "missing.key"), "BACKUP_ROOT": str(root)}
    proc = run_script("etcd-backup.sh", env, check=False)
    assert proc.returncode != 0 and "cannot read" in proc.stderr
    assert not list(root.glob("etcd/*"))


def test_etcd_backup_fails_on_unreachable_endpoint(etcd, tmp_path):
    """A dead endpoint: snapshot save fails, the partial set is removed."""
    root = tmp_path / "backups"
    env = {**etcd.env(), "ETCDCTL_ENDPOINTS": "https://127.0.0.1:9", "ETCDCTL_DIAL_TIMEOUT": "2s",
           "SNAPSHOT_TIMEOUT": "5", "BACKUP_ROOT": str(root)}
    proc = run_script("etcd-backup.sh", env, check=False)
    assert proc.returncode != 0 and "snapshot save failed" in proc.stderr
    assert root.is_dir() and not list(root.glob("etcd/*"))
