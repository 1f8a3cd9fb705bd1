"""The restore Job's restore-mysql.sh keeps the current database until the restored one is proven
(issue 20, items 3 and 6), against a real MariaDB: the dump is loaded into <db>_restore_<stamp>,
checked against the manifest, then one RENAME TABLE swaps it in and keeps the previous tables in
<db>_pre_restore_<stamp>; an account that cannot create databases (an external server's SEEK
account) gets a verified dump of the current database on the backup volume first. A new database
takes the manifest's character set and collation, not the server default."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from tests.backup_tools.servers import MariaDB
from tests.backup_tools.shell_restore import restore_mysql
from tests.backup_tools.test_mysql_roundtrip import dump, seed

IMAGE = "fairdom/seek:1.18.1"
SEEK_COLLATION = "utf8mb4_unicode_ci"  # SEEK's database.yml at v1.18.1 (docker/database.docker.mysql.yml)


def _source(db: MariaDB, name: str, root: Path, bulk_rows: int = 0) -> Path:
    """A gzip set of a SEEK-like database created as SEEK creates it (utf8mb4_unicode_ci), without
    the seed's view (SEEK v1.18.1 has no views, triggers or routines)."""
    seed(db, name, bulk_rows=bulk_rows)
    db.sql(f"DROP VIEW user_logins; ALTER DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE {SEEK_COLLATION}", name)
    set_dir = dump(db, name, root, SEEK_IMAGE=IMAGE, BACKUP_COMPRESSION="gzip")
    assert json.loads((set_dir / "manifest.json").read_text())["mysql"]["database_collation"] == SEEK_COLLATION
    return set_dir


def _live(db: MariaDB, name: str, collation: str = "utf8mb4_general_ci") -> dict[str, str]:
    """The current database: its own tables (a foreign key between them) and rows, another
    collation than the backup's; every earlier side or previous copy of it removed."""
    for schema in _copies(db, name):
        db.sql(f"DROP DATABASE `{schema}`")
    db.sql(f"DROP DATABASE IF EXISTS `{name}`; CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE {collation}")
    db.sql("CREATE TABLE users (id INT PRIMARY KEY, login VARCHAR(64)) ENGINE=InnoDB;"
           "CREATE TABLE projects (id INT PRIMARY KEY, title TEXT, owner INT,"
           " FOREIGN KEY (owner) REFERENCES users(id)) ENGINE=InnoDB;"
           "INSERT INTO users VALUES (1, 'existing-admin'), (2, 'existing-user');"
           "INSERT INTO projects VALUES (7, 'live project', 1);", name)
    return db.checksums(name)


def _copies(db: MariaDB, name: str) -> list[str]:
    """<name>_restore_* and <name>_pre_restore_* databases on the server."""
    return db.sql(f"SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME REGEXP "
                  f"'^{name}_(pre_)?restore_[0-9]{{14}}$' ORDER BY SCHEMA_NAME").split()


def _collation(db: MariaDB, name: str) -> str:
    return db.sql("SELECT DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA "
                  f"WHERE SCHEMA_NAME = '{name}'").strip()


def _rewrite_artifact(set_dir: Path, change) -> None:  # type: ignore[no-untyped-def]
    """Change the dump's SQL and record the new artifact's sha256 and size: the set is intact."""
    art = set_dir / "mysql.sql.gz"
    data = gzip.compress(change(gzip.decompress(art.read_bytes())))
    art.write_bytes(data)
    man = json.loads((set_dir / "manifest.json").read_text())
    man["artifact"].update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    (set_dir / "manifest.json").write_text(json.dumps(man))


def _as_account(db: MariaDB, user: str, password: str, statement: str) -> subprocess.CompletedProcess:
    """SQL over TCP as another account (SEEK's), as SEEK connects."""
    return subprocess.run(["mysql", "--no-defaults", "-h127.0.0.1", f"-P{db.port}", f"-u{user}", f"-p{password}",
                           "-N", "-B", "-e", statement], capture_output=True, text=True, check=False)


