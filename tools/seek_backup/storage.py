"""S3-compatible object storage through boto3: streamed encrypted multipart uploads and checks.

Remote layout: ``<prefix>/<kind>/<stamp>/<artifact>.age`` and ``.../manifest.json.age`` (the
manifest is uploaded last: a remote set without it is incomplete). Object metadata records the
sha256 and size of the plaintext and of the ciphertext.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import math
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config as BotoConfig

from . import crypto
from .config import Config
from .errors import BackupError, IntegrityError, StorageError
from .layout import KINDS, STAMP_RE, LocalSet, open_private, parse_stamp

MiB = 1 << 20
MAX_PARTS = 9000  # S3 allows 10000; keep a margin for the size estimate
COPY_LIMIT = 5 * 1024 * MiB  # single-request CopyObject limit
MANIFEST_KEY = "manifest.json.age"
CRED_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken",
              "ExpiredToken", "InvalidClientTokenId", "UnrecognizedClientException", "403", "Forbidden"}


def translate(exc: Exception, cfg: Config) -> BackupError:
    """Turn a botocore exception into a one-line StorageError for the operator."""
    where = cfg.endpoint_url or f"AWS S3 ({cfg.region})"
    if isinstance(exc, (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError,
                        botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectionClosedError,
                        botocore.exceptions.ProxyConnectionError)):
        return StorageError(f"cannot reach S3 endpoint {where}: {exc}")
    if isinstance(exc, botocore.exceptions.SSLError):
        return StorageError(f"TLS error talking to {where}: {exc} (ca_bundle / verify_tls)")
    if isinstance(exc, (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError)):
        return StorageError("no S3 credentials: set access_key_id/secret_access_key in the config "
                            "or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", "?"))
        if code in CRED_CODES:
            return StorageError(f"S3 credentials rejected by {where} ({code}): check access_key_id/"
                                "secret_access_key and the bucket policy")
        if code in ("NoSuchBucket",):
            return StorageError(f"bucket {cfg.bucket!r} does not exist at {where}")
        return StorageError(f"S3 error from {where}: {code}: {err.get('Message', exc)}")
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return StorageError(f"S3 client error ({where}): {exc}")
    raise exc


def make_client(cfg: Config) -> Any:
    """A boto3 S3 client with checksum settings that non-AWS stores (MinIO, Ceph) accept."""
    boto_cfg = BotoConfig(
        region_name=cfg.region,
        signature_version="s3v4",
        s3={"addressing_style": cfg.addressing_style},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        connect_timeout=cfg.connect_timeout,
        read_timeout=cfg.read_timeout,
        retries={"max_attempts": cfg.max_attempts, "mode": "standard"},
        max_pool_connections=cfg.max_concurrency + 4,
    )
    kwargs: dict[str, Any] = {"config": boto_cfg}
    if cfg.endpoint_url:
        kwargs["endpoint_url"] = cfg.endpoint_url
    if cfg.access_key_id or cfg.secret_access_key:
        kwargs.update(aws_access_key_id=cfg.access_key_id, aws_secret_access_key=cfg.secret_access_key,
                      aws_session_token=cfg.session_token)
    if cfg.ca_bundle:
        kwargs["verify"] = cfg.ca_bundle
    elif not cfg.verify_tls:
        kwargs["verify"] = False
    return boto3.session.Session().client("s3", **kwargs)


@dataclass
class RemoteSet:
    """The objects of one ``<kind>/<stamp>`` in the bucket."""

    kind: str
    stamp: str
    objects: dict[str, int] = field(default_factory=dict)  # name -> size

    @property
    def when(self) -> datetime:
        return parse_stamp(self.stamp)

    @property
    def artifact(self) -> str | None:
        names = [n for n in self.objects if n.endswith(".age") and n != MANIFEST_KEY]
        return names[0] if len(names) == 1 else None

    @property
    def complete(self) -> bool:
        return MANIFEST_KEY in self.objects and self.artifact is not None


@dataclass
class Check:
    """Result of checking one remote set."""

    kind: str
    stamp: str
    ok: bool
    detail: str
    artifact: str = ""
    size: int = 0
    sha256: str = ""
    etag: str = ""
    cipher_sha256: str = ""
    read: bool = False  # True: the whole object was downloaded and its ciphertext sha256 matched


class PartUploader:
    """Buffers ciphertext into parts and uploads them on a bounded thread pool.

    At most ``max_concurrency`` parts are in flight plus one being filled, so memory is bounded
    by ``(max_concurrency + 1) * part_size`` whatever the artifact size.
    """

    def __init__(self, client: Any, bucket: str, key: str, upload_id: str, part_size: int, concurrency: int) -> None:
        self.client, self.bucket, self.key, self.upload_id = client, bucket, key, upload_id
        self.part_size = part_size
        self.buf = bytearray()
        self.number = 0
        self.parts: dict[int, str] = {}
        self.slots = threading.BoundedSemaphore(concurrency)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="s3-part")
        self.futures: list[concurrent.futures.Future] = []
        self.error: BaseException | None = None

    def _send(self, number: int, body: bytes) -> None:
        try:
            resp = self.client.upload_part(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                                           PartNumber=number, Body=body)
            self.parts[number] = resp["ETag"]
        except BaseException as exc:  # surfaced in write()/finish()
            self.error = exc
            raise
        finally:
            self.slots.release()

    def _submit(self, body: bytes) -> None:
        if self.error:
            raise self.error
        self.number += 1
        self.slots.acquire()
        self.futures.append(self.pool.submit(self._send, self.number, body))

    def write(self, data: bytes) -> None:
        """Accept ciphertext; upload every full part."""
        self.buf += data
        while len(self.buf) >= self.part_size:
            with memoryview(self.buf) as view:  # one copy of the part, not two
                body = bytes(view[: self.part_size])
            del self.buf[: self.part_size]
            self._submit(body)

    def finish(self) -> list[dict[str, Any]]:
        """Upload the last part, wait for all, return the part list for completion."""
        if self.buf or self.number == 0:
            self._submit(bytes(self.buf))
            self.buf = bytearray()
        for fut in self.futures:
            fut.result()
        self.pool.shutdown(wait=True)
        return [{"PartNumber": n, "ETag": self.parts[n]} for n in sorted(self.parts)]

    def abort(self) -> None:
        """Stop the pool (pending parts are cancelled)."""
        self.pool.shutdown(wait=True, cancel_futures=True)


class Store:
    """The bucket and prefix of one configuration."""

    def __init__(self, cfg: Config, client: Any | None = None) -> None:
        if not cfg.bucket:
            raise StorageError("no bucket configured (bucket / SEEK_BACKUP_BUCKET)")
        self.cfg = cfg
        self.client = client or make_client(cfg)
        self.bucket = cfg.bucket

    # ---- keys -------------------------------------------------------------------------------
    def base(self, kind: str, stamp: str) -> str:
        """The key prefix of a set."""
        pre = self.cfg.s3_prefix()
        return f"{pre}/{kind}/{stamp}/" if pre else f"{kind}/{stamp}/"

    def _extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.cfg.sse:
            extra["ServerSideEncryption"] = self.cfg.sse
            if self.cfg.sse_kms_key_id:
                extra["SSEKMSKeyId"] = self.cfg.sse_kms_key_id
        if self.cfg.storage_class:
            extra["StorageClass"] = self.cfg.storage_class
        return extra

    def check_access(self) -> None:
        """Fail early with a clear message when the bucket cannot be used."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchBucket"):
                raise StorageError(f"bucket {self.bucket!r} does not exist at "
                                   f"{self.cfg.endpoint_url or 'AWS S3'}") from None
            raise

    # ---- upload -----------------------------------------------------------------------------
    def upload_set(self, local: LocalSet, recipients: list[Any], log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
        """Encrypt and upload one complete local set, verify it, and return the upload record."""
        man = local.manifest()
        art = local.path / man["artifact"]["name"]
        plain_size = art.stat().st_size
        if plain_size != int(man["artifact"]["size"]):
            raise IntegrityError(f"{art}: size {plain_size} differs from manifest {man['artifact']['size']}")
        key = self.base(local.kind, local.stamp) + man["artifact"]["name"] + ".age"
        # ciphertext = plaintext + 16 bytes per 64 KiB chunk + header: size parts for it
        estimate = plain_size + 16 * (plain_size // 65536 + 1) + 1024
        part_size = max(self.cfg.part_size_mb * MiB, math.ceil(estimate / MAX_PARTS / MiB) * MiB)
        meta = {"seek-kind": local.kind, "seek-stamp": local.stamp, "encryption": "age",
                "plaintext-sha256": man["artifact"]["sha256"], "plaintext-size": str(plain_size)}
        extra = self._extra()
        upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key, Metadata=meta,
                                                        ContentType="application/octet-stream", **extra)["UploadId"]
        uploader = PartUploader(self.client, self.bucket, key, upload_id, part_size, self.cfg.max_concurrency)
        started = time.monotonic()
        try:
            with open(art, "rb") as src:
                reader, writer = crypto.encrypt_stream(src, uploader.write, recipients)
            parts = uploader.finish()
            if reader.sha.hexdigest() != man["artifact"]["sha256"]:
                raise IntegrityError(f"{art}: sha256 {reader.sha.hexdigest()} differs from manifest "
                                     f"{man['artifact']['sha256']} (local corruption); upload aborted")
            self.client.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                                  MultipartUpload={"Parts": parts})
        except BaseException:
            uploader.abort()
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except Exception:  # the original error matters more
                pass
            raise
        cipher_sha, cipher_size = writer.sha.hexdigest(), writer.size
        t_upload = time.monotonic() - started
        meta.update({"ciphertext-sha256": cipher_sha, "ciphertext-size": str(cipher_size)})
        if cipher_size <= COPY_LIMIT:
            # the ciphertext digest is only known now: rewrite the metadata with a server-side copy
            self.client.copy_object(Bucket=self.bucket, Key=key, CopySource={"Bucket": self.bucket, "Key": key},
                                    Metadata=meta, MetadataDirective="REPLACE",
                                    ContentType="application/octet-stream", **extra)
        self._check_head(key, cipher_size, man["artifact"]["sha256"], cipher_sha if cipher_size <= COPY_LIMIT else None)
        t_meta = time.monotonic() - started - t_upload
        # manifest last: its presence marks the remote set complete
        man_bytes = local.manifest_path.read_bytes()
        man_key = self.base(local.kind, local.stamp) + MANIFEST_KEY
        enc = crypto.encrypt_bytes(man_bytes, recipients)
        man_meta = {"seek-kind": local.kind, "seek-stamp": local.stamp, "encryption": "age",
                    "plaintext-sha256": hashlib.sha256(man_bytes).hexdigest(),
                    "ciphertext-sha256": hashlib.sha256(enc).hexdigest(), "ciphertext-size": str(len(enc)),
                    "artifact-key": key, "artifact-ciphertext-sha256": cipher_sha,
                    "artifact-ciphertext-size": str(cipher_size), "artifact-plaintext-sha256": man["artifact"]["sha256"]}
        self.client.put_object(Bucket=self.bucket, Key=man_key, Body=enc, Metadata=man_meta,
                               ContentType="application/octet-stream", **extra)
        self._check_head(man_key, len(enc), man_meta["plaintext-sha256"], man_meta["ciphertext-sha256"])
        record = {"bucket": self.bucket, "endpoint": self.cfg.endpoint_url, "artifact_key": key,
                  "manifest_key": man_key, "plaintext_sha256": man["artifact"]["sha256"],
                  "plaintext_size": plain_size, "ciphertext_sha256": cipher_sha, "ciphertext_size": cipher_size,
                  "part_size": part_size, "uploaded": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
        log(f"uploaded {key} ({cipher_size} bytes, sha256 {cipher_sha[:12]}..., verified with head_object; "
            f"encrypt+upload {t_upload:.1f}s, metadata copy+head {t_meta:.1f}s)")
        return record

    def _check_head(self, key: str, size: int, plain_sha: str, cipher_sha: str | None) -> None:
        head = self.client.head_object(Bucket=self.bucket, Key=key)
        meta = head.get("Metadata", {})
        if int(head["ContentLength"]) != size:
            raise IntegrityError(f"s3://{self.bucket}/{key}: size {head['ContentLength']} after upload, expected {size}")
        if meta.get("plaintext-sha256") != plain_sha:
            raise IntegrityError(f"s3://{self.bucket}/{key}: plaintext-sha256 metadata missing or wrong")
        if cipher_sha and meta.get("ciphertext-sha256") != cipher_sha:
            raise IntegrityError(f"s3://{self.bucket}/{key}: ciphertext-sha256 metadata missing or wrong")

    # ---- listing ----------------------------------------------------------------------------
    def list_sets(self, kind: str | None = None) -> list[RemoteSet]:
        """Every ``<kind>/<stamp>`` under the prefix, oldest first."""
        pre = self.cfg.s3_prefix()
        sets: dict[tuple[str, str], RemoteSet] = {}
        for k in [kind] if kind else KINDS:
            prefix = f"{pre}/{k}/" if pre else f"{k}/"
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    rest = obj["Key"][len(prefix):].split("/")
                    if len(rest) != 2 or not STAMP_RE.match(rest[0]):
                        continue
                    rs = sets.setdefault((k, rest[0]), RemoteSet(k, rest[0]))
                    rs.objects[rest[1]] = int(obj["Size"])
        return sorted(sets.values(), key=lambda s: (s.stamp, s.kind))

    # ---- verification -----------------------------------------------------------------------
    def check_set(self, rs: RemoteSet, deep: bool = False, identities: list[Any] | None = None) -> Check:
        """Check one remote set: objects, sizes and metadata; ``deep`` downloads and hashes."""
        if not rs.complete:
            return Check(rs.kind, rs.stamp, False, "incomplete: artifact or manifest object missing")
        key = self.base(rs.kind, rs.stamp) + str(rs.artifact)
        head = self.client.head_object(Bucket=self.bucket, Key=key)
        mhead = self.client.head_object(Bucket=self.bucket, Key=self.base(rs.kind, rs.stamp) + MANIFEST_KEY)
        meta, mmeta = head.get("Metadata", {}), mhead.get("Metadata", {})
        cipher_sha = meta.get("ciphertext-sha256") or mmeta.get("artifact-ciphertext-sha256", "")
        cipher_size = meta.get("ciphertext-size") or mmeta.get("artifact-ciphertext-size")
        plain_sha = meta.get("plaintext-sha256", "")
        result = Check(rs.kind, rs.stamp, False, "", str(rs.artifact), int(head["ContentLength"]), plain_sha,
                       str(head.get("ETag", "")), cipher_sha)
        if not cipher_sha or not cipher_size or not plain_sha:
            result.detail = "sha256/size metadata missing"
            return result
        if int(head["ContentLength"]) != int(cipher_size):
            result.detail = f"size {head['ContentLength']} != recorded {cipher_size}"
            return result
        if mmeta.get("artifact-plaintext-sha256", plain_sha) != plain_sha:
            result.detail = "artifact and manifest metadata disagree"
            return result
        if deep:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            try:
                if identities:
                    reader, writer = crypto.decrypt_stream(body, lambda b: None, identities)
                    got_cipher, got_plain = reader.sha.hexdigest(), writer.sha.hexdigest()
                else:
                    digest = hashlib.sha256()
                    for chunk in body.iter_chunks(MiB):
                        digest.update(chunk)
                    got_cipher, got_plain = digest.hexdigest(), None
            except IntegrityError as exc:
                result.detail = str(exc)
                return result
            if got_cipher != cipher_sha:
                result.detail = f"ciphertext sha256 {got_cipher[:12]}... != recorded {cipher_sha[:12]}..."
                return result
            if got_plain is not None and got_plain != plain_sha:
                result.detail = f"plaintext sha256 {got_plain[:12]}... != recorded {plain_sha[:12]}..."
                return result
        result.ok = True
        result.read = deep
        result.detail = "ok (downloaded and hashed)" if deep else "ok (head_object only)"
        return result

    # ---- download ---------------------------------------------------------------------------
    def get_manifest(self, kind: str, stamp: str, identities: list[Any]) -> dict[str, Any]:
        """Download and decrypt a set's manifest."""
        from .layout import validate_manifest

        body = self.client.get_object(Bucket=self.bucket, Key=self.base(kind, stamp) + MANIFEST_KEY)["Body"].read()
        return validate_manifest(json.loads(crypto.decrypt_bytes(body, identities)), kind, stamp)

    def stream_artifact(self, rs: RemoteSet, sink: Callable[[bytes], Any], identities: list[Any],
                        expected_sha: str) -> tuple[str, int]:
        """Download, decrypt and pass the plaintext to ``sink``; verify both digests."""
        key = self.base(rs.kind, rs.stamp) + str(rs.artifact)
        obj = self.client.get_object(Bucket=self.bucket, Key=key)
        meta = obj.get("Metadata", {})
        reader, writer = crypto.decrypt_stream(obj["Body"], sink, identities)
        if meta.get("ciphertext-sha256") and reader.sha.hexdigest() != meta["ciphertext-sha256"]:
            raise IntegrityError(f"s3://{self.bucket}/{key}: ciphertext sha256 differs from metadata")
        if writer.sha.hexdigest() != expected_sha:
            raise IntegrityError(f"s3://{self.bucket}/{key}: plaintext sha256 {writer.sha.hexdigest()} "
                                 f"differs from manifest {expected_sha}")
        return writer.sha.hexdigest(), writer.size

    def recorded_ciphertext(self, rs: RemoteSet) -> tuple[str, int]:
        """The ciphertext sha256 and size recorded at upload (artifact or manifest object metadata)."""
        key = self.base(rs.kind, rs.stamp) + str(rs.artifact)
        meta = self.client.head_object(Bucket=self.bucket, Key=key).get("Metadata", {})
        mmeta = self.client.head_object(Bucket=self.bucket,
                                        Key=self.base(rs.kind, rs.stamp) + MANIFEST_KEY).get("Metadata", {})
        sha = meta.get("ciphertext-sha256") or mmeta.get("artifact-ciphertext-sha256") or ""
        size = meta.get("ciphertext-size") or mmeta.get("artifact-ciphertext-size") or ""
        if not re.fullmatch(r"[0-9a-f]{64}", sha) or not str(size).isdigit():
            raise IntegrityError(f"s3://{self.bucket}/{key}: no ciphertext sha256/size recorded: cannot prove "
                                 "the object whole, refusing to use it")
        return sha, int(size)

    def download_verified(self, rs: RemoteSet, dest: Path, identities: list[Any], expected_sha: str,
                          log: Callable[[str], None] = lambda m: None) -> None:
        """Download the artifact's ciphertext to ``dest`` and prove the whole object before any use.

        1. free space in ``dest``'s directory >= recorded ciphertext size + 64 MiB, else refuse;
        2. the ciphertext as stored is written to ``dest`` (created 0600 whatever the umask, O_EXCL) and hashed: sha256 and
           size must equal what the upload recorded;
        3. ``dest`` is decrypted once to nowhere: age authenticates every 64 KiB chunk, and the
           plaintext sha256 must equal the manifest's.
        Only ciphertext touches the disk. Any failure raises IntegrityError/BackupError; the caller
        removes ``dest``.
        """
        key = self.base(rs.kind, rs.stamp) + str(rs.artifact)
        cipher_sha, cipher_size = self.recorded_ciphertext(rs)
        free = shutil.disk_usage(dest.parent).free
        if free < cipher_size + 64 * MiB:
            raise BackupError(f"not enough free space in {dest.parent} to verify the backup first: need "
                              f"{cipher_size + 64 * MiB} bytes, have {free} (set spool_dir or --spool-dir)")
        digest, size = hashlib.sha256(), 0
        with open_private(dest) as fh:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            for chunk in body.iter_chunks(MiB):
                digest.update(chunk)
                size += len(chunk)
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        if size != cipher_size or digest.hexdigest() != cipher_sha:
            raise IntegrityError(f"s3://{self.bucket}/{key}: ciphertext sha256 {digest.hexdigest()[:12]}... "
                                 f"({size} bytes) differs from the recorded {cipher_sha[:12]}... ({cipher_size} "
                                 "bytes): corrupted object, nothing was changed")
        with open(dest, "rb") as fh:
            _, writer = crypto.decrypt_stream(fh, lambda b: None, identities)
        if writer.sha.hexdigest() != expected_sha:
            raise IntegrityError(f"s3://{self.bucket}/{key}: plaintext sha256 {writer.sha.hexdigest()[:12]}... "
                                 f"differs from the manifest's {expected_sha[:12]}...: nothing was changed")
        log(f"verified s3://{self.bucket}/{key} before use: ciphertext sha256 {cipher_sha[:12]}... and "
            f"plaintext sha256 {expected_sha[:12]}... match")

    def delete_set(self, rs: RemoteSet) -> None:
        """Delete every object of a remote set (manifest first, so it reads as incomplete)."""
        names = sorted(rs.objects, key=lambda n: n != MANIFEST_KEY)
        for name in names:
            self.client.delete_object(Bucket=self.bucket, Key=self.base(rs.kind, rs.stamp) + name)


def iter_file(path: Path, chunk: int = MiB) -> Iterator[bytes]:
    """Yield a file in chunks."""
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            yield block

