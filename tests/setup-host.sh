#!/usr/bin/env bash
# Prepare this machine for the test suite: the Debian packages in tests/host-packages.txt,
# a running Docker engine, the local node image and the VM image. Safe to run again: it
# installs only what is missing.
#   tests/setup-host.sh           everything make test needs
#   tests/setup-host.sh --nodes   only what the molecule node scenarios need (Docker and the
#                                 node image): users' CI scenario jobs, which use neither the
#                                 suite's MariaDB (it would replace the runner's MySQL) nor QEMU
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
log() { printf 'setup-host: %s\n' "$*" >&2; }

if [ "${1:-}" = --nodes ]; then
  "$here/harness/ensure-docker.sh"
  exec "$here/harness/build-node-image.sh"
fi

mapfile -t wanted < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$here/host-packages.txt")
missing=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "Debian packages present"
fi

"$here/harness/ensure-docker.sh"
"$here/harness/build-node-image.sh"
# The Debian image of the VM guests (tests/vm/image.py; cached by its recipe hash).
(cd "$here/.." && python3 -m tests.vm build >/dev/null)
