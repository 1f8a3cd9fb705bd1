"""MySQL backups against a real MariaDB and a real S3 server (moto): the full round trip,
killed dumps, corrupted objects and the restore drill (the restore and drill are the scripts the
cluster runs: tests/backup_tools/shell_restore.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.backup_tools.conftest import FILES, run_script, run_tool
from tests.backup_tools.servers import MariaDB
from tests.backup_tools.shell_restore import fetch, restore_mysql, run_drill

SEED = r"""
CREATE TABLE users (id INT PRIMARY KEY AUTO_INCREMENT, login VARCHAR(64) NOT NULL, note TEXT,
                    created_at DATETIME NOT NULL) ENGINE=InnoDB;
CREATE TABLE content_blobs (id INT PRIMARY KEY AUTO_INCREMENT, data LONGBLOB, md5 CHAR(32),
                            user_id INT, FOREIGN KEY (user_id) REFERENCES users(id)) ENGINE=InnoDB;
CREATE TABLE sessions (id INT PRIMARY KEY AUTO_INCREMENT, session_id VARCHAR(255), data TEXT) ENGINE=InnoDB;
CREATE TABLE empty_things (id INT PRIMARY KEY) ENGINE=InnoDB;
INSERT INTO users (login, note, created_at) VALUES
  ('alice', 'it''s "quoted" (text),(with) commas; and a \\ backslash', '2026-01-01 10:00:00'),
  ('bob', 'line one\nline two;', '2026-01-02 11:00:00'),
  ('carol', NULL, '2026-01-03 12:00:00'),
  ('dąvid ü 中文', '🙂 utf8mb4', '2026-01-04 13:00:00');
