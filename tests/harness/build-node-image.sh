#!/usr/bin/env bash
# Build the container image the molecule scenarios boot as lab nodes: Debian bookworm with
# systemd as PID 1 and python3, made with debootstrap and `docker import`, so nothing is
# pulled from a registry. Cached: the image is rebuilt only when this recipe changes.
#
#   tests/harness/build-node-image.sh            build seek-k3s-node:bookworm when missing
#   FORCE=1 tests/harness/build-node-image.sh    rebuild
set -euo pipefail

image=${NODE_IMAGE:-seek-k3s-node:bookworm}
suite=bookworm
packages=systemd,systemd-sysv,dbus,python3,python3-apt,sudo,iproute2,procps,kmod,ca-certificates,gnupg
recipe=$(sha256sum "$0" | cut -c1-16)
log() { printf 'build-node-image: %s\n' "$*" >&2; }

if [ "${FORCE:-0}" != 1 ] &&
  [ "$(docker image inspect -f '{{ index .Config.Labels "seek-k3s.recipe" }}' "$image" 2>/dev/null)" = "$recipe" ]; then
  log "$image is up to date (recipe $recipe)"
  exit 0
fi

command -v debootstrap >/dev/null 2>&1 || {
  log "installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
}

rootfs=$(mktemp -d /var/tmp/seek-k3s-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT

log "debootstrap $suite into $rootfs (a few minutes)"
# No mirror argument: debootstrap uses its default Debian mirror.
debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" >"$rootfs.log" 2>&1 ||
  { tail -n 30 "$rootfs.log" >&2; rm -f "$rootfs.log"; exit 1; }
rm -f "$rootfs.log"

# Trim what a container neither needs nor can run, and leave a clean first boot.
chroot "$rootfs" /bin/sh -eu <<'CHROOT'
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /tmp/* /var/tmp/*
# An old mtime tells apt's cache_valid_time that the (empty) package lists need an update.
touch -d @0 /var/lib/apt/lists
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
for unit in getty.target systemd-remount-fs.service systemd-firstboot.service \
            sys-kernel-config.mount sys-kernel-debug.mount systemd-udevd.service; do
  ln -sf /dev/null "/etc/systemd/system/$unit"
done
echo 'APT::Install-Recommends "false";' > /etc/apt/apt.conf.d/90no-recommends
CHROOT

log "importing as $image"
tar -C "$rootfs" -c . | docker import \
  --change 'ENV container=docker' \
  --change 'CMD ["/lib/systemd/systemd"]' \
  --change "LABEL seek-k3s.recipe=$recipe" \
  - "$image" >/dev/null
log "built $image ($(docker image inspect -f '{{.Size}}' "$image" | numfmt --to=iec))"
