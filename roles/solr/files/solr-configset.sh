#!/bin/bash
# Init step of the Solr pod (runs in the SEEK image, as Solr's uid 8983).
# 1. Copies SEEK's configset (CONFIGSET_SOURCE, solr/seek/conf of the SEEK release) to
#    CONFIGSET_DIR/conf and writes its sha256 to CONFIGSET_DIR/CHECKSUM_FILE. The stock image's
#    solr-precreate copies the whole of CONFIGSET_DIR into a new core, checksum file included.
# 2. If the core (CORE_DIR) exists but was built from another configset (or carries no checksum:
#    built by an older image), removes it. solr-precreate leaves an existing core alone, so this is
#    the only way a changed configset reaches the core; the index is rebuilt by SEEK's reindex.
set -euo pipefail

: "${CONFIGSET_SOURCE:?}" "${CONFIGSET_DIR:?}" "${CHECKSUM_FILE:?}" "${CORE_DIR:?}"

if [ ! -f "$CONFIGSET_SOURCE/solrconfig.xml" ]; then
  echo "no Solr configset at $CONFIGSET_SOURCE in this SEEK image (solr_configset_source)" >&2
  exit 1
fi

rm -rf "${CONFIGSET_DIR:?}/conf" "${CONFIGSET_DIR:?}/$CHECKSUM_FILE"
cp -R "$CONFIGSET_SOURCE" "$CONFIGSET_DIR/conf"
sum=$(cd "$CONFIGSET_DIR/conf" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum)
sum=${sum%% *}
printf '%s\n' "$sum" > "$CONFIGSET_DIR/$CHECKSUM_FILE"
echo "SEEK configset $CONFIGSET_SOURCE: sha256 $sum"

if [ -d "$CORE_DIR" ]; then
  built=$(cat "$CORE_DIR/$CHECKSUM_FILE" 2>/dev/null || true)
  if [ "$built" = "$sum" ]; then
    echo "core $CORE_DIR was built from this configset: kept"
  else
    echo "core $CORE_DIR was built from configset '${built:-unknown}': removed, Solr recreates it empty; SEEK must reindex"
    rm -rf "${CORE_DIR:?}"
  fi
fi
