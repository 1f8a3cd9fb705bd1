"""Loading backups: MySQL dumps into a database (restore, drill) and filestore archives.

Plaintext is streamed: decrypt -> decompressor process (gzip/zstd) -> mysql client or tar; it is
never held in memory nor written to disk. Restores from the bucket first download the ciphertext
to a 0600 spool file and prove it whole (``Store.download_verified``) before the target is
touched; the drill, which only loads a throwaway database, streams straight from the bucket.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .config import Config, mysql_password
from .errors import BackupError, ConfigError, IntegrityError, client_error

Feeder = Callable[[Callable[[bytes], Any]], None]
DB_NAME_RE = re.compile(r"^[A-Za-z0-9_]{1,64}$")


def decompressor(artifact: str) -> list[str]:
    """The command that turns an artifact back into its plain stream."""
    if artifact.endswith(".gz"):
        return ["gzip", "-dc"]
    if artifact.endswith(".zst"):
        return ["zstd", "-dcq"]
    return ["cat"]


@contextmanager
def client_options(cfg: Config) -> Iterator[str]:
    """A 0600 option file with the connection settings (the password never goes to argv)."""
    lines = ["[client]", f"user={cfg.mysql_user}"]
    if cfg.mysql_socket:
        # host=localhost + protocol=SOCKET: MYSQL_HOST in the environment must not win
        lines += ["host=localhost", f"socket={cfg.mysql_socket}", "protocol=SOCKET"]
    else:
        lines += [f"host={cfg.mysql_host}", f"port={cfg.mysql_port}", "protocol=TCP"]
    pw = mysql_password(cfg)
    if pw is not None:
        lines.append('password="' + pw.replace("\\", "\\\\").replace('"', '\\"') + '"')
    fd, path = tempfile.mkstemp(prefix="seek-backup-", suffix=".cnf")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        yield path
    finally:
        os.unlink(path)


def mysql_cmd(cfg: Config, opts: str, *args: str) -> list[str]:
    """argv of the mysql client with the option file."""
    return [cfg.mysql_client, f"--defaults-extra-file={opts}", *args]


def run_sql(cfg: Config, opts: str, sql: str, database: str | None = None) -> str:
    """Run SQL with the mysql client and return the tab-separated rows."""
    args = mysql_cmd(cfg, opts, "-N", "-B", *([database] if database else []))
    try:
        proc = subprocess.run(args, input=sql, capture_output=True, text=True, timeout=3600)
    except FileNotFoundError:
        raise ConfigError(f"mysql client {cfg.mysql_client!r} is not installed") from None
    if proc.returncode != 0:
        raise BackupError(f"mysql failed ({proc.returncode}): {client_error(proc.stderr)}")
    return proc.stdout


def quote_ident(name: str) -> str:
    """Backtick-quote an identifier."""
    return "`" + name.replace("`", "``") + "`"


def count_rows(cfg: Config, opts: str, database: str, tables: list[str]) -> dict[str, int]:
    """Exact row counts (SELECT COUNT(*)) of ``tables`` in ``database``."""
    if not tables:
        return {}
    present = set(run_sql(cfg, opts, "SELECT table_name FROM information_schema.tables WHERE table_schema="
                          f"'{database}' AND table_type='BASE TABLE'").split("\n"))
    counts: dict[str, int] = {}
    wanted = [t for t in tables if t in present]
    if wanted:
        sql = " UNION ALL ".join(f"SELECT {i}, COUNT(*) FROM {quote_ident(database)}.{quote_ident(t)}"
                                 for i, t in enumerate(wanted))
        for line in run_sql(cfg, opts, sql).strip().splitlines():
            idx, value = line.split("\t")
            counts[wanted[int(idx)]] = int(value)
    return counts


def compare_rows(expected: dict[str, int], actual: dict[str, int]) -> list[str]:
    """Human-readable differences between the manifest's and the database's row counts."""
    problems = []
    for table, rows in sorted(expected.items()):
        if table not in actual:
            problems.append(f"{table}: missing after restore (manifest: {rows} rows)")
        elif actual[table] != rows:
            problems.append(f"{table}: {actual[table]} rows after restore, manifest says {rows}")
    return problems


def _stop(proc: subprocess.Popen) -> None:
    """Kill a pipeline process at once and reap it."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def _head(fh: Any) -> Any:
    """A captured stderr file, rewound for :func:`client_error` (read line by line, never whole)."""
    fh.seek(0)
    return fh


