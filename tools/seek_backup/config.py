"""Configuration of the off-site tool: a JSON or INI file plus ``SEEK_BACKUP_*`` env overrides.

The file may be flat (``{"bucket": ...}``) or grouped in sections (``{"s3": {"bucket": ...}}``,
``[s3]`` in INI); sections are only for readability, every key name is unique. Each key can be
overridden by the environment variable ``SEEK_BACKUP_<KEY>`` (upper case). S3 credentials may
also come from the standard ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``
variables, or from anything else boto3 finds, when the file does not set them.
"""

from __future__ import annotations

import configparser
import json
import os
import stat
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError

DEFAULT_CONFIG = "/etc/seek-backup/config.json"
SECRET_KEYS = ("secret_access_key", "session_token", "mysql_password")


@dataclass
class Config:
    """Every setting of the tool, with its default."""

    root: str = "/var/backups/seek-k3s"
    # S3-compatible storage
    bucket: str = ""
    prefix: str = "seek-k3s"
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    addressing_style: str = "auto"  # auto | path | virtual
    sse: str | None = None  # AES256 | aws:kms
    sse_kms_key_id: str | None = None
    storage_class: str | None = None  # e.g. STANDARD_IA, GLACIER_IR
    ca_bundle: str | None = None
    verify_tls: bool = True
    part_size_mb: int = 8
    max_concurrency: int = 4
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_attempts: int = 3
    # age encryption: public recipients on the backup host, the identity only on the operator's
    recipients: list[str] = field(default_factory=list)
    recipients_file: str | None = None
    identity_file: str | None = None
    # retention
    keep_daily: int = 7
    keep_weekly: int = 4
    local_keep_daily: int = 2
    local_keep_weekly: int = 0
    incomplete_max_age_hours: float = 24.0
    # a remote object read back and matched within this many hours counts as verified without a new read
    verify_max_age_hours: float = 25.0
    # MySQL server used by drill / restore-mysql
    mysql_host: str = "127.0.0.1"
    mysql_port: int = 3306
    mysql_user: str = "root"
    mysql_password: str | None = None
    mysql_password_file: str | None = None
    mysql_socket: str | None = None
    mysql_client: str = "mysql"
    # restores: where a downloaded object is verified before use (default: TMPDIR), and the SEEK
    # image that runs on a restored database (a backup of another SEEK version is refused)
    spool_dir: str | None = None
    seek_image: str | None = None

    def s3_prefix(self) -> str:
        """The key prefix without surrounding slashes ('' for the bucket root)."""
        return self.prefix.strip("/")


def _coerce(name: str, value: Any) -> Any:
    """Convert a raw file or env value to the type of the field ``name``."""
    kind = {f.name: f.type for f in fields(Config)}[name]
    if value is None:
        return None
    try:
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "bool":
            if isinstance(value, bool):
                return value
            return str(value).strip().lower() in ("1", "true", "yes", "on")
        if kind == "list[str]":
            if isinstance(value, list):
                return [str(v) for v in value]
            return [v for v in str(value).replace(",", " ").split() if v]
    except ValueError as exc:
        raise ConfigError(f"setting {name}: {exc}") from None
    if value == "" and "None" in kind:
        return None
    return str(value) if not isinstance(value, str) else value


def _flatten(data: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value))
        else:
            flat[key] = value
    return flat


def read_file(path: Path) -> dict[str, Any]:
    """Read a JSON or INI config file into a flat dict of raw values."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    if path.suffix == ".json" or text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config {path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config {path} must hold a JSON object")
        return _flatten(data)
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string("[DEFAULT]\n" + text if not text.lstrip().startswith("[") else text)
    except configparser.Error as exc:
        raise ConfigError(f"config {path} is not valid INI: {exc}") from None
    flat = dict(parser.defaults())
    for section in parser.sections():
        flat.update({k: v for k, v in parser.items(section)})
    return flat


def load(path: str | None = None, env: dict[str, str] | None = None, required: bool = False) -> Config:
    """Build the configuration from the file (if present) and the environment.

    ``path`` defaults to ``$SEEK_BACKUP_CONFIG`` or /etc/seek-backup/config.json; a missing default
    file is fine (everything may come from the environment), a missing explicit one is an error.
    """
    env = dict(os.environ if env is None else env)
    explicit = path or env.get("SEEK_BACKUP_CONFIG")
    cfg_path = Path(explicit or DEFAULT_CONFIG)
    raw: dict[str, Any] = {}
    if cfg_path.exists():
        raw = read_file(cfg_path)
        if any(raw.get(k) for k in SECRET_KEYS):
            mode = stat.S_IMODE(cfg_path.stat().st_mode)
            if mode & 0o077:
                print(f"seek-backup: warning: {cfg_path} holds secrets but has mode {mode:04o}; use 0600",
                      file=sys.stderr)
    elif explicit or required:
        raise ConfigError(f"config file {cfg_path} does not exist")
    names = {f.name for f in fields(Config)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"unknown setting(s) in {cfg_path}: {', '.join(unknown)}")
    values = {k: _coerce(k, v) for k, v in raw.items()}
    for name in names:
        key = f"SEEK_BACKUP_{name.upper()}"
        if key in env:
            values[name] = _coerce(name, env[key])
    cfg = Config(**values)
    if cfg.addressing_style not in ("auto", "path", "virtual"):
        raise ConfigError(f"addressing_style must be auto, path or virtual, not {cfg.addressing_style!r}")
    if cfg.part_size_mb < 5:
        raise ConfigError("part_size_mb must be at least 5 (the S3 minimum part size)")
    if cfg.max_concurrency < 1:
        raise ConfigError("max_concurrency must be at least 1")
    return cfg


def recipients(cfg: Config) -> list[str]:
    """All age recipients from the config list and the optional recipients file."""
    result = list(cfg.recipients)
    if cfg.recipients_file:
        try:
            lines = Path(cfg.recipients_file).read_text().splitlines()
        except OSError as exc:
            raise ConfigError(f"cannot read recipients_file {cfg.recipients_file}: {exc.strerror}") from None
        result += [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    return result


def mysql_password(cfg: Config) -> str | None:
    """The MySQL password from the config or the password file."""
    if cfg.mysql_password:
        return cfg.mysql_password
    if cfg.mysql_password_file:
        try:
            return Path(cfg.mysql_password_file).read_text().rstrip("\n")
        except OSError as exc:
            raise ConfigError(f"cannot read mysql_password_file: {exc.strerror}") from None
    return None
