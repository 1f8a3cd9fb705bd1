"""What the `full` scenario asserts about a running platform, as testable functions.

Each check returns a list of problems (empty when all is well), so that a failure names every
thing that is wrong at once instead of the first."""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import shlex
import tempfile
import textwrap
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyrage
import yaml
from pyrage import x25519

# Object names the roles create (roles/mysql, roles/solr, roles/seek templates).
MYSQL_STATEFULSET = "mysql"
SOLR_STATEFULSET = "solr"
WEB_DEPLOYMENT = "seek-web"
WORKERS_DEPLOYMENT = "seek-workers"
BACKUP_KINDS = ("etcd", "mysql", "filestore")

# A marker is put into SEEK's database as a project title and searched for again: keep it to
# characters that need no quoting in Ruby or the shell.
_MARKER = re.compile(r"^[A-Za-z0-9-]{4,64}$")
# One row of the backup summary table (roles/backups/templates/backup-summary.txt.j2), as it
# appears in ansible-playbook's output (possibly inside a quoted YAML or JSON list item).
_SET_ROW = re.compile(
    r"""^[\s\-"']*(?P<kind>etcd|mysql|filestore)\s+(?P<stamp>\d{8}T\d{6}Z|-)\s+(?P<artifact>\S+)\s+"""
    r"""(?P<size>-|[\d.]+\s\S+)\s+(?P<sha256>[0-9a-f]{16}|-)\s+(?P<age>\d+h\d{2}m|-)\s+"""
    r"""(?P<status>.*?)[\s"',]*$""")
_OFFSITE = re.compile(r"off-site pass: (?P<state>OK|FAILED)")


@dataclass
class SetRow:
    """One backup set of the summary table."""

    kind: str
    stamp: str
    artifact: str
    sha256: str
    status: str


@dataclass
class BackupSummary:
    """What backup-now.yml reported: the newest set of each kind, the off-site pass and the verdict."""

    sets: list[SetRow] = field(default_factory=list)
    offsite_ok: bool | None = None
    backup_ok: bool = False
    backup_failed: bool = False


def _unwrap(output: str) -> list[str]:
    """Lines of the output with the YAML callback's folded list items joined again."""
    lines: list[str] = []
    for line in output.splitlines():
        item = re.match(r"^(\s*)- ", lines[-1]) if lines else None
        indent = len(line) - len(line.lstrip())
        if item and line.strip() and indent > len(item[1]) and not line.lstrip().startswith("- "):
            lines[-1] = f"{lines[-1].rstrip()} {line.strip()}"
        else:
            lines.append(line)
    return lines


def parse_backup_summary(output: str) -> BackupSummary:
    """Read backup-now.yml's summary table and verdict out of ansible-playbook's output."""
    summary = BackupSummary()
    for line in _unwrap(output):
        row = _SET_ROW.match(line)
        if row:
            summary.sets.append(SetRow(kind=row["kind"], stamp=row["stamp"], artifact=row["artifact"],
                                       sha256=row["sha256"], status=row["status"].strip()))
            continue
        offsite = _OFFSITE.search(line)
        if offsite:
            summary.offsite_ok = offsite["state"] == "OK"
    summary.backup_ok = "Backup OK" in output
    summary.backup_failed = "BACKUP FAILED" in output
    return summary


def backup_problems(summary: BackupSummary, kinds: Iterable[str] = BACKUP_KINDS) -> list[str]:
    """Problems with a backup run: every kind needs a set that was verified off-site."""
    problems = []
    if not summary.backup_ok or summary.backup_failed:
        problems.append("backup-now.yml did not report 'Backup OK'")
    if summary.offsite_ok is not True:
        problems.append("the off-site pass did not report OK")
    by_kind = {row.kind: row for row in summary.sets}
    for kind in kinds:
        row = by_kind.get(kind)
        if row is None:
            problems.append(f"no {kind} set in the summary")
        elif row.stamp == "-" or row.sha256 == "-":
            problems.append(f"{kind}: no set recorded ({row.status})")
        elif "verified" not in row.status or re.search(r"NOT|FAILED|MISSING", row.status):
            problems.append(f"{kind} set {row.stamp}: {row.status}")
    return problems


