"""Outcomes of node_prereq and nfs_server on the systemd containers of the `nodes` scenario."""

import os

import testinfra.utils.ansible_runner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
CLUSTER_NODES = RUNNER.get_hosts("k3s_cluster")
NFS_SERVERS = RUNNER.get_hosts("nfs_servers")

SYSCTLS = {
    "net.ipv4.ip_forward": 1,
    "net.ipv6.conf.all.forwarding": 1,
    "net.bridge.bridge-nf-call-iptables": 1,
    "net.bridge.bridge-nf-call-ip6tables": 1,
}


def pytest_generate_tests(metafunc):
    """Run each test on the hosts of the group its argument names."""
    if "node" in metafunc.fixturenames:
        metafunc.parametrize("node", CLUSTER_NODES)
    if "nfs" in metafunc.fixturenames:
        metafunc.parametrize("nfs", NFS_SERVERS)


def host(name):
    """A testinfra host reached the way molecule reaches it."""
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}")


def test_kernel_modules_persisted(node):
    modules = host(node).file("/etc/modules-load.d/k3s.conf")
    assert modules.is_file
    assert modules.mode == 0o644
    listed = [line for line in modules.content_string.splitlines() if line and not line.startswith("#")]
    assert listed == ["overlay", "br_netfilter"]


def test_kernel_has_the_modules(node):
    h = host(node)
    assert "overlay" in h.file("/proc/filesystems").content_string
    assert h.file("/proc/sys/net/bridge").is_directory


def test_sysctls_persisted_and_applied(node):
    h = host(node)
    conf = h.file("/etc/sysctl.d/90-k3s.conf").content_string
    for key, value in SYSCTLS.items():
        assert f"{key}={value}" in conf
        assert h.sysctl(key) == value


def test_swap_off(node):
    h = host(node)
    assert h.check_output("swapon --show --noheadings") == ""
    assert h.file("/etc/systemd/system/swap.target").linked_to == "/dev/null"


def test_packages_installed(node):
    h = host(node)
    for name in ("curl", "iptables", "conntrack", "chrony", "nfs-common"):
        assert h.package(name).is_installed, name


def test_time_sync_enabled(node):
    h = host(node)
    assert h.service("chrony").is_enabled
    assert "server ntp.example.org iburst" in h.file("/etc/chrony/conf.d/seek-k3s.conf").content_string


def test_export_is_restricted(nfs):
    h = host(nfs)
    exports = h.file("/etc/exports.d/seek-k3s.exports")
    assert exports.mode == 0o644
    assert exports.user == "root"
    lines = [line for line in exports.content_string.splitlines() if line and not line.startswith("#")]
    assert lines == ["/srv/nfs/seek 172.16.0.0/12(rw,sync,no_subtree_check,no_root_squash)"]
    directory = h.file("/srv/nfs/seek")
    assert directory.is_directory
    assert directory.mode == 0o755


def test_nfs_server_enabled(nfs):
    h = host(nfs)
    assert h.package("nfs-kernel-server").is_installed
    assert h.service("nfs-server").is_enabled


def test_nfs_server_is_not_a_cluster_node(nfs):
    assert not host(nfs).file("/etc/modules-load.d/k3s.conf").exists
