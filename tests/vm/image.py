"""Build the guests' Debian bookworm image from Debian packages, cached by a recipe hash.

debootstrap installs the kernel, systemd, openssh-server and python3 into a directory;
``mkfs.ext4 -d`` turns that directory into a raw ext4 image file (no loop device, no mount);
the kernel and initrd are copied out beside it so QEMU boots them directly (no boot loader).
The image has an empty /etc/machine-id and no SSH host key: every guest makes its own at its
first boot. Root logs in with the harness's key (generated into the cache, mode 0600).

Cache: ``${SEEK_K3S_CACHE:-~/.cache/seek-k3s}/vm/<recipe>/`` holding ``rootfs.raw``,
``vmlinuz``, ``initrd.img``, ``id_ed25519`` (+ ``.pub``) and ``recipe.json``. ``<recipe>`` is
the sha256 of the package list, the suite, the image size and the files this module installs
(itself included), so any change to them builds a new image.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parent
SUITE = "bookworm"
# What every guest runs: the kernel, systemd, SSH and Python for Ansible, plus the Debian
# packages the node roles and the tests install (so a test run downloads no package; the roles'
# apt tasks still run and find them) and what the NFS and firewall checks use.
PACKAGES = (
    "linux-image-amd64", "systemd", "systemd-sysv", "udev", "dbus", "openssh-server",
    "python3", "python3-apt", "sudo", "iproute2", "procps", "kmod", "ca-certificates",
    "e2fsprogs", "netbase", "less",
    # node_prereq, nfs_server, molecule/nodes-vm prepare: installed, left disabled (below).
    "curl", "iptables", "conntrack", "chrony", "nfs-common", "nfs-kernel-server", "ufw",
)
# Services of those packages that the roles must enable and start themselves.
DISABLED_UNITS = ("chrony.service", "nfs-server.service")
# Timers and services that cost boot time in a short-lived lab guest and do nothing useful.
MASKED_UNITS = (
    "apt-daily.timer", "apt-daily-upgrade.timer", "man-db.timer", "e2scrub_all.timer",
    "fstrim.timer", "e2scrub_reap.service", "getty@tty1.service", "serial-getty@ttyS0.service",
)
IMAGE_SIZE = "20G"  # sparse: the file holds only what is written
GUEST_FILES = {
    "seek-lab-setup": "usr/local/sbin/seek-lab-setup",
    "seek-lab-setup.service": "etc/systemd/system/seek-lab-setup.service",
    "seek-lab-hostkeys.service": "etc/systemd/system/seek-lab-hostkeys.service",
    "seek-lab-api.socket": "etc/systemd/system/seek-lab-api.socket",
    "seek-lab-api.service": "etc/systemd/system/seek-lab-api.service",
    "10-nat.network": "etc/systemd/network/10-nat.network",
}
ENABLED_UNITS = ("seek-lab-setup.service", "seek-lab-hostkeys.service", "seek-lab-api.socket",
                 "systemd-networkd.service", "ssh.service")


class ImageError(RuntimeError):
    """The image could not be built; the message says why and what to install."""


@dataclass(frozen=True)
class Image:
    """A built image: the files QEMU boots and the key root logs in with."""

    directory: Path

    @property
    def rootfs(self) -> Path:
        """The raw ext4 root file system (the read-only base of every guest's overlay)."""
        return self.directory / "rootfs.raw"

    @property
    def kernel(self) -> Path:
        """The guest kernel, booted directly by QEMU."""
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        """The initramfs that loads virtio and ext4 and mounts /dev/vda."""
        return self.directory / "initrd.img"

    @property
    def key(self) -> Path:
        """The private SSH key that logs in as root on every guest."""
        return self.directory / "id_ed25519"

    def complete(self) -> bool:
        """Return whether every file of the image is present (a finished build)."""
        return all(p.is_file() for p in (self.rootfs, self.kernel, self.initrd, self.key,
                                          self.directory / "recipe.json"))


def cache_root() -> Path:
    """Return the VM image cache shared by every checkout on this machine."""
    base = os.environ.get("SEEK_K3S_CACHE") or str(Path.home() / ".cache" / "seek-k3s")
    return Path(base) / "vm"


def recipe() -> str:
    """Return the sha256 of everything that decides the image's content."""
    digest = hashlib.sha256()
    for part in (SUITE, IMAGE_SIZE, *PACKAGES, "|", *DISABLED_UNITS, "|", *MASKED_UNITS, "|",
                 *ENABLED_UNITS):
        digest.update(part.encode() + b"\0")
    for name in sorted(GUEST_FILES):
        digest.update(name.encode() + b"\0" + (MODULE_DIR / "guest" / name).read_bytes() + b"\0")
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()


def current() -> Image:
    """Return the image of the current recipe (built or not)."""
    return Image(cache_root() / recipe()[:16])


def _log(message: str) -> None:
    print(f"vm-image: {message}", file=sys.stderr, flush=True)


def _need(*commands: str) -> None:
    missing = [c for c in commands if shutil.which(c) is None]
    if missing:
        raise ImageError(f"missing {', '.join(missing)}: install the Debian packages of "
                         "tests/host-packages.txt (tests/setup-host.sh)")


def _chroot(root: Path, script: str) -> None:
    subprocess.run(["chroot", str(root), "/bin/sh", "-euc", script], check=True,
                   env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C",
                        "DEBIAN_FRONTEND": "noninteractive"})


