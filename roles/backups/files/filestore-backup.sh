#!/usr/bin/env bash
# seek-k3s: archive of the SEEK filestore (it holds SEEK's generated secret keys) into a set.
#
# Produces <BACKUP_ROOT>/filestore/<YYYYMMDDTHHMMSSZ>/ with filestore.tar.gz (or .tar.zst) and,
# written last and atomically, manifest.json. On any failure or signal the set is removed and
# the script exits non-zero. Run it right after the MySQL dump (same CronJob or schedule).
#
# Environment:
#   FILESTORE_DIR            directory to archive (default: /seek/filestore)
#   FILESTORE_STRICT         1: fail when tar reports files changed while being read (exit 1);
#                            0 (default): log a warning, a live filestore changes under tar
#   BACKUP_ROOT              backup volume root (default: /var/backups/seek-k3s)
#   BACKUP_SOURCE            free text recorded as "source" (default: filestore:FILESTORE_DIR)
#   BACKUP_COMPRESSION       gzip | zstd (default: gzip)
#   BACKUP_COMPRESSION_LEVEL compression level (default: 1)
#   BACKUP_STAMP             override the UTC stamp YYYYMMDDTHHMMSSZ
#
# Needs: bash, GNU tar, gzip or zstd, sha256sum, find.
set -euo pipefail
umask 077

: "${FILESTORE_DIR:=/seek/filestore}"
: "${FILESTORE_STRICT:=0}"
: "${BACKUP_ROOT:=/var/backups/seek-k3s}"
: "${BACKUP_SOURCE:=filestore:${FILESTORE_DIR}}"
: "${BACKUP_COMPRESSION:=gzip}"
STAMP="${BACKUP_STAMP:-$(date -u +%Y%m%dT%H%M%SZ)}"

log() { printf '%s filestore-backup: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

case "$STAMP" in
  [0-9][0-9][0-9][0-9][0-1][0-9][0-3][0-9]T[0-2][0-9][0-5][0-9][0-5][0-9]Z) ;;
  *) die "BACKUP_STAMP '$STAMP' is not YYYYMMDDTHHMMSSZ" ;;
esac
case "$BACKUP_COMPRESSION" in
  gzip) EXT=gz; COMPRESS=(gzip "-${BACKUP_COMPRESSION_LEVEL:-1}" -c) ;;
  zstd) EXT=zst; COMPRESS=(zstd -q "-${BACKUP_COMPRESSION_LEVEL:-1}" -T0 -c) ;;
  *) die "BACKUP_COMPRESSION must be gzip or zstd, not '$BACKUP_COMPRESSION'" ;;
esac
[ -d "$FILESTORE_DIR" ] || die "FILESTORE_DIR $FILESTORE_DIR is not a directory"

SET_DIR="$BACKUP_ROOT/filestore/$STAMP"
ARTIFACT="filestore.tar.$EXT"
DONE=0
PIPE_PID=

cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  [ -n "$PIPE_PID" ] && { kill -TERM -- "-$PIPE_PID" 2>/dev/null || true; wait 2>/dev/null || true; }
  if [ "$DONE" != 1 ]; then
    [ -n "${SET_CREATED:-}" ] && rm -rf -- "$SET_DIR"
    log "FAILED (exit $rc): removed partial set $SET_DIR"
    [ "$rc" = 0 ] && rc=1
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted by signal"; exit 143' INT TERM HUP

mkdir -p -- "$BACKUP_ROOT/filestore"
mkdir -- "$SET_DIR" || die "set $SET_DIR already exists"
SET_CREATED=1
PART="$SET_DIR/$ARTIFACT.part"
FILES="$(find "$FILESTORE_DIR" -xdev -type f | wc -l)"

log "archiving $FILESTORE_DIR ($FILES files) to $SET_DIR/$ARTIFACT"
set -m
(
  set +e
  tar -C "$FILESTORE_DIR" --numeric-owner --one-file-system -cf - . | "${COMPRESS[@]}" > "$PART"
  echo "${PIPESTATUS[*]}" > "$SET_DIR/.status"
) &
PIPE_PID=$!
set +m
wait "$PIPE_PID" || true
PIPE_PID=
[ -s "$SET_DIR/.status" ] || die "archive pipe did not finish"
read -r TAR_RC COMP_RC < "$SET_DIR/.status"
rm -f -- "$SET_DIR/.status"
[ "$COMP_RC" = 0 ] || die "$BACKUP_COMPRESSION failed (status $COMP_RC)"
if [ "$TAR_RC" = 1 ] && [ "$FILESTORE_STRICT" != 1 ]; then
  log "WARNING: tar reports files changed while being archived (live filestore); kept"
elif [ "$TAR_RC" != 0 ]; then
  die "tar failed (status $TAR_RC)"
fi

SIZE="$(stat -c %s "$PART")"
SHA="$(sha256sum "$PART" | cut -d' ' -f1)"
mv -- "$PART" "$SET_DIR/$ARTIFACT"
json_str() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }
{
  printf '{\n  "kind": "filestore",\n  "stamp": "%s",\n' "$STAMP"
  printf '  "created": "%s",\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  printf '  "source": %s,\n' "$(json_str "$BACKUP_SOURCE")"
  printf '  "artifact": {"name": "%s", "size": %s, "sha256": "%s", "compression": "%s"},\n' \
    "$ARTIFACT" "$SIZE" "$SHA" "$BACKUP_COMPRESSION"
  printf '  "filestore": {"path": %s, "files": %s, "tar_status": %s},\n' "$(json_str "$FILESTORE_DIR")" "$FILES" "$TAR_RC"
  printf '  "complete": true\n}\n'
} > "$SET_DIR/manifest.json.tmp"
sync "$SET_DIR/$ARTIFACT" "$SET_DIR/manifest.json.tmp" 2>/dev/null || sync
mv -- "$SET_DIR/manifest.json.tmp" "$SET_DIR/manifest.json"
DONE=1
log "OK $SET_DIR/$ARTIFACT size=$SIZE sha256=$SHA"
