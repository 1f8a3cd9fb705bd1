"""Command line of the off-site tool: ``python -m seek_backup <command>``.

Commands: offsite, verify, prune, list, fetch, summary. Restores and the drill are the cluster's
Jobs (roles backup_restore and backups); ``fetch`` brings an off-site set onto the volume for them.
Every failure ends with one line ``seek-backup: error: ...`` on stderr and a non-zero exit code
(1 a check failed, 2 configuration, 3 object store unreachable or credentials rejected);
set SEEK_BACKUP_DEBUG=1 for a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import botocore.exceptions

from . import config as config_mod
from . import crypto, layout, retention
from .config import Config
from .errors import EXIT_CONFIG, EXIT_FAILED, BackupError, ConfigError, IntegrityError, one_line
from .layout import KINDS
from .storage import Check, RemoteSet, Store, translate

QUIET = False


def log(msg: str) -> None:
    """Progress line on stderr (systemd journal)."""
    if not QUIET:
        print(f"seek-backup: {msg}", file=sys.stderr, flush=True)


def human_size(n: int) -> str:
    """1536 -> '1.5 KiB'."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def human_age(when: datetime, now: datetime | None = None) -> str:
    """Age of a stamp as '3h12m' / '2d4h'."""
    delta = (now or datetime.now(timezone.utc)) - when
    secs = max(0, int(delta.total_seconds()))
    days, rem = divmod(secs, 86400)
    hours, rem = divmod(rem, 3600)
    if days:
        return f"{days}d{hours}h"
    return f"{hours}h{rem // 60:02d}m"


