"""The `full` scenario's checks, against recorded outputs and real counterparts.

The summary parser reads recorded backup-now.yml output and the live output of the real summary
play; wait_up talks to a local HTTP server that routes by Host header, as the ingress does; the
workload check reads StatefulSets, Deployments and Pods from the real API server; the Ruby
snippets run under Ruby against stand-ins of SEEK's models (seek_standin.rb); the bucket check
reads a set made by our producer script and uploaded by our off-site tool to moto, then tampered
with; restore.yml's fetch play and drop-local-sets.yml run with this machine as the backup host."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pyrage
import pytest
import yaml
from botocore.config import Config as BotoConfig
from pyrage import x25519

from tests.backup_roles.helpers import env as ansible_env
from tests.backup_roles.helpers import run_playbook
from tests.backup_roles.test_summary import JOBS_OK, OFFSITE_OK, PLAYBOOK, SETS_OK
from tests.backup_tools.conftest import run_script, run_tool
from tests.backup_tools.servers import Missing, Moto
from tests.backup_tools.shell_restore import restore_filestore
from tests.e2e import checks
from tests.e2e.__main__ import _list

REPO = Path(__file__).resolve().parents[2]
RECORDED = Path(__file__).parent / "recorded"
STANDIN = Path(__file__).parent / "seek_standin.rb"
MARKER = "e2e-1700000000"
PREFIX = "seek-k3s"  # backup_s3_prefix's default, as molecule full uses it


def test_recorded_good_backup_has_no_problem() -> None:
    """The YAML callback folds long rows: the parser joins them and finds all three sets verified."""
    summary = checks.parse_backup_summary((RECORDED / "backup-summary-ok.txt").read_text())
    assert [row.kind for row in summary.sets] == ["mysql", "filestore", "etcd"]
    assert all(row.status == "local, off-site verified" for row in summary.sets)
    assert summary.offsite_ok is True and summary.backup_ok
    assert checks.backup_problems(summary) == []


def test_recorded_failed_backup_names_the_set() -> None:
    summary = checks.parse_backup_summary((RECORDED / "backup-summary-etcd-not-offsite.txt").read_text())
    problems = checks.backup_problems(summary)
    assert "backup-now.yml did not report 'Backup OK'" in problems
    assert "etcd set 20260301T013000Z: local, NOT OFF-SITE" in problems
    assert len(problems) == 2


@pytest.mark.parametrize("sets, offsite, expected", [
    (SETS_OK[:2], OFFSITE_OK, "no etcd set in the summary"),
    (SETS_OK[:2] + [{"kind": "etcd", "status": "MISSING"}], OFFSITE_OK, "etcd: no set recorded (MISSING)"),
    (SETS_OK, {"ok": False, "detail": "AccessDenied"}, "the off-site pass did not report OK"),
])
def test_live_summary_play_output(sets: list, offsite: dict, expected: str, tmp_path: Path) -> None:
    """The real summary play's output (whatever its current wording) is read the same way; a kind
    missing from the host's summary is a problem even where the play itself passes."""
    playbook = tmp_path / "summary.yml"
    playbook.write_text(PLAYBOOK)
    result = run_playbook(playbook, tmp_path, {"cluster_kubeconfig": "/dev/null", "backup_run_results": JOBS_OK,
                                               "backup_offsite_run_summary": sets,
                                               "backup_offsite_run_result": offsite})
    problems = checks.backup_problems(checks.parse_backup_summary(result.stdout))
    assert expected in problems, problems


