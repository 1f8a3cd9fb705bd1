#!/bin/sh
# seek-k3s: etcd snapshot of the k3s datastore into a backup set (POSIX sh).
#
# Produces <BACKUP_ROOT>/etcd/<YYYYMMDDTHHMMSSZ>/ with etcd.db and, written last and atomically,
# manifest.json. The snapshot is checked with `snapshot status` (etcdutl when present, else
# etcdctl) before the manifest is written. On any failure or signal the set is removed and the
# script exits non-zero. Runs on a k3s server node (hostNetwork) with the etcd client certs
# mounted read-only. The k3s server token needed to restore is NOT part of the set: it stays in
# the operator's vault.
#
# Environment (etcdctl reads the ETCDCTL_* variables itself):
#   ETCDCTL_ENDPOINTS  client URL (default: https://127.0.0.1:2379)
#   ETCDCTL_CACERT     CA (default: /var/lib/rancher/k3s/server/tls/etcd/server-ca.crt)
#   ETCDCTL_CERT       client cert (default: /var/lib/rancher/k3s/server/tls/etcd/client.crt)
#   ETCDCTL_KEY        client key (default: /var/lib/rancher/k3s/server/tls/etcd/client.key)
#   ETCDCTL_DIAL_TIMEOUT (default: 10s)
#   ETCDCTL, ETCDUTL   binaries (default: etcdctl, etcdutl if installed)
#   SNAPSHOT_TIMEOUT   seconds before a hanging `snapshot save` is killed (default: 300; etcdctl
#                      itself waits forever on an unreachable endpoint)
#   BACKUP_ROOT        backup volume root (default: /var/backups/seek-k3s)
#   BACKUP_SOURCE      free text recorded as "source" (default: etcd:ENDPOINTS)
#   SEEK_IMAGE         SEEK image of the cluster, recorded as "seek_image" (default: none)
#   BACKUP_STAMP       override the UTC stamp YYYYMMDDTHHMMSSZ
#
# Needs: sh, etcdctl (v3.4+), optionally etcdutl (v3.5+), sha256sum, sed; backup-lib.sh next to it.
set -eu
umask 077

TLS=/var/lib/rancher/k3s/server/tls/etcd
: "${ETCDCTL_API:=3}"
: "${ETCDCTL_ENDPOINTS:=https://127.0.0.1:2379}"
: "${ETCDCTL_CACERT:=$TLS/server-ca.crt}"
: "${ETCDCTL_CERT:=$TLS/client.crt}"
: "${ETCDCTL_KEY:=$TLS/client.key}"
: "${ETCDCTL_DIAL_TIMEOUT:=10s}"
: "${ETCDCTL:=etcdctl}"
: "${SNAPSHOT_TIMEOUT:=300}"
: "${BACKUP_ROOT:=/var/backups/seek-k3s}"
: "${BACKUP_SOURCE:=etcd:${ETCDCTL_ENDPOINTS}}"
export ETCDCTL_API ETCDCTL_ENDPOINTS ETCDCTL_CACERT ETCDCTL_CERT ETCDCTL_KEY ETCDCTL_DIAL_TIMEOUT
if [ -z "${ETCDUTL:-}" ] && command -v etcdutl >/dev/null 2>&1; then ETCDUTL=etcdutl; fi

# log, die, json_str, the stamp check, the set directory and its cleanup trap
# shellcheck source-path=SCRIPTDIR source=backup-lib.sh
. "$(dirname "$0")/backup-lib.sh"
backup_init etcd-backup etcd

for f in "$ETCDCTL_CACERT" "$ETCDCTL_CERT" "$ETCDCTL_KEY"; do
  [ -r "$f" ] || die "cannot read $f (mount the etcd client certs read-only)"
done

CHILD=
WATCHDOG=
backup_cleanup_hook() {
  if [ -n "$CHILD" ]; then kill "$CHILD" 2>/dev/null || true; fi
  if [ -n "$WATCHDOG" ]; then kill "$WATCHDOG" 2>/dev/null || true; fi
}
backup_traps

backup_make_set
PART="$SET_DIR/etcd.db.part"

log "snapshot of $ETCDCTL_ENDPOINTS to $SET_DIR/etcd.db"
"$ETCDCTL" snapshot save "$PART" >&2 &
CHILD=$!
# watchdog: etcdctl never gives up on an unreachable endpoint
( trap 'kill "$s" 2>/dev/null; exit 0' TERM
  sleep "$SNAPSHOT_TIMEOUT" & s=$!
  wait "$s" && kill "$CHILD" 2>/dev/null ) </dev/null >/dev/null 2>&1 &
WATCHDOG=$!
wait "$CHILD" || die "etcdctl snapshot save failed (or took longer than ${SNAPSHOT_TIMEOUT}s)"
CHILD=
kill "$WATCHDOG" 2>/dev/null || true
WATCHDOG=

if [ -n "${ETCDUTL:-}" ]; then
  STATUS="$("$ETCDUTL" snapshot status "$PART" -w json)" || die "etcdutl snapshot status failed"
else
  STATUS="$("$ETCDCTL" snapshot status "$PART" -w json)" || die "etcdctl snapshot status failed"
fi
field() { printf '%s' "$STATUS" | sed -n "s/.*\"$1\":\([0-9][0-9]*\).*/\1/p"; }
HASH="$(field hash)"; REVISION="$(field revision)"; KEYS="$(field totalKey)"; TOTAL="$(field totalSize)"
if [ -z "$HASH" ] || [ -z "$REVISION" ] || [ -z "$KEYS" ]; then die "unexpected snapshot status: $STATUS"; fi
[ "$KEYS" -gt 0 ] || die "snapshot holds no keys"

SIZE="$(wc -c < "$PART" | tr -d ' ')"
SHA="$(sha256sum "$PART" | cut -d' ' -f1)"
mv -- "$PART" "$SET_DIR/etcd.db"
VERSION="$("$ETCDCTL" version 2>/dev/null | sed -n 's/^etcdctl version: //p')"
{
  printf '{\n  "kind": "etcd",\n  "stamp": "%s",\n' "$STAMP"
  printf '  "created": "%s",\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  printf '  "source": %s,\n' "$(json_str "$BACKUP_SOURCE")"
  printf '  "seek_image": %s,\n' "$(seek_image_json)"
  printf '  "artifact": {"name": "etcd.db", "size": %s, "sha256": "%s", "compression": "none"},\n' "$SIZE" "$SHA"
  printf '  "etcd": {"hash": %s, "revision": %s, "total_keys": %s, "total_size": %s, "etcdctl_version": "%s"},\n' \
    "$HASH" "$REVISION" "$KEYS" "${TOTAL:-0}" "$VERSION"
  printf '  "complete": true\n}\n'
} > "$SET_DIR/manifest.json.tmp"
# no file arguments: a full sync (busybox sync may not take files)
# shellcheck disable=SC2119
backup_publish
log "OK $SET_DIR/etcd.db size=$SIZE sha256=$SHA revision=$REVISION keys=$KEYS"
