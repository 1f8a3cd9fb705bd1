"""Exceptions that the command line turns into one clear line and an exit code."""

from __future__ import annotations

import re
from collections.abc import Iterable

EXIT_FAILED = 1  # a check failed: verify mismatch, drill mismatch, dump incomplete
EXIT_CONFIG = 2  # bad configuration or usage
EXIT_STORAGE = 3  # S3 endpoint unreachable, credentials rejected, bucket missing


class BackupError(Exception):
    """A failure with a message meant for the operator and an exit code."""

    exit_code = EXIT_FAILED


class ConfigError(BackupError):
    """The configuration is missing or wrong."""

    exit_code = EXIT_CONFIG


class StorageError(BackupError):
    """The object store cannot be used (unreachable, credentials, bucket)."""

    exit_code = EXIT_STORAGE


class IntegrityError(BackupError):
    """A checksum, size, trailer or row count does not match."""

    exit_code = EXIT_FAILED


def one_line(text: str, limit: int = 300) -> str:
    """``text`` as one line of at most ``limit`` characters (for the journal and the terminal)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


_MESSAGE_LINE = re.compile(r"^(ERROR\b|[A-Za-z0-9_.-]+: )")


def client_error(raw: bytes | str | Iterable[bytes], limit: int = 200) -> str:
    """A safe one-line summary of what mysql, tar or a decompressor printed on stderr.

    Only the first line that looks like a message (``ERROR 1064 (42000) at line 52: ...`` from
    mysql, ``gzip: stdin: ...``) is used: the MariaDB/MySQL client may echo the whole failing
    statement, rows included, before its ERROR line, and such lines are never shown. mysql quotes
    the offending statement or value (``... near '<row data>'``, ``Duplicate entry '<value>'``), so
    the line is cut at the first quote or backtick: an error never carries backup content into a
    message or the journal. ``raw`` may be an open binary file (read line by line).
    """
    if isinstance(raw, str):
        lines: Iterable[bytes] = raw.encode("utf-8", errors="replace").splitlines()
    elif isinstance(raw, bytes):
        lines = raw.splitlines()
    else:
        lines = raw
    first = ""
    for line in lines:
        text = line.decode("utf-8", errors="replace").strip()
        if _MESSAGE_LINE.match(text):
            first = text
            break
    cut = min((i for i in (first.find(q) for q in ("'", '"', "`")) if i >= 0), default=-1)
    if cut >= 0:
        first = first[:cut].rstrip() + " [quoted content omitted]"
    return one_line(first, limit) if first else "no error message"