@pytest.fixture
def ingress() -> Iterator[str]:
    """A local HTTP server answering /up with 200 only for Host seek.test, like an ingress rule."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server API)
            hits.append(self.headers["Host"])
            ok = self.headers["Host"] == "seek.test" and self.path == "/up" and len(hits) > 2
            self.send_response(200 if ok else 404)
            self.end_headers()
            self.wfile.write(b"ok" if ok else b"default backend - 404")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_wait_up_retries_until_200(ingress: str) -> None:
    """The third answer is 200: wait_up keeps asking until then."""
    assert checks.wait_up(f"{ingress}/up", "seek.test", timeout=10, interval=0.05) == []


def test_wait_up_names_the_last_answer(ingress: str) -> None:
    problems = checks.wait_up(f"{ingress}/up", "other.test", timeout=0.3, interval=0.05)
    assert len(problems) == 1 and "HTTP 404" in problems[0] and "Host: other.test" in problems[0]


def test_wait_up_connection_refused() -> None:
    problems = checks.wait_up("http://127.0.0.1:9/up", "seek.test", timeout=0, interval=0)
    assert len(problems) == 1 and "ConnectionRefusedError" in problems[0]


def test_markers_and_runner_argv() -> None:
    for bad in ("x", "a'); system('rm", "with space", "a" * 65):
        with pytest.raises(ValueError):
            checks.ruby_create(bad)
    argv = checks.rails_runner_argv("kubectl", "/k/config", "seek", "puts 1")
    assert argv[-6:] == ["--", "bundle", "exec", "rails", "runner", "puts 1"]
    assert "deployment/seek-web" in argv


class StandinSeek:
    """The round trip's Ruby snippets run by a real Ruby against seek_standin.rb (the SEEK models
    they call, kept in a JSON file between runs), the filestore a directory of the test."""

    def __init__(self, ruby: str, tmp: Path) -> None:
        self.ruby, self.db, self.filestore = ruby, tmp / "seek-db.json", tmp / "filestore"
        self.filestore.mkdir()

    def run(self, snippet: str) -> checks.SeekState:
        result = subprocess.run([self.ruby, "-r", str(STANDIN), "-e", snippet], capture_output=True, text=True,
                                timeout=60, check=False,
                                env={**os.environ, "E2E_STANDIN_DB": str(self.db),
                                     "E2E_STANDIN_FILESTORE": str(self.filestore)})
        assert result.returncode == 0, result.stderr
        # rails runner may log before the line the snippet prints
        return checks.parse_state(f"I, [2026-12-03T10:00:00.000000 #1]  INFO -- : booted\n{result.stdout}")

    def copy(self, to: Path) -> None:
        """A backup of both: the rows and the filestore."""
        to.mkdir()
        shutil.copy2(self.db, to / "seek-db.json")
        shutil.copytree(self.filestore, to / "filestore")

    def put_back(self, copy: Path) -> None:
        """A restore of both from a copy."""
        shutil.copy2(copy / "seek-db.json", self.db)
        shutil.rmtree(self.filestore)
        shutil.copytree(copy / "filestore", self.filestore)


@pytest.fixture
def standin_seek(tmp_path: Path) -> StandinSeek:
    ruby = shutil.which("ruby")
    if not ruby:
        pytest.skip("ruby is not installed (Debian package list: tests/host-packages.txt)")
    return StandinSeek(ruby, tmp_path)


def test_ruby_snippets_round_trip(standin_seek: StandinSeek, tmp_path: Path) -> None:
    """create -> copy -> delete -> put back -> state, with the snippets verify.yml runs: the file
    the Ruby writes is the bytes filestore_content names, the state line parses, the deletion
    removes the file, and each check fails where the data are not what it expects."""
    seek, store = standin_seek, str(standin_seek.filestore)
    before = seek.run(checks.ruby_create(MARKER))
    assert checks.created_problems(before, MARKER, store) == []
    blob = before.blobs[0]
    assert Path(blob.path).read_bytes() == checks.filestore_content(MARKER)
    assert checks.created_problems(before, MARKER) == [
        f"ContentBlob {blob.uuid} ({blob.path}): not /seek/filestore/assets/<uuid>.dat, on the filestore volume"]
    assert seek.run(checks.ruby_create(MARKER)) == before, "a second create made another DataFile"
    seek.copy(tmp_path / "backup")

    gone = seek.run(checks.ruby_delete(MARKER))
    assert checks.deleted_problems(gone, before) == []
    assert gone.removed == [{"path": blob.path, "exists": False}] and not Path(blob.path).exists()
    lost = checks.restored_problems(before, seek.run(checks.ruby_state(MARKER)), MARKER, store)
    assert lost == [f"after the restore: expected 1 project titled {MARKER}, SEEK has 0",
                    f"after the restore: expected 1 DataFile titled {MARKER}, SEEK has 0",
                    f"after the restore: expected 1 ContentBlob of the DataFile {MARKER}, SEEK has 0"]

    seek.put_back(tmp_path / "backup")
    after = seek.run(checks.ruby_state(MARKER))
    assert checks.restored_problems(before, after, MARKER, store) == []
    data = bytearray(Path(blob.path).read_bytes())
    data[len(data) // 2] ^= 0x01
    Path(blob.path).write_bytes(bytes(data))
    changed = checks.restored_problems(before, seek.run(checks.ruby_state(MARKER)), MARKER, store)
    assert len(changed) == 2 and all(f"ContentBlob {blob.uuid}" in p and "sha256" in p for p in changed), changed


def test_parse_state_takes_the_last_line() -> None:
    line = ('E2E_STATE={"projects":%d,"data_files":1,"blobs":[{"uuid":"u","path":"/seek/filestore/assets/u.dat",'
            '"exists":true,"size":3,"sha256":"ab","file_size":3,"sha1sum":"cd"}],"removed":[]}')
    state = checks.parse_state(f"log E2E_STATE={{}}\n{line % 2}\n{line % 1}\n")
    assert state.projects == 1 and state.blobs == [checks.Blob("u", "/seek/filestore/assets/u.dat", True, 3, "ab",
                                                               3, "cd")]
    with pytest.raises(ValueError):
        checks.parse_state("Rails boot error")


def test_created_and_deleted_problems_name_what_is_wrong() -> None:
    content = checks.filestore_content(MARKER)
    good = checks.Blob("u1", "/seek/filestore/assets/u1.dat", True, len(content),
                       hashlib.sha256(content).hexdigest(), len(content), hashlib.sha1(content).hexdigest())
    state = checks.SeekState(1, 1, [good])
    assert checks.created_problems(state, MARKER) == []
    missing = checks.created_problems(checks.SeekState(1, 1, [dataclasses.replace(good, exists=False)]), MARKER)
    assert missing == ["ContentBlob u1 (/seek/filestore/assets/u1.dat): the file does not exist"]
    row = checks.created_problems(checks.SeekState(1, 1, [dataclasses.replace(good, sha1sum="0" * 40)]), MARKER)
    assert len(row) == 1 and "the row records" in row[0]
    assert checks.created_problems(checks.SeekState(1, 1, [good, good]), MARKER) == [
        f"expected 1 ContentBlob of the DataFile {MARKER}, SEEK has 2"]
    left = checks.deleted_problems(checks.SeekState(0, 1, [], [{"path": good.path, "exists": True}]), state)
    assert left == ["after the deletion SEEK still has 0 project(s), 1 DataFile(s) and 0 ContentBlob(s) of the marker",
                    "/seek/filestore/assets/u1.dat still exists after the deletion"]
    assert checks.deleted_problems(checks.SeekState(0, 0, []), state) == [
        "the deletion did not remove /seek/filestore/assets/u1.dat"]


# ---- the bucket, read straight: a set our own producer script and off-site tool wrote -----------
@pytest.fixture(scope="module")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    """moto in server mode (the venv's moto_server), as molecule full's prepare.yml starts it."""
    try:
        server = Moto().start(tmp_path_factory.mktemp("moto"))
    except Missing as exc:
        pytest.skip(str(exc))
    yield server
    server.stop()


@dataclasses.dataclass
class OffsiteSet:
    """A filestore set made by filestore-backup.sh from a SEEK-shaped filestore and uploaded by
    `seek_backup offsite`, as the backup host's pass does."""

    client: Any
    bucket: str
    row: checks.SetRow
    identity: Path
    root: Path
    config_dir: Path
    blob_uuid: str

    @property
    def base(self) -> str:
        return f"{PREFIX}/{self.row.kind}/{self.row.stamp}/"


@pytest.fixture
def offsite_set(tmp_path: Path, moto_server: Moto) -> OffsiteSet:
    bucket = f"e2e-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=moto_server.endpoint, region_name="us-east-1",
                          aws_access_key_id="e2etestkey", aws_secret_access_key="e2etestsecret",
                          config=BotoConfig(s3={"addressing_style": "path"}))
    client.create_bucket(Bucket=bucket)
    key = x25519.Identity.generate()
    identity = tmp_path / "age" / "identity"
    identity.parent.mkdir()
    identity.write_text(f"{key}\n")
    blob_uuid = str(uuid.uuid4())
    filestore = tmp_path / "filestore"
    (filestore / "assets").mkdir(parents=True)
    (filestore / "assets" / f"{blob_uuid}.dat").write_bytes(checks.filestore_content(MARKER))
    (filestore / "secret_key_base").mkdir()
    (filestore / "secret_key_base" / "key").write_text("not a real key\n")
    root, config_dir = tmp_path / "backups", tmp_path / "etc"
    root.mkdir()
    config_dir.mkdir()
    config = config_dir / "config.json"
    config.write_text(json.dumps({
        "root": str(root), "bucket": bucket, "prefix": PREFIX, "endpoint_url": moto_server.endpoint,
        "access_key_id": "e2etestkey", "secret_access_key": "e2etestsecret", "addressing_style": "path",
        "part_size_mb": 5, "max_attempts": 1, "recipients": [str(key.to_public())]}))
    config.chmod(0o600)
    run_script("filestore-backup.sh", {"FILESTORE_DIR": str(filestore), "BACKUP_ROOT": str(root)})
    run_tool(config, "offsite")
    # the tool's own summary (exit 1: no mysql or etcd set here), as backup-now.yml's table shows it
    summary = json.loads(run_tool(config, "summary", "--json", check=False).stdout)
    found = next(item for item in summary if item["kind"] == "filestore")
    assert found["status"] == "local, off-site verified", found
    row = checks.SetRow(kind="filestore", stamp=found["stamp"], artifact=found["artifact"],
                        sha256=found["sha256"][:16], status=found["status"])
    return OffsiteSet(client, bucket, row, identity, root, config_dir, blob_uuid)


