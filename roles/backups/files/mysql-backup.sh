#!/usr/bin/env bash
# seek-k3s: consistent MySQL dump of the SEEK database into a backup set.
#
# Produces <BACKUP_ROOT>/mysql/<YYYYMMDDTHHMMSSZ>/ with mysql.sql.gz (or mysql.sql.zst) and,
# written last and atomically, manifest.json. On any failure (a non-zero exit anywhere in the
# pipe, no "-- Dump completed" trailer, a signal) the set directory is removed and the script
# exits non-zero, so no artifact that looks valid is left behind. A set without manifest.json is
# incomplete and is never uploaded by the off-site tool.
#
# Row counts in the manifest are exact for the dumped snapshot: they are counted from the dump
# stream itself (tee into grep and tr/sed, summed by awk per statement), so they describe exactly
# what the file contains. One pass, every stage at once: mysqldump | tee (row counter) | zstd -T0 |
# tee (sha256) > file; nothing is read twice and no temporary copy of the dump is written.
#
# Environment:
#   MYSQL_HOST               server host (default: mysql)
#   MYSQL_PORT               server port (default: 3306)
#   MYSQL_SSL_CA             CA certificate of an external server: TLS on, certificate verified (default: none)
#   MYSQL_USER               user (required)
#   MYSQL_PASSWORD           password (required; from a Secret env, never on the command line)
#   MYSQL_DATABASE           database to dump (required)
#   MYSQL_EXCLUDE_DATA       space-separated tables dumped without data (default: sessions)
#   MYSQL_EXTRA_ARGS         extra mysqldump arguments, space-separated (default: none)
#   MYSQLDUMP                mysqldump binary (default: mysqldump)
#   MYSQL_CLIENT             mysql client binary (default: mysql)
#   AWK                      awk that sums the row counts (default: mawk when installed, else awk)
#   BACKUP_ROOT              backup volume root (default: /var/backups/seek-k3s)
#   BACKUP_SOURCE            free text recorded as "source" (default: mysql://HOST:PORT/DATABASE)
#   BACKUP_COMPRESSION       zstd | gzip (default: zstd, all cores; both are in mysql:8.4)
#   BACKUP_COMPRESSION_LEVEL compression level (default: 1)
#   BACKUP_OFFSITE_QUEUE     where the set is queued for the off-site copy once complete
#                            (default: BACKUP_ROOT/.offsite-queue; empty: not queued)
#   SEEK_IMAGE               SEEK image the data belongs to, recorded as "seek_image" (default: none)
#   SEEK_IMAGE_SOURCE        where SEEK_IMAGE comes from (the CronJob: the seek role's ConfigMap);
#                            when set, an empty SEEK_IMAGE stops the script before anything is written
#   BACKUP_STAMP             override the UTC stamp YYYYMMDDTHHMMSSZ (tests, re-runs)
#   TMPDIR                   where the client option file with the password lives (default: /tmp)
#
# Needs: bash, mysqldump + mysql (MySQL 8.4 or MariaDB), grep, tr, sed, awk, tee, zstd or gzip,
# openssl or sha256sum, mkfifo; backup-lib.sh next to it. The mysql:8.4 image installs zstd, gzip
# and openssl on purpose (docker-library/mysql, 8.4/Dockerfile.oracle: microdnf install bzip2 gzip
# openssl xz zstd findutils); the rest comes with its oraclelinux:9-slim base.
# MySQL-only mysqldump flags are added only when the client is MySQL's (see "flavour" below).
set -euo pipefail
umask 077

: "${MYSQL_HOST:=mysql}"
: "${MYSQL_PORT:=3306}"
: "${MYSQL_USER:?MYSQL_USER is required}"
: "${MYSQL_PASSWORD:?MYSQL_PASSWORD is required}"
: "${MYSQL_DATABASE:?MYSQL_DATABASE is required}"
: "${MYSQL_EXCLUDE_DATA=sessions}"
: "${MYSQL_EXTRA_ARGS:=}"
: "${MYSQLDUMP:=mysqldump}"
: "${MYSQL_CLIENT:=mysql}"
if [ -z "${AWK:-}" ]; then
  if command -v mawk >/dev/null 2>&1; then AWK="mawk"; else AWK="awk"; fi
fi
: "${BACKUP_ROOT:=/var/backups/seek-k3s}"
: "${BACKUP_SOURCE:=mysql://${MYSQL_HOST}:${MYSQL_PORT}/${MYSQL_DATABASE}}"
: "${BACKUP_COMPRESSION:=zstd}"

