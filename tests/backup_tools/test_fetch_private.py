"""`seek_backup fetch` writes a decrypted set only its owner can read, whatever the umask, and a
fetch that fails leaves nothing it created (issue 20, item 5). The CLI runs in a subprocess with
its umask set (as root's usual 022, and others) against the real S3 server (moto) and real sets
made by filestore-backup.sh."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.backup_tools.conftest import REPO, run_script, run_tool

STAMPS = ["20261101T020000Z", "20261102T020000Z"]


def make_sets(tool_config: Path, tmp_path: Path, stamps: list[str]) -> Path:
    """Filestore sets with fixed stamps on the backup volume, uploaded; returns the backup root."""
    src = tmp_path / "filestore"
    (src / "assets").mkdir(parents=True, exist_ok=True)
    (src / "secret_key_base").write_text("0123456789abcdef" * 8)
    (src / "assets" / "data.bin").write_bytes(os.urandom(300_000))
    root = Path(json.loads(tool_config.read_text())["root"])
    for stamp in stamps:
        run_script("filestore-backup.sh", {"FILESTORE_DIR": str(src), "BACKUP_ROOT": str(root),
                                           "BACKUP_STAMP": stamp})
    run_tool(tool_config, "offsite", "--no-prune")
    return root


def fetch(tool_config: Path, dest: Path, umask: int, stamp: str = "latest") -> subprocess.CompletedProcess:
    """`python -m seek_backup fetch` as backup_fetch runs it, in a child whose umask is ``umask``."""
    identity = json.loads(tool_config.read_text())["age"]["identity_file"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SEEK_BACKUP_"))}
    env["PYTHONPATH"] = str(REPO / "tools")
    return subprocess.run([sys.executable, "-m", "seek_backup", "--config", str(tool_config), "--quiet", "fetch",
                           "--kind", "filestore", "--stamp", stamp, "--identity", identity, "--dest", str(dest)],
                          env=env, capture_output=True, text=True, timeout=600, check=False, umask=umask)


def modes(base: Path) -> dict[str, int]:
    """Permission bits of ``base`` and of everything under it, by path relative to ``base``."""
    tree = {".": stat.S_IMODE(base.lstat().st_mode)}
    tree.update({str(p.relative_to(base)): stat.S_IMODE(p.lstat().st_mode) for p in base.rglob("*")})
    return tree


def corrupt(s3, bucket: str, stamp: str, how: str) -> None:  # type: ignore[no-untyped-def]
    """Damage the stored artifact of a set, its metadata kept (same recorded size and digests)."""
    key = f"seek/filestore/{stamp}/filestore.tar.gz.age"
    obj = s3.get_object(Bucket=bucket, Key=key)
    data = bytearray(obj["Body"].read())
    if how == "flipped-byte":
        data[len(data) // 2] ^= 0x01
    else:
        data = data[: len(data) // 2]
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(data), Metadata=obj["Metadata"])


@pytest.mark.parametrize("umask", [0o022, 0o000, 0o077], ids=["022", "000", "077"])
def test_fetched_set_is_0600_in_0700_whatever_the_umask(tool_config, tmp_path, umask):
    """Every directory fetch creates is 0700 and every file 0600, under root's usual umask 022 and
    others; the set is whole (the artifact's sha256 is the manifest's) and nothing else is left."""
    root = make_sets(tool_config, tmp_path, STAMPS[:1])
    dest = tmp_path / "restore"
    proc = fetch(tool_config, dest, umask)
    assert proc.returncode == 0, proc.stderr
    set_dir = dest / "filestore" / STAMPS[0]
    assert proc.stdout.strip() == str(set_dir)
    assert modes(dest) == {".": 0o700, "filestore": 0o700, f"filestore/{STAMPS[0]}": 0o700,
                           f"filestore/{STAMPS[0]}/filestore.tar.gz": 0o600,
                           f"filestore/{STAMPS[0]}/manifest.json": 0o600}, proc.stderr
    man = json.loads((set_dir / "manifest.json").read_text())
    assert man == json.loads((root / "filestore" / STAMPS[0] / "manifest.json").read_text())
    assert hashlib.sha256((set_dir / "filestore.tar.gz").read_bytes()).hexdigest() == man["artifact"]["sha256"]


def test_existing_directories_keep_their_mode_the_set_directory_becomes_0700(tool_config, tmp_path):
    """backup_fetch creates the restore directory itself (0770): fetch leaves it and an existing
    kind directory as they are; a set directory that was already there (a second fetch of the same
    set) is made 0700, its files 0600."""
    make_sets(tool_config, tmp_path, STAMPS[:1])
    dest = tmp_path / "restore"
    (dest / "filestore" / STAMPS[0]).mkdir(parents=True)
    os.chmod(dest, 0o770)
    os.chmod(dest / "filestore", 0o750)
    os.chmod(dest / "filestore" / STAMPS[0], 0o755)
    proc = fetch(tool_config, dest, 0o022)
    assert proc.returncode == 0, proc.stderr
    assert modes(dest) == {".": 0o770, "filestore": 0o750, f"filestore/{STAMPS[0]}": 0o700,
                           f"filestore/{STAMPS[0]}/filestore.tar.gz": 0o600,
                           f"filestore/{STAMPS[0]}/manifest.json": 0o600}


@pytest.mark.parametrize("how", ["flipped-byte", "truncated"])
def test_failed_fetch_leaves_no_directory_behind(tool_config, s3, bucket, tmp_path, how):
    """The object is damaged in the bucket: the fetch fails midway (after it made the set's
    directories and downloaded the ciphertext), with one line, and removes everything it created:
    into a new destination nothing at all remains; into one that holds an earlier fetched set,
    that set, the kind directory and the destination's mode stay as they were."""
    make_sets(tool_config, tmp_path, STAMPS)
    corrupt(s3, bucket, STAMPS[1], how)

    fresh = tmp_path / "fresh"
    proc = fetch(tool_config, fresh, 0o022)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("seek-backup: error:") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "ciphertext sha256" in proc.stderr
    assert not os.path.lexists(fresh), sorted(modes(fresh))

    dest = tmp_path / "restore"
    dest.mkdir(mode=0o770)
    os.chmod(dest, 0o770)
    earlier = fetch(tool_config, dest, 0o022, stamp=STAMPS[0])
    assert earlier.returncode == 0, earlier.stderr
    before = modes(dest)
    digest = hashlib.sha256((dest / "filestore" / STAMPS[0] / "filestore.tar.gz").read_bytes()).hexdigest()
    proc = fetch(tool_config, dest, 0o022)
    assert proc.returncode == 1, proc.stderr
    assert modes(dest) == before
    assert hashlib.sha256((dest / "filestore" / STAMPS[0] / "filestore.tar.gz").read_bytes()).hexdigest() == digest


def test_fetch_failing_after_the_artifact_removes_only_its_own_files(tool_config, tmp_path):
    """The manifest cannot be written (its temporary name is taken by a directory that is not the
    fetch's): the decrypted artifact it had put in place is removed, the directory and what it held
    before stay, its mode unchanged; the error is one line."""
    make_sets(tool_config, tmp_path, STAMPS[:1])
    set_dir = tmp_path / "restore" / "filestore" / STAMPS[0]
    (set_dir / "manifest.json.tmp").mkdir(parents=True)
    (set_dir / "manifest.json.tmp" / "keep").write_text("not the fetch's\n")
    (set_dir / "notes.txt").write_text("an operator's file\n")
    os.chmod(set_dir, 0o750)
    before = modes(tmp_path / "restore")
    proc = fetch(tool_config, tmp_path / "restore", 0o022)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("seek-backup: error: fetch into") and "Traceback" not in proc.stderr, proc.stderr
    assert modes(tmp_path / "restore") == before
    assert (set_dir / "manifest.json.tmp" / "keep").read_text() == "not the fetch's\n"
