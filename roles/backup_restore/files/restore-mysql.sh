#!/bin/bash
# Shipped by the backup_restore role in the ConfigMap seek-restore-scripts; run by the restore Job
# (image mysql_image: bash, gzip, zstd, sha256sum and the mysql client, no python3).
# Restore one MySQL backup set (RESTORE_SET_DIR, written by mysql-backup.sh) into the SEEK
# database. Nothing is changed until the set is proven: its manifest's seek_image must be the
# deployed SEEK_IMAGE (or RESTORE_ALLOW_SEEK_UPGRADE=true for a backup of an older SEEK, after
# which SEEK's upgrade must run), and the sha256 of the whole artifact must equal the manifest's.
# Only then the database is recreated with its previous character set and collation, the dump
# loaded and every table's row count compared with the manifest. Any failure exits non-zero
# with one line that never quotes backup content (the Job fails, SEEK stays scaled down).
set -euo pipefail
umask 077

: "${RESTORE_SET_DIR:?RESTORE_SET_DIR is required}"
: "${MYSQL_HOST:=mysql}"
: "${MYSQL_PORT:=3306}"
: "${MYSQL_DATABASE:?MYSQL_DATABASE is required}"
# root of the in-cluster server; with an external one (mysql_external_host) the SEEK account:
# MYSQL_USER + MYSQL_PASSWORD (all privileges on its database drop and recreate it), and
# MYSQL_SSL_CA for TLS with the server certificate verified.
: "${MYSQL_USER:=root}"
MYSQL_PASSWORD="${MYSQL_PASSWORD:-${MYSQL_ROOT_PASSWORD:-}}"
: "${MYSQL_PASSWORD:?MYSQL_ROOT_PASSWORD (or MYSQL_USER and MYSQL_PASSWORD) is required}"
: "${SEEK_IMAGE:?SEEK_IMAGE (the deployed seek_image) is required}"
: "${RESTORE_ALLOW_SEEK_UPGRADE:=false}"

fail() { echo "RESTORE FAILED: $*" >&2; exit 1; }
# The name goes into DROP/CREATE DATABASE: letters, digits and underscores only.
[[ $MYSQL_DATABASE =~ ^[A-Za-z0-9_]{1,64}$ ]] ||
  fail "database name '$MYSQL_DATABASE' must match ^[A-Za-z0-9_]{1,64}\$. Nothing was changed."
manifest="$RESTORE_SET_DIR/manifest.json"
[ -f "$manifest" ] || fail "$manifest is missing: not a complete backup set"

# The root password goes to a 0600 option file, never to argv.
opts=$(mktemp "${TMPDIR:-/tmp}/restore.XXXXXX")
errors=$(mktemp "${TMPDIR:-/tmp}/restore-err.XXXXXX")
trap 'rm -f "$opts" "$errors"' EXIT
printf '[client]\nhost=%s\nport=%s\nuser=%s\npassword="%s"\n' "$MYSQL_HOST" "$MYSQL_PORT" "$MYSQL_USER" \
  "$(printf '%s' "$MYSQL_PASSWORD" | sed 's/\\/\\\\/g; s/"/\\"/g')" > "$opts"
[ -z "${MYSQL_SSL_CA:-}" ] || printf 'ssl-ca=%s\nloose-ssl-mode=VERIFY_IDENTITY\nloose-ssl-verify-server-cert\n' \
  "$MYSQL_SSL_CA" >> "$opts"
unset MYSQL_ROOT_PASSWORD MYSQL_PASSWORD
q() { mysql --defaults-extra-file="$opts" --protocol=TCP --batch --skip-column-names "$@"; }

