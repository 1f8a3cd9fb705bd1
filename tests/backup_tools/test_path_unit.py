"""The off-site copy starts within seconds of a set's manifest (issue 11): the backup_host role's
units, rendered by Ansible, run under real systemd (the local node image, Debian 12, systemd 252),
the real off-site tool uploads to moto, and the producer script writes the set on the host into
the bind-mounted backup root, as a backup Job writes it to the hostPath."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from pyrage import x25519

from tests.backup_tools.conftest import FILES, REPO
from tests.backup_tools.servers import MariaDB, free_port, stop_process
from tests.backup_tools.test_mysql_roundtrip import seed
from tests.k3s_nodes.node_container import IMAGE, docker_ready, remove_node, wait_booted

UNIT = "seek-backup-offsite"
ROOT_IN = "/var/backups/seek-k3s"
RENDER = textwrap.dedent("""\
    - name: Render the backup_host units as the role does
      hosts: localhost
      gather_facts: false
      vars_files:
        - {role}/defaults/main.yml
        - {role}/vars/main.yml
      vars:
        backup_s3_bucket: queue-test
        role_path: {role}
      tasks:
        - name: Render
          ansible.builtin.template:
            src: "{role}/templates/{{{{ item }}}}.j2"
            dest: "{out}/{{{{ item }}}}"
            mode: "0644"
          loop: ["{unit}.service", "{unit}.timer", "{unit}.path"]
    """)


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a docker command and return its result."""
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=120)


def bridge_gateway() -> tuple[str, str]:
    """(gateway, '') with the default bridge network's IPv4 gateway as its interface holds it, or
    ('', why this machine cannot listen on it).

    Docker 20.10 does not always report it: with docker0 unaddressed at start, initBridgeDriver
    (moby/moby daemon/daemon_unix.go, tag v20.10.24) elects a free pool such as 172.17.0.0/16 and
    leaves IpamConf.Gateway empty (its host part is zero); libnetwork then asks IPAM for the first free
    address (vendor/github.com/docker/libnetwork/network.go, ipamAllocateVersion), the bridge driver puts
    it on the interface (drivers/bridge/bridge.go processIPAM, setup_ipv4.go setupBridgeIPv4), but
    `docker network inspect` shows only the configured Gateway (daemon/network.go, buildIpamResources).
    A reported Gateway is that same interface address, so the interface is read on every engine."""
    net = json.loads(docker("network", "inspect", "bridge", "-f", "{{json .}}").stdout)
    subnets = [ipaddress.ip_network(c["Subnet"]) for c in net["IPAM"]["Config"] or []
               if ipaddress.ip_network(c["Subnet"]).version == 4]
    iface = (net.get("Options") or {}).get("com.docker.network.bridge.name", "docker0")
    res = subprocess.run(["ip", "-4", "-j", "addr", "show", "dev", iface], capture_output=True, text=True, timeout=30)
    held = [a["local"] for link in (json.loads(res.stdout) if res.returncode == 0 else [])
            for a in link["addr_info"] if any(ipaddress.ip_address(a["local"]) in s for s in subnets)]
    if not held:
        return "", (f"the Docker bridge's interface {iface} holds no address in {[str(s) for s in subnets]} "
                    "in this network namespace (a rootless or remote engine): moto cannot listen on its gateway")
    return held[0], ""


@pytest.fixture()
def bridge_moto(tmp_path: Path) -> Iterator[str]:
    """moto on the Docker bridge's gateway address, reachable from the container and the host."""
    reason = docker_ready()
    if reason:
        pytest.skip(reason)
    gateway, reason = bridge_gateway()
    if reason:
        pytest.skip(reason)
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", gateway, "-p", str(port)],
                            stdout=open(tmp_path / "moto.log", "ab"), stderr=subprocess.STDOUT)
    endpoint = f"http://{gateway}:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="k", aws_secret_access_key="s",
                         region_name="us-east-1").create_bucket(Bucket="queue-test")
            break
        except Exception:  # noqa: BLE001 - not listening yet
            time.sleep(0.2)
    yield endpoint
    stop_process(proc)


