"""Outcomes of node_prereq and nfs_server on QEMU guests, each with its own kernel.

The tests run in file order: the NFS mounts are made and removed before the agent reboots, and
the checks after the reboot come last.
"""

import os
import re
import time
from pathlib import Path

import pytest
import testinfra.utils.ansible_runner
import yaml

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
CLUSTER_NODES = RUNNER.get_hosts("k3s_cluster")
SERVERS = RUNNER.get_hosts("k3s_servers")
AGENTS = RUNNER.get_hosts("k3s_agents")
NFS_SERVERS = RUNNER.get_hosts("nfs_servers")
GUESTS = CLUSTER_NODES + NFS_SERVERS

MODULES = ["overlay", "br_netfilter"]
SYSCTLS = {
    "net.ipv4.ip_forward": 1,
    "net.ipv6.conf.all.forwarding": 1,
    "net.bridge.bridge-nf-call-iptables": 1,
    "net.bridge.bridge-nf-call-ip6tables": 1,
}
# molecule.yml: besides the nodes, only this network may reach the API.
API_NETWORK = "198.51.100.0/24"
POD_AND_SERVICE = {("Anywhere", "10.42.0.0/16"), ("Anywhere", "10.43.0.0/16")}
# prepare.yml: the operator's own SSH rule (QEMU's user-mode gateway), not a k3s port.
SSH_RULE = ("22/tcp", "10.0.2.2")
# The options the storage layer's StorageClass mounts the export with.
MOUNT_OPTIONS = yaml.safe_load((PROJECT / "roles/storage/defaults/main.yml").read_text())[
    "storage_nfs_mount_options"]
MOUNT_POINT = "/mnt/seek-nfs-check"
# An address on the private network outside nfs_server_allowed_networks (192.168.77.0/25).
OUTSIDER = "192.168.77.200"


def pytest_generate_tests(metafunc):
    """Run each test on the hosts of the group its argument names."""
    if "node" in metafunc.fixturenames:
        metafunc.parametrize("node", CLUSTER_NODES)
    if "nfs" in metafunc.fixturenames:
        metafunc.parametrize("nfs", NFS_SERVERS)


def host(name):
    """A testinfra host reached the way molecule reaches it (SSH to the guest's port)."""
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}")


def hostvar(name, key):
    """An inventory variable of a host."""
    return RUNNER.get_variables(name)[key]


def nfs_source():
    """server:/path of the export, as the StorageClass names it."""
    name = NFS_SERVERS[0]
    return f"{hostvar(name, 'nfs_server_host')}:{hostvar(name, 'nfs_export_path')}"


# --- cluster nodes: kernel, swap, time ----------------------------------------------------


def check_modules_loaded(h):
    """The modules are in the running kernel (lsmod) and listed for every boot."""
    loaded = {line.split()[0] for line in h.check_output("lsmod").splitlines()[1:]}
    for module in MODULES:
        assert module in loaded, f"{module} is not loaded"
    listed = [line for line in h.file("/etc/modules-load.d/k3s.conf").content_string.splitlines()
              if line and not line.startswith("#")]
    assert listed == MODULES


def check_sysctls_live(h):
    """The kernel's live values, and the file that sets them at boot."""
    conf = h.file("/etc/sysctl.d/90-k3s.conf").content_string
    for key, value in SYSCTLS.items():
        assert h.sysctl(key) == value, key
        assert f"{key}={value}" in conf


def check_swap_off(h):
    """No swap in use; the swap file prepare.yml put in fstab is commented out; swap.target masked."""
    assert h.check_output("swapon --show --noheadings") == ""
    assert h.file("/proc/swaps").content_string.strip().count("\n") == 0
    assert h.file("/swapfile").exists, "prepare.yml made swap: the file stays, unused"
    fstab = h.file("/etc/fstab").content_string
    assert re.search(r"^#\s*/swapfile\s+none\s+swap\b", fstab, re.M), fstab
    assert not re.search(r"^/swapfile\s", fstab, re.M)
    assert h.file("/etc/systemd/system/swap.target").linked_to == "/dev/null"


def check_time_sync(h):
    """chronyd runs, with the configured servers, and answers chronyc."""
    chrony = h.service("chrony")
    assert chrony.is_enabled
    assert chrony.is_running
    assert "server ntp.example.org iburst" in h.file("/etc/chrony/conf.d/seek-k3s.conf").content_string
    h.check_output("chronyc -n tracking")


