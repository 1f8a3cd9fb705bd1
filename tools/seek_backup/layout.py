"""The backup volume layout shared with the in-cluster producer scripts.

``<root>/<kind>/<stamp>/`` holds the artifact and ``manifest.json`` (written last). A set whose
manifest is missing or says ``"complete": false`` is incomplete and is never uploaded. After a
successful upload the tool writes ``uploaded.json`` into the set (atomically).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import IntegrityError

KINDS = ("mysql", "filestore", "etcd")
STAMP_RE = re.compile(r"^\d{8}T\d{6}Z$")
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
MANIFEST = "manifest.json"
UPLOADED = "uploaded.json"
ARTIFACT_RE = re.compile(r"^(mysql\.sql\.(gz|zst)|filestore\.tar\.(gz|zst)|etcd\.db)$")


def parse_stamp(stamp: str) -> datetime:
    """Parse a ``YYYYMMDDTHHMMSSZ`` stamp into an aware UTC datetime (ValueError if malformed)."""
    if not STAMP_RE.match(stamp):
        raise ValueError(f"not a backup stamp: {stamp!r}")
    return datetime.strptime(stamp, STAMP_FORMAT).replace(tzinfo=timezone.utc)


def format_stamp(when: datetime) -> str:
    """Format a datetime as a backup stamp (UTC)."""
    return when.astimezone(timezone.utc).strftime(STAMP_FORMAT)


def validate_manifest(data: Any, kind: str | None = None, stamp: str | None = None) -> dict[str, Any]:
    """Check the fields the contract requires; return the manifest or raise IntegrityError."""
    if not isinstance(data, dict):
        raise IntegrityError("manifest is not a JSON object")
    for key in ("kind", "stamp", "created", "source", "artifact", "complete"):
        if key not in data:
            raise IntegrityError(f"manifest lacks {key!r}")
    if data["complete"] is not True:
        raise IntegrityError("manifest does not say complete: true")
    if data["kind"] not in KINDS:
        raise IntegrityError(f"manifest kind {data['kind']!r} is not one of {', '.join(KINDS)}")
    if kind and data["kind"] != kind:
        raise IntegrityError(f"manifest kind {data['kind']!r} does not match directory {kind!r}")
    if stamp and data["stamp"] != stamp:
        raise IntegrityError(f"manifest stamp {data['stamp']!r} does not match directory {stamp!r}")
    parse_stamp(data["stamp"])
    art = data["artifact"]
    if not isinstance(art, dict) or not {"name", "size", "sha256"} <= set(art):
        raise IntegrityError("manifest artifact needs name, size and sha256")
    if not ARTIFACT_RE.match(str(art["name"])):
        raise IntegrityError(f"unexpected artifact name {art['name']!r}")
    if not re.fullmatch(r"[0-9a-f]{64}", str(art["sha256"])):
        raise IntegrityError("artifact sha256 is not 64 hex digits")
    if data["kind"] == "mysql":
        tables = data.get("mysql", {}).get("tables")
        if not isinstance(tables, dict):
            raise IntegrityError("mysql manifest lacks mysql.tables row counts")
    return data


@dataclass
class LocalSet:
    """One ``<root>/<kind>/<stamp>/`` directory."""

    path: Path
    kind: str
    stamp: str

    @property
    def when(self) -> datetime:
        return parse_stamp(self.stamp)

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def manifest(self) -> dict[str, Any]:
        """The validated manifest (IntegrityError when missing or invalid)."""
        try:
            data = json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            raise IntegrityError(f"{self.path}: no manifest.json (incomplete set)") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise IntegrityError(f"{self.path}: unreadable manifest.json: {exc}") from None
        return validate_manifest(data, self.kind, self.stamp)

    def is_complete(self) -> bool:
        """True when manifest.json exists, validates, and the artifact has its recorded size."""
        try:
            man = self.manifest()
        except IntegrityError:
            return False
        art = self.path / man["artifact"]["name"]
        return art.is_file() and art.stat().st_size == int(man["artifact"]["size"])

    def artifact_path(self) -> Path:
        return self.path / self.manifest()["artifact"]["name"]

    def uploaded(self) -> dict[str, Any] | None:
        """The upload record, or None when the set has not been uploaded."""
        try:
            return json.loads((self.path / UPLOADED).read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def mark_uploaded(self, record: dict[str, Any]) -> None:
        """Write uploaded.json atomically."""
        write_json_atomic(self.path / UPLOADED, record)

    def age_seconds(self) -> float:
        """Seconds since the directory was last modified."""
        return time.time() - self.path.stat().st_mtime


def write_json_atomic(path: Path, data: Any, mode: int | None = None) -> None:
    """Write JSON to ``path`` through a temp file and rename.

    With ``mode`` the temp file is created afresh with exactly that mode (set explicitly, whatever
    the umask) and removed again if writing it fails; without, it is opened as ``open()`` does.
    """
    tmp = path.with_name(path.name + ".tmp")
    if mode is None:
        fh = open(tmp, "w")
    else:
        tmp.unlink(missing_ok=True)
        fh = open_private(tmp, mode, text=True)
    try:
        with fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if mode is not None:
            tmp.unlink(missing_ok=True)
        raise


def open_private(path: Path, mode: int = 0o600, text: bool = False) -> Any:
    """Create ``path`` (it must not exist) for writing with exactly ``mode``: the mode is set on the
    open descriptor with fchmod, so the umask cannot widen or narrow it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    return os.fdopen(fd, "w" if text else "wb")


def make_private_dirs(path: Path, mode: int = 0o700) -> list[Path]:
    """Create ``path`` and every missing parent with exactly ``mode`` (chmod after mkdir, whatever
    the umask). Return the directories this call created, outermost first; on failure the ones it
    created are removed again. Directories that already existed are left as they are."""
    missing: list[Path] = []
    probe = path
    while not os.path.lexists(probe):
        missing.append(probe)
        probe = probe.parent
    created: list[Path] = []
    try:
        for directory in reversed(missing):
            os.mkdir(directory, mode)
            created.append(directory)
            os.chmod(directory, mode)
    except BaseException:
        remove_empty_dirs(created)
        raise
    return created


def remove_empty_dirs(created: list[Path]) -> None:
    """Remove directories listed outermost first, innermost first; one that is not empty (something
    else wrote into it) or already gone is left alone."""
    for directory in reversed(created):
        try:
            os.rmdir(directory)
        except OSError:
            pass


def local_sets(root: Path, kind: str | None = None) -> list[LocalSet]:
    """All set directories under ``root`` (complete or not), oldest first."""
    result = []
    for k in [kind] if kind else KINDS:
        base = root / k
        if not base.is_dir():
            continue
        for entry in base.iterdir():
            if entry.is_dir() and STAMP_RE.match(entry.name):
                result.append(LocalSet(entry, k, entry.name))
    return sorted(result, key=lambda s: (s.stamp, s.kind))


def remove_set(local: LocalSet) -> None:
    """Delete a local set directory."""
    shutil.rmtree(local.path)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Stream a file through sha256."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