# log, die, json_str, the stamp check, compression choice, the set directory and its cleanup trap
# shellcheck source-path=SCRIPTDIR source=backup-lib.sh
. "$(dirname "$0")/backup-lib.sh"
backup_init mysql-backup mysql
backup_compression

ARTIFACT="mysql.sql.$EXT"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/mysql-backup.XXXXXX")"
PIDS=()
backup_cleanup_hook() {
  if [ "${#PIDS[@]}" -gt 0 ]; then
    kill -TERM -- "${PIDS[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
  fi
  rm -rf -- "$WORK"
}
backup_traps

# The password goes to a 0600 option file, never to argv or the environment of children.
OPTS="$WORK/client.cnf"
printf '[client]\nhost=%s\nport=%s\nuser=%s\npassword="%s"\n' \
  "$MYSQL_HOST" "$MYSQL_PORT" "$MYSQL_USER" "$(printf '%s' "$MYSQL_PASSWORD" | sed 's/\\/\\\\/g; s/"/\\"/g')" > "$OPTS"
# TLS: MySQL's client verifies with ssl-mode, MariaDB's with ssl-verify-server-cert; loose- lets
# each ignore the other's option.
[ -z "${MYSQL_SSL_CA:-}" ] || printf 'ssl-ca=%s\nloose-ssl-mode=VERIFY_IDENTITY\nloose-ssl-verify-server-cert\n' \
  "$MYSQL_SSL_CA" >> "$OPTS"
unset MYSQL_PASSWORD MYSQL_PWD

# sha256 of stdin, hex only; openssl (in mysql:8.4) hashes several times faster than sha256sum
sha256_stdin() {
  if command -v openssl >/dev/null 2>&1; then openssl dgst -sha256 -r; else sha256sum; fi
}
sql() { "$MYSQL_CLIENT" --defaults-extra-file="$OPTS" --protocol=TCP -N -B -e "$1"; }