INSERT INTO content_blobs (data, md5, user_id) VALUES (0x00FF2829273B0A5C, 'x', 1), (REPEAT('ab', 5000), 'y', 2), ('', NULL, NULL);
INSERT INTO sessions (session_id, data) VALUES ('s1', 'must not be backed up');
CREATE VIEW user_logins AS SELECT login FROM users;
"""


def seed(db: MariaDB, name: str, bulk_rows: int = 0) -> None:
    """Create ``name`` with SEEK-like tables (plus ``bulk_rows`` rows of filler)."""
    db.sql(f"DROP DATABASE IF EXISTS `{name}`; CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    db.sql(SEED, name)
    if bulk_rows:
        db.sql(f"""
            CREATE TABLE bulk (id INT PRIMARY KEY AUTO_INCREMENT, payload VARCHAR(255)) ENGINE=InnoDB;
            SET SESSION max_recursive_iterations = {bulk_rows + 1};
            INSERT INTO bulk (payload)
            WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {bulk_rows})
            SELECT CONCAT(SHA2(i, 256), MD5(i), '(x),(y)', SHA2(i * 7, 256)) FROM seq;
        """, name)


def dump(db: MariaDB, database: str, root: Path, **extra: str) -> Path:
    """Run mysql-backup.sh and return the set directory."""
    proc = run_script("mysql-backup.sh", {**db.env(database), "BACKUP_ROOT": str(root), **extra})
    sets = sorted((root / "mysql").iterdir())
    assert sets, proc.stderr
    return sets[-1]


def test_dump_encrypt_upload_verify_download_restore_same_checksums(mariadb, tool_config, s3, bucket, tmp_path):
    """dump -> encrypt -> upload -> verify -> download -> decrypt -> restore gives the same CHECKSUM TABLE."""
    seed(mariadb, "seek_rt", bulk_rows=3000)
    root = Path(json.loads(tool_config.read_text())["root"])
    set_dir = dump(mariadb, "seek_rt", root, SEEK_IMAGE="fairdom/seek:1.18.1")
    manifest = json.loads((set_dir / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["kind"] == "mysql"
    assert manifest["mysql"]["server_flavour"] == "mariadb"
    assert manifest["mysql"]["tables"] == {"sessions": 0, "bulk": 3000, "content_blobs": 3, "empty_things": 0,
                                           "users": 4}
    assert manifest["mysql"]["data_excluded"] == ["sessions"]

    run_tool(tool_config, "offsite")
    assert (set_dir / "uploaded.json").exists()
    keys = {o["Key"]: o for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    art_key = f"seek/mysql/{set_dir.name}/mysql.sql.zst.age"
    assert set(keys) == {art_key, f"seek/mysql/{set_dir.name}/manifest.json.age"}
    head = s3.head_object(Bucket=bucket, Key=art_key)
    assert head["Metadata"]["plaintext-sha256"] == manifest["artifact"]["sha256"]
    assert int(head["Metadata"]["ciphertext-size"]) == head["ContentLength"]
    # the bucket cannot read the backup: the object is age ciphertext, not zstd (the default)
    body = s3.get_object(Bucket=bucket, Key=art_key)["Body"].read()
    assert body.startswith(b"age-encryption.org/v1\n") and b"alice" not in body

    verify = run_tool(tool_config, "verify", "--deep", "--identity",
                      json.loads(tool_config.read_text())["age"]["identity_file"])
    assert "FAILED" not in verify.stdout and "ok (downloaded and hashed)" in verify.stdout

    fetched = run_tool(tool_config, "fetch", "--kind", "mysql", "--dest", str(tmp_path / "fetched")).stdout.strip()
    fetched_art = Path(fetched) / "mysql.sql.zst"
    assert fetched_art.read_bytes() == (set_dir / "mysql.sql.zst").read_bytes()

    before = mariadb.checksums("seek_rt")
    restored = restore_mysql(mariadb, Path(fetched), "seek_rt_restored")  # the restore Job's script
    assert restored.returncode == 0, restored.stdout + restored.stderr
    after = mariadb.checksums("seek_rt_restored")
    assert set(before) == {"users", "content_blobs", "sessions", "empty_things", "bulk"}
    assert {k: v for k, v in before.items() if k != "sessions"} == {k: v for k, v in after.items() if k != "sessions"}
    # sessions: structure restored, data deliberately not backed up
    assert mariadb.sql("SELECT COUNT(*) FROM sessions", "seek_rt_restored").strip() == "0"
    assert mariadb.sql("SELECT login FROM user_logins ORDER BY login", "seek_rt_restored").split("\n")[0] == "alice"

    # the drill Job's script on the fetched set: every table's count matches, 3007 rows in all
    drill = run_drill(mariadb, tmp_path / "fetched", tmp_path)
    assert drill.returncode == 0 and "drill: OK" in drill.stdout, drill.stdout + drill.stderr
    rows = [line.split() for line in drill.stdout.splitlines() if line.endswith(" ok")]
    assert sum(int(r[2]) for r in rows) == 3007 and len(rows) == 5, drill.stdout
    assert "seek_restore_drill" not in mariadb.sql("SHOW DATABASES")


def test_gzip_set_round_trip_through_local_restore(mariadb, tool_config, tmp_path):
    """BACKUP_COMPRESSION=gzip (the default is zstd) produces a set the restore helpers load as well."""
    seed(mariadb, "seek_zst")
    root = Path(json.loads(tool_config.read_text())["root"])
    set_dir = dump(mariadb, "seek_zst", root, BACKUP_COMPRESSION="gzip")
    assert (set_dir / "mysql.sql.gz").exists()
    assert json.loads((set_dir / "manifest.json").read_text())["artifact"]["compression"] == "gzip"
    restored = restore_mysql(mariadb, set_dir, "seek_zst_restored", RESTORE_ALLOW_SEEK_UPGRADE="true")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert mariadb.checksums("seek_zst")["users"] == mariadb.checksums("seek_zst_restored")["users"]


def _descendants(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc), deepest last."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found.append(child)
            todo.append(child)
    return found


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _start_slow_dump(db: MariaDB, root: Path) -> subprocess.Popen:
    """Start mysql-backup.sh with slow compression so it can be hit midway."""
    env = {**os.environ, **db.env("seek_kill"), "BACKUP_ROOT": str(root), "BACKUP_COMPRESSION_LEVEL": "9"}
    proc = subprocess.Popen(["bash", str(FILES / "mysql-backup.sh")], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        parts = list(root.glob("mysql/*/mysql.sql.*.part"))
        if parts and parts[0].stat().st_size > 0:
            return proc
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.02)
    raise AssertionError("the dump never started writing")


def _assert_nothing_left(root: Path, tool_config: Path, s3, bucket: str) -> None:
    assert not list(root.glob("mysql/*")), f"left behind: {list(root.rglob('*'))}"
    run_tool(tool_config, "offsite")
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")


@pytest.mark.parametrize("victim", ["mysqldump", "script"])
def test_dump_killed_midway_leaves_no_valid_artifact(mariadb, tool_config, s3, bucket, victim):
    """SIGKILL to mysqldump, or SIGTERM to the script (Job deadline): non-zero, nothing left, nothing uploaded."""
    seed(mariadb, "seek_kill", bulk_rows=150_000)
    root = Path(json.loads(tool_config.read_text())["root"])
    proc = _start_slow_dump(mariadb, root)
    if victim == "mysqldump":
        dumps = [p for p in _descendants(proc.pid) if _name(p) in ("mysqldump", "mariadb-dump")]
        assert dumps, "mysqldump is not running"
        os.kill(dumps[0], signal.SIGKILL)
    else:
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "FAILED" in err and "removed partial set" in err
    _assert_nothing_left(root, tool_config, s3, bucket)


def test_dump_without_trailer_fails(mariadb, tool_config, s3, bucket, tmp_path):
    """A dump that exits 0 but lacks the '-- Dump completed' trailer is a failure."""
    seed(mariadb, "seek_kill")
    fake = tmp_path / "truncating-mysqldump"
    fake.write_text("#!/bin/sh\ncase \"$*\" in *--version*) exec mysqldump --version;; esac\n"
                    "mysqldump \"$@\" | head -n 30\nexit 0\n")
    fake.chmod(0o755)
    root = Path(json.loads(tool_config.read_text())["root"])
    proc = run_script("mysql-backup.sh", {**mariadb.env("seek_kill"), "BACKUP_ROOT": str(root),
                                          "MYSQLDUMP": str(fake), "MYSQL_EXCLUDE_DATA": ""}, check=False)
    assert proc.returncode != 0
    assert "Dump completed" in proc.stderr
    _assert_nothing_left(root, tool_config, s3, bucket)


def test_wrong_password_fails_cleanly(mariadb, tmp_path):
    """Wrong MySQL credentials: non-zero, no set directory."""
    env = {**mariadb.env("seek_rt"), "MYSQL_PASSWORD": "wrong", "BACKUP_ROOT": str(tmp_path)}
    proc = run_script("mysql-backup.sh", env, check=False)
    assert proc.returncode != 0 and "cannot connect" in proc.stderr
    assert not list(tmp_path.glob("mysql/*"))


def test_corrupted_object_detected_by_verify_and_fetch(mariadb, tool_config, s3, bucket, tmp_path):
    """One changed byte in the uploaded object: verify (it reads the newest set), verify --deep and the
    fetch a restore or a drill of the off-site copy starts with all fail loudly."""
    seed(mariadb, "seek_corrupt", bulk_rows=2000)
    root = Path(json.loads(tool_config.read_text())["root"])
    set_dir = dump(mariadb, "seek_corrupt", root)
    run_tool(tool_config, "offsite")
    sound = fetch(tool_config, tmp_path / "sound")  # sound before the corruption, and it loads
    assert sound.returncode == 0, sound.stderr
    assert run_drill(mariadb, tmp_path / "sound", tmp_path).returncode == 0

    key = f"seek/mysql/{set_dir.name}/mysql.sql.zst.age"
    obj = s3.get_object(Bucket=bucket, Key=key)
    data = bytearray(obj["Body"].read())
    data[len(data) // 2] ^= 0x01
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(data), Metadata=obj["Metadata"])
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == len(data)

    routine = run_tool(tool_config, "verify", check=False)
    assert routine.returncode == 1, "same size and metadata: only reading the object sees it, and verify does"
    assert "ciphertext sha256" in routine.stdout
    deep = run_tool(tool_config, "verify", "--deep", check=False)
    assert deep.returncode == 1
    assert "FAILED" in deep.stdout and "ciphertext sha256" in deep.stdout
    fetched = fetch(tool_config, tmp_path / "corrupt")
    assert fetched.returncode == 1
    assert "seek-backup: error:" in fetched.stderr and "Traceback" not in fetched.stderr
    assert not list((tmp_path / "corrupt").rglob("manifest.json")), "no complete set to drill or restore"
    assert "seek_restore_drill" not in mariadb.sql("SHOW DATABASES")


def test_drill_fails_when_row_counts_differ(mariadb, tool_config, tmp_path):
    """A manifest whose counts do not match what loads makes the drill (the drill Job's script) fail."""
    seed(mariadb, "seek_counts")
    root = Path(json.loads(tool_config.read_text())["root"])
    set_dir = dump(mariadb, "seek_counts", root)
    man = json.loads((set_dir / "manifest.json").read_text())
    man["mysql"]["tables"]["users"] = 5
    (set_dir / "manifest.json").write_text(json.dumps(man))
    drill = run_drill(mariadb, root, tmp_path)
    assert drill.returncode == 1
    assert "RESTORE DRILL FAILED" in drill.stderr
    assert ["users", "5", "4", "MISMATCH"] in [line.split() for line in drill.stdout.splitlines()], drill.stdout


@pytest.mark.parametrize("awk", ["mawk", "gawk"])
def test_row_counts_exact_with_each_awk(mariadb, tmp_path, awk):
    """The dump-stream row counter gives exact counts with mawk (Debian) and gawk (mysql:8.4 image)."""
    import shutil

    binary = shutil.which(awk)
    if not binary:
        pytest.skip(f"{awk} is not installed (Debian package {awk})")
    seed(mariadb, "seek_awk", bulk_rows=20_000)
    root = tmp_path / "root"
    set_dir = dump(mariadb, "seek_awk", root, AWK=binary)
    tables = json.loads((set_dir / "manifest.json").read_text())["mysql"]["tables"]
    truth = {t: int(mariadb.sql(f"SELECT COUNT(*) FROM `{t}`", "seek_awk")) for t in tables}
    truth["sessions"] = 0  # data deliberately excluded
    assert tables == truth and tables["bulk"] == 20_000


@pytest.mark.parametrize("client", ["mariadb", "mysql"])
def test_mysql_only_flags_behind_flavour_check(mariadb, tmp_path, client):
    """--set-gtid-purged/--column-statistics reach mysqldump only when the client is MySQL's.

    MySQL 8.4 is not packaged in Debian: a wrapper reports a MySQL version, records its argv and
    drops the two MySQL-only flags before running MariaDB's mysqldump.
    """
    seed(mariadb, "seek_flags")
    argv_log = tmp_path / "argv"
    version = ("mysqldump  Ver 8.4.7 for Linux on x86_64 (MySQL Community Server - GPL)" if client == "mysql"
               else "mysqldump  Ver 10.19 Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)")
    fake = tmp_path / "mysqldump"
    fake.write_text(f"""#!/bin/bash
case "$*" in *--version*) echo '{version}'; exit 0;; esac
echo "$*" >> {argv_log}
args=()
for a in "$@"; do case "$a" in --set-gtid-purged=*|--column-statistics=*) ;; *) args+=("$a");; esac; done
exec mysqldump "${{args[@]}}"
""")
    fake.chmod(0o755)
    set_dir = dump(mariadb, "seek_flags", tmp_path / "root", MYSQLDUMP=str(fake))
    calls = argv_log.read_text().splitlines()
    assert len(calls) == 2  # structure-only dump of sessions, then the data dump
    for call in calls:
        assert "--single-transaction" in call and "--no-tablespaces" in call
        if client == "mysql":
            assert "--set-gtid-purged=OFF" in call and "--column-statistics=0" in call
        else:
            assert "--set-gtid-purged" not in call and "--column-statistics" not in call
    assert "--ignore-table=seek_flags.sessions" in calls[1] and "--no-data" in calls[0]
    assert json.loads((set_dir / "manifest.json").read_text())["mysql"]["server_flavour"] == "mariadb"
