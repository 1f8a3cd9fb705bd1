#!/usr/bin/env bash
# Download a k3s release's airgap bundle for the k3s role (k3s_airgap_dir): the binary,
# sha256sum-<arch>.txt and k3s-airgap-images-<arch>.tar.zst, from the release URL and version the
# role uses (k3s_release_url, k3s_version in roles/k3s/defaults/main.yml), each file checked
# against the release's checksum file. A file already in DIR with the right checksum is kept.
#   scripts/fetch-k3s-airgap.sh DIR [VERSION [ARCH]]     ARCH: amd64 (default), arm64 or arm
# K3S_RELEASE_URL overrides the release URL (a mirror of the releases, as k3s_release_url does).
# On any failure it prints one line naming the URL and exits 1.
set -euo pipefail

defaults=$(cd "$(dirname "$0")/.." && pwd)/roles/k3s/defaults/main.yml
dir=${1:?usage: fetch-k3s-airgap.sh DIR [VERSION [ARCH]]}
version=${2:-$(sed -n 's/^k3s_version: *//p' "$defaults")}
arch=${3:-amd64}
release_url=${K3S_RELEASE_URL:-$(sed -n 's/^k3s_release_url: *//p' "$defaults")}

fail() { printf 'fetch-k3s-airgap: %s\n' "$*" >&2; exit 1; }

# The release's file names per architecture, as in roles/k3s/vars/main.yml (__k3s_arch_map).
case $arch in
  amd64) binary=k3s ;;
  arm64) binary=k3s-arm64 ;;
  arm) binary=k3s-armhf ;;
  *) fail "no k3s release for architecture $arch (amd64, arm64 or arm)" ;;
esac
sums=sha256sum-$arch.txt
images=k3s-airgap-images-$arch.tar.zst
# The tag's "+" is "%2B" in the download URL (the role's `k3s_version | urlencode`).
base=$release_url/${version//+/%2B}

mkdir -p "$dir"
err=$(mktemp)
trap 'rm -f "$err" "$dir"/*.part' EXIT

download() { # download NAME: DIR/NAME from the release, through NAME.part
  local url=$base/$1
  if ! curl -fsSL --retry 3 --connect-timeout 20 -o "$dir/$1.part" "$url" 2>"$err"; then
    # curl prints its error once per try: the last one says it.
    fail "cannot download $url: $(tail -n 1 "$err" | sed 's/^curl: ([0-9]*) //')"
  fi
  mv "$dir/$1.part" "$dir/$1"
}

# The expected sha256 of NAME, from the checksum file ("<sha256>  <name>" lines).
expected() { awk -v name="$1" '$2 == name || $2 == "*" name { print $1; exit }' "$dir/$sums"; }
actual() { sha256sum "$dir/$1" | cut -d' ' -f1; }

# The checksum file is the reference: always fetched again.
download "$sums"
for name in "$binary" "$images"; do
  want=$(expected "$name")
  [ -n "$want" ] || fail "$base/$sums lists no sha256 for $name"
  if [ -f "$dir/$name" ] && [ "$(actual "$name")" = "$want" ]; then
    echo "fetch-k3s-airgap: $dir/$name is already the release's"
    continue
  fi
  download "$name"
  got=$(actual "$name")
  [ "$got" = "$want" ] || { rm -f "$dir/$name"; fail "$base/$name has sha256 $got, $sums says $want"; }
  echo "fetch-k3s-airgap: $dir/$name ($(du -h "$dir/$name" | cut -f1), sha256 checked)"
done
chmod 0755 "$dir/$binary"
echo "fetch-k3s-airgap: $dir holds the k3s $version airgap bundle for $arch"
