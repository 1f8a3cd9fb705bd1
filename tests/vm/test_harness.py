"""The VM harness leaves no process behind when a start fails, and stops only its own processes.

The full start (three guests, SSH, the roles) is proven by molecule nodes-vm; these tests make
starts fail on purpose, with real QEMU and vde_switch processes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.vm import image as vm_image
from tests.vm import lab

pytestmark = pytest.mark.skipif(
    shutil.which(lab.QEMU) is None or shutil.which("vde_switch") is None,
    reason="QEMU or vde_switch is not installed (tests/setup-host.sh installs them)")


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def broken_image(directory: Path) -> vm_image.Image:
    """An image whose kernel is not a kernel: QEMU refuses it and exits at once."""
    directory.mkdir()
    (directory / "vmlinuz").write_text("not a kernel\n")
    (directory / "initrd.img").write_text("")
    subprocess.run(["truncate", "-s", "64M", str(directory / "rootfs.raw")], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / "id_ed25519")],
                   check=True)
    (directory / "recipe.json").write_text("{}\n")
    return vm_image.Image(directory)


def test_a_guest_that_cannot_start_leaves_nothing(tmp_path):
    state_dir = tmp_path / "lab"
    with pytest.raises(lab.LabError, match="exited at once"):
        lab.up(state_dir, broken_image(tmp_path / "image"), ["one", "two"], timeout=60)
    assert not state_dir.exists(), "the state directory (overlays, sockets) was left"
    assert lab.leftovers(state_dir) == []


@pytest.mark.skipif(not vm_image.current().complete(),
                    reason="the VM image is not built yet (python -m tests.vm build; "
                           "tests/setup-host.sh builds it)")
def test_a_guest_that_never_answers_is_stopped(tmp_path):
    """A real guest that does not answer SSH in time (1 s) is stopped, with its switch."""
    state_dir = tmp_path / "lab"
    pids: list[int] = []
    original = lab._wait_for_ssh

    def record_then_wait(state: lab.State, timeout: float) -> None:
        pids.extend([state.switch_pid, *(g.pid for g in state.guests)])
        assert all(alive(pid) for pid in pids)
        original(state, timeout)

    lab._wait_for_ssh = record_then_wait
    try:
        with pytest.raises(lab.LabError, match="no SSH from slow after"):
            lab.up(state_dir, vm_image.current(), ["slow"], timeout=1, memory=256)
    finally:
        lab._wait_for_ssh = original
    assert len(pids) == 2
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in pids), "QEMU or vde_switch still runs"
    assert not state_dir.exists()


def test_down_leaves_a_reused_pid_alone(tmp_path):
    """A recorded pid now used by another process (not naming the lab) is not signalled."""
    state_dir = tmp_path / "lab"
    state_dir.mkdir()
    other = subprocess.Popen(["sleep", "60"])
    try:
        lab.State(directory=str(state_dir), switch_pid=other.pid,
                  guests=[lab.Guest(name="g", address="192.168.77.11", ssh_port=1, overlay="",
                                    console="", mac_nat="", mac_lab="", pid=other.pid)]).save()
        assert lab.down(state_dir) == []
        assert other.poll() is None, "down killed a process that is not the lab's"
        assert not state_dir.exists()
    finally:
        other.kill()
        other.wait()


def test_detected_accelerator_is_one_qemu_can_use():
    """kvm only where /dev/kvm is usable; the override wins."""
    image = vm_image.current()
    os.environ["SEEK_K3S_VM_ACCEL"] = "tcg"
    try:
        assert lab.detect_accel(image) == "tcg"
    finally:
        del os.environ["SEEK_K3S_VM_ACCEL"]
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        assert lab.detect_accel(image) == "tcg"