def test_kernel_modules_loaded(node):
    check_modules_loaded(host(node))


def test_sysctls_live(node):
    check_sysctls_live(host(node))


def test_swap_off(node):
    check_swap_off(host(node))


def test_time_sync_running(node):
    check_time_sync(host(node))


def test_nfs_server_has_no_node_settings(nfs):
    h = host(nfs)
    assert not h.file("/etc/modules-load.d/k3s.conf").exists
    assert not h.file("/etc/sysctl.d/90-k3s.conf").exists


# --- firewall ------------------------------------------------------------------------------


def ufw_rules(name):
    """The (to, from) pairs of the active ufw rule set; fails if ufw is not active and denying."""
    h = host(name)
    verbose = h.check_output("ufw status verbose")
    assert "Status: active" in verbose
    assert "Default: deny (incoming)" in verbose
    rules = set()
    table = h.check_output("ufw status").split("--\n", 1)[1]
    for line in table.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        to, action, source = re.split(r"\s{2,}", line)
        assert action == "ALLOW", line
        rules.add((to, source))
    return rules


def node_addresses(names):
    """The cluster nodes' addresses on the private network (k3s_node_ip)."""
    return {hostvar(name, "k3s_node_ip") for name in names}


def test_server_firewall_allows_k3s_ports_from_cluster_nodes_only():
    nodes = node_addresses(CLUSTER_NODES)
    servers = node_addresses(SERVERS)
    for name in SERVERS:
        expected = (
            {("2379:2380/tcp", src) for src in servers}
            | {(port, src) for port in ("6443/tcp", "10250/tcp", "8472/udp") for src in nodes}
            | {("6443/tcp", API_NETWORK)}
            | POD_AND_SERVICE
            | {SSH_RULE}
        )
        # Nothing open to everyone: the old "10250/tcp from Anywhere" rule is gone too.
        assert ufw_rules(name) == expected


def test_agent_firewall_allows_k3s_ports_from_cluster_nodes_only():
    nodes = node_addresses(CLUSTER_NODES)
    for name in AGENTS:
        expected = ({(port, src) for port in ("10250/tcp", "8472/udp") for src in nodes}
                    | POD_AND_SERVICE | {SSH_RULE})
        assert ufw_rules(name) == expected


def test_nfs_server_firewall_allows_nfsv4_from_allowed_networks_only(nfs):
    allowed = hostvar(nfs, "nfs_server_allowed_networks")
    assert ufw_rules(nfs) == {("2049/tcp", net) for net in allowed} | {SSH_RULE}


# --- NFS -----------------------------------------------------------------------------------


def test_nfsd_serves_the_export(nfs):
    h = host(nfs)
    assert h.service("nfs-server").is_running
    assert int(h.file("/proc/fs/nfsd/threads").content_string.strip()) > 0
    assert h.socket("tcp://0.0.0.0:2049").is_listening
    exported = h.check_output("exportfs -v")
    path = hostvar(nfs, "nfs_export_path")
    for net in hostvar(nfs, "nfs_server_allowed_networks"):
        assert re.search(rf"^{re.escape(path)}\s+{re.escape(net)}\(.*\brw\b", exported, re.M), exported


def test_export_mounted_read_write_from_the_cluster_nodes():
    """Both cluster nodes mount the export with the storage layer's options and share files."""
    options = ",".join(MOUNT_OPTIONS)
    try:
        for name in CLUSTER_NODES:
            h = host(name)
            h.check_output(f"mkdir -p {MOUNT_POINT}")
            h.check_output(f"timeout 120 mount -t nfs -o {options} {nfs_source()} {MOUNT_POINT}")
            mounted = [line.split() for line in h.file("/proc/mounts").content_string.splitlines()]
            entry = next(m for m in mounted if m[1] == MOUNT_POINT)
            assert entry[0] == nfs_source() and entry[2] == "nfs4", entry
            opts = entry[3].split(",")
            assert "rw" in opts, opts
            for option in MOUNT_OPTIONS:  # nfsvers=4.1 shows as vers=4.1
                assert option.replace("nfsvers=", "vers=") in opts, (option, opts)
            h.check_output(f"timeout 60 sh -c 'echo {name} > {MOUNT_POINT}/written-by-{name}'")
        for name in CLUSTER_NODES:
            h = host(name)
            for writer in CLUSTER_NODES:
                assert h.check_output(f"timeout 60 cat {MOUNT_POINT}/written-by-{writer}") == writer
        server_side = host(NFS_SERVERS[0]).check_output(f"ls {hostvar(NFS_SERVERS[0], 'nfs_export_path')}")
        assert set(server_side.split()) >= {f"written-by-{n}" for n in CLUSTER_NODES}
    finally:
        for name in CLUSTER_NODES:
            host(name).run(f"rm -f {MOUNT_POINT}/written-by-{name}; timeout 60 umount {MOUNT_POINT}")