def test_bucket_report_reads_what_our_tool_uploaded(offsite_set: OffsiteSet) -> None:
    """Both objects of the set, downloaded and hashed: the digests are the objects' own and the
    ones the backup host recorded (uploaded.json); the plaintext decrypts to the manifest's."""
    s = offsite_set
    identities = checks.load_identities(str(s.identity))
    report = checks.bucket_report(s.client, s.bucket, PREFIX, [s.row], identities)
    assert report.problems == []
    artifact, manifest = f"{s.base}filestore.tar.gz.age", f"{s.base}manifest.json.age"
    assert sorted(report.digests) == [artifact, manifest]
    for key, digest in report.digests.items():
        assert digest == hashlib.sha256(s.client.get_object(Bucket=s.bucket, Key=key)["Body"].read()).hexdigest()
    uploaded = json.loads((s.root / "filestore" / s.row.stamp / "uploaded.json").read_text())
    assert (uploaded["artifact_key"], uploaded["manifest_key"]) == (artifact, manifest)
    assert report.digests[artifact] == uploaded["ciphertext_sha256"]
    assert checks.bucket_report(s.client, s.bucket, f"/{PREFIX}/", [s.row], identities).problems == []


def _flip_artifact_byte(s: OffsiteSet) -> None:
    """One byte of the stored artifact flipped; size and metadata as they were."""
    key = f"{s.base}filestore.tar.gz.age"
    got = s.client.get_object(Bucket=s.bucket, Key=key)
    data = bytearray(got["Body"].read())
    data[len(data) // 2] ^= 0x01
    s.client.put_object(Bucket=s.bucket, Key=key, Body=bytes(data), Metadata=got["Metadata"])


def _other_plaintext(s: OffsiteSet) -> None:
    """A valid age object of other bytes, its metadata and the manifest object's rewritten to match it:
    only the plaintext, decrypted, tells."""
    key, man_key = f"{s.base}filestore.tar.gz.age", f"{s.base}manifest.json.age"
    recipient = checks.load_identities(str(s.identity))[0].to_public()
    body = pyrage.encrypt(b"another filestore", [recipient])
    digest = hashlib.sha256(body).hexdigest()
    meta = s.client.head_object(Bucket=s.bucket, Key=key)["Metadata"]
    s.client.put_object(Bucket=s.bucket, Key=key, Body=body, Metadata={**meta, "ciphertext-sha256": digest,
                                                                         "ciphertext-size": str(len(body))})
    man_meta = s.client.head_object(Bucket=s.bucket, Key=man_key)["Metadata"]
    s.client.copy_object(Bucket=s.bucket, Key=man_key, CopySource={"Bucket": s.bucket, "Key": man_key},
                         MetadataDirective="REPLACE", Metadata={**man_meta, "artifact-ciphertext-sha256": digest,
                                                                "artifact-ciphertext-size": str(len(body))})


def _recorded_digest(s: OffsiteSet) -> None:
    """The manifest object records another artifact digest (the objects are untouched)."""
    man_key = f"{s.base}manifest.json.age"
    man_meta = s.client.head_object(Bucket=s.bucket, Key=man_key)["Metadata"]
    s.client.copy_object(Bucket=s.bucket, Key=man_key, CopySource={"Bucket": s.bucket, "Key": man_key},
                         MetadataDirective="REPLACE", Metadata={**man_meta, "artifact-ciphertext-sha256": "0" * 64})


@pytest.mark.parametrize("tamper, expected", [
    (_flip_artifact_byte, ["artifact ciphertext sha256", "(recorded in the manifest)", "cannot decrypt"]),
    (_other_plaintext, ["decrypted artifact sha256"]),
    (_recorded_digest, ["0000000000000000 (recorded in the manifest)"]),
    (lambda s: s.client.delete_object(Bucket=s.bucket, Key=f"{s.base}manifest.json.age"),
     ["manifest.json.age is missing"]),
    (lambda s: s.client.put_object(Bucket=s.bucket, Key=f"{s.base}etcd.db.age", Body=b"x"),
     ["unexpected object", "etcd.db.age"]),
], ids=["flipped-byte", "other-plaintext", "recorded-digest", "manifest-gone", "stray-object"])
def test_bucket_report_fails_on_a_tampered_set(offsite_set: OffsiteSet, tamper: Callable[[OffsiteSet], Any],
                                               expected: list[str]) -> None:
    s = offsite_set
    identities = checks.load_identities(str(s.identity))
    assert checks.bucket_report(s.client, s.bucket, PREFIX, [s.row], identities).problems == []
    tamper(s)
    problems = checks.bucket_report(s.client, s.bucket, PREFIX, [s.row], identities).problems
    assert problems and all(p.startswith(f"filestore set {s.row.stamp}: ") for p in problems), problems
    text = "\n".join(problems)
    assert all(part in text for part in expected), problems


def test_bucket_report_needs_the_operators_identity_and_the_recorded_stamp(offsite_set: OffsiteSet) -> None:
    s = offsite_set
    stranger = [x25519.Identity.generate()]
    problems = checks.bucket_report(s.client, s.bucket, PREFIX, [s.row], stranger).problems
    assert len(problems) == 1 and "cannot decrypt with the operator's identity" in problems[0], problems
    other = dataclasses.replace(s.row, stamp="20000101T000000Z")
    assert checks.bucket_report(s.client, s.bucket, PREFIX, [other]).problems == [
        f"filestore set 20000101T000000Z: s3://{s.bucket}/{PREFIX}/filestore/20000101T000000Z/{name} is missing"
        for name in ("filestore.tar.gz.age", "manifest.json.age")]
    wrong = dataclasses.replace(s.row, sha256="0" * 16)
    problems = checks.bucket_report(s.client, s.bucket, PREFIX, [wrong], checks.load_identities(str(s.identity)))
    assert len(problems.problems) == 1 and "is not the summary's 0000000000000000" in problems.problems[0]


# ---- restore.yml's fetch, once the backup host lost its copy ----------------------------------------
def _restore_fetch_playbook(tmp: Path) -> Path:
    """restore.yml's play on the backup host (backup_fetch) and its 'Show what is restored' task,
    taken from the playbook itself; the controller's other tasks need a cluster."""
    plays = yaml.safe_load((REPO / "playbooks" / "restore.yml").read_text())
    fetch = next(play for play in plays if play["hosts"] == "backup_hosts")
    last = plays[-1]
    show = [task for task in last["tasks"] if task.get("name") == "Show what is restored"]
    assert len(show) == 1, "restore.yml no longer shows what it restores: parse_restored_sets reads that"
    path = tmp / "restore-fetch.yml"
    path.write_text(yaml.safe_dump([fetch, {**last, "tasks": show}], sort_keys=False))
    return path


def _ansible(tmp: Path, playbook: Path, extra: dict[str, Any]) -> subprocess.CompletedProcess:
    """ansible-playbook with this repository's configuration, this machine as the backup host
    and the controller (no sudo: already root)."""
    inventory = tmp / "inventory.yml"
    local = {"ansible_connection": "local", "ansible_become": False,
             "ansible_python_interpreter": "{{ ansible_playbook_python }}"}
    inventory.write_text(json.dumps({"all": {"children": {"backup_hosts": {"hosts": {"localhost": local}},
                                                          "controller": {"hosts": {"localhost": local}}}}}))
    return subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(inventory),
                           "-e", json.dumps(extra), str(playbook)], cwd=REPO, env=ansible_env(),
                          capture_output=True, text=True, timeout=600, check=False)


