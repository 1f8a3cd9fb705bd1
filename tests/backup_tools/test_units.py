"""Unit tests of the seek_backup modules (no servers)."""

from __future__ import annotations

import io
import json
import os
import stat
import threading
from datetime import datetime, timezone
from pathlib import Path

import botocore.exceptions
import pytest
from pyrage import x25519

from seek_backup import cli, config, crypto, layout, retention
from seek_backup.errors import ConfigError, IntegrityError, StorageError
from seek_backup.storage import PartUploader, RemoteSet, translate


# ---- config ---------------------------------------------------------------------------------
def test_config_json_sections_and_env_overrides(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"root": "/b", "s3": {"bucket": "x", "part_size_mb": 8, "verify_tls": False},
                                "age": {"recipients": ["age1a", "age1b"]}, "retention": {"keep_daily": 3}}))
    path.chmod(0o600)
    cfg = config.load(str(path), env={"SEEK_BACKUP_KEEP_WEEKLY": "9", "SEEK_BACKUP_ENDPOINT_URL": "http://s3:9000",
                                      "SEEK_BACKUP_RECIPIENTS": "age1c, age1d"})
    assert (cfg.root, cfg.bucket, cfg.part_size_mb, cfg.verify_tls) == ("/b", "x", 8, False)
    assert (cfg.keep_daily, cfg.keep_weekly, cfg.endpoint_url) == (3, 9, "http://s3:9000")
    assert cfg.recipients == ["age1c", "age1d"]


def test_config_ini(tmp_path):
    path = tmp_path / "c.ini"
    path.write_text("[s3]\nbucket = b\nendpoint_url = \naddressing_style = path\n[retention]\nkeep_daily = 2\n")
    cfg = config.load(str(path), env={})
    assert (cfg.bucket, cfg.endpoint_url, cfg.addressing_style, cfg.keep_daily) == ("b", None, "path", 2)


@pytest.mark.parametrize("content, message", [
    ({"buckett": "x"}, "unknown setting"),
    ({"addressing_style": "sideways"}, "addressing_style"),
    ({"part_size_mb": 1}, "at least 5"),
    ({"keep_daily": "many"}, "keep_daily"),
])
def test_config_errors(tmp_path, content, message):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ConfigError, match=message):
        config.load(str(path), env={})


def test_config_missing_explicit_file_and_loose_mode_warning(tmp_path, capsys):
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(str(tmp_path / "nope.json"), env={})
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"secret_access_key": "s"}))
    path.chmod(0o644)
    config.load(str(path), env={})
    assert "use 0600" in capsys.readouterr().err


def test_recipients_file_and_password_file(tmp_path):
    (tmp_path / "r").write_text("# operators\nage1one\n\nage1two\n")
    (tmp_path / "pw").write_text("s3cr3t\n")
    cfg = config.Config(recipients=["age1zero"], recipients_file=str(tmp_path / "r"),
                        mysql_password_file=str(tmp_path / "pw"))
    assert config.recipients(cfg) == ["age1zero", "age1one", "age1two"]
    assert config.mysql_password(cfg) == "s3cr3t"


# ---- layout -----------------------------------------------------------------------------------
def manifest(**over):
    base = {"kind": "filestore", "stamp": "20261101T020000Z", "created": "2026-11-01T02:00:05Z", "source": "t",
            "artifact": {"name": "filestore.tar.gz", "size": 3, "sha256": "a" * 64}, "complete": True}
    base.update(over)
    return base


def test_stamps():
    when = layout.parse_stamp("20261101T020304Z")
    assert when == datetime(2026, 11, 1, 2, 3, 4, tzinfo=timezone.utc)
    assert layout.format_stamp(when) == "20261101T020304Z"
    for bad in ("2026-11-01", "20261101T020304", "20261301T020304Z"):
        with pytest.raises(ValueError):
            layout.parse_stamp(bad)


