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
#   SEEK_IMAGE               SEEK image the data belongs to, recorded as "seek_image" (default: none)
#   SEEK_IMAGE_SOURCE        where SEEK_IMAGE comes from (the CronJob: the seek role's ConfigMap);
#                            when set, an empty SEEK_IMAGE stops the script before anything is written
#   BACKUP_STAMP             override the UTC stamp YYYYMMDDTHHMMSSZ
#
# Needs: bash, GNU tar, gzip or zstd, sha256sum, find; backup-lib.sh next to it.
set -euo pipefail
umask 077

: "${FILESTORE_DIR:=/seek/filestore}"
: "${FILESTORE_STRICT:=0}"
: "${BACKUP_ROOT:=/var/backups/seek-k3s}"
: "${BACKUP_SOURCE:=filestore:${FILESTORE_DIR}}"
: "${BACKUP_COMPRESSION:=gzip}"

# log, die, json_str, the stamp check, compression choice, the set directory and its cleanup trap
# shellcheck source-path=SCRIPTDIR source=backup-lib.sh
. "$(dirname "$0")/backup-lib.sh"
backup_init filestore-backup filestore
backup_compression
[ -d "$FILESTORE_DIR" ] || die "FILESTORE_DIR $FILESTORE_DIR is not a directory"

ARTIFACT="filestore.tar.$EXT"
PIPE_PID=
backup_cleanup_hook() {
  if [ -n "$PIPE_PID" ]; then kill -TERM -- "-$PIPE_PID" 2>/dev/null || true; wait 2>/dev/null || true; fi
}
backup_traps

backup_make_set
PART="$SET_DIR/$ARTIFACT.part"
FILES="$(find "$FILESTORE_DIR" -xdev -type f | wc -l)"

log "archiving $FILESTORE_DIR ($FILES files) to $SET_DIR/$ARTIFACT"
set -m
(
  set +e
  tar -C "$FILESTORE_DIR" --numeric-owner --one-file-system -cf - . | compress > "$PART"
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
{
  printf '{\n  "kind": "filestore",\n  "stamp": "%s",\n' "$STAMP"
  printf '  "created": "%s",\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  printf '  "source": %s,\n' "$(json_str "$BACKUP_SOURCE")"
  printf '  "seek_image": %s,\n' "$(seek_image_json)"
  printf '  "artifact": {"name": "%s", "size": %s, "sha256": "%s", "compression": "%s"},\n' \
    "$ARTIFACT" "$SIZE" "$SHA" "$BACKUP_COMPRESSION"
  printf '  "filestore": {"path": %s, "files": %s, "tar_status": %s},\n' "$(json_str "$FILESTORE_DIR")" "$FILES" "$TAR_RC"
  printf '  "complete": true\n}\n'
} > "$SET_DIR/manifest.json.tmp"
backup_publish "$SET_DIR/$ARTIFACT"
log "OK $SET_DIR/$ARTIFACT size=$SIZE sha256=$SHA"