def test_restore_fetches_from_the_bucket_once_the_local_copy_is_gone(offsite_set: OffsiteSet, tmp_path: Path) -> None:
    """The round trip's off-site half, on this machine: restore.yml's fetch play uses the local set
    while there is one (the check names it); drop-local-sets.yml refuses a set that is not there and
    removes the one that is; then the same play downloads and decrypts the set from the bucket with
    the operator's identity, the check passes, and the filestore it restores holds the same file."""
    s = offsite_set
    # The tool as backup_host installs it: a venv's python with the tool's package on PYTHONPATH.
    install = tmp_path / "opt"
    (install / "venv" / "bin").mkdir(parents=True)
    (install / "lib").mkdir()
    (install / "lib" / "seek_backup").symlink_to(REPO / "tools" / "seek_backup")
    python = install / "venv" / "bin" / "python"
    python.write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    python.chmod(0o755)
    wanted = {"filestore": s.row.stamp}
    fetch_vars = {"backup_root": str(s.root), "backup_host_install_dir": str(install),
                  "backup_host_config_dir": str(s.config_dir), "restore_mysql": False,
                  "restore_stamp": s.row.stamp, "restore_age_identity_file": str(s.identity)}
    playbook = _restore_fetch_playbook(tmp_path)

    local = _ansible(tmp_path, playbook, fetch_vars)
    assert local.returncode == 0, local.stdout[-3000:]
    assert checks.restore_source_problems(checks.parse_restored_sets(local.stdout), wanted) == [
        f"restore.yml restored filestore set {s.row.stamp} from local, expected {s.row.stamp} from off-site (the bucket)"]

    drop = REPO / "molecule" / "full" / "drop-local-sets.yml"
    refused = _ansible(tmp_path, drop, {"backup_root": str(s.root), "e2e_drop_sets": {"filestore": "20000101T000000Z"}})
    assert refused.returncode != 0 and "the filestore set(s) of" in refused.stdout, refused.stdout[-3000:]
    assert (s.root / "filestore" / s.row.stamp / "manifest.json").is_file()
    dropped = _ansible(tmp_path, drop, {"backup_root": str(s.root), "e2e_drop_sets": wanted})
    assert dropped.returncode == 0, dropped.stdout[-3000:]
    assert not any((s.root / "filestore").iterdir())

    fetched = _ansible(tmp_path, playbook, fetch_vars)
    assert fetched.returncode == 0, fetched.stdout[-3000:]
    restored = checks.parse_restored_sets(fetched.stdout)
    assert checks.restore_source_problems(restored, wanted) == []
    assert restored[0]["path"] == str(s.root / "restore" / "filestore" / s.row.stamp)
    target = tmp_path / "restored-filestore"
    target.mkdir()
    result = restore_filestore(Path(restored[0]["path"]), target)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (target / "assets" / f"{s.blob_uuid}.dat").read_bytes() == checks.filestore_content(MARKER)


