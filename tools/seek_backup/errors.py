"""Exceptions that the command line turns into one clear line and an exit code."""

from __future__ import annotations

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
