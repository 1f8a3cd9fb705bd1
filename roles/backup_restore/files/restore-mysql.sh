#!/bin/bash
# Shipped by the backup_restore role in the ConfigMap seek-restore-scripts; run by the restore Job
# (image mysql_image: bash, gzip, zstd, sha256sum, the mysql client and mysqldump, no python3).
# Restore one MySQL backup set (RESTORE_SET_DIR, written by mysql-backup.sh) into the SEEK
# database. Nothing is changed until the set is proven: its manifest's seek_image must be the
# deployed SEEK_IMAGE (or RESTORE_ALLOW_SEEK_UPGRADE=true for a backup of an older SEEK, after
# which SEEK's upgrade must run), and the sha256 of the whole artifact must equal the manifest's.
#
# The current database is kept until the restored one is proven. Two paths, the log says which:
#  side database (whenever the account can create databases, root of the in-cluster server):
#    the dump is loaded into <db>_restore_<stamp>, created with the manifest's character set and
#    collation; every table's row count is compared with the manifest; then ONE
#    RENAME TABLE moves every current table to <db>_pre_restore_<stamp> and every restored one
#    into <db> (atomic: on an error it changes nothing), <db> takes the manifest's defaults and
#    the empty side database is dropped. A load or a count that fails drops the side database and
#    leaves <db> exactly as it was.
#  dump (an account that may not create databases, e.g. an external server's SEEK account, or a
#    database or backup with views, triggers, routines or events, which RENAME TABLE cannot move
#    to another database): the current database is first dumped to RESTORE_PREVIOUS_DIR/<stamp>
#    (a set like the producer's: artifact, sha256 in manifest.json, checked back from the disk,
#    trailer and table count checked), and only then dropped, recreated with the manifest's
#    character set and collation and loaded.
# The previous copy (database or dump) stays until the next successful restore removes it
# (RESTORE_KEEP_PREVIOUS=false: removed as soon as this restore is proven). Any failure exits
# non-zero with one line that never quotes backup content (the Job fails, SEEK stays scaled down).
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
# names the side and previous databases (<db>_restore_<stamp>, <db>_pre_restore_<stamp>) and the
# dump directory; the Job passes its restore id (YYYYMMDDHHMMSS, UTC)
: "${RESTORE_STAMP:=$(date -u +%Y%m%d%H%M%S)}"
: "${RESTORE_KEEP_PREVIOUS:=true}"
# where the dump path writes the verified dump of the current database (on the backup volume)
: "${RESTORE_PREVIOUS_DIR:=}"
# one-line outcome for the role (Kubernetes' termination message file; written only if it exists)
: "${RESTORE_RESULT_FILE:=/dev/termination-log}"

result() { if [ -f "$RESTORE_RESULT_FILE" ] && [ -w "$RESTORE_RESULT_FILE" ]; then printf '%s\n' "$1" > "$RESTORE_RESULT_FILE" || true; fi; }
fail() { echo "RESTORE FAILED: $*" >&2; result "RESTORE FAILED: $*"; exit 1; }
# The name goes into DROP/CREATE DATABASE: letters, digits and underscores only.
[[ $MYSQL_DATABASE =~ ^[A-Za-z0-9_]{1,64}$ ]] ||
  fail "database name '$MYSQL_DATABASE' must match ^[A-Za-z0-9_]{1,64}\$. Nothing was changed."
[[ $RESTORE_STAMP =~ ^[0-9]{14}$ ]] || fail "RESTORE_STAMP '$RESTORE_STAMP' must be YYYYMMDDHHMMSS. Nothing was changed."
[[ $RESTORE_KEEP_PREVIOUS =~ ^(true|false)$ ]] ||
  fail "RESTORE_KEEP_PREVIOUS must be true or false (backup_restore_keep_previous). Nothing was changed."
manifest="$RESTORE_SET_DIR/manifest.json"
[ -f "$manifest" ] || fail "$manifest is missing: not a complete backup set"

db=$MYSQL_DATABASE
side="${db}_restore_${RESTORE_STAMP}"
previous="${db}_pre_restore_${RESTORE_STAMP}"

