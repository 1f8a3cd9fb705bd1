"""The restore Job's restore-mysql.sh (role backup_restore), the one MySQL restore, against a real
MariaDB: row counts compared with the manifest, both compressions, the database name, SEEK
versions read from image tags; every refusal leaves the live database as it was. (These are the
checks the removed Python restore helpers had: compare_rows, decompressor, quote_ident and
database names, seek_version, check_seek_image.)"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.backup_tools.servers import MariaDB
from tests.backup_tools.shell_restore import restore_mysql
from tests.backup_tools.test_mysql_roundtrip import dump, seed


def _live(db: MariaDB, name: str) -> dict[str, str]:
    """An existing database with rows of its own; returns its table checksums."""
    db.sql(f"DROP DATABASE IF EXISTS `{name}`; CREATE DATABASE `{name}`;"
           f"CREATE TABLE `{name}`.users (id INT PRIMARY KEY, login VARCHAR(64));"
           f"INSERT INTO `{name}`.users VALUES (1, 'existing-admin');")
    return db.checksums(name)


def _rewrite_manifest(set_dir: Path, **changes: object) -> None:
    man = json.loads((set_dir / "manifest.json").read_text())
    for key, value in changes.items():
        if key == "tables":
            man["mysql"]["tables"].update(value)  # type: ignore[arg-type]
        else:
            man[key] = value
    (set_dir / "manifest.json").write_text(json.dumps(man))


@pytest.fixture
def source(mariadb: MariaDB, tmp_path: Path) -> Path:
    """A zstd set (the default) of a SEEK-like database, made by the producer script."""
    seed(mariadb, "seek_units")
    return dump(mariadb, "seek_units", tmp_path / "backups", SEEK_IMAGE="fairdom/seek:1.18.1")


def test_row_counts_differ_or_a_table_is_missing(mariadb: MariaDB, source: Path) -> None:
    """A count that differs and a table the dump does not create both fail the restore, naming them."""
    _rewrite_manifest(source, tables={"users": 5, "ghost": 2})
    proc = restore_mysql(mariadb, source, "seek_units_counts")
    assert proc.returncode == 1
    assert "users has 4 rows, the manifest says 5" in proc.stderr
    assert "ghost has missing rows, the manifest says 2" in proc.stderr
    assert "RESTORE FAILED: 2 table(s) differ from the manifest" in proc.stderr


def test_gzip_and_zstd_load_and_an_unknown_artifact_is_refused(mariadb: MariaDB, tmp_path: Path,
                                                              source: Path) -> None:
    """Both compressions of the producer load with the manifest's counts; an artifact name the
    script does not know is refused before the database is touched."""
    assert (source / "mysql.sql.zst").exists()
    ok = restore_mysql(mariadb, source, "seek_units_zst")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    gz = dump(mariadb, "seek_units", tmp_path / "gz", SEEK_IMAGE="fairdom/seek:1.18.1", BACKUP_COMPRESSION="gzip")
    ok = restore_mysql(mariadb, gz, "seek_units_gz")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert mariadb.checksums("seek_units_gz")["users"] == mariadb.checksums("seek_units")["users"]

    (gz / "mysql.sql.gz").rename(gz / "mysql.sql.bz2")
    man = json.loads((gz / "manifest.json").read_text())
    man["artifact"]["name"] = "mysql.sql.bz2"
    (gz / "manifest.json").write_text(json.dumps(man))
    before = _live(mariadb, "seek_units_live")
    bad = restore_mysql(mariadb, gz, "seek_units_live")
    assert bad.returncode == 1 and "unknown artifact" in bad.stderr
    assert mariadb.checksums("seek_units_live") == before


@pytest.mark.parametrize("name", ["seek; DROP", "we`ird", "seek-prod", "x" * 65])
def test_bad_database_names_are_refused(mariadb: MariaDB, source: Path, name: str) -> None:
    """The name goes into DROP/CREATE DATABASE: anything but letters, digits and _ is refused first."""
    before = _live(mariadb, "seek_units_live2")
    proc = restore_mysql(mariadb, source, name)
    assert proc.returncode == 1 and "database name" in proc.stderr and "Nothing was changed" in proc.stderr
    assert mariadb.checksums("seek_units_live2") == before


def test_not_a_compressed_stream_fails_as_one_line(mariadb: MariaDB, source: Path) -> None:
    """An artifact whose sha256 matches the manifest but that is not zstd: the decompressor's
    failure fails the restore (pipefail) with one line."""
    art = source / "mysql.sql.zst"
    art.write_bytes(b"this is not zstd")
    _rewrite_manifest(source)
    man = json.loads((source / "manifest.json").read_text())
    man["artifact"]["sha256"] = hashlib.sha256(art.read_bytes()).hexdigest()
    (source / "manifest.json").write_text(json.dumps(man))
    proc = restore_mysql(mariadb, source, "seek_units_notzst")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("RESTORE FAILED: loading")


@pytest.mark.parametrize("recorded, deployed, allow, outcome", [
    ("fairdom/seek:1.18.1", "fairdom/seek:1.18.1", False, "ok"),
    ("mirror.example/seek:1.18.1", "fairdom/seek:1.18.1", False, "ok"),  # same version, another registry
    ("registry:5000/seek:v1.19.0", "fairdom/seek:1.18.1", True, "cannot downgrade"),
    ("fairdom/seek:1.17", "fairdom/seek:1.18.1", False, "restore_allow_seek_upgrade=true"),
    ("fairdom/seek:1.17", "fairdom/seek:1.18.1", True, "upgrade"),
    ("fairdom/seek@sha256:" + "a" * 64, "fairdom/seek:1.18.1", False, "restore_allow_seek_upgrade=true"),
    (None, "fairdom/seek:1.18.1", False, "an unrecorded SEEK image"),
    (None, "fairdom/seek:1.18.1", True, "upgrade"),
])
def test_seek_versions_from_image_tags(mariadb: MariaDB, source: Path, recorded: str | None, deployed: str,
                                       allow: bool, outcome: str) -> None:
    """The manifest's seek_image against the deployed one: equal versions pass, a newer backup is
    always refused, an older or unknown one only with RESTORE_ALLOW_SEEK_UPGRADE (which says the
    upgrade must follow); a refusal leaves the live database as it was."""
    _rewrite_manifest(source, seek_image=recorded)
    before = _live(mariadb, "seek_units_v")
    proc = restore_mysql(mariadb, source, "seek_units_v", SEEK_IMAGE=deployed,
                         RESTORE_ALLOW_SEEK_UPGRADE="true" if allow else "false")
    if outcome in ("ok", "upgrade"):
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert ("upgrade must run after this restore" in proc.stdout) == (outcome == "upgrade"), proc.stdout
    else:
        assert proc.returncode == 1 and outcome in proc.stderr, proc.stderr
        assert mariadb.checksums("seek_units_v") == before
