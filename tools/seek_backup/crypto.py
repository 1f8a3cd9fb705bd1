"""age encryption with pyrage: recipients on the backup host, the identity with the operator.

Encryption and decryption stream through file-like objects (pyrage reads and writes 64 KiB
chunks), so memory stays flat whatever the artifact size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import pyrage
from pyrage import ssh, x25519

from .errors import ConfigError, IntegrityError


def parse_recipient(text: str) -> Any:
    """Parse an ``age1...`` or ``ssh-ed25519``/``ssh-rsa`` public key."""
    text = text.strip()
    try:
        if text.startswith("age1"):
            return x25519.Recipient.from_str(text)
        if text.startswith("ssh-"):
            return ssh.Recipient.from_str(text)
    except Exception as exc:  # pyrage raises its own RecipientError
        raise ConfigError(f"invalid age recipient {text[:16]}...: {exc}") from None
    raise ConfigError(f"unsupported age recipient {text[:16]}... (expected age1... or ssh-...)")


def load_recipients(texts: list[str]) -> list[Any]:
    """Parse every recipient; at least one is required."""
    if not texts:
        raise ConfigError("no age recipients configured (recipients or recipients_file)")
    return [parse_recipient(t) for t in texts]


def load_identities(path: str | None) -> list[Any]:
    """Read an age identity file (``AGE-SECRET-KEY-...`` lines, comments allowed)."""
    if not path:
        raise ConfigError("this command needs the operator's age identity (identity_file / --identity)")
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read identity file {path}: {exc.strerror}") from None
    idents = []
    for line in lines:
        line = line.strip()
        if line.startswith("AGE-SECRET-KEY-"):
            try:
                idents.append(x25519.Identity.from_str(line))
            except Exception as exc:
                raise ConfigError(f"invalid identity in {path}: {exc}") from None
    if not idents:
        raise ConfigError(f"no AGE-SECRET-KEY line in {path}")
    return idents


class HashingReader:
    """File-like reader that hashes and counts what passes through it."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0
        self.error: BaseException | None = None

    def read(self, n: int = -1) -> bytes:
        try:
            data = self.raw.read(n) if n is not None and n >= 0 else self.raw.read()
        except BaseException as exc:  # pyrage turns it into a bare OSError: keep the original
            self.error = exc
            raise
        self.sha.update(data)
        self.size += len(data)
        return data

    def readinto(self, buf: Any) -> int:  # pragma: no cover - pyrage uses read()
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True


class HashingWriter:
    """File-like writer that hashes, counts and forwards to ``sink``."""

    def __init__(self, sink: Callable[[bytes], Any]) -> None:
        self.sink = sink
        self.sha = hashlib.sha256()
        self.size = 0
        self.error: BaseException | None = None

    def write(self, data: bytes) -> int:
        data = bytes(data)
        self.sha.update(data)
        self.size += len(data)
        try:
            self.sink(data)
        except BaseException as exc:  # pyrage turns it into a bare OSError: keep the original
            self.error = exc
            raise
        return len(data)

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True


def encrypt_stream(src: BinaryIO, sink: Callable[[bytes], Any], recipients: list[Any]) -> tuple[HashingReader, HashingWriter]:
    """Encrypt ``src`` to ``sink``; return the plaintext reader and ciphertext writer (hashes)."""
    reader = HashingReader(src)
    writer = HashingWriter(sink)
    try:
        pyrage.encrypt_io(reader, writer, recipients)
    except Exception as exc:
        _reraise(reader, writer, exc)
        raise
    return reader, writer


def _reraise(reader: HashingReader, writer: HashingWriter, exc: BaseException) -> None:
    """Re-raise the exception our reader or writer saw (pyrage reports only a bare OSError),
    or the interrupt pyrage wrapped into its own error."""
    for side in (writer, reader):
        if side.error is not None:
            raise side.error
    if "KeyboardInterrupt" in f"{type(exc).__name__}: {exc}":
        raise KeyboardInterrupt from None


def decrypt_stream(src: Any, sink: Callable[[bytes], Any], identities: list[Any]) -> tuple[HashingReader, HashingWriter]:
    """Decrypt ``src`` to ``sink``; a changed byte fails authentication (IntegrityError)."""
    reader = HashingReader(src)
    writer = HashingWriter(sink)
    try:
        pyrage.decrypt_io(reader, writer, identities)
    except Exception as exc:
        _reraise(reader, writer, exc)
        if not isinstance(exc, (pyrage.DecryptError, OSError)):
            raise
        raise IntegrityError(f"age decryption failed (corrupted object or wrong identity): {exc}") from None
    return reader, writer


def encrypt_bytes(data: bytes, recipients: list[Any]) -> bytes:
    """Encrypt a small document (the manifest)."""
    return pyrage.encrypt(data, recipients)


def decrypt_bytes(data: bytes, identities: list[Any]) -> bytes:
    """Decrypt a small document (the manifest)."""
    try:
        return pyrage.decrypt(data, identities)
    except pyrage.DecryptError as exc:
        raise IntegrityError(f"age decryption failed (corrupted object or wrong identity): {exc}") from None