# The root password goes to a 0600 option file, never to argv.
opts=$(mktemp "${TMPDIR:-/tmp}/restore.XXXXXX")
errors=$(mktemp "${TMPDIR:-/tmp}/restore-err.XXXXXX")
created_side=0
created_empty=()
# Drop database $1 only while it holds no table, view or routine.
drop_if_empty() {
  [ "$(q -e "SELECT (SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '$1')
    + (SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = '$1')")" = 0 ] &&
    q -e "DROP DATABASE IF EXISTS \`$1\`"
}
cleanup() {
  # Only what this run created and that holds no live data: the side database (loaded, never
  # swapped in), and the previous (or a new, empty <db>) database while still empty.
  [ "$created_side" = 0 ] || q -e "DROP DATABASE IF EXISTS \`$side\`" >/dev/null 2>&1 || true
  for empty in "${created_empty[@]}"; do drop_if_empty "$empty" >/dev/null 2>&1 || true; done
  rm -f "$opts" "$errors"
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP
printf '[client]\nhost=%s\nport=%s\nuser=%s\npassword="%s"\n' "$MYSQL_HOST" "$MYSQL_PORT" "$MYSQL_USER" \
  "$(printf '%s' "$MYSQL_PASSWORD" | sed 's/\\/\\\\/g; s/"/\\"/g')" > "$opts"
[ -z "${MYSQL_SSL_CA:-}" ] || printf 'ssl-ca=%s\nloose-ssl-mode=VERIFY_IDENTITY\nloose-ssl-verify-server-cert\n' \
  "$MYSQL_SSL_CA" >> "$opts"
unset MYSQL_ROOT_PASSWORD MYSQL_PASSWORD
q() { mysql --defaults-extra-file="$opts" --protocol=TCP --batch --skip-column-names "$@"; }
# The first ERROR line of the client's stderr, cut at the first quote: mysql may echo the failing
# statement (rows) and quotes values in its messages ("near '...'", "Duplicate entry '...'").
first_error() {
  grep -a -m1 -E '^(ERROR\b|[A-Za-z0-9_.-]+: )' "$errors" | sed "s/['\"\`].*/ [quoted content omitted]/" | cut -c1-200 || true
}

# The manifest is read with the server's JSON functions (the image has no jq).
manifest_hex=$(od -An -v -tx1 "$manifest" | tr -d ' \n')
set_manifest="SET @m = CONVERT(UNHEX('$manifest_hex') USING utf8mb4);"
field() { q -e "$set_manifest SELECT IFNULL(JSON_UNQUOTE(JSON_EXTRACT(@m, '\$.$1')), '');"; }
name=$(field artifact.name)
expected_sha=$(field artifact.sha256)
recorded_image=$(field seek_image)
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

# ---- character set and collation of the restored database -----------------------------------
# The manifest's (mysql-backup.sh records the source database's defaults); a set made before it
# recorded them: the current database's, else the server's default (said so in the log).
current=$(q -e "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA
  WHERE SCHEMA_NAME = '$db'")
read -r current_cs current_co <<<"$current" || true
cs=$(field mysql.database_charset)
co=$(field mysql.database_collation)
[ "$cs" = null ] && cs=
[ "$co" = null ] && co=
if [ -n "$cs" ] && [ -n "$co" ]; then
  from="the manifest"
elif [ -n "$current" ]; then
  cs=$current_cs co=$current_co from="the current database (the manifest records none)"
else
  read -r cs co <<<"$(q -e 'SELECT @@character_set_server, @@collation_server')"
  from="the server default (neither the manifest nor a current database records one)"
fi
[[ $cs =~ ^[A-Za-z0-9_]{1,64}$ && $co =~ ^[A-Za-z0-9_]{1,64}$ ]] ||
  fail "character set '$cs' / collation '$co' ($from) are not plain names. Nothing was changed."
[ "$(q -e "SELECT COUNT(*) FROM information_schema.COLLATIONS WHERE COLLATION_NAME = '$co'
  AND CHARACTER_SET_NAME = '$cs'")" = 1 ] ||
  fail "this server has no collation $co of character set $cs ($from). Nothing was changed."
echo "restore: $db gets CHARACTER SET $cs COLLATE $co (from $from)"

# ---- what the current database holds ---------------------------------------------------------
base_tables() {
  q -e "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = '$1' AND TABLE_TYPE = 'BASE TABLE'
    ORDER BY TABLE_NAME"
}
# views, triggers, routines, events and any table that is not a plain base table
# (RENAME TABLE cannot move them to another database: see docs/backups.md)
unmovable() {
  q -e "SELECT (SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '$1' AND TABLE_TYPE <> 'BASE TABLE')
    + (SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = '$1')
    + (SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = '$1')
    + (SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = '$1')"
}
schema_exists() { [ "$(q -e "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '$1'")" = 1 ]; }
# (assignments, so that a failed query stops the script instead of reading as "no tables")
listed=$(base_tables "$db")
mapfile -t current_tables < <(printf '%s' "$listed" | grep -v '^$' || true)
current_unmovable=$(unmovable "$db")

# Leftovers of a restore that was killed before its cleanup ran (never live data).
while read -r leftover; do
  [ -n "$leftover" ] || continue
  echo "restore: dropping $leftover, left by an interrupted restore"
  q -e "DROP DATABASE \`$leftover\`"
done < <(q -e "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME REGEXP '^${db}_restore_[0-9]{14}\$'")

# Compare every table's row count with the manifest; $1: the database holding the loaded tables.
check_counts() {
  local expected table want got bad=0
  expected=$(q -e "$set_manifest SET @t = JSON_EXTRACT(@m, '\$.mysql.tables');
    SELECT k.name, JSON_EXTRACT(@t, CONCAT('\$.\"', k.name, '\"'))
      FROM JSON_TABLE(JSON_KEYS(@t), '\$[*]' COLUMNS (name VARCHAR(255) PATH '\$')) AS k")
  while IFS=$'\t' read -r table want; do
    [ -n "$table" ] || continue
    got=$(q -e "SELECT COUNT(*) FROM \`$1\`.\`$table\`" 2>/dev/null) || got=missing
    [ "$got" = "$want" ] || { echo "restore: $table has $got rows, the manifest says $want" >&2; bad=$((bad + 1)); }
  done <<<"$expected"
  echo "$bad"
}

# Load the artifact into database $1; on failure print the reason (one line, no backup content).
load_into() {
  if ! "${decompress[@]}" "$artifact" 2>"$errors" | q "$1" 2>>"$errors"; then
    reason=$(first_error)
    echo "${reason:-no error message}"
    return 1
  fi
}

# Remove the previous copies of earlier restores (and this one's with RESTORE_KEEP_PREVIOUS=false).
prune_previous() {
  local keep_db="" keep_dir="" old
  if [ "$RESTORE_KEEP_PREVIOUS" = true ]; then keep_db=$previous keep_dir=$dump_stamp; fi
  while read -r old; do
    if [ -z "$old" ] || [ "$old" = "$keep_db" ]; then continue; fi
    echo "restore: dropping $old (the previous database of an earlier restore)"
    q -e "DROP DATABASE \`$old\`"
  done < <(q -e "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA
    WHERE SCHEMA_NAME REGEXP '^${db}_pre_restore_[0-9]{14}\$'")
  if [ -n "$RESTORE_PREVIOUS_DIR" ] && [ -d "$RESTORE_PREVIOUS_DIR" ]; then
    for old in "$RESTORE_PREVIOUS_DIR"/*; do
      if [ ! -d "$old" ] || [[ ! ${old##*/} =~ ^[0-9]{8}T[0-9]{6}Z$ ]] || [ "${old##*/}" = "$keep_dir" ]; then continue; fi
      # only dumps of this database (or a dump that never got its manifest)
      [ ! -f "$old/manifest.json" ] || grep -q "\"database\": \"$db\"" "$old/manifest.json" || continue
      echo "restore: removing $old (the previous database's dump of an earlier restore)"
      rm -rf -- "$old" || echo "restore: could not remove $old" >&2
    done
  fi
}

dump_stamp="${RESTORE_STAMP:0:8}T${RESTORE_STAMP:8:6}Z"
path=side reason=
if [ "$current_unmovable" != 0 ]; then
  path=dump reason="$db holds $current_unmovable view(s), trigger(s), routine(s) or event(s), which RENAME TABLE cannot move to another database"
elif [ "${#previous}" -gt 64 ]; then
  path=dump reason="$previous would be longer than 64 characters"
elif schema_exists "$side" || schema_exists "$previous"; then
  fail "$side or $previous exists already (another restore with stamp $RESTORE_STAMP?). Nothing was changed."
elif ! q -e "CREATE DATABASE \`$side\` CHARACTER SET $cs COLLATE $co" 2>"$errors"; then
  path=dump reason="this account cannot create the side database $side ($(first_error))"
else
  created_side=1
  if [ "${#current_tables[@]}" -gt 0 ]; then
    if q -e "CREATE DATABASE \`$previous\` CHARACTER SET $current_cs COLLATE $current_co" 2>"$errors"; then
      created_empty+=("$previous")
    else
      path=dump reason="this account cannot create $previous ($(first_error))"
      q -e "DROP DATABASE \`$side\`"
      created_side=0
    fi
  fi
fi

if [ "$path" = side ]; then
  echo "restore: path side-database: loading into $side; $db serves unchanged until one RENAME TABLE swaps them"
  start=$(date +%s)
  reason=$(load_into "$side") ||
    fail "loading $artifact into $side failed ($reason): $db was not touched, $side is dropped"
  echo "restore: loaded in $(( $(date +%s) - start )) s"
  bad=$(check_counts "$side")
  [ "$bad" -eq 0 ] || fail "$bad table(s) differ from the manifest: $db was not touched, $side is dropped"
  side_unmovable=$(unmovable "$side")
  if [ "$side_unmovable" != 0 ]; then
    path=dump reason="the backup holds $side_unmovable view(s), trigger(s), routine(s) or event(s), which RENAME TABLE cannot move to another database"
    q -e "DROP DATABASE \`$side\`"
    created_side=0
    for empty in "${created_empty[@]}"; do drop_if_empty "$empty"; done
    created_empty=()
  fi
fi

if [ "$path" = side ]; then
  listed=$(base_tables "$side")
  mapfile -t restored_tables < <(printf '%s' "$listed" | grep -v '^$' || true)
  renames=()
  for t in "${current_tables[@]}"; do renames+=("\`$db\`.\`$t\` TO \`$previous\`.\`$t\`"); done
  for t in "${restored_tables[@]}"; do renames+=("\`$side\`.\`$t\` TO \`$db\`.\`$t\`"); done
  if ! schema_exists "$db"; then
    q -e "CREATE DATABASE \`$db\` CHARACTER SET $cs COLLATE $co"
    created_empty+=("$db")
  fi
  if [ "${#renames[@]}" -gt 0 ]; then
    stmt=$(IFS=,; echo "${renames[*]}")
    # One statement: MySQL and MariaDB apply it whole or, on any error, not at all.
    q -e "RENAME TABLE $stmt" 2>"$errors" ||
      fail "RENAME TABLE failed ($(first_error)): nothing was renamed, $db is as it was, $side is dropped"
  fi
  created_side=0 created_empty=()  # from here on they hold what must stay (the side one: nothing)
  q -e "ALTER DATABASE \`$db\` CHARACTER SET $cs COLLATE $co; DROP DATABASE \`$side\`" 2>"$errors" ||
    fail "the restored tables are in $db, but setting its defaults or dropping the empty $side failed ($(first_error))"
  [ "$(base_tables "$db")" = "$(printf '%s\n' "${restored_tables[@]}")" ] ||
    fail "after the swap $db does not hold exactly the restored tables; the previous ones are in $previous"
  if [ "${#current_tables[@]}" -gt 0 ]; then
    kept="the previous ${#current_tables[@]} tables are in $previous"
  else
    kept="there were no previous tables"
  fi
  summary="path side-database (load into $side, row counts checked, one RENAME TABLE): $kept"
else
  echo "restore: path dump: $reason"
  if [ "${#current_tables[@]}" -gt 0 ] || [ "$current_unmovable" != 0 ]; then
    [ -n "$RESTORE_PREVIOUS_DIR" ] ||
      fail "$reason, and RESTORE_PREVIOUS_DIR is not set for a dump of $db. Nothing was changed."
    keepdir="$RESTORE_PREVIOUS_DIR/$dump_stamp"
    { mkdir -p -- "$RESTORE_PREVIOUS_DIR" 2>"$errors" && mkdir -- "$keepdir" 2>>"$errors"; } ||
      fail "cannot create $keepdir ($(head -c 200 "$errors")): no copy of $db can be kept. Nothing was changed."
    echo "restore: dumping $db to $keepdir before it is dropped"
    counts=()
    for t in "${current_tables[@]}"; do
      n=$(q -e "SELECT COUNT(*) FROM \`$db\`.\`$t\`")
      counts+=("\"$t\": $n")
    done
    # the producer's flags (mysql-backup.sh); --comments --dump-date: the trailer checked below
    dump_args=(--single-transaction --quick --routines --triggers --events --hex-blob --default-character-set=utf8mb4
               --no-tablespaces --add-drop-table --comments --dump-date)
    # MySQL's mysqldump only (MariaDB's has neither option); column statistics only on a MySQL server
    if ! mysqldump --version | grep -qi mariadb; then
      dump_args+=(--set-gtid-purged=OFF)
      q -e 'SELECT VERSION()' | grep -qi mariadb && dump_args+=(--column-statistics=0)
    fi
    part="$keepdir/mysql.sql.zst.part"
    stream_sha=$(mysqldump --defaults-extra-file="$opts" --protocol=TCP "${dump_args[@]}" "$db" 2>"$errors" \
      | zstd -q -1 | tee "$part" | sha256sum | cut -d' ' -f1) ||
      { rm -rf -- "$keepdir"; fail "dumping $db failed ($(first_error)). Nothing was changed."; }
    sync "$part" 2>/dev/null || sync
    # checked back from the disk: the same bytes, a complete dump (mysqldump's trailer), every table
    disk_sha=$(sha256sum "$part" | cut -d' ' -f1)
    marks=$(zstd -qdc "$part" | grep -a -E '^(CREATE TABLE `|-- Dump completed)' || true)
    created=$(grep -c '^CREATE TABLE' <<<"$marks" || true)
    if [ "$disk_sha" != "$stream_sha" ] || [ "$(tail -n1 <<<"$marks" | cut -c1-17)" != "-- Dump completed" ] ||
       [ "$created" != "${#current_tables[@]}" ]; then
      rm -rf -- "$keepdir"
      fail "the dump of $db did not verify (sha256 from disk $disk_sha, written $stream_sha; $created of ${#current_tables[@]} tables; trailer $(tail -n1 <<<"$marks" | cut -c1-17)). Nothing was changed."
    fi
    mv -- "$part" "$keepdir/mysql.sql.zst"
    size=$(stat -c %s "$keepdir/mysql.sql.zst")
    tables_json=$(IFS=,; echo "${counts[*]}")
    printf '{\n  "kind": "mysql",\n  "stamp": "%s",\n  "created": "%s",\n  "source": "pre-restore dump of %s",\n  "seek_image": "%s",\n' \
      "$dump_stamp" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$db" "$SEEK_IMAGE" > "$keepdir/manifest.json.tmp"
    printf '  "artifact": {"name": "mysql.sql.zst", "size": %s, "sha256": "%s", "compression": "zstd"},\n' \
      "$size" "$disk_sha" >> "$keepdir/manifest.json.tmp"
    printf '  "mysql": {"database": "%s", "database_charset": "%s", "database_collation": "%s", "row_counts": "count-before-dump",\n            "tables": {%s}},\n  "pre_restore": true,\n  "complete": true\n}\n' \
      "$db" "$current_cs" "$current_co" "$tables_json" >> "$keepdir/manifest.json.tmp"
    mv -- "$keepdir/manifest.json.tmp" "$keepdir/manifest.json"
    echo "restore: $keepdir/mysql.sql.zst verified (sha256 $disk_sha read back from the disk, $created tables, complete)"
    kept="the previous database is in $keepdir (sha256 $disk_sha)"
  else
    kept="there was no previous database"
  fi
  echo "restore: recreating database $db (CHARACTER SET $cs COLLATE $co)"
  q -e "DROP DATABASE IF EXISTS \`$db\`; CREATE DATABASE \`$db\` CHARACTER SET $cs COLLATE $co;"
  start=$(date +%s)
  reason=$(load_into "$db") ||
    fail "loading $artifact failed ($reason): $db is incomplete; $kept"
  echo "restore: loaded in $(( $(date +%s) - start )) s"
  bad=$(check_counts "$db")
  [ "$bad" -eq 0 ] || fail "$bad table(s) differ from the manifest: $db is incomplete; $kept"
  summary="path dump ($reason): $kept"
fi

prune_previous
if [ "$RESTORE_KEEP_PREVIOUS" = true ]; then
  summary="$summary, kept until the next restore"
else
  summary="$summary, removed now (backup_restore_keep_previous=false)"
fi
echo "restore: OK, $db restored from $RESTORE_SET_DIR, row counts match the manifest; $summary"
result "restore: OK, $summary"
