"""Off-site behaviour against moto in server mode: retention, credentials, unreachable endpoints,
filestore round trip and local corruption."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from tests.backup_tools.conftest import run_script, run_tool
from tests.backup_tools.servers import free_port, stop_process, wait_port
from tests.backup_tools.shell_restore import fetch, restore_filestore

# 30 dated backups: 24 nightly ones in October, a second one on three days, 3 older weeklies.
STAMPS = ([f"202609{d:02d}T020000Z" for d in (5, 12, 19)]
          + [f"202610{d:02d}T020000Z" for d in range(1, 25)]
          + [f"202610{d:02d}T140000Z" for d in (20, 22, 24)])
# keep_daily=7: the newest backup of each of the 7 newest days (Oct 18..24);
# keep_weekly=4: the newest of ISO weeks 43, 42 (already daily), 41 (Sun Oct 11), 40 (Sun Oct 4).
EXPECTED_KEEP = ["20261004T020000Z", "20261011T020000Z", "20261018T020000Z", "20261019T020000Z",
                 "20261020T140000Z", "20261021T020000Z", "20261022T140000Z", "20261023T020000Z",
                 "20261024T140000Z"]


def make_filestore_sets(root: Path, src: Path, stamps: list[str]) -> None:
    """Real filestore sets produced by filestore-backup.sh with fixed stamps."""
    for stamp in stamps:
        run_script("filestore-backup.sh", {"FILESTORE_DIR": str(src), "BACKUP_ROOT": str(root),
                                           "BACKUP_STAMP": stamp})


def remote_stamps(s3, bucket: str, kind: str = "filestore", complete: bool = True) -> list[str]:
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"seek/{kind}/")
            for o in page.get("Contents", [])]
    stamps = {k.split("/")[2] for k in keys}
    if complete:
        stamps = {s for s in stamps if f"seek/{kind}/{s}/manifest.json.age" in keys}
    return sorted(stamps)


@pytest.fixture()
def filestore(tmp_path: Path) -> Path:
    """A small SEEK-like filestore with the generated secret keys."""
    src = tmp_path / "filestore"
    (src / "assets" / "01").mkdir(parents=True)
    (src / "tmp").mkdir()
    (src / "secret_key_base").write_text("0123456789abcdef" * 8)
    (src / "attr_encrypted_key").write_bytes(os.urandom(32))
    (src / "assets" / "01" / "data file (1).xlsx").write_bytes(os.urandom(200_000))
    (src / "assets" / "01" / "model.xml").write_text("<sbml/>\n" * 1000)
    os.chmod(src / "secret_key_base", 0o600)
    return src


def test_retention_over_30_dated_objects(tool_config, s3, bucket, filestore):
    """keep 7 daily / 4 weekly over 30 dated sets keeps exactly 9; with 0/0 the newest verified stays."""
    root = Path(json.loads(tool_config.read_text())["root"])
    make_filestore_sets(root, filestore, STAMPS)
    assert len(STAMPS) == 30
    run_tool(tool_config, "offsite", "--no-prune")
    assert remote_stamps(s3, bucket) == sorted(STAMPS)

    dry = run_tool(tool_config, "prune", "--dry-run")
    assert dry.stderr.count("would delete remote") == 21
    assert remote_stamps(s3, bucket) == sorted(STAMPS)

    run_tool(tool_config, "prune")
    assert remote_stamps(s3, bucket, complete=False) == EXPECTED_KEEP
    # locally: 2 daily (the policy of the test config), every set already off-site
    assert sorted(p.name for p in (root / "filestore").iterdir()) == ["20261023T020000Z", "20261024T140000Z"]

    # the newest backup fails its check (truncated object): with keep 0/0 only the newest
    # *verified* one survives, never nothing
    newest = f"seek/filestore/{EXPECTED_KEEP[-1]}/filestore.tar.gz.age"
    obj = s3.get_object(Bucket=bucket, Key=newest)
    s3.put_object(Bucket=bucket, Key=newest, Body=obj["Body"].read()[:-10], Metadata=obj["Metadata"])
    zero = {"SEEK_BACKUP_KEEP_DAILY": "0", "SEEK_BACKUP_KEEP_WEEKLY": "0"}
    run_tool(tool_config, "prune", "--where", "remote", env=zero)
    assert remote_stamps(s3, bucket, complete=False) == [EXPECTED_KEEP[-2]]
    run_tool(tool_config, "prune", "--where", "remote", env=zero)
    assert remote_stamps(s3, bucket, complete=False) == [EXPECTED_KEEP[-2]]
    verify = run_tool(tool_config, "verify", "--deep")
    assert EXPECTED_KEEP[-2] in verify.stdout and "FAILED" not in verify.stdout


def test_filestore_round_trip(tool_config, filestore, tmp_path):
    """filestore-backup.sh -> offsite -> fetch -> restore-filestore.sh (the restore Job's script)
    gives the same files, bytes and modes."""
    root = Path(json.loads(tool_config.read_text())["root"])
    run_script("filestore-backup.sh", {"FILESTORE_DIR": str(filestore), "BACKUP_ROOT": str(root)})
    set_dir = next((root / "filestore").iterdir())
    man = json.loads((set_dir / "manifest.json").read_text())
    assert man["filestore"]["files"] == 4 and man["complete"] is True
    run_tool(tool_config, "offsite")
    target = tmp_path / "restored"
    target.mkdir()
    fetched = fetch(tool_config, tmp_path / "fetched", kind="filestore")
    assert fetched.returncode == 0, fetched.stderr
    restored = restore_filestore(Path(fetched.stdout.strip().splitlines()[-1]), target)
    assert restored.returncode == 0, restored.stdout + restored.stderr

    def tree(base: Path) -> dict[str, tuple[str, int]]:
        return {str(p.relative_to(base)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
                for p in base.rglob("*") if p.is_file()}

    assert tree(target) == tree(filestore)
    assert (target / "tmp").is_dir()


def test_filestore_missing_dir_fails(tmp_path):
    proc = run_script("filestore-backup.sh", {"FILESTORE_DIR": str(tmp_path / "nope"), "BACKUP_ROOT": str(tmp_path)},
                      check=False)
    assert proc.returncode != 0 and "not a directory" in proc.stderr


def test_local_corruption_is_not_uploaded(tool_config, s3, bucket, filestore):
    """An artifact changed after its manifest was written is refused and the upload aborted."""
    root = Path(json.loads(tool_config.read_text())["root"])
    make_filestore_sets(root, filestore, ["20261101T020000Z"])
    art = root / "filestore" / "20261101T020000Z" / "filestore.tar.gz"
    data = bytearray(art.read_bytes())
    data[100] ^= 0xFF
    art.write_bytes(bytes(data))
    proc = run_tool(tool_config, "offsite", check=False)
    assert proc.returncode == 1
    assert "differs from manifest" in proc.stderr and "Traceback" not in proc.stderr
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    assert not (art.parent / "uploaded.json").exists()


def test_incomplete_set_is_never_uploaded(tool_config, s3, bucket, filestore):
    """A set without manifest.json (producer killed with SIGKILL) stays local and is skipped."""
    root = Path(json.loads(tool_config.read_text())["root"])
    make_filestore_sets(root, filestore, ["20261102T020000Z"])
    (root / "filestore" / "20261102T020000Z" / "manifest.json").unlink()
    proc = run_tool(tool_config, "offsite")
    assert "skipping incomplete set" in proc.stderr
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


@pytest.fixture(scope="module")
def authed_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """moto that checks credentials (IAM auth after the first 4 unauthenticated setup calls)."""
    binary = Path(sys.executable).parent / "moto_server"
    if not binary.exists():
        pytest.skip("moto_server is not installed (pip: moto[server], see requirements.txt)")
    port = free_port()
    log = tmp_path_factory.mktemp("moto-auth") / "moto.log"
    proc = subprocess.Popen([str(binary), "-H", "127.0.0.1", "-p", str(port)], stdout=open(log, "ab"),
                            stderr=subprocess.STDOUT, env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "4"})
    wait_port(port, 30, proc)
    endpoint = f"http://127.0.0.1:{port}"
    iam = boto3.client("iam", endpoint_url=endpoint, aws_access_key_id="setup", aws_secret_access_key="setup",
                       region_name="us-east-1")
    iam.create_user(UserName="seek-backup")
    key = iam.create_access_key(UserName="seek-backup")["AccessKey"]
    iam.put_user_policy(UserName="seek-backup", PolicyName="all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key["AccessKeyId"],
                      aws_secret_access_key=key["SecretAccessKey"], region_name="us-east-1")
    s3.create_bucket(Bucket="seek-auth-test")
    yield {"endpoint": endpoint, "key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
    stop_process(proc)


def _config(tmp_path: Path, age_keys: dict[str, str], endpoint: str, key: str, secret: str) -> Path:
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    path = tmp_path / "auth.json"
    path.write_text(json.dumps({"root": str(root), "bucket": "seek-auth-test", "prefix": "seek",
                                "endpoint_url": endpoint, "access_key_id": key, "secret_access_key": secret,
                                "addressing_style": "path", "recipients": [age_keys["recipient"]],
                                "connect_timeout": 2, "read_timeout": 5, "max_attempts": 1}))
    path.chmod(0o600)
    return path


def test_right_credentials_work(authed_moto, age_keys, tmp_path, filestore):
    cfg = _config(tmp_path, age_keys, authed_moto["endpoint"], authed_moto["key"], authed_moto["secret"])
    make_filestore_sets(tmp_path / "root", filestore, ["20261103T020000Z"])
    run_tool(cfg, "offsite")
    assert "20261103T020000Z" in run_tool(cfg, "list").stdout


@pytest.mark.parametrize("which", ["secret", "key"])
def test_wrong_credentials_exit_nonzero_with_clear_message(authed_moto, age_keys, tmp_path, filestore, which):
    key = authed_moto["key"] if which == "secret" else "AKIAWRONGWRONGWRONG0"
    cfg = _config(tmp_path, age_keys, authed_moto["endpoint"], key, "not-the-secret")
    make_filestore_sets(tmp_path / "root", filestore, ["20261104T020000Z"])
    for command in (["offsite"], ["verify"], ["list"], ["prune"]):
        proc = run_tool(cfg, *command, check=False)
        assert proc.returncode == 3, (command, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert lines[-1].startswith("seek-backup: error: S3 credentials rejected by"), proc.stderr
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "root" / "filestore" / "20261104T020000Z" / "uploaded.json").exists()


def test_unreachable_endpoint_exits_nonzero_with_clear_message(age_keys, tmp_path, filestore):
    port = free_port()  # nothing listens there
    cfg = _config(tmp_path, age_keys, f"http://127.0.0.1:{port}", "k", "s")
    make_filestore_sets(tmp_path / "root", filestore, ["20261105T020000Z"])
    started = time.monotonic()
    proc = run_tool(cfg, "offsite", check=False)
    assert proc.returncode == 3
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f"seek-backup: error: cannot reach S3 endpoint http://127.0.0.1:{port}")
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - started < 60


def test_missing_bucket_exits_nonzero(tool_config, moto, bucket):
    proc = run_tool(tool_config, "offsite", env={"SEEK_BACKUP_BUCKET": "no-such-bucket-here"}, check=False)
    assert proc.returncode == 3
    assert "bucket 'no-such-bucket-here' does not exist" in proc.stderr


def test_sse_and_storage_class_survive_the_metadata_copy(tool_config, s3, bucket, filestore):
    """Optional server-side encryption and storage class are set on both objects (also after CopyObject)."""
    root = Path(json.loads(tool_config.read_text())["root"])
    make_filestore_sets(root, filestore, ["20261106T020000Z"])
    run_tool(tool_config, "offsite", env={"SEEK_BACKUP_SSE": "AES256", "SEEK_BACKUP_STORAGE_CLASS": "STANDARD_IA"})
    for name in ("filestore.tar.gz.age", "manifest.json.age"):
        head = s3.head_object(Bucket=bucket, Key=f"seek/filestore/20261106T020000Z/{name}")
        assert head["ServerSideEncryption"] == "AES256"
        assert head["StorageClass"] == "STANDARD_IA"
        assert head["Metadata"]["ciphertext-sha256"]


def test_local_retention_without_bucket(tmp_path, filestore):
    """No bucket (lab): `prune --where local` applies the local policy, the newest set stays."""
    root = tmp_path / "root"
    make_filestore_sets(root, filestore, ["20261101T020000Z", "20261102T020000Z", "20261103T020000Z",
                                          "20261103T140000Z", "20261104T020000Z"])
    cfg = tmp_path / "lab.json"
    cfg.write_text(json.dumps({"root": str(root), "local_keep_daily": 2, "local_keep_weekly": 0}))
    run_tool(cfg, "prune", "--where", "local")
    assert sorted(p.name for p in (root / "filestore").iterdir()) == ["20261103T140000Z", "20261104T020000Z"]
    cfg.write_text(json.dumps({"root": str(root), "local_keep_daily": 0, "local_keep_weekly": 0}))
    run_tool(cfg, "prune", "--where", "local")
    assert [p.name for p in (root / "filestore").iterdir()] == ["20261104T020000Z"]


def test_offsite_stopped_by_sigterm_aborts_the_multipart_upload(tool_config, s3, bucket, tmp_path):
    """systemd stopping the unit mid-upload: exit non-zero, multipart upload aborted, nothing kept."""
    src = tmp_path / "big"
    src.mkdir()
    (src / "blob").write_bytes(os.urandom(120 * 1024 * 1024))
    root = Path(json.loads(tool_config.read_text())["root"])
    make_filestore_sets(root, src, ["20261107T020000Z"])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SEEK_BACKUP_"))}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2] / "tools")
    proc = subprocess.Popen([sys.executable, "-m", "seek_backup", "--config", str(tool_config), "offsite"],
                            env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not s3.list_multipart_uploads(Bucket=bucket).get("Uploads"):
        assert proc.poll() is None and time.monotonic() < deadline, "the upload never started"
        time.sleep(0.05)
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    assert not (root / "filestore" / "20261107T020000Z" / "uploaded.json").exists()
