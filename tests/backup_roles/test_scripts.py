"""The restore drill and the restore scripts the ConfigMap ships, run for real: MariaDB from
Debian stands in for MySQL 8.4 (not packaged here), the sets come from the producer scripts."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.backup_tools.servers import MariaDB
from tests.backup_roles.helpers import FILES, REPO, render

DB = "seek_drill_src"
RESTORE_FILES = REPO / "roles" / "backup_restore" / "files"


@pytest.fixture(scope="module")
def scripts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The drill exactly as the rendered backups ConfigMap carries it, and the restore scripts of the
    backup_restore role (its ConfigMap ships these files byte for byte: test_controlplane)."""
    tmp = tmp_path_factory.mktemp("scripts")
    objects = render(tmp, {})
    data = next(o for o in objects.values() if o["kind"] == "ConfigMap")["data"]
    path = tmp / "backup-drill.sh"
    path.write_text(data["backup-drill.sh"] + "\n")
    path.chmod(0o755)
    out = {"backup-drill.sh": path}
    for name in ("restore-mysql.sh", "restore-filestore.sh"):
        out[name] = RESTORE_FILES / name
    return out


@pytest.fixture(scope="module")
def source_db(mariadb_server: MariaDB) -> MariaDB:
    """A small SEEK-like database: tables with rows, an empty one, and a sessions table."""
    mariadb_server.sql(f"DROP DATABASE IF EXISTS {DB}; CREATE DATABASE {DB} CHARACTER SET utf8mb4;")
    mariadb_server.sql(
        "CREATE TABLE people (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(64), bio TEXT);"
        "CREATE TABLE projects (id INT PRIMARY KEY, title VARCHAR(255));"
        "CREATE TABLE empty_things (id INT PRIMARY KEY);"
        "CREATE TABLE sessions (id INT PRIMARY KEY, data TEXT);"
        "INSERT INTO people (name, bio) VALUES ('Ada', 'it''s (tricky), (really)'), ('Bob', NULL),"
        " ('Cé', 'ünïcode; \\\\ (x)');"
        "INSERT INTO projects VALUES (1, 'one'), (2, 'two (2)');"
        "INSERT INTO sessions VALUES (1, 'secret session');", DB)
    return mariadb_server


IMAGE = "fairdom/seek:1.18.1"


def dump(db: MariaDB, root: Path, stamp: str | None = None, image: str = IMAGE) -> Path:
    """Run the producer script: one complete MySQL set under ``root``; return its directory."""
    env = {**os.environ, **db.env(DB), "BACKUP_ROOT": str(root), "SEEK_IMAGE": image, "BACKUP_COMPRESSION": "gzip"}
    env["MYSQL_USER"], env["MYSQL_PASSWORD"] = db.user, db.password
    if stamp:
        env["BACKUP_STAMP"] = stamp
    result = subprocess.run(["bash", str(FILES / "mysql-backup.sh")], env=env, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr
    sets = sorted((root / "mysql").iterdir())
    return sets[-1] if not stamp else root / "mysql" / stamp


def drill(script: Path, db: MariaDB, root: Path, **extra: str) -> subprocess.CompletedProcess:
    """Run the drill against the test server's socket, as the drill Job does against its sidecar."""
    env = {**os.environ, "BACKUP_ROOT": str(root), "DRILL_SOCKET": str(db.socket), **extra}
    return subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, check=False)


def stamp_ago(hours: float) -> str:
    """A backup stamp ``hours`` ago."""
    return (datetime.now(timezone.utc) - timedelta(hours=hours)).strftime("%Y%m%dT%H%M%SZ")