def _seek_account(db: MariaDB, user: str, password: str, database: str) -> None:
    """An account with all privileges on its database only, granted as the mysql image's entrypoint
    grants MYSQL_USER (docker-library/mysql 8.4/docker-entrypoint.sh: GRANT ALL ON `db`.* with the
    underscores escaped, so the name is matched exactly)."""
    escaped = database.replace("_", "\\_")
    db.sql(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'; CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}';"
           f"GRANT ALL ON `{escaped}`.* TO '{user}'@'127.0.0.1';")


@pytest.mark.parametrize("breakage", ["sql-error-at-the-last-table", "truncated-after-the-first-table"])
def test_a_load_that_fails_midway_leaves_the_current_database_serving(mariadb: MariaDB, tmp_path: Path,
                                                                      breakage: str) -> None:
    """An intact set (sha256 in the manifest matches) whose SQL fails at its last table after four
    tables loaded, or that ends after its first table (the load succeeds, the counts do not): the
    restore fails and the current database keeps every table, CHECKSUM TABLE and its collation;
    no side or previous database is left behind."""
    set_dir = _source(mariadb, "seek_mid_src", tmp_path / "backups", bulk_rows=3000)
    if breakage.startswith("sql-error"):
        _rewrite_artifact(set_dir, lambda sql: sql.replace(b"INSERT INTO `users` VALUES",
                                                           b"INSERT INTO `users` VALUEZ", 1))
    else:
        _rewrite_artifact(set_dir, lambda sql: sql[:sql.index(b"CREATE TABLE `content_blobs`")])
    before = _live(mariadb, "seek_mid")
    tables = mariadb.sql("SHOW FULL TABLES", "seek_mid")

    proc = restore_mysql(mariadb, set_dir, "seek_mid")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert mariadb.checksums("seek_mid") == before
    assert mariadb.sql("SHOW FULL TABLES", "seek_mid") == tables
    assert _collation(mariadb, "seek_mid") == "utf8mb4_general_ci"
    assert _copies(mariadb, "seek_mid") == []
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("RESTORE FAILED: ") and "seek_mid was not touched" in last, proc.stderr
    if breakage.startswith("sql-error"):  # after sessions, bulk, content_blobs and empty_things loaded
        assert "ERROR 1064" in last and "alice" not in proc.stderr
    else:
        assert "content_blobs has missing rows" in proc.stderr and "users has missing rows" in proc.stderr
    assert "path side-database" in proc.stdout


