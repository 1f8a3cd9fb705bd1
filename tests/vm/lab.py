"""Start and stop QEMU guests on one private network, and say how to reach them.

A lab lives in a state directory: ``state.json`` (every process id, port and file), the
guests' qcow2 overlays over the cached image, their serial consoles (``<name>.console``),
the vde switch's socket directory, the SSH key and known_hosts, and ``inventory.yml``.

Networks (nothing of the host's own network is touched: no interface, bridge, namespace or
firewall rule is created on the host):

- eth0 of each guest is QEMU's user-mode network: outbound NAT for apt, and SSH forwarded from
  a port on the host's 127.0.0.1 only.
- eth1 of each guest is plugged into a vde_switch, a userspace switch reached through a Unix
  socket in the state directory: the guests' private network (``--network``, default
  192.168.77.0/24; guest i gets host number 11 + i).

Every process is started by this module, recorded in ``state.json`` as soon as it runs, and
stopped by its process id (after checking that its command line names this state directory).
``up`` stops whatever it started when any step fails, so a failed start leaves nothing.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tests.vm.image import Image

QEMU = "qemu-system-x86_64"
DEFAULT_NETWORK = "192.168.77.0/24"
FIRST_HOST = 11
STATE_FILE = "state.json"
# Unix socket paths are limited to 108 bytes; the switch socket lives in this directory.
SOCKET_DIR_LIMIT = 90


class LabError(RuntimeError):
    """A lab could not be started or stopped; the message says why."""


@dataclass
class Guest:
    """One guest: its name, private address, SSH port on 127.0.0.1 and QEMU process id."""

    name: str
    address: str
    ssh_port: int
    overlay: str
    console: str
    mac_nat: str
    mac_lab: str
    extra_forwards: dict[int, int] = field(default_factory=dict)  # host port -> guest port
    api_proxy: str = ""
    pid: int = 0


@dataclass
class State:
    """Everything a lab started, as recorded in state.json."""

    directory: str
    accel: str = ""
    network: str = DEFAULT_NETWORK
    switch_dir: str = ""
    switch_pid: int = 0
    key: str = ""
    known_hosts: str = ""
    guests: list[Guest] = field(default_factory=list)

    def save(self) -> None:
        """Write state.json atomically (it is re-read by ``down`` after any crash)."""
        path = Path(self.directory) / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, directory: Path) -> State | None:
        """Read state.json of a state directory, or None when there is none."""
        path = directory / STATE_FILE
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        guests = [Guest(**{**g, "extra_forwards": {int(k): v for k, v in g["extra_forwards"].items()}})
                  for g in data.pop("guests")]
        return cls(**data, guests=guests)


def _log(message: str) -> None:
    print(f"vm-lab: {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    """Return whether something already listens on 127.0.0.1:port."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _kvm_works(image: Image) -> bool:
    """Boot the image's kernel under KVM for a moment: true only if it really runs.

    /dev/kvm can exist where hardware virtualisation does not work (nested, emulated or
    refused), so this tries: without a root device the kernel panics, and with panic=-1 and
    -no-reboot QEMU exits after printing the kernel's banner. Under working KVM that takes a
    second or two.
    """
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    try:
        done = subprocess.run(
            [QEMU, "-accel", "kvm", "-cpu", "host", "-m", "256", "-nodefaults", "-no-user-config",
             "-display", "none", "-serial", "stdio", "-no-reboot", "-kernel", str(image.kernel),
             "-append", "console=ttyS0 panic=-1 root=/dev/nonexistent"],
            # QEMU's -serial stdio sets O_NONBLOCK on the stdin it is given, and the flag stays
            # on the caller's terminal or pipe (Ansible then refuses to run): never hand it ours.
            stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0 and b"Linux version" in done.stdout and b"Kernel panic" in done.stdout


def detect_accel(image: Image) -> str:
    """Return "kvm" when KVM really boots a kernel here, else "tcg" (software emulation).

    SEEK_K3S_VM_ACCEL=kvm|tcg overrides the detection.
    """
    forced = os.environ.get("SEEK_K3S_VM_ACCEL", "")
    if forced in ("kvm", "tcg"):
        return forced
    return "kvm" if _kvm_works(image) else "tcg"


def _cmdline_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _ours(pid: int, marker: str) -> bool:
    """Whether pid is alive and its command line names our state directory (not a reused pid)."""
    return pid > 0 and marker in _cmdline_of(pid)


def _stop_pid(pid: int, marker: str, grace: float = 10.0) -> bool:
    """SIGTERM then SIGKILL one process of ours; return whether it was running."""
    if not _ours(pid, marker):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(pid)
        if not _ours(pid, marker):
            return True
        time.sleep(0.2)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    for _ in range(50):
        _reap(pid)
        if not _ours(pid, marker):
            break
        time.sleep(0.1)
    return True


def _reap(pid: int) -> None:
    """Collect a child that exited (a process we started in this Python process)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _orphans(marker: str) -> list[int]:
    """Process ids whose command line names our state directory (left by a crashed harness)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            cmd = _cmdline_of(int(entry.name))
            if marker in cmd and (cmd.startswith(QEMU) or cmd.startswith("vde_switch")):
                pids.append(int(entry.name))
    return pids


def ssh_argv(state: State, guest: Guest, *command: str, connect_timeout: int = 10) -> list[str]:
    """The ssh command that runs `command` as root on a guest."""
    return ["ssh", "-q", "-i", state.key, "-p", str(guest.ssh_port), "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={connect_timeout}", "-o", "StrictHostKeyChecking=accept-new",
            "-o", f"UserKnownHostsFile={state.known_hosts}", "-o", "LogLevel=ERROR",
            "root@127.0.0.1", *command]


def _console_tail(guest: Guest, lines: int = 15) -> str:
    try:
        text = Path(guest.console).read_text(errors="replace")
    except OSError:
        return "(no console output)"
    return "\n".join(text.splitlines()[-lines:])


def _qemu_argv(state: State, guest: Guest, image: Image, memory: int, cpus: int) -> list[str]:
    forwards = {guest.ssh_port: 22, **guest.extra_forwards}
    hostfwd = ",".join(f"hostfwd=tcp:127.0.0.1:{h}-:{g}" for h, g in sorted(forwards.items()))
    network = ipaddress.ip_network(state.network)
    append = [
        "root=/dev/vda", "rw", "console=ttyS0", "quiet", "net.ifnames=0", "systemd.show_status=auto",
        f"systemd.hostname={guest.name}", f"seek_lab.ip={guest.address}/{network.prefixlen}",
    ]
    if guest.api_proxy:
        append.append(f"seek_lab.api_proxy={guest.api_proxy}")
    accel = ["-accel", "kvm", "-cpu", "host"] if state.accel == "kvm" else ["-accel", "tcg"]
    return [
        QEMU, "-name", f"{guest.name},process=seek-vm-{guest.name}", *accel,
        "-machine", "pc", "-m", str(memory), "-smp", str(cpus),
        "-nodefaults", "-no-user-config", "-display", "none",
        "-serial", f"file:{guest.console}", "-monitor", "none",
        "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", " ".join(append),
        "-drive", f"file={guest.overlay},if=virtio,format=qcow2,discard=unmap",
        "-netdev", f"user,id=nat,{hostfwd}",
        "-device", f"virtio-net-pci,netdev=nat,mac={guest.mac_nat}",
        "-netdev", f"vde,id=lab,sock={state.switch_dir}",
        "-device", f"virtio-net-pci,netdev=lab,mac={guest.mac_lab}",
        "-object", "rng-random,id=rng,filename=/dev/urandom",
        "-device", "virtio-rng-pci,rng=rng",
    ]


def up(directory: Path, image: Image, names: list[str], *, network: str = DEFAULT_NETWORK,
       ssh_ports: list[int] | None = None, extra_forwards: dict[str, dict[int, int]] | None = None,
       api_proxy: dict[str, str] | None = None, memory: int = 1536, cpus: int = 1,
       timeout: float = 900.0) -> State:
    """Start one guest per name on a private network, wait for SSH on each, write inventory.yml.

    On any failure (a port taken, QEMU exiting, SSH not answering within `timeout`) every
    process started so far is stopped and the state directory is removed, then the error is
    raised.
    """
    directory = directory.resolve()
    if (directory / STATE_FILE).exists():
        raise LabError(f"a lab is already recorded in {directory}: stop it first (down)")
    for command in (QEMU, "qemu-img", "vde_switch", "ssh"):
        if shutil.which(command) is None:
            raise LabError(f"{command} is missing: install qemu-system-x86, qemu-utils, vde2 and "
                           "openssh-client (tests/host-packages.txt)")
    if not image.complete():
        raise LabError(f"the image in {image.directory} is not built (python -m tests.vm build)")
    net = ipaddress.ip_network(network)
    ports = ssh_ports or [free_port() for _ in names]
    if len(ports) != len(names):
        raise LabError("give one SSH port per guest")
    directory.mkdir(parents=True, exist_ok=True)
    state = State(directory=str(directory), network=str(net))
    try:
        state.accel = detect_accel(image)
        _log(f"accelerator: {state.accel}" + ("" if state.accel == "kvm" else
             " (software emulation: KVM is absent or does not boot a kernel here)"))
        # Our own copy of the key: ssh refuses a key file other users can read.
        state.key = str(directory / "id_ed25519")
        shutil.copyfile(image.key, state.key)
        os.chmod(state.key, 0o600)
        state.known_hosts = str(directory / "known_hosts")
        Path(state.known_hosts).write_text("")
        switch_dir = directory / "switch"
        if len(str(switch_dir)) > SOCKET_DIR_LIMIT:
            raise LabError(f"state directory path too long for a Unix socket: {directory}")
        state.switch_dir = str(switch_dir)
        for index, (name, port) in enumerate(zip(names, ports, strict=True)):
            forwards = (extra_forwards or {}).get(name, {})
            for p in (port, *forwards):
                if port_in_use(p):
                    raise LabError(f"127.0.0.1:{p} (for {name}) is already in use")
            state.guests.append(Guest(
                name=name, address=str(net.network_address + FIRST_HOST + index), ssh_port=port,
                overlay=str(directory / f"{name}.qcow2"), console=str(directory / f"{name}.console"),
                mac_nat=f"52:54:00:a0:{index:02x}:01", mac_lab=f"52:54:00:a0:{index:02x}:02",
                extra_forwards=forwards, api_proxy=(api_proxy or {}).get(name, "")))
        state.save()

        pidfile = directory / "switch.pid"
        subprocess.run(["vde_switch", "--sock", state.switch_dir, "--daemon", "--pidfile", str(pidfile)],
                       check=True, stdin=subprocess.DEVNULL, capture_output=True)
        for _ in range(50):
            if pidfile.is_file() and pidfile.read_text().strip():
                break
            time.sleep(0.1)
        state.switch_pid = int(pidfile.read_text().strip())
        state.save()

        for guest in state.guests:
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                            str(image.rootfs), guest.overlay], check=True, capture_output=True)
            with open(directory / f"{guest.name}.qemu.log", "w") as log:
                proc = subprocess.Popen(_qemu_argv(state, guest, image, memory, cpus),
                                        stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                        start_new_session=True)
            guest.pid = proc.pid
            state.save()
            time.sleep(0.5)
            if proc.poll() is not None:
                raise LabError(f"QEMU for {guest.name} exited at once (exit {proc.returncode}): "
                               f"{(directory / f'{guest.name}.qemu.log').read_text().strip()}")
        _wait_for_ssh(state, timeout)
        write_inventory(state, directory / "inventory.yml")
        return state
    except BaseException:
        _log("start failed: stopping everything this lab started")
        down(directory)
        raise