def test_drill_loads_the_newest_dump_and_matches_row_counts(scripts, source_db, tmp_path) -> None:
    """The newest complete set loads; every table's count matches; an incomplete newer set is ignored."""
    dump(source_db, tmp_path, stamp_ago(2))
    incomplete = tmp_path / "mysql" / stamp_ago(0.5)
    incomplete.mkdir()
    (incomplete / "mysql.sql.gz.part").write_bytes(b"partial")
    result = drill(scripts["backup-drill.sh"], source_db, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "drill: OK" in result.stdout
    assert incomplete.name not in result.stdout
    for table, rows in (("people", 3), ("projects", 2), ("empty_things", 0), ("sessions", 0)):
        assert any(line.split()[:4] == [table, str(rows), str(rows), "ok"] for line in result.stdout.splitlines()), \
            f"{table}: {result.stdout}"


def test_drill_fails_loudly_on_a_row_count_mismatch(scripts, source_db, tmp_path) -> None:
    """A manifest that does not describe the dump fails the drill."""
    set_dir = dump(source_db, tmp_path, stamp_ago(1))
    manifest = json.loads((set_dir / "manifest.json").read_text())
    manifest["mysql"]["tables"]["people"] = 4
    (set_dir / "manifest.json").write_text(json.dumps(manifest))
    result = drill(scripts["backup-drill.sh"], source_db, tmp_path)
    assert result.returncode != 0
    assert "RESTORE DRILL FAILED" in result.stderr and "MISMATCH" in result.stdout


def test_drill_detects_a_corrupted_artifact(scripts, source_db, tmp_path) -> None:
    """One changed byte in the dump is caught by the sha256 check before loading."""
    set_dir = dump(source_db, tmp_path, stamp_ago(1))
    artifact = set_dir / "mysql.sql.gz"
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0x01
    artifact.write_bytes(bytes(data))
    result = drill(scripts["backup-drill.sh"], source_db, tmp_path)
    assert result.returncode != 0
    assert "sha256" in result.stderr and "RESTORE DRILL FAILED" in result.stderr


def test_drill_fails_when_backups_have_stopped(scripts, source_db, tmp_path) -> None:
    """A newest set older than DRILL_MAX_AGE_HOURS fails, and so does no set at all."""
    dump(source_db, tmp_path, stamp_ago(50))
    stale = drill(scripts["backup-drill.sh"], source_db, tmp_path, DRILL_MAX_AGE_HOURS="36")
    assert stale.returncode != 0 and "backups have stopped" in stale.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = drill(scripts["backup-drill.sh"], source_db, empty)
    assert missing.returncode != 0 and "no complete MySQL backup set" in missing.stderr


ROOT_PASSWORD = "restore-root-pw"


def restore_mysql(script: Path, db: MariaDB, set_dir: Path, target: str, **extra: str) -> subprocess.CompletedProcess:
    """Run restore-mysql.sh over TCP as root, as the restore Job does (SEEK_IMAGE: the deployed one)."""
    db.sql(f"CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '{ROOT_PASSWORD}';"
           f"ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY '{ROOT_PASSWORD}';"
           "GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;")
    env = {**os.environ, "RESTORE_SET_DIR": str(set_dir), "MYSQL_HOST": "127.0.0.1", "MYSQL_PORT": str(db.port),
           "MYSQL_DATABASE": target, "MYSQL_ROOT_PASSWORD": ROOT_PASSWORD, "SEEK_IMAGE": IMAGE, **extra}
    return subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, check=False)


def live_target(db: MariaDB, name: str) -> dict[str, str]:
    """An existing database with rows of its own; returns its table checksums."""
    db.sql(f"DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name};"
           f"CREATE TABLE {name}.users (id INT PRIMARY KEY, login VARCHAR(64));"
           f"INSERT INTO {name}.users VALUES (1, 'existing-admin');")
    return db.checksums(name)