def test_parse_restored_sets_reads_both_sets() -> None:
    output = textwrap.dedent("""\
        TASK [Show what is restored] ***************************************************
        ok: [localhost] =>
            msg: 'Restoring {"kind": "mysql", "stamp": "20260301T013000Z", "source": "off-site",
                "dir": "restore/mysql/20260301T013000Z"} {"kind": "filestore",
                "stamp": "20260301T013002Z", "source": "local", "dir": "filestore/20260301T013002Z"}'

        TASK [Restore the sets] ********************************************************
        """)
    restored = checks.parse_restored_sets(output)
    assert [(item["kind"], item["source"]) for item in restored] == [("mysql", "off-site"), ("filestore", "local")]
    assert checks.restore_source_problems(restored, {"mysql": "20260301T013000Z"}) == []
    assert checks.restore_source_problems(restored, {"mysql": "20260301T013001Z", "filestore": "20260301T013002Z"}) \
        == ["restore.yml restored mysql set 20260301T013000Z from off-site, expected 20260301T013001Z from off-site "
            "(the bucket)",
            "restore.yml restored filestore set 20260301T013002Z from local, expected 20260301T013002Z from off-site "
            "(the bucket)"]
    assert checks.restore_source_problems([], {"mysql": "20260301T013000Z"}) == [
        "restore.yml did not say it restores a mysql set"]