@pytest.mark.parametrize("over, message", [
    ({"complete": False}, "complete"),
    ({"kind": "redis"}, "kind"),
    ({"artifact": {"name": "x.sh", "size": 1, "sha256": "a" * 64}}, "artifact name"),
    ({"artifact": {"name": "etcd.db", "size": 1, "sha256": "xyz"}}, "sha256"),
    ({"kind": "mysql", "artifact": {"name": "mysql.sql.gz", "size": 1, "sha256": "a" * 64}}, "row counts"),
])
def test_manifest_validation(over, message):
    with pytest.raises(IntegrityError, match=message):
        layout.validate_manifest(manifest(**over))


def test_local_sets_completeness(tmp_path):
    good = tmp_path / "filestore" / "20261101T020000Z"
    good.mkdir(parents=True)
    (good / "filestore.tar.gz").write_bytes(b"abc")
    (good / "manifest.json").write_text(json.dumps(manifest()))
    partial = tmp_path / "filestore" / "20261102T020000Z"
    partial.mkdir()
    (partial / "filestore.tar.gz.part").write_bytes(b"ab")
    (tmp_path / "filestore" / "not-a-stamp").mkdir()
    sets = layout.local_sets(tmp_path)
    assert [s.stamp for s in sets] == ["20261101T020000Z", "20261102T020000Z"]
    assert [s.is_complete() for s in sets] == [True, False]
    (good / "filestore.tar.gz").write_bytes(b"abcd")  # size differs from the manifest
    assert not sets[0].is_complete()
    sets[1].mark_uploaded({"x": 1})
    assert sets[1].uploaded() == {"x": 1}


@pytest.mark.parametrize("umask", [0o022, 0o000, 0o277])
def test_private_files_and_dirs_ignore_the_umask(tmp_path, umask):
    """The helpers fetch writes with: 0700 directories (only the missing ones, reported outermost
    first), 0600 files and JSON, whatever the umask; a failure removes only what was created."""
    (tmp_path / "kept").mkdir()
    os.chmod(tmp_path / "kept", 0o755)
    old = os.umask(umask)
    try:
        created = layout.make_private_dirs(tmp_path / "kept" / "a" / "b")
        with layout.open_private(tmp_path / "kept" / "a" / "b" / "f") as fh:
            fh.write(b"x")
        layout.write_json_atomic(tmp_path / "kept" / "a" / "b" / "m.json", {"k": 1}, mode=0o600)
    finally:
        os.umask(old)
    assert created == [tmp_path / "kept" / "a", tmp_path / "kept" / "a" / "b"]
    assert [stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "kept", *created)] == [0o755, 0o700, 0o700]
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in created[-1].iterdir()} == {"f": 0o600, "m.json": 0o600}
    with pytest.raises(FileExistsError):
        layout.open_private(tmp_path / "kept" / "a" / "b" / "f")
    (created[-1] / "f").unlink()
    (created[-1] / "m.json").unlink()
    layout.remove_empty_dirs(created)
    assert list((tmp_path / "kept").iterdir()) == []
    # a directory that something else wrote into is not removed
    created = layout.make_private_dirs(tmp_path / "kept" / "c" / "d")
    (tmp_path / "kept" / "c" / "other").write_text("x")
    layout.remove_empty_dirs(created)
    assert sorted(p.name for p in (tmp_path / "kept" / "c").iterdir()) == ["other"]


# ---- retention --------------------------------------------------------------------------------
def test_retention_daily_weekly_and_protect():
    stamps = [f"202610{d:02d}T020000Z" for d in range(1, 15)] + ["20261014T230000Z"]
    plan = retention.plan(stamps, 3, 2, layout.parse_stamp)
    # days 14 (newest of the day: 23:00), 13, 12; weeks 42 (Oct 12-18) and 41 (Oct 5-11 -> Oct 11)
    assert plan.keep == ["20261011T020000Z", "20261012T020000Z", "20261013T020000Z", "20261014T230000Z"]
    assert "20261014T020000Z" in plan.delete and len(plan.keep) + len(plan.delete) == 15
    none = retention.plan(stamps, 0, 0, layout.parse_stamp, protect=["20261010T020000Z"])
    assert none.keep == ["20261010T020000Z"] and none.reasons["20261010T020000Z"] == ["newest-verified"]
    assert retention.plan([], 7, 4, layout.parse_stamp).keep == []
    with pytest.raises(ValueError):
        retention.plan(stamps, -1, 0, layout.parse_stamp)


