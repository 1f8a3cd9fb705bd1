#!/bin/sh
# seek-k3s: helpers shared by the producer scripts (POSIX sh; sourced, not run).
#
# Sourced by mysql-backup.sh, filestore-backup.sh (bash) and etcd-backup.sh (busybox sh) from their
# own directory: . "$(dirname "$0")/backup-lib.sh". It must work under bash, dash and busybox sh,
# so anything bash-only (arrays, PIPESTATUS) stays in the scripts.
#
# Call order in a script:
#   backup_init NAME KIND     log prefix NAME; checks the UTC stamp; sets STAMP, SET_DIR, DONE=0
#   backup_compression        (gzip/zstd scripts) checks BACKUP_COMPRESSION, sets EXT; then `compress`
#   backup_cleanup_hook() {}  optional: stop children, remove work files (runs first in the cleanup)
#   backup_traps              the cleanup on EXIT (removes a partial set) and exit 143 on INT TERM HUP
#   backup_make_set           creates SET_DIR (fails if it already exists)
#   ... write the artifact and SET_DIR/manifest.json.tmp ...
#   backup_publish [FILE...]  syncs, moves manifest.json into place (written last), sets DONE=1,
#                             then queues the set for the off-site copy (backup_queue_offsite)

log() { printf '%s %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$BACKUP_LOG_NAME" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# JSON string literal of $1 (backslash and double quote escaped)
json_str() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }

# The "seek_image" value of every manifest: the SEEK release (image) the backed-up data belongs to,
# from SEEK_IMAGE; null when unset (a set made by hand). The MySQL and filestore CronJobs read it
# when their pod starts from the ConfigMap the seek role writes after each rollout and upgrade, and
# name that source in SEEK_IMAGE_SOURCE (backup_init then refuses to start without a SEEK_IMAGE).
# A restore refuses a set whose seek_image differs from the deployed one unless told to upgrade.
seek_image_json() {
  if [ -n "${SEEK_IMAGE:-}" ]; then json_str "$SEEK_IMAGE"; else printf 'null'; fi
}

backup_init() {
  BACKUP_LOG_NAME=$1
  STAMP="${BACKUP_STAMP:-$(date -u +%Y%m%dT%H%M%SZ)}"
  case "$STAMP" in
    [0-9][0-9][0-9][0-9][0-1][0-9][0-3][0-9]T[0-2][0-9][0-5][0-9][0-5][0-9]Z) ;;
    *) die "BACKUP_STAMP '$STAMP' is not YYYYMMDDTHHMMSSZ" ;;
  esac
  BACKUP_KIND=$2
  SET_DIR="$BACKUP_ROOT/$2/$STAMP"
  # A Job whose SEEK_IMAGE comes from the seek role's ConfigMap (SEEK_IMAGE_SOURCE) got none: the
  # ConfigMap or its key is missing (an optional reference leaves the variable unset). A set that
  # cannot say which SEEK it belongs to is not made.
  if [ -n "${SEEK_IMAGE_SOURCE:-}" ] && [ -z "${SEEK_IMAGE:-}" ]; then
    die "SEEK_IMAGE is empty: it is read from $SEEK_IMAGE_SOURCE, which playbooks/seek.yml writes once SEEK is deployed; run seek.yml (or site.yml), then this backup again. No set was made."
  fi
  SET_CREATED=
  DONE=0
}

# shellcheck disable=SC2034  # EXT is read by the sourcing script
backup_compression() {
  case "$BACKUP_COMPRESSION" in
    gzip) EXT=gz ;;
    zstd) EXT=zst ;;
    *) die "BACKUP_COMPRESSION must be gzip or zstd, not '$BACKUP_COMPRESSION'" ;;
  esac
}

# stdin to stdout with the compressor chosen by backup_compression
compress() {
  case "$BACKUP_COMPRESSION" in
    gzip) gzip "-${BACKUP_COMPRESSION_LEVEL:-1}" -c ;;
    zstd) zstd -q "-${BACKUP_COMPRESSION_LEVEL:-1}" -T0 -c ;;
  esac
}

backup_cleanup_hook() { :; }

backup_cleanup() {
  _backup_rc=$?
  trap - EXIT INT TERM HUP
  backup_cleanup_hook || true
  if [ "$DONE" != 1 ]; then
    # never leave anything that looks like a backup: the whole set goes
    if [ -n "${SET_CREATED:-}" ]; then rm -rf -- "$SET_DIR"; fi
    log "FAILED (exit $_backup_rc): removed partial set $SET_DIR"
    if [ "$_backup_rc" = 0 ]; then _backup_rc=1; fi
  fi
  exit "$_backup_rc"
}

backup_traps() {
  trap backup_cleanup EXIT
  trap 'log "interrupted by signal"; exit 143' INT TERM HUP
}

backup_make_set() {
  mkdir -p -- "${SET_DIR%/*}"
  mkdir -- "$SET_DIR" || die "set $SET_DIR already exists"
  SET_CREATED=1
}

# the manifest goes last and atomically: a set without manifest.json is incomplete
backup_publish() {
  if [ "$#" -gt 0 ]; then
    sync "$@" "$SET_DIR/manifest.json.tmp" 2>/dev/null || sync
  else
    sync
  fi
  mv -- "$SET_DIR/manifest.json.tmp" "$SET_DIR/manifest.json"
  DONE=1
  backup_queue_offsite
}

# Wake the off-site copy: an empty file <root>/.offsite-queue/<kind>-<stamp>, created only after the
# manifest is in place. The backup host's systemd path unit (DirectoryNotEmpty= on that directory,
# role backup_host) starts the off-site pass at once, and the pass removes the entries it has seen
# before it looks for complete sets. The set itself is already complete and valid: if the entry
# cannot be written, the pass at the next timer tick ships the set, so this only warns.
# BACKUP_OFFSITE_QUEUE overrides the directory; an empty value turns the wake-up off.
backup_queue_offsite() {
  _queue="${BACKUP_OFFSITE_QUEUE-$BACKUP_ROOT/.offsite-queue}"
  [ -n "$_queue" ] || return 0
  if mkdir -p -- "$_queue" 2>/dev/null && : > "$_queue/$BACKUP_KIND-$STAMP" 2>/dev/null; then
    log "queued $BACKUP_KIND/$STAMP for the off-site copy"
  else
    log "warning: cannot write $_queue/$BACKUP_KIND-$STAMP: the set goes off-site at the next timer run"
  fi
}
