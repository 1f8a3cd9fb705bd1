#!/bin/bash
# Shipped by the backup_restore role in the ConfigMap seek-restore-scripts; run by the restore Job
# (image backups_filestore_image, debian slim: bash, tar, gzip, sha256sum).
# Restore one filestore backup set (RESTORE_SET_DIR, written by filestore-backup.sh) into the
# filestore volume (FILESTORE_DIR): check the sha256, extract into a staging directory on the
# same volume, and only when the archive extracted completely replace the old content with it.
set -euo pipefail

: "${RESTORE_SET_DIR:?RESTORE_SET_DIR is required}"
: "${FILESTORE_DIR:=/filestore}"
fail() { echo "RESTORE FAILED: $*" >&2; exit 1; }
manifest="$RESTORE_SET_DIR/manifest.json"
[ -f "$manifest" ] || fail "$manifest is missing: not a complete backup set"
# The image has no JSON tool: read the flat "artifact" object of the manifest on one line, in any
# layout (the producer writes it compact, `seek_backup fetch` indented) and any key order.
flat=$(tr -d '\n\r' < "$manifest")
artifact_field() {
  printf '%s' "$flat" | sed -n "s/.*\"artifact\"[[:space:]]*:[[:space:]]*{[^}]*\"$1\"[[:space:]]*:[[:space:]]*\"\([^\"]*\)\".*/\1/p"
}
name=$(artifact_field name)
expected_sha=$(artifact_field sha256)
[[ $expected_sha =~ ^[0-9a-f]{64}$ ]] || fail "$manifest has no artifact sha256"
case "$name" in
  filestore.tar.gz) decompress=(gzip -dc) ;;
  filestore.tar.zst) decompress=(zstd -qdc) ;;
  *) fail "$manifest names an unknown artifact '$name'" ;;
esac
artifact="$RESTORE_SET_DIR/$name"
[ -f "$artifact" ] || fail "$artifact is missing"
actual_sha=$(sha256sum "$artifact" | cut -d' ' -f1)
[ "$actual_sha" = "$expected_sha" ] || fail "$artifact: sha256 $actual_sha differs from the manifest's $expected_sha"
echo "restore: $artifact sha256 matches the manifest"

staging="$FILESTORE_DIR/.seek-restore-staging"
rm -rf -- "$staging"
mkdir -- "$staging"
"${decompress[@]}" "$artifact" | tar -C "$staging" --no-same-owner -xpf - ||
  { rm -rf -- "$staging"; fail "extracting $artifact failed: the old filestore is untouched"; }
echo "restore: extracted, replacing the filestore content"
find "$FILESTORE_DIR" -mindepth 1 -maxdepth 1 ! -name .seek-restore-staging -exec rm -rf -- {} +
find "$staging" -mindepth 1 -maxdepth 1 -exec mv -t "$FILESTORE_DIR" -- {} +
rmdir -- "$staging"
echo "restore: OK, $FILESTORE_DIR restored from $RESTORE_SET_DIR ($(find "$FILESTORE_DIR" -type f | wc -l) files)"