# ---- crypto -----------------------------------------------------------------------------------
def test_crypto_stream_round_trip_and_tamper(tmp_path):
    ident = x25519.Identity.generate()
    (tmp_path / "id").write_text(f"# created: now\n{ident}\n")
    ids = crypto.load_identities(str(tmp_path / "id"))
    recs = crypto.load_recipients([str(ident.to_public())])
    data = bytes(range(256)) * 5000
    out = io.BytesIO()
    reader, writer = crypto.encrypt_stream(io.BytesIO(data), out.write, recs)
    assert reader.size == len(data) and writer.size == len(out.getvalue())
    back = io.BytesIO()
    r2, w2 = crypto.decrypt_stream(io.BytesIO(out.getvalue()), back.write, ids)
    assert back.getvalue() == data and w2.sha.hexdigest() == reader.sha.hexdigest()
    tampered = bytearray(out.getvalue())
    tampered[len(tampered) // 2] ^= 1
    with pytest.raises(IntegrityError, match="age decryption failed"):
        crypto.decrypt_stream(io.BytesIO(bytes(tampered)), lambda b: None, ids)


def test_crypto_bad_inputs(tmp_path):
    with pytest.raises(ConfigError, match="no age recipients"):
        crypto.load_recipients([])
    with pytest.raises(ConfigError, match="unsupported"):
        crypto.parse_recipient("pgp-key")
    with pytest.raises(ConfigError):
        crypto.parse_recipient("age1notvalid")
    (tmp_path / "id").write_text("nothing here\n")
    with pytest.raises(ConfigError, match="no AGE-SECRET-KEY"):
        crypto.load_identities(str(tmp_path / "id"))
    with pytest.raises(ConfigError, match="identity"):
        crypto.load_identities(None)


# ---- storage helpers --------------------------------------------------------------------------
class FakeClient:
    """Records upload_part calls; fails on a chosen part; tracks concurrency."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.fail_on = fail_on
        self.parts: dict[int, int] = {}
        self.active = 0
        self.peak = 0
        self.lock = threading.Lock()

    def upload_part(self, **kw):
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            if kw["PartNumber"] == self.fail_on:
                raise botocore.exceptions.EndpointConnectionError(endpoint_url="http://x")
            self.parts[kw["PartNumber"]] = len(kw["Body"])
            return {"ETag": f'"{kw["PartNumber"]}"'}
        finally:
            with self.lock:
                self.active -= 1


def test_part_uploader_splits_and_bounds_concurrency():
    client = FakeClient()
    up = PartUploader(client, "b", "k", "id", part_size=1000, concurrency=2)
    for _ in range(55):
        up.write(b"x" * 100)
    parts = up.finish()
    assert [p["PartNumber"] for p in parts] == [1, 2, 3, 4, 5, 6]
    assert client.parts == {1: 1000, 2: 1000, 3: 1000, 4: 1000, 5: 1000, 6: 500}
    assert client.peak <= 2


def test_part_uploader_surfaces_failures():
    up = PartUploader(FakeClient(fail_on=2), "b", "k", "id", part_size=100, concurrency=1)
    with pytest.raises(botocore.exceptions.EndpointConnectionError):
        for _ in range(20):
            up.write(b"y" * 100)
        up.finish()
    up.abort()


def test_translate_messages():
    cfg = config.Config(endpoint_url="http://s3.test:9000", bucket="bk")
    denied = botocore.exceptions.ClientError({"Error": {"Code": "InvalidAccessKeyId", "Message": "no"}}, "PutObject")
    assert "credentials rejected by http://s3.test:9000 (InvalidAccessKeyId)" in str(translate(denied, cfg))
    nobucket = botocore.exceptions.ClientError({"Error": {"Code": "NoSuchBucket"}}, "ListObjectsV2")
    assert "bucket 'bk' does not exist" in str(translate(nobucket, cfg))
    down = botocore.exceptions.EndpointConnectionError(endpoint_url="http://s3.test:9000")
    assert isinstance(translate(down, cfg), StorageError)
    assert str(translate(down, cfg)).startswith("cannot reach S3 endpoint http://s3.test:9000")
    assert "no S3 credentials" in str(translate(botocore.exceptions.NoCredentialsError(), cfg))
    with pytest.raises(ValueError):
        translate(ValueError("not boto"), cfg)


def test_remote_set_completeness():
    rs = RemoteSet("mysql", "20261101T020000Z", {"mysql.sql.gz.age": 10})
    assert not rs.complete and rs.artifact == "mysql.sql.gz.age"
    rs.objects["manifest.json.age"] = 1
    assert rs.complete


# ---- CLI formatting (the restore is restore-mysql.sh: tests/backup_tools/test_restore_script.py) --------
def test_cli_formatting():
    assert cli.human_size(512) == "512 B" and cli.human_size(1536) == "1.5 KiB"
    now = datetime(2026, 11, 3, 5, 0, tzinfo=timezone.utc)
    assert cli.human_age(datetime(2026, 11, 1, 2, 0, tzinfo=timezone.utc), now) == "2d3h"
    assert cli.human_age(datetime(2026, 11, 3, 3, 30, tzinfo=timezone.utc), now) == "1h30m"
    out = cli.table([["mysql", "1 B"]], ["kind", "size"])
    assert out.splitlines()[0].startswith("kind") and "mysql" in out


def test_cli_config_error_is_one_line(tmp_path, capsys):
    code = cli.main(["--config", str(tmp_path / "missing.json"), "list"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == f"seek-backup: error: config file {tmp_path / 'missing.json'} does not exist"


def test_cli_no_bucket(tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"root": str(tmp_path)}))
    assert cli.main(["--config", str(path), "offsite"]) == 3
    assert "no bucket configured" in capsys.readouterr().err


def test_summary_without_bucket_reports_missing(tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"root": str(tmp_path)}))
    good = tmp_path / "filestore" / "20261101T020000Z"
    good.mkdir(parents=True)
    (good / "filestore.tar.gz").write_bytes(b"abc")
    (good / "manifest.json").write_text(json.dumps(manifest()))
    code = cli.main(["--config", str(path), "summary"])
    out = capsys.readouterr().out
    assert code == 1  # mysql and etcd are missing
    assert "MISSING" in out and "filestore.tar.gz" in out and "aaaaaaaaaaaaaaaa" in out


def test_module_entry_point_exists():
    assert (Path(cli.__file__).parent / "__main__.py").exists()


@pytest.mark.parametrize("script, shell", [("mysql-backup.sh", "bash"), ("filestore-backup.sh", "bash"),
                                           ("etcd-backup.sh", "sh"), ("backup-lib.sh", "sh")])
def test_producer_scripts_pass_shellcheck(script, shell):
    """The in-cluster scripts are clean for shellcheck, following the sourced backup-lib.sh (-x);
    etcd-backup.sh and backup-lib.sh as POSIX sh."""
    import shutil
    import subprocess

    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck is not installed (Debian package shellcheck)")
    path = Path(__file__).resolve().parents[2] / "roles" / "backups" / "files" / script
    proc = subprocess.run(["shellcheck", "-x", "-s", shell, str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
    assert path.read_text().startswith("#!/usr/bin/env bash" if shell == "bash" else "#!/bin/sh")


# ---- restore safety: one-line errors, SEEK versions -----------------------------------------------
def test_client_error_is_one_line_and_drops_quoted_content():
    from seek_backup.errors import client_error, one_line

    err = (b"--------------\nINSERT INTO `t` VALUES (1,'secret row'),(2,'more')\n--------------\n\n"
           b"ERROR 1062 (23000) at line 41: Duplicate entry 'alice@example.org' for key 'email'\n"
           + b"(1,'secret row'),(2,'more')\n" * 10000)
    line = client_error(err)
    assert line == "ERROR 1062 (23000) at line 41: Duplicate entry [quoted content omitted]"
    assert "\n" not in one_line("a\nb\tc " * 200) and len(one_line("x" * 1000)) == 300
    assert client_error(b"") == "no error message"
    assert client_error(b"gzip: stdin: invalid compressed data--format violated\n") == \
        "gzip: stdin: invalid compressed data--format violated"
