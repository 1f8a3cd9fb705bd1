"""The off-site copy starts as soon as a set is complete (issue 11), and the faster dump still fails
loudly: the producer scripts queue a set in <root>/.offsite-queue only after its manifest, the
off-site pass empties the queue first and runs rounds while sets keep arriving, and a full disk
or a failed pass leaves nothing valid-looking and nothing queued. Real MariaDB, moto, tmpfs."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.backup_tools.conftest import FILES, run_script, run_tool
from tests.backup_tools.test_mysql_roundtrip import dump, seed

QUEUE = ".offsite-queue"


def queued(root: Path) -> list[str]:
    """Names in the off-site queue of ``root``."""
    queue = root / QUEUE
    return sorted(p.name for p in queue.iterdir()) if queue.is_dir() else []


def test_complete_set_is_queued_and_the_pass_empties_the_queue(mariadb, tool_config, s3, bucket):
    """A dump queues mysql-<stamp> after its manifest; one offsite pass uploads it and empties the queue."""
    seed(mariadb, "seek_q", bulk_rows=500)
    root = Path(json.loads(tool_config.read_text())["root"])
    set_dir = dump(mariadb, "seek_q", root)
    assert queued(root) == [f"mysql-{set_dir.name}"]
    # the entry is written after the manifest: the manifest is not newer than the entry
    entry = root / QUEUE / f"mysql-{set_dir.name}"
    assert (set_dir / "manifest.json").stat().st_mtime_ns <= entry.stat().st_mtime_ns
    result = run_tool(tool_config, "offsite", "--no-prune")
    assert f"queued: mysql-{set_dir.name}" in result.stderr
    assert queued(root) == [] and (set_dir / "uploaded.json").exists()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert f"seek/mysql/{set_dir.name}/manifest.json.age" in keys


def test_queue_entry_can_be_turned_off_and_a_bad_queue_only_warns(mariadb, tmp_path):
    """BACKUP_OFFSITE_QUEUE='' writes no entry; an unwritable queue path warns, the set stays valid."""
    seed(mariadb, "seek_q2")
    off = tmp_path / "off"
    dump(mariadb, "seek_q2", off, BACKUP_OFFSITE_QUEUE="")
    assert not (off / QUEUE).exists()
    bad = tmp_path / "bad"
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    proc = run_script("mysql-backup.sh", {**mariadb.env("seek_q2"), "BACKUP_ROOT": str(bad),
                                          "BACKUP_OFFSITE_QUEUE": str(blocker / "queue")})
    assert "warning: cannot write" in proc.stderr
    assert len(list(bad.glob("mysql/*/manifest.json"))) == 1


def test_failed_pass_still_empties_the_queue(tmp_path, mariadb, age_keys):
    """An unreachable endpoint: exit 3, one line, and the queue is empty (the path unit must not
    restart the pass at once; the timer retries), the set stays local and not uploaded."""
    seed(mariadb, "seek_q3")
    root = tmp_path / "backups"
    set_dir = dump(mariadb, "seek_q3", root)
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"root": str(root), "bucket": "b", "endpoint_url": "http://127.0.0.1:9",
                               "access_key_id": "k", "secret_access_key": "s", "connect_timeout": 1,
                               "max_attempts": 1, "recipients": [age_keys["recipient"]]}))
    cfg.chmod(0o600)
    proc = run_tool(cfg, "offsite", "--no-prune", check=False)
    assert proc.returncode == 3 and proc.stderr.count("seek-backup: error:") == 1
    assert queued(root) == [] and not (set_dir / "uploaded.json").exists()


def test_set_queued_during_a_round_goes_in_the_same_pass(mariadb, tool_config, s3, bucket, tmp_path):
    """A set completed while the pass uploads another is shipped by a second round of the same pass."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
    from seek_backup import cli, config, layout

    seed(mariadb, "seek_q4", bulk_rows=200)
    root = Path(json.loads(tool_config.read_text())["root"])
    first = dump(mariadb, "seek_q4", root, BACKUP_STAMP="20261201T010000Z")
    staged = tmp_path / "staged"
    second = dump(mariadb, "seek_q4", staged, BACKUP_STAMP="20261201T020000Z", BACKUP_OFFSITE_QUEUE="")
    real_mark = layout.LocalSet.mark_uploaded
    calls: list[str] = []

    def mark_and_publish(self: layout.LocalSet, record: dict) -> None:
        """After the first upload a producer finishes the next set and queues it."""
        real_mark(self, record)
        calls.append(self.stamp)
        if len(calls) == 1:
            shutil.move(str(second), str(root / "mysql" / second.name))
            (root / QUEUE / f"mysql-{second.name}").touch()

    layout.LocalSet.mark_uploaded = mark_and_publish  # type: ignore[method-assign]
    try:
        cfg = config.load(str(tool_config))
        assert cli.cmd_offsite(cfg, argparse.Namespace(kind=None, no_prune=True)) == 0
    finally:
        layout.LocalSet.mark_uploaded = real_mark  # type: ignore[method-assign]
    assert calls == [first.name, second.name]
    assert queued(root) == []
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert {f"seek/mysql/{s}/manifest.json.age" for s in calls} <= set(keys)


@pytest.fixture()
def small_disk(tmp_path: Path):
    """A 2 MiB tmpfs: the backup volume runs full in the middle of a dump (root only)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root (the full-disk test runs as root in CI)")
    mnt = tmp_path / "full"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


def test_full_disk_fails_loudly_and_leaves_nothing(mariadb, small_disk, tool_config, s3, bucket):
    """The volume fills up mid-dump: non-zero, one ERROR naming the write, no set, nothing queued,
    and the off-site pass uploads nothing."""
    seed(mariadb, "seek_full", bulk_rows=60_000)  # ~10 MB of dump, ~4 MB compressed at level 1
    proc = subprocess.run(["bash", str(FILES / "mysql-backup.sh")], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **mariadb.env("seek_full"), "BACKUP_ROOT": str(small_disk),
                               "BACKUP_COMPRESSION": "zstd", "BACKUP_COMPRESSION_LEVEL": "1",
                               "BACKUP_OFFSITE_QUEUE": str(small_disk / QUEUE)})
    assert proc.returncode != 0, proc.stderr
    assert "ERROR: writing" in proc.stderr and "removed partial set" in proc.stderr, proc.stderr
    assert not list(small_disk.glob("mysql/*")), list(small_disk.rglob("*"))
    assert queued(small_disk) == []
    cfg = json.loads(tool_config.read_text())
    cfg["root"] = str(small_disk)
    path = Path(str(tool_config) + ".full.json")
    path.write_text(json.dumps(cfg))
    path.chmod(0o600)
    run_tool(path, "offsite", "--no-prune")
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0