def _ready(status: Mapping[str, Any] | None, wanted: int) -> bool:
    status = status or {}
    return wanted > 0 and status.get("readyReplicas", 0) >= wanted


def workload_problems(statefulsets: Iterable[Mapping[str, Any]], deployments: Iterable[Mapping[str, Any]],
                      pods: Iterable[Mapping[str, Any]]) -> list[str]:
    """Problems with SEEK's workloads, from the API objects of its namespace.

    MySQL and Solr must be Ready, the web Deployment available, and the workers pod Running."""
    problems = []
    sets = {item["metadata"]["name"]: item for item in statefulsets}
    for name in (MYSQL_STATEFULSET, SOLR_STATEFULSET):
        item = sets.get(name)
        if item is None:
            problems.append(f"StatefulSet {name} is missing")
        elif not _ready(item.get("status"), item["spec"].get("replicas", 1)):
            problems.append(f"StatefulSet {name} is not Ready: {item.get('status', {})}")
    deploys = {item["metadata"]["name"]: item for item in deployments}
    web = deploys.get(WEB_DEPLOYMENT)
    if web is None:
        problems.append(f"Deployment {WEB_DEPLOYMENT} is missing")
    elif not _ready(web.get("status"), web["spec"].get("replicas", 1)):
        problems.append(f"Deployment {WEB_DEPLOYMENT} has no ready replica: {web.get('status', {})}")
    workers = deploys.get(WORKERS_DEPLOYMENT)
    if workers is None:
        problems.append(f"Deployment {WORKERS_DEPLOYMENT} is missing")
    else:
        selector = workers["spec"]["selector"].get("matchLabels", {})
        mine = [pod for pod in pods
                if all(pod["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())]
        running = [pod for pod in mine if pod.get("status", {}).get("phase") == "Running"
                   and not pod["metadata"].get("deletionTimestamp")]
        if len(running) != 1:
            phases = [pod.get("status", {}).get("phase") for pod in mine]
            problems.append(f"expected one Running workers pod, found {len(running)} (phases {phases})")
    return problems


def http_get(url: str, host: str, timeout: float = 10.0) -> tuple[int, str]:
    """GET url with the given Host header (the ingress routes by it); returns status and body."""
    parts = urllib.parse.urlsplit(url)
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request("GET", parts.path or "/", headers={"Host": host})
        response = connection.getresponse()
        return response.status, response.read(4096).decode("utf-8", "replace")
    finally:
        connection.close()


def wait_up(url: str, host: str, timeout: float, interval: float = 5.0,
            get: Callable[[str, str], tuple[int, str]] = http_get) -> list[str]:
    """Wait until url answers 200 through the ingress; the problem names the last answer."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        try:
            status, body = get(url, host)
            if status == 200:
                return []
            last = f"HTTP {status}: {body[:200]!r}"
        except OSError as error:
            last = f"{type(error).__name__}: {error}"
        if time.monotonic() >= deadline:
            return [f"{url} (Host: {host}) did not answer 200 within {timeout:.0f}s; last: {last}"]
        time.sleep(interval)


def check_marker(marker: str) -> str:
    """The marker, refused unless it is safe to put into Ruby and shell commands as it is."""
    if not _MARKER.match(marker):
        raise ValueError(f"marker {marker!r} must be 4-64 letters, digits or dashes")
    return marker


def rails_runner_argv(kubectl: str, kubeconfig: str, namespace: str, ruby: str) -> list[str]:
    """kubectl exec into the web Deployment running `rails runner` there.

    The running web container has the MySQL database.yml SEEK's entrypoint wrote, so the code
    runs against SEEK's real database, and its filestore volume, as SEEK itself does."""
    return [kubectl, f"--kubeconfig={kubeconfig}", "--namespace", namespace, "exec",
            f"deployment/{WEB_DEPLOYMENT}", "--", "bundle", "exec", "rails", "runner", ruby]


# What the round trip puts into SEEK: a project and a DataFile, both titled with the marker, whose
# ContentBlob holds filestore_content(marker). SEEK facts this relies on (seek4science/seek, tag
# v1.18.1, read there, not copied):
# - app/models/content_blob.rb: bytes given as `data` are written by `before_save
#   :dump_data_to_file` to `filepath`, which is `<asset_filestore_path>/<uuid>.dat`; the row records
#   `file_size`, and lib/seek/data/checksums.rb adds `sha1sum`/`md5sum` of that file before save;
# - lib/seek/config.rb: asset_filestore_path is `<filestore_path>/assets`, a relative
#   filestore_path is under Rails.root; config/initializers/seek_configuration.rb: filestore_path
#   defaults to "filestore"; Dockerfile: APP_DIR=/seek is the WORKDIR (Rails.root). So the file is
#   /seek/filestore/assets/<uuid>.dat, on the volume the seek role mounts at /seek/filestore and the
#   filestore backup archives;
# - app/models/data_file.rb: a DataFile needs a title and projects; app/validators/
#   projects_validator.rb skips the project membership check when there is no contributor (a
#   runner has no current user); saves go through disable_authorization_checks
#   (lib/extensions/object.rb), as lib/seek/example_data/data_files_and_models_seeder.rb does.
SEEK_FILESTORE = "/seek/filestore"
_STATE = re.compile(r"^E2E_STATE=(?P<json>\{.*\})\s*$", re.MULTILINE)


def filestore_content(marker: str) -> bytes:
    """The bytes of the marker's uploaded file: a line naming it, then every byte value, 64 times."""
    return (f"e2e {check_marker(marker)}\n".encode() + bytes(range(256))) * 64


# Ruby that prints, as one JSON line, the projects and DataFiles titled t and for each of their
# ContentBlob rows the file on disk: exists, size and sha256 (computed in the pod), and what the row
# recorded (file_size, sha1sum; read raw: SEEK's sha1sum reader would compute and save a missing one).
_RUBY_STATE = """\
ids = DataFile.where(title: t).pluck(:id)
blobs = ContentBlob.where(asset_type: 'DataFile', asset_id: ids).map do |b|
  f = b.filepath
  e = File.file?(f)
  { uuid: b.uuid, path: f, exists: e, size: (e ? File.size(f) : nil),
    sha256: (e ? Digest::SHA256.file(f).hexdigest : nil), file_size: b[:file_size], sha1sum: b[:sha1sum] }
end
puts 'E2E_STATE=' + { projects: Project.where(title: t).count, data_files: ids.size, blobs: blobs,
                      removed: removed }.to_json
"""


def _ruby(marker: str, body: str) -> str:
    title = check_marker(marker)
    return f"require 'digest'\nt = '{title}'\nremoved = []\n{body}{_RUBY_STATE}"


def ruby_create(marker: str) -> str:
    """Ruby that creates (once) a project titled marker and a DataFile in it whose ContentBlob holds
    filestore_content(marker), then prints the state."""
    return _ruby(marker, """\
project = Project.find_or_create_by!(title: t)
unless DataFile.where(title: t).exists?
  df = DataFile.new(title: t)
  df.projects = [project]
  df.content_blob = ContentBlob.new(data: (('e2e ' + t + "\\n").b + (0..255).to_a.pack('C*')) * 64,
                                    original_filename: t + '.bin', content_type: 'application/octet-stream')
  disable_authorization_checks { df.save! }
end
""")


def ruby_delete(marker: str) -> str:
    """Ruby that deletes the marker's DataFiles (their versions, ContentBlob rows and files on
    disk) and projects, lists the files it removed, and prints the state."""
    return _ruby(marker, """\
DataFile.where(title: t).each do |d|
  ContentBlob.where(asset_type: 'DataFile', asset_id: d.id).each do |b|
    File.delete(b.filepath) if File.exist?(b.filepath)
    removed << { path: b.filepath, exists: File.exist?(b.filepath) }
    b.delete
  end
  DataFile::Version.where(data_file_id: d.id).delete_all
  d.delete
end
Project.where(title: t).delete_all
""")


def ruby_state(marker: str) -> str:
    """Ruby that only prints the state."""
    return _ruby(marker, "")


@dataclass
class Blob:
    """One ContentBlob row of the marker's DataFile and its file in the filestore."""

    uuid: str
    path: str
    exists: bool
    size: int | None
    sha256: str | None
    file_size: int | None
    sha1sum: str | None


@dataclass
class SeekState:
    """What the Ruby snippets print: counts, blobs, and the files a deletion removed."""

    projects: int
    data_files: int
    blobs: list[Blob]
    removed: list[dict[str, Any]] = field(default_factory=list)


def parse_state(output: str) -> SeekState:
    """The E2E_STATE line the Ruby snippets print (the last one: Rails may log before it)."""
    found = [match["json"] for match in _STATE.finditer(output)]
    if not found:
        raise ValueError(f"no E2E_STATE line in the rails runner output: {output[-500:]!r}")
    data = json.loads(found[-1])
    return SeekState(projects=int(data["projects"]), data_files=int(data["data_files"]),
                     blobs=[Blob(**{name: blob.get(name) for name in Blob.__dataclass_fields__})
                            for blob in data["blobs"]],
                     removed=list(data.get("removed") or []))


def created_problems(state: SeekState, marker: str, filestore: str = SEEK_FILESTORE) -> list[str]:
    """Problems with what ruby_create made: one project, one DataFile, one ContentBlob whose file
    in the filestore volume holds filestore_content(marker) and whose row records its size and SHA-1."""
    content = filestore_content(marker)
    problems = []
    if state.projects != 1:
        problems.append(f"expected 1 project titled {marker}, SEEK has {state.projects}")
    if state.data_files != 1:
        problems.append(f"expected 1 DataFile titled {marker}, SEEK has {state.data_files}")
    if len(state.blobs) != 1:
        return problems + [f"expected 1 ContentBlob of the DataFile {marker}, SEEK has {len(state.blobs)}"]
    blob = state.blobs[0]
    where = f"ContentBlob {blob.uuid} ({blob.path})"
    if blob.path != f"{filestore}/assets/{blob.uuid}.dat":
        problems.append(f"{where}: not {filestore}/assets/<uuid>.dat, on the filestore volume")
    if not blob.exists:
        problems.append(f"{where}: the file does not exist")
    elif blob.sha256 != hashlib.sha256(content).hexdigest() or blob.size != len(content):
        problems.append(f"{where}: sha256 {blob.sha256} ({blob.size} bytes), expected "
                        f"{hashlib.sha256(content).hexdigest()} ({len(content)} bytes)")
    if blob.file_size != len(content) or blob.sha1sum != hashlib.sha1(content).hexdigest():
        problems.append(f"{where}: the row records file_size {blob.file_size} and sha1sum {blob.sha1sum}, "
                        f"expected {len(content)} and {hashlib.sha1(content).hexdigest()}")
    return problems


def deleted_problems(state: SeekState, before: SeekState) -> list[str]:
    """Problems with the deletion: no project, DataFile or ContentBlob left, and every file the
    DataFile had is gone from the filestore."""
    problems = []
    if state.projects or state.data_files or state.blobs:
        problems.append(f"after the deletion SEEK still has {state.projects} project(s), {state.data_files} "
                        f"DataFile(s) and {len(state.blobs)} ContentBlob(s) of the marker")
    removed = {item.get("path"): item.get("exists") for item in state.removed}
    for blob in before.blobs:
        if blob.path not in removed:
            problems.append(f"the deletion did not remove {blob.path}")
        elif removed[blob.path]:
            problems.append(f"{blob.path} still exists after the deletion")
    return problems


def restored_problems(before: SeekState, after: SeekState, marker: str,
                      filestore: str = SEEK_FILESTORE) -> list[str]:
    """Problems after the restore: everything ruby_create made is back, the same ContentBlob (uuid,
    path) and the same bytes in the filestore (sha256) as before the backup."""
    problems = created_problems(after, marker, filestore)
    was = {blob.uuid: blob for blob in before.blobs}
    for blob in after.blobs:
        old = was.get(blob.uuid)
        if old is None:
            problems.append(f"ContentBlob {blob.uuid} was not in SEEK before the backup ({sorted(was)})")
        elif (blob.path, blob.sha256, blob.sha1sum) != (old.path, old.sha256, old.sha1sum):
            problems.append(f"ContentBlob {blob.uuid}: {blob.path} sha256 {blob.sha256} sha1sum {blob.sha1sum} "
                            f"after the restore, {old.path} sha256 {old.sha256} sha1sum {old.sha1sum} before")
    return [f"after the restore: {problem}" for problem in problems]


# ---- the off-site copies, read straight from the bucket (boto3 and pyrage, not tools/seek_backup) ----
# Layout and metadata written by tools/seek_backup/storage.py (docs/backups.md, "Remote layout"):
# <prefix>/<kind>/<stamp>/<artifact>.age and .../manifest.json.age; the manifest object's metadata
# records its own ciphertext-sha256 and the artifact's key, ciphertext sha256 and size.
MANIFEST_OBJECT = "manifest.json.age"


@dataclass
class BucketReport:
    """What the bucket holds for the sets: sha256 of every object read, and the problems."""

    digests: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


class _Sha256Writer:
    """A file-like sink for pyrage that only hashes and counts the plaintext."""

    def __init__(self) -> None:
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True


def load_identities(path: str) -> list[Any]:
    """The age identities (AGE-SECRET-KEY-... lines) of an identity file."""
    identities = [x25519.Identity.from_str(line.strip()) for line in Path(path).read_text().splitlines()
                  if line.strip().startswith("AGE-SECRET-KEY-")]
    if not identities:
        raise ValueError(f"no AGE-SECRET-KEY line in {path}")
    return identities


def _download(client: Any, bucket: str, key: str, spool: Any) -> tuple[str, int, dict[str, str]]:
    """Stream an object into spool; its sha256, size and user metadata."""
    response = client.get_object(Bucket=bucket, Key=key)
    digest, size = hashlib.sha256(), 0
    for chunk in response["Body"].iter_chunks(1 << 20):
        digest.update(chunk)
        size += len(chunk)
        spool.write(chunk)
    spool.flush()
    spool.seek(0)
    return digest.hexdigest(), size, dict(response.get("Metadata") or {})


def bucket_report(client: Any, bucket: str, prefix: str, sets: Iterable[SetRow],
                  identities: list[Any] | None = None) -> BucketReport:
    """Read each set of the summary out of the bucket and prove it is the one recorded.

    For every set: the artifact and manifest objects, and nothing else, under
    <prefix>/<kind>/<stamp>/; both downloaded whole and hashed; the manifest object's metadata names
    the artifact's key and records the sha256 and size just computed, and its own sha256 (so does the
    artifact's metadata where present). With identities the manifest is decrypted (its kind, stamp
    and artifact are the summary's, the summary's sha256 prefix is its plaintext digest) and the
    artifact too: its plaintext sha256 and size must be the manifest's."""
    report = BucketReport()
    top = prefix.strip("/")
    for row in sets:
        where = f"{row.kind} set {row.stamp}"
        base = f"{top}/{row.kind}/{row.stamp}/" if top else f"{row.kind}/{row.stamp}/"
        artifact_key, manifest_key = f"{base}{row.artifact}.age", f"{base}{MANIFEST_OBJECT}"
        listed: dict[str, int] = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base):
            listed.update({obj["Key"]: int(obj["Size"]) for obj in page.get("Contents", [])})
        missing = [key for key in (artifact_key, manifest_key) if key not in listed]
        extra = sorted(set(listed) - {artifact_key, manifest_key})
        report.problems += [f"{where}: s3://{bucket}/{key} is missing" for key in missing]
        report.problems += [f"{where}: unexpected object s3://{bucket}/{key}" for key in extra]
        if missing:
            continue
        with tempfile.TemporaryFile() as art_spool, tempfile.TemporaryFile() as man_spool:
            art_sha, art_size, art_meta = _download(client, bucket, artifact_key, art_spool)
            man_sha, man_size, man_meta = _download(client, bucket, manifest_key, man_spool)
            report.digests[artifact_key], report.digests[manifest_key] = art_sha, man_sha
            report.problems += _recorded_problems(where, artifact_key, (art_sha, art_size, art_meta),
                                                  (man_sha, man_size, man_meta), listed)
            if identities:
                report.problems += _plaintext_problems(where, row, art_spool, man_spool, man_meta, identities)
    return report


def _recorded_problems(where: str, artifact_key: str, artifact: tuple[str, int, dict[str, str]],
                       manifest: tuple[str, int, dict[str, str]], listed: Mapping[str, int]) -> list[str]:
    """The digests and sizes read against what the manifest object (and the artifact) recorded."""
    art_sha, art_size, art_meta = artifact
    man_sha, man_size, man_meta = manifest
    problems = []
    if man_meta.get("artifact-key") != artifact_key:
        problems.append(f"{where}: the manifest records artifact-key {man_meta.get('artifact-key')!r}, "
                        f"not {artifact_key!r}")
    if man_meta.get("artifact-ciphertext-sha256") != art_sha:
        problems.append(f"{where}: artifact ciphertext sha256 {art_sha} (downloaded) != "
                        f"{man_meta.get('artifact-ciphertext-sha256')} (recorded in the manifest)")
    if man_meta.get("artifact-ciphertext-size") != str(art_size) or listed[artifact_key] != art_size:
        problems.append(f"{where}: artifact {art_size} bytes downloaded, {listed[artifact_key]} listed, "
                        f"{man_meta.get('artifact-ciphertext-size')} recorded in the manifest")
    if "ciphertext-sha256" in art_meta and art_meta["ciphertext-sha256"] != art_sha:
        problems.append(f"{where}: artifact ciphertext sha256 {art_sha} (downloaded) != "
                        f"{art_meta['ciphertext-sha256']} (its own metadata)")
    if man_meta.get("ciphertext-sha256") != man_sha or man_meta.get("ciphertext-size") != str(man_size):
        problems.append(f"{where}: manifest ciphertext sha256 {man_sha} ({man_size} bytes, downloaded) != "
                        f"{man_meta.get('ciphertext-sha256')} ({man_meta.get('ciphertext-size')} bytes, recorded)")
    return problems


def _plaintext_problems(where: str, row: SetRow, art_spool: Any, man_spool: Any, man_meta: Mapping[str, str],
                        identities: list[Any]) -> list[str]:
    """Decrypt the manifest and the artifact with the operator's identity and compare digests."""
    try:
        manifest = json.loads(pyrage.decrypt(man_spool.read(), identities))
        plain = _Sha256Writer()
        pyrage.decrypt_io(art_spool, plain, identities)
    except (pyrage.DecryptError, OSError, ValueError) as error:
        return [f"{where}: cannot decrypt with the operator's identity: {type(error).__name__}: {error}"]
    recorded = manifest.get("artifact") or {}
    problems = []
    if (manifest.get("kind"), manifest.get("stamp"), recorded.get("name"), manifest.get("complete")) != \
            (row.kind, row.stamp, row.artifact, True):
        problems.append(f"{where}: the manifest says kind {manifest.get('kind')}, stamp {manifest.get('stamp')}, "
                        f"artifact {recorded.get('name')}, complete {manifest.get('complete')}")
    if not str(recorded.get("sha256", "")).startswith(row.sha256) or \
            man_meta.get("artifact-plaintext-sha256") != recorded.get("sha256"):
        problems.append(f"{where}: the manifest's artifact sha256 {recorded.get('sha256')} is not the summary's "
                        f"{row.sha256}... or the manifest object's {man_meta.get('artifact-plaintext-sha256')}")
    if plain.sha.hexdigest() != recorded.get("sha256") or str(plain.size) != str(recorded.get("size")):
        problems.append(f"{where}: decrypted artifact sha256 {plain.sha.hexdigest()} ({plain.size} bytes) != "
                        f"{recorded.get('sha256')} ({recorded.get('size')} bytes) in the manifest")
    return problems


# ---- what restore.yml restored ----------------------------------------------------------------------
_RESULT_START = re.compile(r"^(ok|changed): \[[^\]]+\] => ?$")


def parse_restored_sets(output: str) -> list[dict[str, Any]]:
    """The sets restore.yml says it restores ('Show what is restored': `Restoring {set} {set}`, each
    set as backup_fetch recorded it: kind, stamp, source local|off-site, ...), from its output.

    Each task result of the default callback with result_format yaml is a YAML block under
    `ok: [host] =>`, long strings folded over indented lines: the block is read as YAML again."""
    lines = output.splitlines()
    sets: list[dict[str, Any]] = []
    for number, line in enumerate(lines):
        if not _RESULT_START.match(line):
            continue
        block = []
        for following in lines[number + 1:]:
            if not following.startswith(" "):
                break
            block.append(following)
        try:
            result = yaml.safe_load(textwrap.dedent("\n".join(block)))
        except yaml.YAMLError:
            continue
        message = result.get("msg") if isinstance(result, dict) else None
        if not isinstance(message, str) or not message.startswith("Restoring "):
            continue
        text, decoder = message[len("Restoring "):], json.JSONDecoder()
        while text.strip():
            try:
                found, end = decoder.raw_decode(text.lstrip())
            except ValueError:
                break
            text = text.lstrip()[end:]
            if isinstance(found, dict) and found:
                sets.append(found)
    return sets


def restore_source_problems(restored: Iterable[Mapping[str, Any]], wanted: Mapping[str, str]) -> list[str]:
    """Every wanted kind was restored from the bucket (source off-site) and from the wanted stamp."""
    by_kind = {item.get("kind"): item for item in restored}
    problems = []
    for kind, stamp in wanted.items():
        item = by_kind.get(kind)
        if item is None:
            problems.append(f"restore.yml did not say it restores a {kind} set")
        elif (item.get("source"), item.get("stamp")) != ("off-site", stamp):
            problems.append(f"restore.yml restored {kind} set {item.get('stamp')} from {item.get('source')}, "
                            f"expected {stamp} from off-site (the bucket)")
    return problems


def reindex_problems(jobs: Iterable[Mapping[str, Any]]) -> list[str]:
    """The newest reindex Job (restore.yml creates one per restore) must have succeeded."""
    reindex = [job for job in jobs if "reindex" in job["metadata"]["name"]]
    if not reindex:
        return ["no reindex Job was created by the restore"]
    newest = max(reindex, key=lambda job: job["metadata"].get("creationTimestamp", ""))
    if (newest.get("status") or {}).get("succeeded", 0) < 1:
        return [f"reindex Job {newest['metadata']['name']} has not succeeded: {newest.get('status', {})}"]
    return []


def shell_join(argv: Iterable[str]) -> str:
    """A command line for the log."""
    return " ".join(shlex.quote(arg) for arg in argv)
