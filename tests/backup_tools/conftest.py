"""Fixtures for the backup tool tests: real MariaDB, etcd with TLS and moto on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyrage import x25519

from tests.backup_tools.servers import Etcd, MariaDB, Missing, Moto, make_tls

REPO = Path(__file__).resolve().parents[2]
FILES = REPO / "roles" / "backups" / "files"
BUCKET = "seek-backups-test"
ACCESS_KEY = "testing-access-key"
SECRET_KEY = "testing-secret-key"


def _start(factory):  # type: ignore[no-untyped-def]
    try:
        return factory()
    except Missing as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    """A MariaDB server from Debian, own datadir and socket, cleanly shut down at the end."""
    db = _start(lambda: MariaDB(tmp_path_factory.mktemp("mariadb")).start())
    yield db
    db.stop()
    assert db.proc is not None and db.proc.returncode == 0, "mariadbd did not shut down cleanly"


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    """moto in server mode on a loopback port."""
    server = _start(lambda: Moto().start(tmp_path_factory.mktemp("moto")))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def etcd_tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """CA, server and client certificates for etcd."""
    return _start(lambda: make_tls(tmp_path_factory.mktemp("etcd-tls")))


@pytest.fixture()
def etcd(tmp_path: Path, etcd_tls: dict[str, Path]) -> Iterator[Etcd]:
    """A fresh single-member etcd requiring client certificates."""
    server = _start(lambda: Etcd(tmp_path / "etcd", etcd_tls).start())
    yield server
    server.stop()


@pytest.fixture(scope="session")
def age_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An age identity file (the operator's) and its public recipient."""
    ident = x25519.Identity.generate()
    path = tmp_path_factory.mktemp("age") / "identity.txt"
    path.write_text(f"# operator key for tests\n{ident}\n")
    path.chmod(0o600)
    return {"identity_file": str(path), "recipient": str(ident.to_public())}


@pytest.fixture()
def bucket(moto: Moto) -> Iterator[str]:
    """An empty bucket, emptied and removed again after the test."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto.endpoint, aws_access_key_id=ACCESS_KEY,
                      aws_secret_access_key=SECRET_KEY, region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    yield BUCKET
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=BUCKET, Key=obj["Key"])
    s3.delete_bucket(Bucket=BUCKET)


@pytest.fixture()
def s3(moto: Moto):  # type: ignore[no-untyped-def]
    """A plain boto3 client on moto, for assertions about what is in the bucket."""
    import boto3

    return boto3.client("s3", endpoint_url=moto.endpoint, aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY, region_name="us-east-1")


@pytest.fixture()
def tool_config(tmp_path: Path, moto: Moto, bucket: str, age_keys: dict[str, str]) -> Path:
    """A 0600 JSON config for seek_backup pointing at moto, the bucket and the age keys."""
    root = tmp_path / "backups"
    root.mkdir()
    cfg = {
        "root": str(root),
        "s3": {"bucket": bucket, "prefix": "seek", "endpoint_url": moto.endpoint, "region": "us-east-1",
               "access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY,
               "addressing_style": "path", "part_size_mb": 5, "connect_timeout": 2, "max_attempts": 1},
        "age": {"recipients": [age_keys["recipient"]], "identity_file": age_keys["identity_file"]},
        "retention": {"keep_daily": 7, "keep_weekly": 4, "local_keep_daily": 2, "local_keep_weekly": 0},
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg, indent=2))
    path.chmod(0o600)
    return path


def run_tool(config: Path, *args: str, env: dict[str, str] | None = None,
             check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python -m seek_backup`` as the systemd unit would."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SEEK_BACKUP_"))}
    full_env["PYTHONPATH"] = str(REPO / "tools")
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "seek_backup", "--config", str(config), *args],
                          env=full_env, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"seek_backup {' '.join(args)} exited {proc.returncode}\n"
                             f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def run_script(name: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    """Run one of the in-cluster producer scripts with ``env``."""
    proc = subprocess.run(["bash", str(FILES / name)], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{name} exited {proc.returncode}\n{proc.stderr}")
    return proc