# The manifest is read with the server's JSON functions (the image has no jq).
manifest_hex=$(od -An -v -tx1 "$manifest" | tr -d ' \n')
set_manifest="SET @m = CONVERT(UNHEX('$manifest_hex') USING utf8mb4);"
name=$(q -e "$set_manifest SELECT JSON_UNQUOTE(JSON_EXTRACT(@m, '\$.artifact.name'));")
expected_sha=$(q -e "$set_manifest SELECT JSON_UNQUOTE(JSON_EXTRACT(@m, '\$.artifact.sha256'));")
recorded_image=$(q -e "$set_manifest SELECT IFNULL(JSON_UNQUOTE(JSON_EXTRACT(@m, '\$.seek_image')), '');")
[ "$recorded_image" = null ] && recorded_image=
# version of an image tag (fairdom/seek:1.18.1 -> 1.18.1); empty for other tags and digests
version_of() { [[ ${1##*/} == *:* && ${1##*:} =~ ^v?([0-9]+\.[0-9]+(\.[0-9]+)?)$ ]] && echo "${BASH_REMATCH[1]}" || true; }
have=$(version_of "$recorded_image")
want=$(version_of "$SEEK_IMAGE")
if [ "$recorded_image" != "$SEEK_IMAGE" ] && { [ -z "$have" ] || [ "$have" != "$want" ]; }; then
  if [ -n "$have" ] && [ -n "$want" ] && [ "$(printf '%s\n%s\n' "$have" "$want" | sort -V | tail -n1)" = "$have" ]; then
    fail "the backup is from ${recorded_image}, newer than the deployed $SEEK_IMAGE: SEEK cannot downgrade a schema; deploy $recorded_image (seek_image) first. Nothing was changed."
  fi
  [ "$RESTORE_ALLOW_SEEK_UPGRADE" = true ] ||
    fail "the backup is from ${recorded_image:-an unrecorded SEEK image} but $SEEK_IMAGE is deployed: its schema would stay un-migrated; set restore_allow_seek_upgrade=true to restore and run SEEK's upgrade after. Nothing was changed."
  echo "restore: backup from ${recorded_image:-an unrecorded SEEK image}, $SEEK_IMAGE deployed: SEEK's upgrade must run after this restore (rake seek:upgrade: the post-restore Job runs it)"
fi

case "$name" in
  mysql.sql.gz) decompress=(gzip -dc) ;;
  mysql.sql.zst) decompress=(zstd -qdc) ;;
  *) fail "$manifest names an unknown artifact '$name'" ;;
esac
artifact="$RESTORE_SET_DIR/$name"
[ -f "$artifact" ] || fail "$artifact is missing"
actual_sha=$(sha256sum "$artifact" | cut -d' ' -f1)
[ "$actual_sha" = "$expected_sha" ] ||
  fail "$artifact: sha256 $actual_sha differs from the manifest's $expected_sha: corrupted set, nothing was changed"
echo "restore: $artifact sha256 matches the manifest (the whole artifact is proven before the database is touched)"

charset=$(q -e "SELECT CONCAT(DEFAULT_CHARACTER_SET_NAME, ' COLLATE ', DEFAULT_COLLATION_NAME)
  FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '$MYSQL_DATABASE'")
charset=${charset:-utf8mb4}
echo "restore: recreating database $MYSQL_DATABASE (CHARACTER SET $charset)"
q -e "DROP DATABASE IF EXISTS \`$MYSQL_DATABASE\`; CREATE DATABASE \`$MYSQL_DATABASE\` CHARACTER SET $charset;"
start=$(date +%s)
# One line on failure that never carries backup content: the client may echo the failing
# statement (rows) before its "ERROR nnnn (state) at line n: ..." line, and quotes values in it
# ("near '...'", "Duplicate entry '...'"); only the first ERROR (or "gzip: ...") line is shown,
# cut at the first quote.
if ! "${decompress[@]}" "$artifact" 2>"$errors" | q "$MYSQL_DATABASE" 2>>"$errors"; then
  reason=$(grep -a -m1 -E '^(ERROR\b|[A-Za-z0-9_.-]+: )' "$errors" | sed "s/['\"\`].*/ [quoted content omitted]/" | cut -c1-200 || true)
  fail "loading $artifact failed (${reason:-no error message}): the database is incomplete"
fi
echo "restore: loaded in $(( $(date +%s) - start )) s"

expected=$(q -e "$set_manifest SET @t = JSON_EXTRACT(@m, '\$.mysql.tables');
  SELECT k.name, JSON_EXTRACT(@t, CONCAT('\$.\"', k.name, '\"'))
    FROM JSON_TABLE(JSON_KEYS(@t), '\$[*]' COLUMNS (name VARCHAR(255) PATH '\$')) AS k")
bad=0
while IFS=$'\t' read -r table want; do
  [ -n "$table" ] || continue
  got=$(q -e "SELECT COUNT(*) FROM \`$MYSQL_DATABASE\`.\`$table\`" 2>/dev/null) || got=missing
  [ "$got" = "$want" ] || { echo "restore: $table has $got rows, the manifest says $want" >&2; bad=$((bad + 1)); }
done <<<"$expected"
[ "$bad" -eq 0 ] || fail "$bad table(s) differ from the manifest"
echo "restore: OK, $MYSQL_DATABASE restored from $RESTORE_SET_DIR, row counts match the manifest"
