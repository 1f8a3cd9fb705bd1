#!/usr/bin/env bash
# Build the container image the molecule scenarios boot as lab nodes: Debian bookworm (or Ubuntu
# 24.04, noble) with systemd as PID 1 and python3, made with debootstrap and `docker import`, so
# nothing is pulled from a registry. Cached: the image is rebuilt only when this recipe changes.
#
#   tests/harness/build-node-image.sh                 build seek-k3s-node:bookworm when missing
#   tests/harness/build-node-image.sh noble [MIRROR]  build seek-k3s-node:noble from the Ubuntu
#                                                     archive at MIRROR, else at the mirror the
#                                                     host's apt sources name for noble
#   FORCE=1 tests/harness/build-node-image.sh ...     rebuild
set -euo pipefail

suite=${1:-bookworm}
mirror=${2:-}
image=${NODE_IMAGE:-seek-k3s-node:$suite}
packages=systemd,systemd-sysv,dbus,python3,python3-apt,sudo,iproute2,procps,kmod,ca-certificates,gnupg
recipe=$(printf '%s\n' "$suite" | cat "$0" - | sha256sum | cut -c1-16)
log() { printf 'build-node-image: %s\n' "$*" >&2; }

case $suite in
  bookworm | trixie) distribution=debian ;;
  jammy | noble) distribution=ubuntu ;;
  *) log "no recipe for $suite (Debian bookworm or trixie, Ubuntu jammy or noble)"; exit 2 ;;
esac

# One build at a time per image on this machine (jobs that share a machine, as under act in
# tests/users_ci, all ask for it at once): the others wait, then find it up to date.
exec 9>"/var/lock/seek-k3s-node-image-$suite.lock"
flock 9
if [ "${FORCE:-0}" != 1 ] &&
  [ "$(docker image inspect -f '{{ index .Config.Labels "seek-k3s.recipe" }}' "$image" 2>/dev/null)" = "$recipe" ]; then
  log "$image is up to date (recipe $recipe)"
  exit 0
fi

# The first mirror this host's apt sources name for the suite's release pocket with `main`:
# deb822 stanzas (/etc/apt/sources.list.d/*.sources, as on ubuntu-24.04) or one-line entries.
host_mirror() {
  local file
  for file in /etc/apt/sources.list.d/*.sources; do
    [ -r "$file" ] || continue
    awk -v suite="$1" 'BEGIN { RS = ""; FS = "\n" }
      {
        types = uris = suites = components = enabled = ""
        for (i = 1; i <= NF; i++) {
          line = $i
          if (line ~ /^#/) continue
          key = tolower(line); sub(/:.*/, "", key); sub(/^[^:]*:[ \t]*/, "", line)
          if (key == "types") types = line; else if (key == "uris") uris = line
          else if (key == "suites") suites = line; else if (key == "components") components = line
          else if (key == "enabled") enabled = tolower(line)
        }
        if (enabled == "no" || (" " types " ") !~ / deb / || (" " suites " ") !~ (" " suite " ") ||
            (" " components " ") !~ / main /) next
        split(uris, u, /[ \t]+/); print u[1]; exit
      }' "$file"
  done
  { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true; } |
    awk -v suite="$1" '$1 == "deb" {
      i = 2; if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
      if ($(i + 1) != suite) next
      for (j = i + 2; j <= NF; j++) if ($j == "main") { print $i; exit }
    }'
}

# apt's mirror method names a file listing mirrors ("URL<TAB>priority:N" lines), as on GitHub's
# ubuntu-24.04 runners (actions/runner-images images/ubuntu/scripts/build/configure-apt-sources.sh):
# the first mirror of the lowest priority number.
resolve_mirror() {
  case $1 in
    mirror+file:*)
      awk -F '\t' '!/^#/ && NF {
          p = 0; for (i = 2; i <= NF; i++) if ($i ~ /^priority:/) p = substr($i, 10) + 0
          if (best == "" || p < bp) { best = $1; bp = p }
        } END { print best }' "${1#mirror+file:}" 2>/dev/null ;;
    *) printf '%s\n' "$1" ;;
  esac
}

debootstrap_args=(--variant=minbase --include="$packages")
if [ "$distribution" = ubuntu ]; then
  [ -n "$mirror" ] || mirror=$(resolve_mirror "$(host_mirror "$suite" | head -n 1)")
  if [ -z "$mirror" ]; then
    log "no Ubuntu mirror for $suite: pass one (build-node-image.sh $suite MIRROR) or run on a host whose apt sources name one"
    exit 1
  fi
  mirror=${mirror%/}
  # One clear line when the archive cannot be reached, before anything is installed or built.
  if ! probe=$(curl -fsS --max-time 30 -o /dev/null "$mirror/dists/$suite/Release" 2>&1); then
    log "cannot reach $mirror/dists/$suite/Release ($(printf '%s' "$probe" | tail -n 1 | sed 's/^curl: ([0-9]*) //')): building $image needs the Ubuntu archive"
    exit 1
  fi
  keyring=/usr/share/keyrings/ubuntu-archive-keyring.gpg
  if [ ! -r "$keyring" ]; then
    log "the Ubuntu archive key is missing ($keyring, Debian and Ubuntu package ubuntu-keyring)"
    exit 1
  fi
  # universe as on an installed Ubuntu; the signature of the Release file is checked.
  debootstrap_args+=("--components=main,universe" --keyring="$keyring")
fi

command -v debootstrap >/dev/null 2>&1 || {
  log "installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq debootstrap >/dev/null ||
    { apt-get -o DPkg::Lock::Timeout=600 update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq debootstrap >/dev/null; }
}
# An older debootstrap (Debian bookworm's) has no script named after a newer Ubuntu release; every
# Ubuntu release since 7.10 uses the one named gutsy.
suite_script=()
if [ "$distribution" = ubuntu ] && [ ! -e "/usr/share/debootstrap/scripts/$suite" ]; then
  suite_script=(/usr/share/debootstrap/scripts/gutsy)
fi

rootfs=$(mktemp -d /var/tmp/seek-k3s-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT

log "debootstrap $suite into $rootfs (a few minutes)"
# No mirror for Debian (unless given): debootstrap uses its default Debian mirror.
debootstrap "${debootstrap_args[@]}" "$suite" "$rootfs" ${mirror:+"$mirror"} "${suite_script[@]}" >"$rootfs.log" 2>&1 ||
  { tail -n 30 "$rootfs.log" >&2; rm -f "$rootfs.log"; exit 1; }
rm -f "$rootfs.log"

# Trim what a container neither needs nor can run, and leave a clean first boot. Docker sets the
# network up before systemd starts: nothing need wait for it (Ubuntu enables networkd's wait).
chroot "$rootfs" /bin/sh -eu <<'CHROOT'
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /tmp/* /var/tmp/*
# An old mtime tells apt's cache_valid_time that the (empty) package lists need an update.
touch -d @0 /var/lib/apt/lists
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
for unit in getty.target systemd-remount-fs.service systemd-firstboot.service \
            sys-kernel-config.mount sys-kernel-debug.mount systemd-udevd.service \
            systemd-networkd-wait-online.service; do
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