# ---- flavour: server and client, MySQL or MariaDB ------------------------------------------
SERVER_VERSION="$(sql 'SELECT VERSION()')" || die "cannot connect to $MYSQL_HOST:$MYSQL_PORT as $MYSQL_USER"
case "$SERVER_VERSION" in *MariaDB*|*mariadb*) SERVER_FLAVOUR=mariadb ;; *) SERVER_FLAVOUR=mysql ;; esac
CLIENT_VERSION="$("$MYSQLDUMP" --version)"
case "$CLIENT_VERSION" in *MariaDB*|*mariadb*) CLIENT_FLAVOUR=mariadb ;; *) CLIENT_FLAVOUR=mysql ;; esac
log "server $SERVER_FLAVOUR $SERVER_VERSION, client $CLIENT_FLAVOUR"
# The database's own default character set and collation, recorded in the manifest: a dump of one
# database carries no CREATE DATABASE, so a restore into a new database takes them from there
# (SEEK's database.yml at v1.18.1 asks for utf8mb4_unicode_ci; a server default may differ).
read -r DB_CHARSET DB_COLLATION < <(sql "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME
  FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '$MYSQL_DATABASE'" || true) || true

# Flags every flavour understands. SEEK's own docs only give "mysqldump -u... seek_production";
# we add what makes that dump consistent and restorable: one transaction (no locks on InnoDB),
# row-by-row streaming, routines/triggers/events, binary-safe hex blobs, utf8mb4, and
# --no-tablespaces (no PROCESS privilege needed for the SEEK user).
DUMP_ARGS=(--single-transaction --quick --routines --triggers --events --hex-blob
           --default-character-set=utf8mb4 --no-tablespaces --add-drop-table --comments --dump-date)
if [ "$CLIENT_FLAVOUR" = mysql ]; then
  # MySQL's mysqldump only: do not write SET @@GLOBAL.GTID_PURGED (restores into fresh servers)
  DUMP_ARGS+=(--set-gtid-purged=OFF)
  # MySQL 8 client against a server without column statistics (MariaDB, MySQL < 8)
  [ "$SERVER_FLAVOUR" = mariadb ] && DUMP_ARGS+=(--column-statistics=0)
fi
# shellcheck disable=SC2206
[ -n "$MYSQL_EXTRA_ARGS" ] && DUMP_ARGS+=($MYSQL_EXTRA_ARGS)

# Tables whose data is not backed up (the sessions table) keep their structure in the dump.
EXCLUDED=()
for t in $MYSQL_EXCLUDE_DATA; do
  exists="$(sql "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema='$MYSQL_DATABASE' AND table_name='$t'")"
  if [ "$exists" = 1 ]; then
    EXCLUDED+=("$t")
    DUMP_ARGS+=("--ignore-table=$MYSQL_DATABASE.$t")
  fi
done

backup_make_set
PART="$SET_DIR/$ARTIFACT.part"

# ---- row counter: reads the same bytes that go into the file --------------------------------
# Inside an INSERT statement every row starts with exactly one "(" outside a string literal
# (values are literals: numbers, NULL, 0x.., quoted strings with backslash escapes; mysqldump
# escapes a quote in a string as \' and a backslash as \\, and writes NUL, newline, CR, ^Z and "
# as \0 \n \r \Z \", so a string never spans lines). The per-byte work is done by C tools, never
# by an interpreter per row:
#   branch 1: grep -n -o lists the line numbers of "INSERT INTO `t`", "CREATE TABLE `t`" and the
#             "-- Dump completed" trailer (a few bytes per statement);
#   branch 2: tr keeps only ' \ ( ; newline and the escape letters 0 n r Z " (a few % of the
#             bytes), sed drops every escape pair and then every '...' literal, tr drops the
#             letters: what is left per line is one "(" per row (and ";" at a statement's end).
# awk then adds up the "(" of the lines of each INSERT statement: a few bytes per row, after the
# dump (MySQL writes a statement on one line, MariaDB one row per line; both are handled).
# shellcheck disable=SC2016  # an awk program: its $ must not expand
COUNTER='
FILENAME == ARGV[1] {
  i = index($0, ":"); ln = substr($0, 1, i - 1) + 0; what = substr($0, i + 1)
  if (what ~ /^-- Dump completed/) { trailer = ln; next }
  t = what; sub(/^(INSERT INTO|CREATE TABLE) `/, "", t); sub(/`$/, "", t)
  if (!(t in rows)) { rows[t] = 0; order[++n] = t }
  if (what ~ /^INSERT INTO/) start[ln] = t
  next
}
FNR in start { cur = start[FNR]; inins = 1 }
inins { if (index($0, ";")) { inins = 0; rows[cur] += gsub(/\(/, "") } else if ($0 ~ /^\(*$/) rows[cur] += length($0); else rows[cur] += gsub(/\(/, "") }
END {
  if (!trailer || trailer != FNR) { print "NO_TRAILER"; exit 3 }
  printf "{"
  for (k = 1; k <= n; k++) { name = order[k]; gsub(/["\\]/, "\\\\&", name); printf "%s\"%s\": %d", (k > 1 ? ", " : ""), name, rows[order[k]] }
  print "}"
}'

mkfifo "$WORK/lines" "$WORK/reduce" "$WORK/hash"
# shellcheck disable=SC2016  # backticks of the dump, not a command substitution
LC_ALL=C grep -n -o -E '^(INSERT INTO `[^`]*`|CREATE TABLE `[^`]*`|-- Dump completed)' \
  < "$WORK/lines" > "$WORK/statements" &
LINES_PID=$!
PIDS+=("$LINES_PID")
(
  set +e
  # shellcheck disable=SC2020  # "\\\\" is tr's escape for one backslash: a set of single characters
  LC_ALL=C tr -cd "'\\\\(;\n0nrZ\"" < "$WORK/reduce" | LC_ALL=C sed "s/\\\\.//g; s/'[^']*'//g" \
    | LC_ALL=C tr -d '0nrZ"' > "$WORK/reduced"
  echo "${PIPESTATUS[*]}" > "$WORK/reduce.status"
) &
REDUCE_PID=$!
PIDS+=("$REDUCE_PID")
# sha256 of the compressed bytes as they are written (the artifact is never read back)
(
  set +e
  sha256_stdin < "$WORK/hash" > "$WORK/sha256"
  echo "$?" > "$WORK/hash.status"
) &
HASH_PID=$!
PIDS+=("$HASH_PID")

log "dumping $MYSQL_DATABASE to $SET_DIR/$ARTIFACT ($BACKUP_COMPRESSION)"
# The pipe runs as a background job in its own process group (set -m) so that a signal to this
# script (Job deadline, pod deletion) stops every part of it at once, and `wait` lets the trap run.
set -m
(
  set +e
  {
    # structure only for the excluded tables first, then everything else with data
    if [ "${#EXCLUDED[@]}" -gt 0 ]; then
      "$MYSQLDUMP" --defaults-extra-file="$OPTS" --protocol=TCP --no-data --skip-comments \
        "${DUMP_ARGS[@]}" "$MYSQL_DATABASE" "${EXCLUDED[@]}" || exit 11
    fi
    "$MYSQLDUMP" --defaults-extra-file="$OPTS" --protocol=TCP "${DUMP_ARGS[@]}" "$MYSQL_DATABASE" || exit 12
  } | tee "$WORK/lines" "$WORK/reduce" | compress | tee "$WORK/hash" > "$PART"
  echo "${PIPESTATUS[*]}" > "$WORK/status"
) &
PIPE_PID=$!
set +m
PIDS+=("-$PIPE_PID")
wait "$PIPE_PID" || true
wait "$LINES_PID" && LINES_RC=0 || LINES_RC=$?
wait "$REDUCE_PID" || true
wait "$HASH_PID" || true
PIDS=()

[ -s "$WORK/status" ] || die "dump pipe did not finish"
read -r -a STATUS < "$WORK/status"
[ "${STATUS[0]}" = 0 ] || die "mysqldump failed (status ${STATUS[0]})"
[ "${STATUS[1]}" = 0 ] || die "tee failed (status ${STATUS[1]})"
[ "${STATUS[2]}" = 0 ] || die "$BACKUP_COMPRESSION failed (status ${STATUS[2]})"
[ "${STATUS[3]}" = 0 ] || die "writing $PART failed (status ${STATUS[3]})"
[ "$(cat "$WORK/hash.status" 2>/dev/null)" = 0 ] || die "sha256 of the artifact failed"
[ "$LINES_RC" -le 1 ] || die "row counter (grep) failed (status $LINES_RC)"
[ "$(cat "$WORK/reduce.status" 2>/dev/null)" = "0 0 0" ] || die "row counter (tr/sed) failed"
LC_ALL=C "$AWK" "$COUNTER" "$WORK/statements" "$WORK/reduced" > "$WORK/rows.json" && COUNTER_RC=0 || COUNTER_RC=$?
[ "$COUNTER_RC" = 0 ] || die "dump has no '-- Dump completed' trailer (row counter status $COUNTER_RC)"

SIZE="$(stat -c %s "$PART")"
SHA="$(cut -c1-64 "$WORK/sha256")"
case "$SHA" in *[!0-9a-f]*|'') die "sha256 of the artifact is not a hex digest" ;; esac
[ "${#SHA}" = 64 ] || die "sha256 of the artifact is not a hex digest"
ROWS="$(cat "$WORK/rows.json")"
mv -- "$PART" "$SET_DIR/$ARTIFACT"

json_or_null() { if [ -n "$1" ]; then json_str "$1"; else printf null; fi; }
excluded_json="$(for t in "${EXCLUDED[@]}"; do json_str "$t"; printf ','; done | sed 's/,$//')"
{
  printf '{\n'
  printf '  "kind": "mysql",\n  "stamp": "%s",\n' "$STAMP"
  printf '  "created": "%s",\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  printf '  "source": %s,\n' "$(json_str "$BACKUP_SOURCE")"
  printf '  "seek_image": %s,\n' "$(seek_image_json)"
  printf '  "artifact": {"name": "%s", "size": %s, "sha256": "%s", "compression": "%s"},\n' \
    "$ARTIFACT" "$SIZE" "$SHA" "$BACKUP_COMPRESSION"
  printf '  "mysql": {"server_flavour": "%s", "server_version": %s, "client_version": %s,\n' \
    "$SERVER_FLAVOUR" "$(json_str "$SERVER_VERSION")" "$(json_str "$CLIENT_VERSION")"
  printf '            "database": %s, "data_excluded": [%s], "row_counts": "dump-stream",\n' \
    "$(json_str "$MYSQL_DATABASE")" "$excluded_json"
  printf '            "database_charset": %s, "database_collation": %s,\n' \
    "$(json_or_null "${DB_CHARSET:-}")" "$(json_or_null "${DB_COLLATION:-}")"
  printf '            "tables": %s},\n' "$ROWS"
  printf '  "complete": true\n}\n'
} > "$SET_DIR/manifest.json.tmp"
backup_publish "$SET_DIR/$ARTIFACT"
log "OK $SET_DIR/$ARTIFACT size=$SIZE sha256=$SHA"