def pipe_into(cmd: list[str], artifact: str, feed: Feeder, cwd: str | None = None) -> None:
    """feed(plaintext) -> decompressor -> ``cmd``; every process must exit 0.

    On the first error of any stage (an integrity error from the feeder, a decompressor or client
    failure) both processes are killed at once, so nothing more reaches the target. Error messages
    are one line and never quote what the processes printed beyond :func:`client_error`'s summary.
    """
    dec_err = tempfile.TemporaryFile()
    sink_err = tempfile.TemporaryFile()
    try:
        try:
            dec = subprocess.Popen(decompressor(artifact), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=dec_err)
        except FileNotFoundError as exc:
            raise ConfigError(f"{exc.filename} is not installed") from None
        try:
            sink_proc = subprocess.Popen(cmd, stdin=dec.stdout, stdout=subprocess.DEVNULL, stderr=sink_err, cwd=cwd)
        except FileNotFoundError as exc:
            _stop(dec)
            raise ConfigError(f"{exc.filename} is not installed") from None
        assert dec.stdout is not None and dec.stdin is not None
        dec.stdout.close()
        failed: BaseException | None = None
        try:
            feed(dec.stdin.write)
        except BrokenPipeError:
            failed = BackupError(f"{cmd[0]} stopped reading")
        except BaseException as exc:  # corrupted object, interrupted: stop the loaders now
            failed = exc
        if failed is not None:
            _stop(sink_proc)
            _stop(dec)
        try:
            dec.stdin.close()
        except BrokenPipeError:
            pass
        dec.wait()
        sink_proc.wait()
        if failed is not None:
            if isinstance(failed, BackupError) and not isinstance(failed, IntegrityError) and sink_proc.returncode:
                raise BackupError(f"{failed}: {client_error(_head(sink_err))}") from None
            raise failed
        if dec.returncode != 0:
            raise IntegrityError(f"{' '.join(decompressor(artifact))} failed ({dec.returncode}): "
                                 f"{client_error(_head(dec_err))}")
        if sink_proc.returncode != 0:
            raise BackupError(f"{cmd[0]} failed ({sink_proc.returncode}): {client_error(_head(sink_err))}")
    finally:
        dec_err.close()
        sink_err.close()


def seek_version(image: str) -> tuple[int, ...] | None:
    """(1, 18, 1) for ``fairdom/seek:1.18.1``; None for a tag that is not a dotted version (a digest)."""
    tag = image.rsplit("@", 1)[0].rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else ""
    match = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.(\d+))?", tag)
    return tuple(int(x) for x in match.groups() if x is not None) if match else None


def check_seek_image(manifest: dict[str, Any], deployed: str | None, allow_upgrade: bool) -> bool:
    """Refuse a backup of another SEEK version before anything changes.

    Returns True when the restore must be followed by SEEK's upgrade (``rake seek:upgrade``, run by
    seek.yml's upgrade Job): the backup is from an older SEEK and ``allow_upgrade`` was given. A
    backup from a newer SEEK is always refused (SEEK has no downgrade), so is any other mismatch
    without ``allow_upgrade``.
    """
    recorded = str(manifest.get("seek_image") or "")
    if not deployed:
        raise ConfigError("name the SEEK image that runs on the restored database with --seek-image "
                          f"(or seek_image in the config); this backup was made under {recorded or 'an unrecorded image'}")
    if recorded == deployed:
        return False
    have, want = seek_version(recorded), seek_version(deployed)
    if have is not None and have == want:
        return False
    if not recorded:
        if allow_upgrade:
            return True
        raise BackupError(f"the manifest does not record the SEEK image of this backup (made before seek_image was "
                          f"recorded); if it is older than {deployed}, pass --allow-seek-upgrade and run SEEK's upgrade after")
    if have is not None and want is not None and have > want:
        raise BackupError(f"the backup is from {recorded}, newer than the deployed {deployed}: SEEK cannot downgrade "
                          f"a schema; deploy {recorded} (seek_image) first")
    if not allow_upgrade:
        raise BackupError(f"the backup is from {recorded} but {deployed} is deployed: its schema would stay "
                          "un-migrated; pass --allow-seek-upgrade (restore_allow_seek_upgrade=true) to restore "
                          "and run SEEK's upgrade (rake seek:upgrade) right after")
    return True


def restore_mysql(cfg: Config, database: str, artifact: str, feed: Feeder, expected: dict[str, int],
                  recreate: bool = True, log: Callable[[str], None] = lambda m: None) -> dict[str, int]:
    """Load a dump into ``database`` and check its row counts against the manifest."""
    if not DB_NAME_RE.match(database):
        raise ConfigError(f"database name {database!r} must match {DB_NAME_RE.pattern}")
    with client_options(cfg) as opts:
        if recreate:
            run_sql(cfg, opts, f"DROP DATABASE IF EXISTS {quote_ident(database)}; "
                               f"CREATE DATABASE {quote_ident(database)} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        log(f"loading {artifact} into database {database}")
        pipe_into(mysql_cmd(cfg, opts, "--binary-mode", "--max-allowed-packet=1G", database), artifact, feed)
        actual = count_rows(cfg, opts, database, list(expected))
    problems = compare_rows(expected, actual)
    if problems:
        raise IntegrityError("row counts differ from the manifest: " + "; ".join(problems))
    return actual


def drill(cfg: Config, stamp: str, artifact: str, feed: Feeder, expected: dict[str, int],
          log: Callable[[str], None] = lambda m: None) -> dict[str, int]:
    """Load the dump into a throwaway database, compare row counts, always drop it again."""
    database = f"seek_drill_{stamp.lower()}"
    try:
        return restore_mysql(cfg, database, artifact, feed, expected, recreate=True, log=log)
    finally:
        try:
            with client_options(cfg) as opts:
                run_sql(cfg, opts, f"DROP DATABASE IF EXISTS {quote_ident(database)}")
        except BackupError as exc:
            log(f"warning: could not drop {database}: {exc}")


def restore_filestore(target: Path, artifact: str, feed: Feeder, clean: bool = False) -> None:
    """Extract a filestore archive into ``target`` (optionally emptied first)."""
    target.mkdir(parents=True, exist_ok=True)
    if clean:
        for entry in target.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    pipe_into(["tar", "-x", "--numeric-owner", "-f", "-", "-C", str(target)], artifact, feed)