def test_a_restore_keeps_the_previous_database_and_takes_the_manifest_collation(mariadb: MariaDB,
                                                                                tmp_path: Path) -> None:
    """A successful restore: <db> holds the backup's tables with the manifest's collation, the
    previous tables (rows, checksums, their foreign key) are in <db>_pre_restore_<stamp>, the side
    database is gone; SEEK's account (grants on <db> by name) reads and writes the restored tables
    and does not see the previous copy. The next restore removes the older copy; with
    RESTORE_KEEP_PREVIOUS=false none is kept. A side database left by a killed restore is dropped."""
    set_dir = _source(mariadb, "seek_keep_src", tmp_path / "backups")
    source = mariadb.checksums("seek_keep_src")
    before = _live(mariadb, "seek_keep")
    _seek_account(mariadb, "seekapp", "seekapp-pw", "seek_keep")
    assert _as_account(mariadb, "seekapp", "seekapp-pw", "SELECT COUNT(*) FROM seek_keep.users").stdout.strip() == "2"
    mariadb.sql("CREATE DATABASE seek_keep_restore_20200101000000")  # a killed restore's side database

    proc = restore_mysql(mariadb, set_dir, "seek_keep", RESTORE_STAMP="20261207120000")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "path side-database" in proc.stdout and "seek_keep_restore_20200101000000" in proc.stdout
    assert "the previous 2 tables are in seek_keep_pre_restore_20261207120000" in proc.stdout
    assert _copies(mariadb, "seek_keep") == ["seek_keep_pre_restore_20261207120000"]

    previous = "seek_keep_pre_restore_20261207120000"
    assert mariadb.checksums(previous) == before
    assert _collation(mariadb, previous) == "utf8mb4_general_ci"
    # the foreign keys moved with their tables and point inside their new database
    assert "REFERENCES `users`" in mariadb.sql(f"SHOW CREATE TABLE `{previous}`.projects")
    assert "REFERENCES `users`" in mariadb.sql("SHOW CREATE TABLE seek_keep.content_blobs")

    restored = mariadb.checksums("seek_keep")
    assert set(restored) == set(source) and "projects" not in restored
    assert all(restored[t] == source[t] for t in source if t != "sessions")
    assert _collation(mariadb, "seek_keep") == SEEK_COLLATION

    # SEEK's grants are on seek_keep by name: they apply to the swapped-in tables
    assert _as_account(mariadb, "seekapp", "seekapp-pw", "SELECT COUNT(*) FROM seek_keep.users").stdout.strip() == "4"
    wrote = _as_account(mariadb, "seekapp", "seekapp-pw", "INSERT INTO seek_keep.empty_things VALUES (1)")
    assert wrote.returncode == 0, wrote.stderr
    denied = _as_account(mariadb, "seekapp", "seekapp-pw", f"SELECT COUNT(*) FROM `{previous}`.users")
    assert denied.returncode != 0 and "denied" in denied.stderr

    again = restore_mysql(mariadb, set_dir, "seek_keep", RESTORE_STAMP="20261207120100")
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"dropping {previous}" in again.stdout
    assert _copies(mariadb, "seek_keep") == ["seek_keep_pre_restore_20261207120100"]
    assert mariadb.sql("SELECT COUNT(*) FROM empty_things", "seek_keep_pre_restore_20261207120100").strip() == "1"

    off = restore_mysql(mariadb, set_dir, "seek_keep", RESTORE_STAMP="20261207120200", RESTORE_KEEP_PREVIOUS="false")
    assert off.returncode == 0, off.stdout + off.stderr
    assert "removed now (backup_restore_keep_previous=false)" in off.stdout
    assert _copies(mariadb, "seek_keep") == []
    assert mariadb.checksums("seek_keep") == restored


def test_a_new_database_gets_the_manifest_collation_not_the_server_default(mariadb: MariaDB,
                                                                          tmp_path: Path) -> None:
    """The target database does not exist and the server's default collation is another one
    (utf8mb4_general_ci, MariaDB's; MySQL 8.4's is utf8mb4_0900_ai_ci): the restore creates it with
    the manifest's utf8mb4_unicode_ci. A set whose manifest records none (made before it did) gets
    the server default, and the log says so."""
    set_dir = _source(mariadb, "seek_new_src", tmp_path / "backups")
    for name in ("seek_new", "seek_new_old_set"):
        mariadb.sql(f"DROP DATABASE IF EXISTS `{name}`")
    mariadb.sql("SET GLOBAL character_set_server = utf8mb4; SET GLOBAL collation_server = utf8mb4_general_ci")
    try:
        proc = restore_mysql(mariadb, set_dir, "seek_new")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert _collation(mariadb, "seek_new") == SEEK_COLLATION
        assert f"seek_new gets CHARACTER SET utf8mb4 COLLATE {SEEK_COLLATION} (from the manifest)" in proc.stdout
        assert "there were no previous tables" in proc.stdout and _copies(mariadb, "seek_new") == []
        # a table created later without a collation (as a migration would) inherits the schema's
        mariadb.sql("CREATE TABLE later (id INT, name VARCHAR(10))", "seek_new")
        assert mariadb.sql("SELECT TABLE_COLLATION FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'seek_new' "
                           "AND TABLE_NAME = 'later'").strip() == SEEK_COLLATION

        man = json.loads((set_dir / "manifest.json").read_text())
        del man["mysql"]["database_charset"], man["mysql"]["database_collation"]
        (set_dir / "manifest.json").write_text(json.dumps(man))
        old = restore_mysql(mariadb, set_dir, "seek_new_old_set")
        assert old.returncode == 0, old.stdout + old.stderr
        assert "from the server default" in old.stdout
        assert _collation(mariadb, "seek_new_old_set") == "utf8mb4_general_ci"
    finally:
        mariadb.sql(f"SET GLOBAL collation_server = {SEEK_COLLATION}")


