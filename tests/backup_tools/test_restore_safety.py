"""Restores that cannot destroy data (issue 9, items 7, 9, 10, 11), against a real MariaDB and a
real S3 server (moto): a corrupted object or a backup of another SEEK version leaves the existing
database exactly as it was and fails with one line that carries no row data; routine `verify`
reads the objects. The restore is the one restore.yml runs: `seek_backup fetch` (role backup_fetch)
proves an off-site set whole into the backup volume, the restore Job's restore-mysql.sh (role
backup_restore) proves its sha256 again before it drops anything."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pyrage
from pyrage import x25519

from tests.backup_tools.conftest import run_tool
from tests.backup_tools.servers import MariaDB
from tests.backup_tools.shell_restore import fetch_and_restore, restore_mysql
from tests.backup_tools.test_mysql_roundtrip import dump, seed

IMAGE = "fairdom/seek:1.18.1"
SECRET = "alice"  # row data of the seed (users.login): must never appear in an error


def _target(db: MariaDB, name: str) -> dict[str, str]:
    """An existing SEEK database with its own rows; returns its table checksums."""
    db.sql(f"DROP DATABASE IF EXISTS `{name}`; CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    db.sql("CREATE TABLE users (id INT PRIMARY KEY, login VARCHAR(64));"
           "CREATE TABLE projects (id INT PRIMARY KEY, title TEXT);"
           "INSERT INTO users VALUES (1, 'existing-admin'), (2, 'existing-user');"
           "INSERT INTO projects VALUES (7, 'live project');", name)
    return db.checksums(name)


def _uploaded_set(db: MariaDB, tool_config: Path, name: str, image: str = IMAGE) -> Path:
    seed(db, name, bulk_rows=2000)
    root = Path(json.loads(tool_config.read_text())["root"])
    set_dir = dump(db, name, root, SEEK_IMAGE=image, BACKUP_COMPRESSION="gzip")
    run_tool(tool_config, "offsite")
    return set_dir


def _one_line_without_rows(stderr: str, prefix: str = "seek-backup: error: ") -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(prefix) and "Traceback" not in stderr
    for row_data in (SECRET, "\"quoted\"", "(with)", "(x),(y)", "INSERT INTO"):
        assert row_data not in stderr, stderr
    return lines[0]


def _no_restore_after(fetched, restored, dest: Path) -> None:  # type: ignore[no-untyped-def]
    """The fetch failed, so restore.yml stops before the restore Job; no complete set was left
    behind that a later restore could pick up (no manifest.json, no artifact)."""
    assert fetched.returncode == 1 and restored is None
    assert not list(dest.rglob("manifest.json")) and not list(dest.rglob("mysql.sql.*"))


def test_manifest_records_the_seek_image(mariadb, tmp_path):
    """Every MySQL manifest says which SEEK image its dump belongs to (null when made by hand)."""
    seed(mariadb, "seek_img")
    with_image = dump(mariadb, "seek_img", tmp_path / "a", SEEK_IMAGE=IMAGE)
    assert json.loads((with_image / "manifest.json").read_text())["seek_image"] == IMAGE
    without = dump(mariadb, "seek_img", tmp_path / "b")
    assert json.loads((without / "manifest.json").read_text())["seek_image"] is None


def test_flipped_ciphertext_byte_leaves_the_database_untouched(mariadb, tool_config, s3, bucket):
    """One byte flipped in the middle of the stored ciphertext: the fetch refuses it, so the restore never
    drops anything; the existing database keeps every table and checksum; one line without row data."""
    set_dir = _uploaded_set(mariadb, tool_config, "seek_flip")
    before = _target(mariadb, "seek_live")
    key = f"seek/mysql/{set_dir.name}/mysql.sql.gz.age"
    obj = s3.get_object(Bucket=bucket, Key=key)
    data = bytearray(obj["Body"].read())
    data[len(data) // 2] ^= 0x01
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(data), Metadata=obj["Metadata"])

    dest = Path(json.loads(tool_config.read_text())["root"]) / "restore"
    proc, restored = fetch_and_restore(mariadb, tool_config, dest, "seek_live")
    _no_restore_after(proc, restored, dest)
    line = _one_line_without_rows(proc.stderr)
    assert "ciphertext sha256" in line and "nothing was changed" in line
    assert mariadb.checksums("seek_live") == before

    # routine verify (the timer's, no --deep) reads the newest object and sees the corruption
    # although its size and metadata are intact
    verify = run_tool(tool_config, "verify", check=False)
    assert verify.returncode == 1 and "ciphertext sha256" in verify.stdout
    assert "FAILED" in verify.stdout


def test_valid_ciphertext_of_wrong_plaintext_leaves_the_database_untouched(mariadb, tool_config, s3, bucket,
                                                                          age_keys):
    """A well-formed age object (metadata consistent with it) whose plaintext is not the dump the
    manifest describes: refused on the plaintext sha256 before the database is touched."""
    set_dir = _uploaded_set(mariadb, tool_config, "seek_swap")
    before = _target(mariadb, "seek_live2")
    key = f"seek/mysql/{set_dir.name}/mysql.sql.gz.age"
    obj = s3.get_object(Bucket=bucket, Key=key)
    sql = gzip.decompress((set_dir / "mysql.sql.gz").read_bytes())
    assert SECRET.encode() in sql
    forged = gzip.compress(sql.replace(b"'alice'", b"'mallory'"))
    recipient = x25519.Recipient.from_str(age_keys["recipient"])
    cipher = pyrage.encrypt(forged, [recipient])
    meta = dict(obj["Metadata"], **{"ciphertext-sha256": hashlib.sha256(cipher).hexdigest(),
                                    "ciphertext-size": str(len(cipher))})
    s3.put_object(Bucket=bucket, Key=key, Body=cipher, Metadata=meta)

    dest = Path(json.loads(tool_config.read_text())["root"]) / "restore"
    proc, restored = fetch_and_restore(mariadb, tool_config, dest, "seek_live2")
    _no_restore_after(proc, restored, dest)
    line = _one_line_without_rows(proc.stderr)
    assert "plaintext sha256" in line
    assert mariadb.checksums("seek_live2") == before
    assert "mallory" not in mariadb.sql("SHOW DATABASES")


def test_restore_refuses_another_seek_version_unless_told_to_upgrade(mariadb, tool_config):
    """A dump of 1.17.4 under 1.18.1 (fetched from the bucket): refused (database untouched); accepted
    with RESTORE_ALLOW_SEEK_UPGRADE (restore_allow_seek_upgrade), which says the upgrade must follow. A
    dump of a newer SEEK is refused even then; without the deployed image nothing is restored."""
    _uploaded_set(mariadb, tool_config, "seek_old", image="fairdom/seek:1.17.4")
    before = _target(mariadb, "seek_live3")
    dest = Path(json.loads(tool_config.read_text())["root"]) / "restore"
    fetched, refused = fetch_and_restore(mariadb, tool_config, dest, "seek_live3")
    assert fetched.returncode == 0 and refused is not None, fetched.stderr
    assert refused.returncode == 1
    line = _one_line_without_rows(refused.stderr, "RESTORE FAILED: ")
    assert "fairdom/seek:1.17.4" in line and "restore_allow_seek_upgrade=true" in line
    assert mariadb.checksums("seek_live3") == before
    set_dir = Path(fetched.stdout.strip().splitlines()[-1])

    newer = restore_mysql(mariadb, set_dir, "seek_live3", SEEK_IMAGE="fairdom/seek:1.16.2",
                          RESTORE_ALLOW_SEEK_UPGRADE="true")
    assert newer.returncode == 1 and "cannot downgrade" in newer.stderr
    assert mariadb.checksums("seek_live3") == before

    missing = restore_mysql(mariadb, set_dir, "seek_live3", SEEK_IMAGE=None)  # type: ignore[arg-type]
    assert missing.returncode != 0 and "SEEK_IMAGE" in missing.stderr
    assert mariadb.checksums("seek_live3") == before

    accepted = restore_mysql(mariadb, set_dir, "seek_live3", RESTORE_ALLOW_SEEK_UPGRADE="true")
    assert accepted.returncode == 0, accepted.stderr
    assert "upgrade must run after this restore" in accepted.stdout and "rake seek:upgrade" in accepted.stdout
    restored, source = mariadb.checksums("seek_live3"), mariadb.checksums("seek_old")
    assert set(restored) == set(source)  # the old tables (projects) are gone, the dump's are there
    assert all(restored[t] == source[t] for t in source if t != "sessions")


def test_load_error_is_one_line_without_row_data(mariadb, tool_config):
    """A set whose dump is intact (sha256 matches) but does not load: mysql's error quotes the
    statement; the restore Job prints one line cut before the quote."""
    seed(mariadb, "seek_bad")
    root = Path(json.loads(tool_config.read_text())["root"])
    set_dir = dump(mariadb, "seek_bad", root, SEEK_IMAGE=IMAGE, BACKUP_COMPRESSION="gzip")
    sql = gzip.decompress((set_dir / "mysql.sql.gz").read_bytes())
    sql = sql.replace(b"INSERT INTO `users` VALUES", b"INSERT INTO `users` VALUEZ", 1)
    art = gzip.compress(sql)
    (set_dir / "mysql.sql.gz").write_bytes(art)
    man = json.loads((set_dir / "manifest.json").read_text())
    man["artifact"].update(sha256=hashlib.sha256(art).hexdigest(), size=len(art))
    (set_dir / "manifest.json").write_text(json.dumps(man))

    proc = restore_mysql(mariadb, set_dir, "seek_bad_restored")
    assert proc.returncode == 1
    line = _one_line_without_rows(proc.stderr, "RESTORE FAILED: ")
    assert "ERROR 1064" in line and "quoted content omitted" in line


def test_verify_reads_the_newest_set_and_remembers_the_read(mariadb, tool_config):
    """Routine verify downloads and hashes the newest object of each kind once; a second run within
    verify_max_age_hours trusts that read (same ETag and digest) and says when it happened."""
    _uploaded_set(mariadb, tool_config, "seek_verify")
    root = Path(json.loads(tool_config.read_text())["root"])
    first = run_tool(tool_config, "verify")
    state = json.loads((root / ".seek-backup-verified.json").read_text())
    assert len(state) == 1 and next(iter(state.values()))["ciphertext_sha256"]
    assert "read and hashed" in first.stdout or "downloaded and hashed" in first.stdout
    second = run_tool(tool_config, "verify")
    assert "read and hashed" in second.stdout
    summary = json.loads(run_tool(tool_config, "--quiet", "summary", "--json", check=False).stdout)
    assert "off-site verified" in next(r for r in summary if r["kind"] == "mysql")["status"]