def table(rows: list[list[str]], header: list[str]) -> str:
    """Format rows as an aligned plain-text table."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


# ---- helpers shared by commands ----------------------------------------------------------------
def pick_remote(store: Store, kind: str, stamp: str | None) -> RemoteSet:
    """The named or newest complete remote set of ``kind``."""
    sets = [s for s in store.list_sets(kind) if s.complete]
    if stamp and stamp != "latest":
        for s in sets:
            if s.stamp == stamp:
                return s
        raise BackupError(f"no complete {kind} backup {stamp} in s3://{store.bucket}/{store.cfg.s3_prefix()}")
    if not sets:
        raise BackupError(f"no complete {kind} backup in s3://{store.bucket}/{store.cfg.s3_prefix()}")
    return sets[-1]


VERIFIED_FILE = ".seek-backup-verified.json"


def load_verified(cfg: Config) -> dict[str, Any]:
    """Read-verification records under the backup root: object key -> etag, digest, time of the read."""
    try:
        data = json.loads((Path(cfg.root) / VERIFIED_FILE).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def save_verified(cfg: Config, state: dict[str, Any]) -> None:
    """Write the read-verification records (a read-only root only costs a re-read next time)."""
    try:
        layout.write_json_atomic(Path(cfg.root) / VERIFIED_FILE, state)
    except OSError as exc:
        log(f"warning: cannot record verification results under {cfg.root}: {exc.strerror}")


def read_check(store: Store, cfg: Config, rs: RemoteSet, state: dict[str, Any],
               identities: list[Any] | None = None, force: bool = False) -> Check:
    """Verify one remote set by reading it: the whole object is downloaded and its ciphertext
    sha256 compared with the recorded one (with ``identities`` also decrypted and the plaintext
    sha256 compared). An object with the same ETag and digest that was read and matched less than
    ``verify_max_age_hours`` ago is not read again (``force`` reads anyway)."""
    head = store.check_set(rs)
    if not head.ok:
        return head
    key = store.base(rs.kind, rs.stamp) + str(rs.artifact)
    rec = state.get(key) or {}
    if not force and not identities and rec.get("etag") == head.etag and rec.get("ciphertext_sha256") == head.cipher_sha256:
        try:
            read_at = datetime.strptime(str(rec.get("read_at")), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        except ValueError:
            read_at = None
        if read_at and (datetime.now(timezone.utc) - read_at).total_seconds() < cfg.verify_max_age_hours * 3600:
            head.read = True
            head.detail = f"ok (read and hashed {human_age(read_at)} ago)"
            return head
    check = store.check_set(rs, deep=True, identities=identities)
    if check.ok:
        state[key] = {"etag": check.etag, "ciphertext_sha256": check.cipher_sha256,
                      "read_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    else:
        state.pop(key, None)
    return check


def newest_verified(store: Store, sets: list[RemoteSet], cfg: Config,
                    state: dict[str, Any]) -> tuple[str | None, dict[str, Check]]:
    """Walk from the newest complete set until one is verified by reading it (:func:`read_check`)."""
    checks: dict[str, Check] = {}
    for rs in sorted((s for s in sets if s.complete), key=lambda s: s.stamp, reverse=True):
        check = read_check(store, cfg, rs, state)
        checks[rs.stamp] = check
        if check.ok:
            return rs.stamp, checks
        log(f"remote {rs.kind}/{rs.stamp} failed verification: {check.detail}")
    return None, checks


# ---- commands -----------------------------------------------------------------------------------
QUEUE_DIR = ".offsite-queue"
MAX_ROUNDS = 10


def take_queue(root: Path) -> list[str]:
    """Remove and return the entries of ``<root>/.offsite-queue``.

    The producer scripts create an empty ``<kind>-<stamp>`` file there once a set's manifest is in
    place; the backup host's systemd path unit (``DirectoryNotEmpty=``) starts the off-site pass
    when one appears. Entries are only wake-up calls: the pass always scans every set, so an entry
    that cannot be removed (or a missing directory) costs nothing but a warning.
    """
    queue = root / QUEUE_DIR
    taken: list[str] = []
    try:
        entries = sorted(queue.iterdir())
    except FileNotFoundError:
        return taken
    except OSError as exc:
        log(f"warning: cannot read {queue}: {exc.strerror}")
        return taken
    for entry in entries:
        try:
            entry.unlink()
            taken.append(entry.name)
        except FileNotFoundError:
            continue
        except OSError as exc:
            log(f"warning: cannot remove {entry}: {exc.strerror}")
    return taken


def cmd_offsite(cfg: Config, args: argparse.Namespace) -> int:
    """Upload every complete, not yet uploaded local set; then prune.

    Sets queued while a round runs (a wake-up entry appears during the upload) are picked up by
    another round of the same pass, at most MAX_ROUNDS rounds.
    """
    root = Path(cfg.root)
    # The queue is emptied first, whatever happens next: a pass that fails (endpoint down, bad
    # configuration) must not make the path unit start it again at once; the timer retries.
    woken = take_queue(root)
    store = Store(cfg)
    recipients = crypto.load_recipients(config_mod.recipients(cfg))
    store.check_access()
    failures = 0
    failed: set[str] = set()
    for round_no in range(1, MAX_ROUNDS + 1):
        if round_no > 1:
            woken = take_queue(root)
        if woken:
            log(f"queued: {', '.join(woken)}")
        for local in layout.local_sets(root, args.kind):
            if local.uploaded() or str(local.path) in failed:
                continue
            if not local.is_complete():
                if round_no == 1:
                    log(f"skipping incomplete set {local.path} (no valid manifest.json or artifact size differs)")
                continue
            try:
                record = store.upload_set(local, recipients, log)
                local.mark_uploaded(record)
            except (BackupError, botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
                err = translate(exc, cfg) if not isinstance(exc, BackupError) else exc
                if isinstance(exc, botocore.exceptions.BotoCoreError) or err.exit_code == 3:
                    raise err from None
                log(f"FAILED {local.kind}/{local.stamp}: {err}")
                failed.add(str(local.path))
                failures += 1
        try:
            more = any((root / QUEUE_DIR).iterdir())
        except OSError:
            more = False
        if not more:
            break
        log("more sets were queued during this round: next round")
    if not args.no_prune:
        cmd_prune(cfg, argparse.Namespace(kind=args.kind, dry_run=False, where="both"))
    return EXIT_FAILED if failures else 0


def cmd_verify(cfg: Config, args: argparse.Namespace) -> int:
    """Check remote sets: head check of all; the newest complete set of each kind is read back
    (ciphertext sha256 of the whole object); --deep reads every set; --identity also decrypts."""
    store = Store(cfg)
    identities = crypto.load_identities(args.identity) if args.identity else None
    sets = store.list_sets(args.kind)
    if args.stamp:
        sets = [s for s in sets if s.stamp == args.stamp]
        if not sets:
            raise BackupError(f"no remote set with stamp {args.stamp}")
    if args.newest:
        newest: dict[str, RemoteSet] = {}
        for s in sets:
            newest[s.kind] = s
        sets = list(newest.values())
    if not sets:
        print(f"no backups in s3://{store.bucket}/{cfg.s3_prefix()} yet: nothing to verify")
        return 0
    bad = 0
    rows = []
    state = load_verified(cfg)
    newest_of = {}
    for s in sets:
        if s.complete:
            newest_of[s.kind] = max(newest_of.get(s.kind, s.stamp), s.stamp)
    for rs in sets:
        if args.deep or identities or newest_of.get(rs.kind) == rs.stamp:
            # the newest complete set of each kind is always read back (or was, < verify_max_age_hours ago)
            check = read_check(store, cfg, rs, state, identities, force=args.deep)
        else:
            check = store.check_set(rs)
        rows.append([rs.kind, rs.stamp, check.artifact or "-", human_size(check.size), "ok" if check.ok else "FAILED",
                     check.detail])
        bad += not check.ok
    save_verified(cfg, state)
    print(table(rows, ["kind", "stamp", "object", "size", "status", "detail"]))
    if bad:
        print(f"seek-backup: error: {bad} of {len(sets)} remote set(s) failed verification", file=sys.stderr)
        return EXIT_FAILED
    return 0


def cmd_prune(cfg: Config, args: argparse.Namespace) -> int:
    """Apply retention remotely and locally; never delete the newest verified backup."""
    where = getattr(args, "where", "both")
    parse = layout.parse_stamp
    now = datetime.now(timezone.utc)
    for kind in [args.kind] if args.kind else KINDS:
        protected_remote: str | None = None
        if where in ("both", "remote"):
            store = Store(cfg)
            sets = store.list_sets(kind)
            state = load_verified(cfg)
            protected_remote, _ = newest_verified(store, sets, cfg, state)
            save_verified(cfg, state)
            complete = [s.stamp for s in sets if s.complete]
            plan = retention.plan(complete, cfg.keep_daily, cfg.keep_weekly, parse,
                                  [protected_remote] if protected_remote else [])
            doomed = [s for s in sets if s.stamp in plan.delete]
            stale = [s for s in sets if not s.complete and s.stamp != protected_remote
                     and (now - s.when).total_seconds() > cfg.incomplete_max_age_hours * 3600]
            for rs in doomed + stale:
                log(f"{'would delete' if args.dry_run else 'deleting'} remote {rs.kind}/{rs.stamp}"
                    f"{' (incomplete)' if rs in stale else ''}")
                if not args.dry_run:
                    store.delete_set(rs)
        if where in ("both", "local"):
            locals_ = layout.local_sets(Path(cfg.root), kind)
            complete_l = [s for s in locals_ if s.is_complete()]
            uploaded = [s.stamp for s in complete_l if s.uploaded()]
            if cfg.bucket:
                # never delete a local set that has not left the host
                protect = {s.stamp for s in complete_l if not s.uploaded()}
                if uploaded:
                    protect.add(max(uploaded))
            else:
                # no bucket (a lab): nothing can leave the host, the local policy alone decides,
                # and the newest complete set always stays
                protect = {max(s.stamp for s in complete_l)} if complete_l else set()
            plan = retention.plan([s.stamp for s in complete_l], cfg.local_keep_daily, cfg.local_keep_weekly,
                                  parse, protect)
            for s in complete_l:
                if s.stamp in plan.delete:
                    log(f"{'would delete' if args.dry_run else 'deleting'} local {s.path}")
                    if not args.dry_run:
                        layout.remove_set(s)
            for s in locals_:
                if s.path.is_dir() and not s.is_complete() and s.age_seconds() > cfg.incomplete_max_age_hours * 3600:
                    log(f"{'would delete' if args.dry_run else 'deleting'} stale incomplete local {s.path}")
                    if not args.dry_run:
                        layout.remove_set(s)
    return 0


def cmd_list(cfg: Config, args: argparse.Namespace) -> int:
    """List remote (default) or local sets."""
    rows = []
    if args.local:
        for s in layout.local_sets(Path(cfg.root), args.kind):
            ok = s.is_complete()
            name, size = "-", 0
            if ok:
                man = s.manifest()
                name, size = man["artifact"]["name"], int(man["artifact"]["size"])
            rows.append([s.kind, s.stamp, name, human_size(size), "complete" if ok else "INCOMPLETE",
                         "uploaded" if s.uploaded() else "-"])
        print(table(rows, ["kind", "stamp", "artifact", "size", "state", "off-site"]))
        return 0
    store = Store(cfg)
    for rs in store.list_sets(args.kind):
        art = rs.artifact or "-"
        rows.append([rs.kind, rs.stamp, art, human_size(rs.objects.get(art, 0)),
                     "complete" if rs.complete else "INCOMPLETE"])
    print(table(rows, ["kind", "stamp", "object", "size", "state"]))
    return 0


def cmd_fetch(cfg: Config, args: argparse.Namespace) -> int:
    """Download a set into ``<dest>/<kind>/<stamp>/`` (a restorable local set), proven whole first.

    The ciphertext is downloaded next to the set and checked (``Store.download_verified``: the
    ciphertext sha256 and size recorded at upload, then the plaintext sha256 of the manifest) before
    it is decrypted into the artifact; the manifest is written last, so a failure at any step leaves
    no complete set for a restore or a drill to pick up.

    The set holds a decrypted dump: every file is created 0600 and every directory this command
    creates 0700, the modes set explicitly whatever the umask (the set directory is made 0700 too
    when it already existed). A failure removes what this run created (files, then the
    directories, innermost first) and nothing else: a directory that existed before stays, with
    what was in it.
    """
    store = Store(cfg)
    identities = crypto.load_identities(args.identity or cfg.identity_file)
    rs = pick_remote(store, args.kind, args.stamp)
    man = store.get_manifest(rs.kind, rs.stamp, identities)
    expected = man["artifact"]["sha256"]
    out_dir = Path(args.dest) / rs.kind / rs.stamp
    try:
        created_dirs = layout.make_private_dirs(out_dir)
    except OSError as exc:
        raise BackupError(f"cannot create {out_dir}: {exc.strerror}: nothing was fetched") from None
    target = out_dir / man["artifact"]["name"]
    manifest = out_dir / layout.MANIFEST
    spool = target.with_name(target.name + ".age.part")
    part = target.with_name(target.name + ".part")
    target_existed = os.path.lexists(target)
    done = False
    try:
        spool.unlink(missing_ok=True)
        part.unlink(missing_ok=True)
        log(f"downloading {rs.kind}/{rs.stamp} and verifying it before it is decrypted")
        store.download_verified(rs, spool, identities, expected, log)
        with open(spool, "rb") as src, layout.open_private(part) as fh:
            _, writer = crypto.decrypt_stream(src, fh.write, identities)
            fh.flush()
            os.fsync(fh.fileno())
        if writer.sha.hexdigest() != expected:
            raise IntegrityError(f"{spool}: plaintext sha256 changed after verification: nothing was changed")
        os.replace(part, target)
        layout.write_json_atomic(manifest, man, mode=0o600)
        if not created_dirs:
            os.chmod(out_dir, 0o700)
        done = True
    except OSError as exc:
        if isinstance(exc, botocore.exceptions.BotoCoreError):  # some are OSErrors too: main() words them
            raise
        raise BackupError(f"fetch into {out_dir} failed: {exc.strerror or exc}"
                          f"{': ' + str(exc.filename) if exc.filename else ''}") from None
    finally:
        spool.unlink(missing_ok=True)
        if not done:
            part.unlink(missing_ok=True)
            if not target_existed:
                target.unlink(missing_ok=True)
            layout.remove_empty_dirs(created_dirs)
    log(f"fetched {rs.kind}/{rs.stamp} into {out_dir} (ciphertext and plaintext sha256 verified)")
    print(out_dir)
    return 0


def cmd_summary(cfg: Config, args: argparse.Namespace) -> int:
    """Newest backup of each kind: artifact, size, sha256, age, status."""
    store = Store(cfg) if cfg.bucket else None
    state = load_verified(cfg)
    rows, data, bad = [], [], 0
    for kind in KINDS:
        local = [s for s in layout.local_sets(Path(cfg.root), kind) if s.is_complete()]
        remote = store.list_sets(kind) if store else []
        newest_remote = [s for s in remote if s.complete][-1:] if remote else []
        stamp = max([s.stamp for s in local] + [s.stamp for s in newest_remote], default=None)
        if stamp is None:
            rows.append([kind, "-", "-", "-", "-", "MISSING"])
            data.append({"kind": kind, "status": "MISSING"})
            bad += 1
            continue
        loc = next((s for s in local if s.stamp == stamp), None)
        rem = next((s for s in remote if s.stamp == stamp and s.complete), None)
        art, size, sha = "-", 0, ""
        status = []
        if loc:
            man = loc.manifest()
            art, size, sha = man["artifact"]["name"], int(man["artifact"]["size"]), man["artifact"]["sha256"]
            status.append("local")
        if rem and store:
            check = read_check(store, cfg, rem, state, force=args.deep)
            if not loc:
                art, size, sha = (rem.artifact or "-").removesuffix(".age"), check.size, check.sha256
            # "verified" means read back: the whole object's ciphertext sha256 matched
            status.append("off-site verified" if check.ok else f"OFF-SITE FAILED: {check.detail}")
            bad += not check.ok
        elif store:
            status.append("NOT OFF-SITE")
            bad += 1
        when = layout.parse_stamp(stamp)
        rows.append([kind, stamp, art, human_size(size), sha[:16], human_age(when), ", ".join(status)])
        data.append({"kind": kind, "stamp": stamp, "artifact": art, "size": size, "sha256": sha,
                     "age_seconds": int((datetime.now(timezone.utc) - when).total_seconds()),
                     "status": ", ".join(status)})
    if store:
        save_verified(cfg, state)
    rows = [r if len(r) == 7 else [r[0], r[1], r[2], r[3], r[4], "-", r[5]] for r in rows]
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(table(rows, ["kind", "stamp", "artifact", "size", "sha256", "age", "status"]))
    return EXIT_FAILED if bad else 0


# ---- argument parsing -----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of every subcommand."""
    p = argparse.ArgumentParser(prog="seek-backup", description=__doc__.split("\n")[0])
    p.add_argument("--config", help=f"JSON or INI config (default: $SEEK_BACKUP_CONFIG or {config_mod.DEFAULT_CONFIG})")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    sub = p.add_subparsers(dest="command", required=True)

    def kind_arg(sp: argparse.ArgumentParser, default: str | None = None) -> None:
        sp.add_argument("--kind", choices=KINDS, default=default)

    sp = sub.add_parser("offsite", help="encrypt, upload and verify new sets, then prune")
    kind_arg(sp)
    sp.add_argument("--no-prune", action="store_true")
    sp.set_defaults(func=cmd_offsite)

    sp = sub.add_parser("verify", help="check remote objects: sizes and metadata of all, and the newest set "
                                       "of each kind read back and hashed")
    kind_arg(sp)
    sp.add_argument("--stamp")
    sp.add_argument("--newest", action="store_true", help="only the newest set of each kind")
    sp.add_argument("--deep", action="store_true", help="read back and hash every object, not only the newest")
    sp.add_argument("--identity", help="also decrypt and hash the plaintext of what is read")
    sp.set_defaults(func=cmd_verify)

    sp = sub.add_parser("prune", help="apply retention to remote and local sets")
    kind_arg(sp)
    sp.add_argument("--dry-run", action="store_true")
    sp.add_argument("--where", choices=("both", "remote", "local"), default="both")
    sp.set_defaults(func=cmd_prune)

    sp = sub.add_parser("list", help="list remote (or --local) sets")
    kind_arg(sp)
    sp.add_argument("--local", action="store_true")
    sp.set_defaults(func=cmd_list)

    sp = sub.add_parser("fetch", help="download and decrypt a set into a directory")
    kind_arg(sp, "mysql")
    sp.add_argument("--stamp", help="YYYYMMDDTHHMMSSZ or latest (default)")
    sp.add_argument("--identity")
    sp.add_argument("--dest", required=True)
    sp.set_defaults(func=cmd_fetch)

    sp = sub.add_parser("summary", help="table of the newest backup of each kind")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--deep", action="store_true")
    sp.set_defaults(func=cmd_summary)
    return p


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM handler: raise KeyboardInterrupt so that cleanups run."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, run, and turn every failure into one line and an exit code."""
    global QUIET
    args = build_parser().parse_args(argv)
    # systemd stops the unit with SIGTERM: unwind like Ctrl-C so multipart uploads are aborted
    signal.signal(signal.SIGTERM, _terminate)
    QUIET = args.quiet
    cfg: Config | None = None
    try:
        cfg = config_mod.load(args.config)
        return int(args.func(cfg, args))
    except BackupError as exc:
        print(f"seek-backup: error: {one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        err = translate(exc, cfg or Config())
        print(f"seek-backup: error: {one_line(str(err))}", file=sys.stderr)
        if os.environ.get("SEEK_BACKUP_DEBUG"):
            traceback.print_exc()
        return err.exit_code
    except KeyboardInterrupt:
        print("seek-backup: error: interrupted (incomplete uploads were aborted)", file=sys.stderr)
        return 130
    except ConfigError as exc:  # pragma: no cover - subclass of BackupError, kept for clarity
        print(f"seek-backup: error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_CONFIG
    except Exception as exc:  # noqa: BLE001 - one line, not a traceback, for the journal
        print(f"seek-backup: error: unexpected {type(exc).__name__}: {one_line(str(exc))}", file=sys.stderr)
        if os.environ.get("SEEK_BACKUP_DEBUG"):
            traceback.print_exc()
        return EXIT_FAILED
