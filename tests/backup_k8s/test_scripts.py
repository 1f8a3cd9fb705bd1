"""The restore drill and the restore scripts the ConfigMap ships, run for real: MariaDB from
Debian stands in for MySQL 8.4 (not packaged here), the sets come from the producer scripts."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.backup.servers import MariaDB
from tests.backup_k8s.helpers import FILES, render

DB = "seek_drill_src"


@pytest.fixture(scope="module")
def scripts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The drill and restore scripts exactly as the rendered ConfigMap carries them."""
    tmp = tmp_path_factory.mktemp("scripts")
    objects = render(tmp, {})
    data = next(o for o in objects.values() if o["kind"] == "ConfigMap")["data"]
    out = {}
    for name in ("backup-drill.sh", "restore-mysql.sh", "restore-filestore.sh"):
        path = tmp / name
        path.write_text(data[name] + "\n")
        path.chmod(0o755)
        out[name] = path
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


def dump(db: MariaDB, root: Path, stamp: str | None = None) -> Path:
    """Run the producer script: one complete MySQL set under ``root``; return its directory."""
    env = {**os.environ, **db.env(DB), "BACKUP_ROOT": str(root)}
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


def test_restore_mysql_recreates_the_database_with_the_same_content(scripts, source_db, tmp_path) -> None:
    """restore-mysql.sh over TCP as root: same table checksums as the source, sessions kept empty."""
    set_dir = dump(source_db, tmp_path, stamp_ago(1))
    password = "restore-root-pw"
    source_db.sql(f"CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '{password}';"
                  f"ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY '{password}';"
                  "GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;")
    target = "seek_restored"
    source_db.sql(f"DROP DATABASE IF EXISTS {target}; CREATE DATABASE {target};"
                  f"CREATE TABLE {target}.stale (id INT);")
    env = {**os.environ, "RESTORE_SET_DIR": str(set_dir), "MYSQL_HOST": "127.0.0.1",
           "MYSQL_PORT": str(source_db.port), "MYSQL_DATABASE": target, "MYSQL_ROOT_PASSWORD": password}
    result = subprocess.run(["bash", str(scripts["restore-mysql.sh"])], env=env, capture_output=True,
                            text=True, check=False)
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