@pytest.fixture()
def backup_host(tmp_path: Path, bridge_moto: str) -> Iterator[tuple[str, Path]]:
    """A systemd node container with the rendered units, the tool (read-only) and its config."""
    units = tmp_path / "units"
    units.mkdir()
    play = tmp_path / "render.yml"
    play.write_text(RENDER.format(role=REPO / "roles" / "backup_host", out=units, unit=UNIT))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    res = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                          "-e", f"ansible_python_interpreter={sys.executable}", str(play)], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    path_unit = (units / f"{UNIT}.path").read_text()
    assert f"DirectoryNotEmpty={ROOT_IN}/.offsite-queue" in path_unit and f"Unit={UNIT}.service" in path_unit

    root = tmp_path / "root"
    (root / ".offsite-queue").mkdir(parents=True)
    ident = x25519.Identity.generate()
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"root": ROOT_IN, "bucket": "queue-test", "endpoint_url": bridge_moto,
                               "access_key_id": "k", "secret_access_key": "s", "addressing_style": "path",
                               "recipients": [str(ident.to_public())], "keep_daily": 7, "keep_weekly": 4}))
    cfg.chmod(0o600)
    site = Path(sys.executable).parent.parent / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    name = f"seek-backup-path-{os.getpid()}"
    mounts = [f"{root}:{ROOT_IN}", f"{REPO / 'tools' / 'seek_backup'}:/opt/seek-backup/lib/seek_backup:ro",
              f"{site}:/usr/local/lib/python3.11/dist-packages:ro", f"{cfg}:/etc/seek-backup/config.json:ro",
              *(f"{units / u}:/etc/systemd/system/{u}:ro" for u in (f"{UNIT}.service", f"{UNIT}.timer", f"{UNIT}.path"))]
    docker("run", "-d", "--name", name, "--cgroupns=host", "--tmpfs", "/run", "--tmpfs", "/run/lock",
           "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--cap-add", "SYS_ADMIN",
           "--security-opt", "apparmor=unconfined", "--security-opt", "seccomp=unconfined",
           *(arg for m in mounts for arg in ("-v", m)), IMAGE, "/lib/systemd/systemd")
    try:
        wait_booted(name)
        probe = docker("exec", name, "python3", "-c", "import sys; print(sys.version_info[:2])").stdout.strip()
        if probe != str(sys.version_info[:2]):
            pytest.skip(f"the node image's python {probe} cannot load this venv's packages")
        docker("exec", name, "sh", "-c", "mkdir -p /opt/seek-backup/venv/bin && "
               "ln -sf /usr/bin/python3 /opt/seek-backup/venv/bin/python")
        docker("exec", name, "systemctl", "daemon-reload")
        docker("exec", name, "systemctl", "enable", "--now", f"{UNIT}.path")
        yield name, root
    finally:
        remove_node(name)


def journal(name: str) -> str:
    """The off-site service's journal in the container, with wall-clock timestamps."""
    return docker("exec", name, "journalctl", "-u", f"{UNIT}.service", "--no-pager", "-o", "short-unix",
                  check=False).stdout


def test_path_unit_starts_the_pass_within_seconds_of_the_manifest(backup_host, mariadb: MariaDB):
    """A set written by mysql-backup.sh is off-site (uploaded.json) without any timer tick: the
    service starts within seconds of the queue entry, and the queue is empty afterwards."""
    name, root = backup_host
    seed(mariadb, "seek_path", bulk_rows=300)
    proc = subprocess.run(["bash", str(FILES / "mysql-backup.sh")], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **mariadb.env("seek_path"), "BACKUP_ROOT": str(root)})
    assert proc.returncode == 0, proc.stderr
    set_dir = next((root / "mysql").iterdir())
    published = (set_dir / "manifest.json").stat().st_mtime
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (set_dir / "uploaded.json").exists():
        time.sleep(0.2)
    log = journal(name)
    assert (set_dir / "uploaded.json").exists(), log
    started = [float(line.split()[0]) for line in log.splitlines() if "Starting" in line]
    assert started, log
    delay = started[0] - published
    print(f"off-site pass started {delay:.2f} s after the manifest")
    assert -1 < delay < 10, log
    assert f"queued: mysql-{set_dir.name}" in log
    assert not list((root / ".offsite-queue").iterdir())
    # one pass, not a loop: the path unit is still waiting and the service ran once
    time.sleep(2)
    assert docker("exec", name, "systemctl", "is-active", f"{UNIT}.path").stdout.strip() == "active"
    assert journal(name).count("Starting") == 1, journal(name)


def test_set_completed_during_a_pass_goes_off_site_without_a_timer(backup_host, mariadb: MariaDB):
    """A set queued while a pass runs (its upload, or its verify and prune) is shipped by the same
    pass (another round) or by the path unit starting the service again after it stops."""
    name, root = backup_host
    seed(mariadb, "seek_path2", bulk_rows=20_000)
    env = {**os.environ, **mariadb.env("seek_path2"), "BACKUP_ROOT": str(root)}
    subprocess.run(["bash", str(FILES / "mysql-backup.sh")], env={**env, "BACKUP_STAMP": "20261202T010000Z"},
                   capture_output=True, text=True, timeout=300, check=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = docker("exec", name, "systemctl", "show", "-p", "ActiveState", "--value", f"{UNIT}.service").stdout
        if state.strip() == "activating":
            break
        time.sleep(0.05)
    assert state.strip() == "activating", journal(name)
    subprocess.run(["bash", str(FILES / "mysql-backup.sh")], env={**env, "BACKUP_STAMP": "20261202T020000Z"},
                   capture_output=True, text=True, timeout=300, check=True)
    second = root / "mysql" / "20261202T020000Z"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not (second / "uploaded.json").exists():
        time.sleep(0.2)
    log = journal(name)
    assert (second / "uploaded.json").exists(), log
    assert (root / "mysql" / "20261202T010000Z" / "uploaded.json").exists()
    # One start for the first set, and at most one more for a set that completed while a pass ran:
    # no start means the path unit never fired, three or more a restart loop.
    assert 1 <= log.count("Starting") <= 2, log
    assert not list((root / ".offsite-queue").iterdir())