def test_reindex_problems() -> None:
    def job(name: str, created: str, succeeded: int) -> dict:
        return {"metadata": {"name": name, "creationTimestamp": created}, "status": {"succeeded": succeeded}}

    assert checks.reindex_problems([]) == ["no reindex Job was created by the restore"]
    assert checks.reindex_problems([job("seek-reindex-a", "2026-01-01T00:00:00Z", 0),
                                    job("seek-reindex-b", "2026-01-02T00:00:00Z", 1)]) == []
    assert "seek-reindex-b" in checks.reindex_problems([job("seek-reindex-a", "2026-01-01T00:00:00Z", 1),
                                                        job("seek-reindex-b", "2026-01-02T00:00:00Z", 0)])[0]


def _workloads_manifest(namespace: str) -> str:
    labels = "{app.kubernetes.io/name: %s}"
    template = """
apiVersion: apps/v1
kind: %(kind)s
metadata: {name: %(name)s, namespace: %(ns)s}
spec:
  replicas: 1
  %(extra)s
  selector: {matchLabels: %(labels)s}
  template:
    metadata: {labels: %(labels)s}
    spec: {containers: [{name: c, image: "registry.invalid/none:1"}]}
"""
    docs = [template % {"kind": "StatefulSet", "name": name, "ns": namespace, "labels": labels % name,
                        "extra": "serviceName: " + name} for name in ("mysql", "solr")]
    docs += [template % {"kind": "Deployment", "name": name, "ns": namespace, "labels": labels % name,
                         "extra": ""} for name in ("seek-web", "seek-workers")]
    return "---".join(docs)