def build(force: bool = False) -> Image:
    """Build the image of the current recipe unless it is cached; return it.

    Runs as root (debootstrap and chroot need it). Concurrent builds of one recipe wait for
    each other on a lock file; a failed build leaves nothing in the cache.
    """
    image = current()
    image.directory.parent.mkdir(parents=True, exist_ok=True)
    with open(image.directory.parent / f".{image.directory.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if image.complete() and not force:
            _log(f"cached: {image.directory}")
            return image
        if os.geteuid() != 0:
            raise ImageError("building the VM image needs root (debootstrap, chroot)")
        _need("debootstrap", "mkfs.ext4", "ssh-keygen", "chroot")
        started = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=f"{image.directory.name}.", dir=image.directory.parent))
        try:
            _build_into(work)
            shutil.rmtree(image.directory, ignore_errors=True)
            work.rename(image.directory)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        _log(f"built {image.directory} in {time.monotonic() - started:.0f}s")
        return image


def _build_into(work: Path) -> None:
    root = work / "root"
    root.mkdir()
    _log(f"debootstrap {SUITE} with {len(PACKAGES)} packages (a few minutes)")
    log = work / "debootstrap.log"
    with open(log, "w") as out:
        done = subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
                               SUITE, str(root)], stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise ImageError(f"debootstrap failed (exit {done.returncode}):\n{tail}")

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "seek-k3s-vm-lab",
                    "-f", str(work / "id_ed25519")], check=True)
    for name, dest in GUEST_FILES.items():
        target = root / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(MODULE_DIR / "guest" / name, target)
        target.chmod(0o755 if dest.startswith("usr/local/sbin") else 0o644)
    ssh_dir = root / "root" / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text((work / "id_ed25519.pub").read_text())
    (ssh_dir / "authorized_keys").chmod(0o600)
    (root / "etc" / "fstab").write_text("/dev/vda / ext4 rw,errors=remount-ro 0 0\n")
    # QEMU's user-mode network answers DNS on 10.0.2.3.
    resolv = root / "etc" / "resolv.conf"
    resolv.unlink(missing_ok=True)
    resolv.write_text("nameserver 10.0.2.3\n")
    (root / "etc" / "hostname").unlink(missing_ok=True)  # systemd.hostname= names each guest
    (root / "etc" / "apt" / "apt.conf.d" / "90no-recommends").write_text(
        'APT::Install-Recommends "false";\n')
    _chroot(root, f"""
systemctl enable {' '.join(ENABLED_UNITS)}
systemctl disable {' '.join(DISABLED_UNITS)}
systemctl mask {' '.join(MASKED_UNITS)}
ufw --force disable >/dev/null 2>&1 || true
rm -f /etc/ssh/ssh_host_*
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
apt-get clean
rm -rf /var/lib/apt/lists/* /tmp/* /var/tmp/*
""")
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    initrds = sorted((root / "boot").glob("initrd.img-*"))
    if not kernels or not initrds:
        raise ImageError("debootstrap installed no kernel or initrd into /boot")
    shutil.copyfile(kernels[-1], work / "vmlinuz")
    shutil.copyfile(initrds[-1], work / "initrd.img")
    _log("mkfs.ext4 -d (the root file system into an image file)")
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "seek-lab-root", "-d", str(root),
                    str(work / "rootfs.raw"), IMAGE_SIZE], check=True)
    (work / "rootfs.raw").chmod(0o444)
    shutil.rmtree(root)
    log.unlink()
    (work / "recipe.json").write_text(json.dumps({
        "recipe": recipe(), "suite": SUITE, "packages": list(PACKAGES),
        "kernel": kernels[-1].name, "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }, indent=2) + "\n")
