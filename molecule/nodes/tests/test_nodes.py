"""Outcomes of node_prereq and nfs_server on the systemd containers of the `nodes` scenario."""

import os
import re

import testinfra.utils.ansible_runner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
CLUSTER_NODES = RUNNER.get_hosts("k3s_cluster")
SERVERS = RUNNER.get_hosts("k3s_servers")
AGENTS = RUNNER.get_hosts("k3s_agents")
NFS_SERVERS = RUNNER.get_hosts("nfs_servers")

SYSCTLS = {
    "net.ipv4.ip_forward": 1,
    "net.bridge.bridge-nf-call-iptables": 1,
    "net.bridge.bridge-nf-call-ip6tables": 1,
}
IPV6_FORWARDING = "net.ipv6.conf.all.forwarding"
# molecule.yml: besides the nodes, only this network may reach the API.
API_NETWORK = "198.51.100.0/24"
POD_AND_SERVICE = {("Anywhere", "10.42.0.0/16"), ("Anywhere", "10.43.0.0/16")}


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


def test_ipv6_forwarding_where_ipv6_is_disabled_by_sysctl():
    """disable_ipv6=1 leaves the IPv6 keys in place: forwarding is set as usual."""
    for name in SERVERS:
        h = host(name)
        assert h.sysctl("net.ipv6.conf.all.disable_ipv6") == 1
        assert f"{IPV6_FORWARDING}=1" in h.file("/etc/sysctl.d/90-k3s.conf").content_string
        assert h.sysctl(IPV6_FORWARDING) == 1


def test_ipv6_keys_skipped_where_the_kernel_has_no_ipv6():
    """With no /proc/sys/net/ipv6 (ipv6.disable=1) the node converges without the IPv6 keys."""
    assert AGENTS, "the scenario needs an agent without IPv6"
    for name in AGENTS:
        h = host(name)
        assert not h.file("/proc/sys/net/ipv6/conf/all/forwarding").exists
        assert "net.ipv6" not in h.file("/etc/sysctl.d/90-k3s.conf").content_string
        assert h.sysctl("net.ipv4.ip_forward") == 1


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


def address(name):
    """The IPv4 address of a node on the scenario's network (the default route's)."""
    out = host(name).check_output("ip -4 -o route get 192.0.2.1")
    return re.search(r"\bsrc (\S+)", out).group(1)


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


def test_server_firewall_allows_k3s_ports_from_cluster_nodes_only():
    nodes = {address(name) for name in CLUSTER_NODES}
    servers = {address(name) for name in SERVERS}
    for name in SERVERS:
        expected = (
            {("2379:2380/tcp", src) for src in servers}
            | {(port, src) for port in ("6443/tcp", "10250/tcp", "8472/udp") for src in nodes}
            | {("6443/tcp", API_NETWORK)}
            | POD_AND_SERVICE
        )
        # Nothing open to everyone: the old "10250/tcp from Anywhere" rule is gone too.
        assert ufw_rules(name) == expected


def test_agent_firewall_allows_k3s_ports_from_cluster_nodes_only():
    nodes = {address(name) for name in CLUSTER_NODES}
    for name in AGENTS:
        expected = {(port, src) for port in ("10250/tcp", "8472/udp") for src in nodes} | POD_AND_SERVICE
        assert ufw_rules(name) == expected


def test_nfs_server_firewall_allows_nfsv4_from_allowed_networks_only(nfs):
    assert ufw_rules(nfs) == {("2049/tcp", "172.16.0.0/12")}