def test_an_account_that_cannot_create_databases_keeps_a_verified_dump(mariadb: MariaDB, tmp_path: Path) -> None:
    """The external server's case: the SEEK account has privileges on its database only. CREATE
    DATABASE of the side database is refused, so the restore first dumps the current database onto
    the backup volume (sha256 recorded and read back, trailer and tables checked), says which path
    it took, then drops and loads. The dump is a set this script restores: back come the old rows.
    Where that copy cannot be written, nothing is changed."""
    set_dir = _source(mariadb, "seek_ext_src", tmp_path / "backups")
    source = mariadb.checksums("seek_ext_src")
    before = _live(mariadb, "seek_extl")
    _seek_account(mariadb, "seekonly", "seekonly-pw", "seek_extl")
    account = {"MYSQL_USER": "seekonly", "MYSQL_PASSWORD": "seekonly-pw", "MYSQL_ROOT_PASSWORD": None}

    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the dump directory would go")
    refused = restore_mysql(mariadb, set_dir, "seek_extl", RESTORE_PREVIOUS_DIR=str(blocked / "mysql"), **account)
    assert refused.returncode == 1 and "Nothing was changed" in refused.stderr, refused.stdout + refused.stderr
    assert "path dump: this account cannot create the side database seek_extl_restore_" in refused.stdout
    assert mariadb.checksums("seek_extl") == before

    keep = tmp_path / "backups" / "pre-restore" / "mysql"
    proc = restore_mysql(mariadb, set_dir, "seek_extl", RESTORE_STAMP="20261207130000", **account)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "path dump: this account cannot create the side database seek_extl_restore_20261207130000" in proc.stdout
    assert "ERROR 1044" in proc.stdout and f"the previous database is in {keep}/20261207T130000Z" in proc.stdout
    copy = keep / "20261207T130000Z"
    man = json.loads((copy / "manifest.json").read_text())
    assert man["artifact"]["sha256"] == hashlib.sha256((copy / "mysql.sql.zst").read_bytes()).hexdigest()
    assert man["mysql"]["tables"] == {"users": 2, "projects": 1} and man["complete"] is True
    assert oct((copy / "mysql.sql.zst").stat().st_mode & 0o777) == "0o600"

    restored = mariadb.checksums("seek_extl")
    assert all(restored[t] == source[t] for t in source if t != "sessions") and "projects" not in restored
    assert _collation(mariadb, "seek_extl") == SEEK_COLLATION
    assert _copies(mariadb, "seek_extl") == []
    assert _as_account(mariadb, "seekonly", "seekonly-pw", "SELECT COUNT(*) FROM seek_extl.users").stdout.strip() == "4"

    # the kept dump is a complete set: restored as root into another database, the old rows are back
    mariadb.sql("DROP DATABASE IF EXISTS seek_extl_back")
    back = restore_mysql(mariadb, copy, "seek_extl_back")
    assert back.returncode == 0, back.stdout + back.stderr
    assert mariadb.checksums("seek_extl_back") == before
    assert _collation(mariadb, "seek_extl_back") == "utf8mb4_general_ci"


def test_views_in_the_current_database_take_the_dump_path(mariadb: MariaDB, tmp_path: Path) -> None:
    """RENAME TABLE cannot move a view (or a table with triggers) to another database: a current
    database with a view is kept as a verified dump instead, and the log says why; the dump holds
    the view."""
    set_dir = _source(mariadb, "seek_view_src", tmp_path / "backups")
    _live(mariadb, "seek_view")
    mariadb.sql("CREATE VIEW owners AS SELECT login FROM users WHERE id IN (SELECT owner FROM projects)", "seek_view")
    proc = restore_mysql(mariadb, set_dir, "seek_view", RESTORE_STAMP="20261207140000")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "path dump: seek_view holds 1 view(s), trigger(s), routine(s) or event(s)" in proc.stdout
    mariadb.sql("DROP DATABASE IF EXISTS seek_view_back")
    back = restore_mysql(mariadb, tmp_path / "backups" / "pre-restore" / "mysql" / "20261207T140000Z", "seek_view_back")
    assert back.returncode == 0, back.stdout + back.stderr
    assert mariadb.sql("SELECT login FROM owners", "seek_view_back").split() == ["existing-admin"]