def one_failure_line(result: subprocess.CompletedProcess) -> str:
    """The single RESTORE FAILED line of stderr; it never carries row data of the dump."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1, result.stdout + result.stderr
    assert lines[0].startswith("RESTORE FAILED: ")
    for row_data in ("Ada", "tricky", "secret session", "VALUES"):
        assert row_data not in lines[0], lines[0]
    return lines[0]


def test_restore_mysql_recreates_the_database_with_the_same_content(scripts, source_db, tmp_path) -> None:
    """restore-mysql.sh over TCP as root: same table checksums as the source, sessions kept empty."""
    set_dir = dump(source_db, tmp_path, stamp_ago(1))
    target = "seek_restored"
    source_db.sql(f"DROP DATABASE IF EXISTS {target}; CREATE DATABASE {target};"
                  f"CREATE TABLE {target}.stale (id INT);")
    result = restore_mysql(scripts["restore-mysql.sh"], source_db, set_dir, target)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "row counts match the manifest" in result.stdout
    original = source_db.checksums(DB)
    restored = source_db.checksums(target)
    assert set(restored) == set(original) and "stale" not in restored
    for table in ("people", "projects", "empty_things"):
        assert restored[table] == original[table], table
    assert source_db.sql("SELECT COUNT(*) FROM sessions", target).strip() == "0"


def test_restore_filestore_replaces_the_content_only_after_a_complete_extract(scripts, tmp_path) -> None:
    """A good archive replaces the filestore exactly; a corrupted one leaves the old content alone."""
    if shutil.which("tar") is None:
        pytest.skip("GNU tar is not installed")
    source = tmp_path / "source"
    (source / "assets" / "sub").mkdir(parents=True)
    (source / "assets" / "sub" / "file.bin").write_bytes(os.urandom(4096))
    (source / ".secret_key_base").write_text("keys\n")
    (source / "assets" / "notes.txt").write_text("hello\n")
    root = tmp_path / "backup"
    env = {**os.environ, "FILESTORE_DIR": str(source), "BACKUP_ROOT": str(root), "BACKUP_STAMP": stamp_ago(1)}
    made = subprocess.run(["bash", str(FILES / "filestore-backup.sh")], env=env, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    set_dir = root / "filestore" / env["BACKUP_STAMP"]

    target = tmp_path / "filestore"
    (target / "old").mkdir(parents=True)
    (target / "old" / "gone.txt").write_text("old\n")
    run_env = {**os.environ, "RESTORE_SET_DIR": str(set_dir), "FILESTORE_DIR": str(target)}
    ok = subprocess.run(["bash", str(scripts["restore-filestore.sh"])], env=run_env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr

    def tree(path: Path) -> dict[str, bytes]:
        return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}

    assert tree(target) == tree(source)

    artifact = set_dir / "filestore.tar.gz"
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    artifact.write_bytes(bytes(data))
    manifest = json.loads((set_dir / "manifest.json").read_text())
    manifest["artifact"]["sha256"] = hashlib.sha256(bytes(data)).hexdigest()
    (set_dir / "manifest.json").write_text(json.dumps(manifest))
    before = tree(target)
    bad = subprocess.run(["bash", str(scripts["restore-filestore.sh"])], env=run_env, capture_output=True, text=True)
    assert bad.returncode != 0 and "old filestore is untouched" in bad.stderr
    assert tree(target) == before


def test_restore_mysql_corrupted_artifact_leaves_the_database_untouched(scripts, source_db, tmp_path) -> None:
    """One flipped byte in the artifact: refused on its sha256 before the database is dropped."""
    set_dir = dump(source_db, tmp_path, stamp_ago(1))
    artifact = set_dir / "mysql.sql.gz"
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0x01
    artifact.write_bytes(bytes(data))
    before = live_target(source_db, "seek_live_sh")
    line = one_failure_line(restore_mysql(scripts["restore-mysql.sh"], source_db, set_dir, "seek_live_sh"))
    assert "sha256" in line and "nothing was changed" in line
    assert source_db.checksums("seek_live_sh") == before


def test_restore_mysql_refuses_another_seek_version_unless_told_to_upgrade(scripts, source_db, tmp_path) -> None:
    """A dump of 1.17.4 under 1.18.1 is refused (database untouched) unless RESTORE_ALLOW_SEEK_UPGRADE
    is true; a dump of a newer SEEK is refused even then."""
    old_set = dump(source_db, tmp_path / "old", stamp_ago(1), image="fairdom/seek:1.17.4")
    before = live_target(source_db, "seek_live_v")
    line = one_failure_line(restore_mysql(scripts["restore-mysql.sh"], source_db, old_set, "seek_live_v"))
    assert "fairdom/seek:1.17.4" in line and "restore_allow_seek_upgrade=true" in line
    assert source_db.checksums("seek_live_v") == before

    new_set = dump(source_db, tmp_path / "new", stamp_ago(1), image="fairdom/seek:1.19.0")
    line = one_failure_line(restore_mysql(scripts["restore-mysql.sh"], source_db, new_set, "seek_live_v",
                                          RESTORE_ALLOW_SEEK_UPGRADE="true"))
    assert "cannot downgrade" in line
    assert source_db.checksums("seek_live_v") == before

    ok = restore_mysql(scripts["restore-mysql.sh"], source_db, old_set, "seek_live_v", RESTORE_ALLOW_SEEK_UPGRADE="true")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "upgrade must run after this restore" in ok.stdout
    assert source_db.checksums("seek_live_v")["people"] == source_db.checksums(DB)["people"]


def test_restore_mysql_load_error_is_one_line_without_row_data(scripts, source_db, tmp_path) -> None:
    """An intact set (sha256 matches) whose SQL does not load: mysql quotes the statement in its
    error; the Job's message keeps the first line, cut before the quote."""
    set_dir = dump(source_db, tmp_path, stamp_ago(1))
    artifact = set_dir / "mysql.sql.gz"
    sql = gzip.decompress(artifact.read_bytes()).replace(b"INSERT INTO `people` VALUES", b"INSERT INTO `people` VALUEZ", 1)
    artifact.write_bytes(gzip.compress(sql))
    manifest = json.loads((set_dir / "manifest.json").read_text())
    manifest["artifact"]["sha256"] = hashlib.sha256(artifact.read_bytes()).hexdigest()
    (set_dir / "manifest.json").write_text(json.dumps(manifest))
    line = one_failure_line(restore_mysql(scripts["restore-mysql.sh"], source_db, set_dir, "seek_bad_sh"))
    assert "ERROR 1064" in line and "quoted content omitted" in line