def test_workloads_against_the_api_server(kube_api) -> None:
    """Real objects from the API server: nothing is Ready (no kubelet) until the status says so."""
    namespace = f"e2e-{int(time.time())}"
    kube_api.run_kubectl("create", "namespace", namespace)
    kube_api.run_kubectl("apply", "-f", "-", input=_workloads_manifest(namespace))
    deadline = time.monotonic() + 60
    while len(kube_api.run_kubectl("-n", namespace, "get", "pods", "-o", "name").stdout.split()) < 4:
        assert time.monotonic() < deadline, "the controllers did not create the pods"
        time.sleep(1)
    objects = _list(str(kube_api.kubeconfig), namespace)
    problems = checks.workload_problems(objects["statefulsets"], objects["deployments"], objects["pods"])
    assert any(p.startswith("StatefulSet mysql is not Ready") for p in problems), problems
    assert any(p.startswith("StatefulSet solr is not Ready") for p in problems), problems
    assert any(p.startswith("Deployment seek-web has no ready replica") for p in problems), problems
    assert any("expected one Running workers pod, found 0" in p for p in problems), problems
    assert len(problems) == 4

    # What a kubelet would report once the containers run; the controllers then count them.
    pods = kube_api.run_kubectl("-n", namespace, "get", "pods", "-o", "name").stdout.split()
    assert len(pods) == 4, pods
    status = '{"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}'
    for pod in pods:
        kube_api.run_kubectl("-n", namespace, "patch", pod, "--subresource=status", "--type=merge", "-p", status)
    deadline = time.monotonic() + 60
    while True:
        objects = _list(str(kube_api.kubeconfig), namespace)
        problems = checks.workload_problems(objects["statefulsets"], objects["deployments"], objects["pods"])
        if not problems or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert problems == []
    kube_api.run_kubectl("delete", "namespace", namespace, "--wait=false")