def _wait_for_ssh(state: State, timeout: float) -> None:
    """Wait until every guest answers over SSH; fail early when a QEMU process exits."""
    started = time.monotonic()
    waiting = {g.name: g for g in state.guests}
    while waiting:
        for name, guest in list(waiting.items()):
            if not _ours(guest.pid, state.directory):
                raise LabError(f"QEMU for {name} exited while booting; its console ends:\n"
                               f"{_console_tail(guest)}")
            remaining = max(1.0, timeout - (time.monotonic() - started))
            try:
                done = subprocess.run(ssh_argv(state, guest, "systemctl", "is-system-running", "--wait"),
                                      capture_output=True, text=True, timeout=remaining, check=False)
            except subprocess.TimeoutExpired:
                continue  # the deadline check below says so
            # 0: running, 1 with output: degraded or similar, but SSH answers and systemd is up.
            if done.returncode == 0 or done.stdout.strip() in ("degraded", "running"):
                _log(f"{name} answers on 127.0.0.1:{guest.ssh_port} "
                     f"({done.stdout.strip()}) after {time.monotonic() - started:.0f}s")
                del waiting[name]
        if waiting and time.monotonic() - started > timeout:
            tails = "\n".join(f"--- {g.name}:\n{_console_tail(g)}" for g in waiting.values())
            raise LabError(f"no SSH from {', '.join(waiting)} after {timeout:.0f}s; consoles:\n{tails}")
        if waiting:
            time.sleep(2)