def test_export_refused_outside_the_allowed_network():
    """A host at an address outside nfs_server_allowed_networks gets nothing.

    The outsider is a macvlan interface in its own network namespace on the agent (its own
    NFS client, its own address and MAC on the private switch). The role's firewall drops its
    connection; with a one-off firewall rule letting it through (the positive control: nfsd
    answers it), nfsd itself refuses the export.
    """
    agent, nfs = host(AGENTS[0]), host(NFS_SERVERS[0])
    server_address = hostvar(NFS_SERVERS[0], "nfs_server_host")
    ns = "ip netns exec seek-outsider"
    connect = f"{ns} timeout 5 bash -c '</dev/tcp/{server_address}/2049'"
    one_off = f"allow from {OUTSIDER} to any port 2049 proto tcp"
    try:
        agent.check_output(
            "ip netns add seek-outsider && "
            "ip link add seek-out0 link eth1 type macvlan mode bridge && "
            "ip link set seek-out0 netns seek-outsider && "
            f"ip -n seek-outsider addr add {OUTSIDER}/24 dev seek-out0 && "
            "ip -n seek-outsider link set seek-out0 up && ip -n seek-outsider link set lo up")
        assert agent.run(connect).rc != 0, "the NFS server's firewall let the outsider connect"
        nfs.check_output(f"ufw insert 1 {one_off}")
        assert agent.run(connect).rc == 0, "the outsider cannot reach nfsd even through the firewall"
        agent.check_output(f"mkdir -p {MOUNT_POINT}-outsider")
        refused = agent.run(f"{ns} timeout 120 mount -t nfs -o {','.join(MOUNT_OPTIONS)},retry=0 "
                            f"{nfs_source()} {MOUNT_POINT}-outsider")
        assert refused.rc != 0, "nfsd exported the volume to an address outside the allowed network"
        assert re.search(r"access denied|No such file or directory|Permission denied",
                         refused.stderr), refused.stderr
    finally:
        nfs.run(f"ufw delete {one_off}")
        agent.run("ip netns del seek-outsider")
    assert ("2049/tcp", OUTSIDER) not in ufw_rules(NFS_SERVERS[0])


# --- a reboot: what node_prereq set must come back by itself ----------------------------------


def boot_id(h):
    """The kernel's boot id, or None while the guest does not answer.

    testinfra's SSH backend raises when ssh itself fails (exit 255): while the guest restarts,
    QEMU's port forward accepts and then resets the connection, and the old ControlMaster is gone.
    """
    try:
        result = h.run("cat /proc/sys/kernel/random/boot_id")
    except RuntimeError:
        return None
    return result.stdout.strip() if result.rc == 0 else None


@pytest.fixture(scope="module")
def rebooted_agent():
    """Reboot the agent once and return it after it answers again with a new boot id."""
    name = AGENTS[0]
    h = host(name)
    before = boot_id(h)
    assert before
    h.check_output("systemd-run --on-active=2 /bin/systemctl reboot")
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        time.sleep(5)
        now = boot_id(h)
        if now and now != before and h.run("systemctl is-system-running --wait").stdout.strip() in (
                "running", "degraded"):
            return h
    pytest.fail(f"{name} did not come back within 15 minutes of its reboot")


def test_after_reboot_modules_loaded(rebooted_agent):
    check_modules_loaded(rebooted_agent)


def test_after_reboot_sysctls_live(rebooted_agent):
    check_sysctls_live(rebooted_agent)


def test_after_reboot_swap_stays_off(rebooted_agent):
    check_swap_off(rebooted_agent)


def test_after_reboot_firewall_and_time_sync(rebooted_agent):
    assert "Status: active" in rebooted_agent.check_output("ufw status")
    check_time_sync(rebooted_agent)
    assert not rebooted_agent.run("systemctl --failed --no-legend --plain").stdout.strip()