def write_inventory(state: State, path: Path) -> None:
    """Write an Ansible inventory of the guests (group `vm_guests`), reached as root over SSH."""
    lines = ["# Written by python -m tests.vm up: the guests of this lab, root over SSH on loopback.",
             "all:", "  children:", "    vm_guests:", "      hosts:"]
    for guest in state.guests:
        lines += [f"        {guest.name}:", "          ansible_host: 127.0.0.1",
                  f"          ansible_port: {guest.ssh_port}",
                  f"          vm_lab_address: {guest.address}"]
    lines += ["  vars:", "    ansible_user: root", f"    ansible_ssh_private_key_file: {state.key}",
              "    ansible_ssh_common_args: >-",
              f"      -o UserKnownHostsFile={state.known_hosts} -o StrictHostKeyChecking=accept-new",
              f"    vm_lab_network: {state.network}"]
    path.write_text("\n".join(lines) + "\n")


def down(directory: Path) -> list[str]:
    """Stop every process a lab started (by pid) and remove its state directory.

    Returns what was stopped. Also stops processes whose command line names this state
    directory but that state.json missed (a harness killed between starting and recording).
    """
    directory = directory.resolve()
    marker = str(directory)
    stopped: list[str] = []
    state = State.load(directory)
    if state is not None:
        for guest in state.guests:
            if _stop_pid(guest.pid, marker):
                stopped.append(f"{guest.name} (pid {guest.pid})")
        if _stop_pid(state.switch_pid, marker):
            stopped.append(f"vde_switch (pid {state.switch_pid})")
    for pid in _orphans(marker):
        if _stop_pid(pid, marker):
            stopped.append(f"pid {pid}")
    if directory.exists():
        shutil.rmtree(directory)
    return stopped


def leftovers(directory: Path) -> list[int]:
    """Process ids still running for a state directory (empty after a clean ``down``)."""
    return _orphans(str(directory.resolve()))
