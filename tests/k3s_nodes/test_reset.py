"""playbooks/reset.yml removes exactly what k3s made from a node, and leaves everything else.

The node is a real systemd container from the node image (tests/harness/build-node-image.sh),
given NET_ADMIN and SYS_ADMIN (not --privileged) so it can hold its own interfaces, network
namespaces, mounts and iptables rules. Before the reset the test builds there what k3s, its
pods, flannel and the CNI leave on a node (cni0 with attached veths, flannel.1, cni-* netns,
KUBE-/CNI-/flannel chains and rules, pod mounts, containerd shims with their process trees, a
running k3s unit) next to foreign look-alikes that must survive (Docker's bridge, veths and
chains, another netns, another mount, a process outside the data dir). k3s itself cannot run
here; the shims are real processes started from the path k3s uses: a copy of /bin/sh placed at
<data-dir>/data/<hash>/bin/containerd-shim-runc-v2 whose children stand for container processes.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.k3s_nodes.node_container import running_node, wait_booted
import yaml

ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = "/var/lib/rancher/k3s"
SHIM = f"{DATA_DIR}/data/0f1e2d3c/bin/containerd-shim-runc-v2"
CNI_NETNS = "cni-5e1f0c7a-2b3d-4e5f-8a9b-0c1d2e3f4a5b"
POD_MOUNT = "/var/lib/kubelet/pods/6d0c4b7e/volumes/kubernetes.io~empty-dir/cache"
RUN_MOUNT = "/run/k3s/containerd/io.containerd.runtime.v2.task/k8s.io/0a1b2c/rootfs"
PLUGIN_MOUNT = "/var/lib/kubelet/plugins/kubernetes.io/csi/volume"

# What k3s made: each must be gone after the reset.
K3S_IPTABLES = ["KUBE-SERVICES", "KUBE-FIREWALL", "FLANNEL-FWD", "CNI-HOSTPORT-DNAT", "flanneld masq"]
# What others made: each must still be there.
FOREIGN_IPTABLES = ["DOCKER-USER", "-A FORWARD -j DOCKER-USER", ":DOCKER -", "-A PREROUTING -j DOCKER",
                    "--dport 22 -j ACCEPT"]

STAGE = f"""
set -eu
# A running k3s unit (its process only sleeps: k3s cannot run here).
cat > /etc/systemd/system/k3s.service <<'UNIT'
[Unit]
Description=stands in for k3s in the reset test
[Service]
ExecStart=/bin/sleep infinity
KillMode=process
[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload && systemctl enable --now k3s.service

# Binary, links, configuration, data, runtime state.
install -D -m 0755 /bin/true /usr/local/bin/k3s
ln -sf k3s /usr/local/bin/kubectl
ln -sf /usr/local/bin/k3s /usr/local/bin/crictl
install -D -m 0755 /bin/true /usr/bin/other-ctr && ln -sf /usr/bin/other-ctr /usr/local/bin/ctr
install -D -m 0600 /dev/null /etc/rancher/k3s/config.yaml
install -D -m 0600 /dev/null /etc/rancher/node/password
install -D /dev/null {DATA_DIR}/server/db/etcd/member/wal/0.wal
install -D /dev/null /var/lib/kubelet/pki/kubelet.crt
install -D /dev/null /var/lib/cni/networks/cbr0/last_reserved_ip.0
install -D /dev/null /run/flannel/subnet.env
install -D /dev/null /var/lib/rancher/other-tool/keep

# Mounts of pods and containerd, and a foreign one.
for m in {POD_MOUNT} {RUN_MOUNT} {PLUGIN_MOUNT} /srv/foreign; do mkdir -p $m; mount -t tmpfs tmpfs $m; done
touch /srv/foreign/keep

# Network namespaces: the CNI's and a foreign one.
ip netns add {CNI_NETNS}
ip netns add blue

# cni0 with two pod veths (one peer inside the pod netns), flannel and IPVS interfaces.
ip link add cni0 type bridge && ip link set cni0 up
ip link add veth0a1b2c3d type veth peer name eth0pod && ip link set eth0pod netns {CNI_NETNS}
ip link set veth0a1b2c3d master cni0
ip link add veth9f8e7d6c type veth peer name veth9f8e7d6p && ip link set veth9f8e7d6c master cni0
# (kube-proxy makes kube-ipvs0 a dummy device; the dummy module may be missing here, and the
# reset deletes it by name whatever its type.)
ip link add flannel.1 type vxlan id 1 dstport 8472 dev eth0 || ip link add flannel.1 type bridge
ip link add kube-ipvs0 type dummy 2>/dev/null || ip link add kube-ipvs0 type bridge
# Foreign: Docker's bridge with its veth, and a free veth pair.
ip link add docker0 type bridge
ip link add vethd0c4e8a type veth peer name vethd0c4e8b && ip link set vethd0c4e8a master docker0
ip link add vethfree1 type veth peer name vethfree2

# iptables: k3s's chains and rules, Docker's and the host's.
iptables -N KUBE-SERVICES && iptables -A INPUT -m comment --comment kube-services -j KUBE-SERVICES
iptables -N KUBE-FIREWALL && iptables -A OUTPUT -j KUBE-FIREWALL
iptables -N FLANNEL-FWD && iptables -A FORWARD -j FLANNEL-FWD
iptables -t nat -N CNI-HOSTPORT-DNAT && iptables -t nat -A PREROUTING -j CNI-HOSTPORT-DNAT
iptables -t nat -A POSTROUTING -s 10.42.0.0/16 -m comment --comment "flanneld masq" -j MASQUERADE
iptables -N DOCKER-USER && iptables -A FORWARD -j DOCKER-USER
iptables -t nat -N DOCKER && iptables -t nat -A PREROUTING -j DOCKER
iptables -A INPUT -p tcp --dport 22 -j ACCEPT
ip6tables -N KUBE-FIREWALL && ip6tables -A INPUT -j KUBE-FIREWALL
ip6tables -A INPUT -p tcp --dport 22 -j ACCEPT
"""



def sh(node: str, script: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a shell script in the node as root."""
    result = subprocess.run(["docker", "exec", "-i", node, "sh", "-c", script],
                            capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"{script!r} failed in {node}:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def node() -> Iterator[str]:
    """A systemd node container with iptables installed (as node_prereq installs it)."""
    with running_node("seek-k3s-reset", "NET_ADMIN") as name:
        wait_booted(name)
        install = sh(name, "for try in 1 2 3; do apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
                           "apt-get install -y -qq iptables && exit 0; sleep 3; done; exit 1", check=False)
        if install.returncode != 0:
            pytest.skip(f"iptables could not be installed in the node (Debian mirror unreachable?): "
                        f"{install.stderr[-300:]}")
        yield name


def start_processes(node: str) -> None:
    """Two shim trees under the data dir (shim > child > grandchild) and two foreign processes."""
    sh(node, f"install -D -m 0755 /bin/sh {SHIM} && install -D -m 0755 /bin/sleep /opt/other/containerd-shim-runc-v2")
    # The shims: a copy of sh at k3s's shim path; `sleep 31337` and the `sh -c` below stand for the
    # container processes (the trailing `; true` keeps the intermediate shell alive).
    for seconds in (31337, 31338):
        subprocess.run(["docker", "exec", "-d", node, SHIM, "-c",
                        f"sleep {seconds} & sh -c 'sleep {seconds + 100}; true' & wait"], check=True)
    # Foreign: a plain long sleep and a shim-named binary outside the data dir.
    subprocess.run(["docker", "exec", "-d", node, "sleep", "42424"], check=True)
    subprocess.run(["docker", "exec", "-d", node, "/opt/other/containerd-shim-runc-v2", "42425"], check=True)
    sh(node, "for i in $(seq 50); do [ $(pgrep -fc 'sleep 314') -ge 2 ] && exit 0; sleep 0.1; done; exit 1")


def processes(node: str) -> str:
    """`ps -e -o pid,ppid,args` of the node."""
    return sh(node, "ps -e -o pid= -o ppid= -o args=").stdout


def running(ps: str, args: str) -> int:
    """How many processes of a `ps -o pid,ppid,args` listing run exactly `args`."""
    return sum(1 for line in ps.splitlines() if line.split(None, 2)[2:] == [args])


def write_inventory(tmp_path: Path, node: str) -> Path:
    """A one-server inventory whose host is the container (reached with the docker connection)."""
    inventory = {"all": {
        "vars": {"ansible_connection": "community.docker.docker",
                 "cluster_artifacts_dir": str(tmp_path / "artifacts")},
        "children": {
            "k3s_cluster": {"children": {"k3s_servers": {"hosts": {"server-1": {"ansible_host": node}}},
                                         "k3s_agents": {"hosts": {}}}},
            "controller": {"hosts": {"localhost": {"ansible_connection": "local"}}},
        },
    }}
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(inventory))
    return path


def run_reset(inventory: Path, *extra: str) -> subprocess.CompletedProcess:
    """Run the real playbooks/reset.yml (confirmed) and return the finished process."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default")
    return subprocess.run(
        ["ansible-playbook", str(ROOT / "playbooks" / "reset.yml"), "-i", str(inventory),
         "-e", "reset_confirm=true", *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )


def recap(result: subprocess.CompletedProcess) -> dict[str, int]:
    """The counters of server-1 in the play recap."""
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    match = re.search(r"server-1\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", out)
    assert match, out
    return dict(zip(["ok", "changed", "unreachable", "failed"], map(int, match.groups())))


def snapshot(node: str) -> dict[str, str]:
    """What the test looks at, as text per topic."""
    return {
        "links": sh(node, "ip -o link show").stdout,
        "netns": sh(node, "ip netns list").stdout,
        "mounts": sh(node, "cut -d' ' -f2 /proc/self/mounts").stdout,
        "iptables": sh(node, "(iptables-save; ip6tables-save) | grep -v '^#'").stdout,
        "ps": processes(node),
        "files": sh(node, "for p in /usr/local/bin/k3s /usr/local/bin/kubectl /usr/local/bin/crictl "
                          "/usr/local/bin/ctr /usr/bin/other-ctr /etc/rancher/k3s /etc/rancher/node/password "
                          f"{DATA_DIR} /var/lib/rancher/other-tool/keep /var/lib/kubelet /var/lib/cni /run/flannel "
                          "/etc/systemd/system/k3s.service /srv/foreign/keep; do "
                          "[ -e $p ] || [ -L $p ] && echo present $p || echo absent $p; done").stdout,
        "unit": sh(node, "systemctl is-active k3s.service; systemctl is-enabled k3s.service", check=False).stdout,
    }


def link_names(links: str) -> set[str]:
    """Interface names of `ip -o link show`."""
    return {re.match(r"^\d+:\s+([^:@\s]+)", line).group(1) for line in links.splitlines() if line.strip()}


def test_reset_removes_what_k3s_made_and_nothing_else(tmp_path: Path, node: str) -> None:
    sh(node, STAGE)
    start_processes(node)
    inventory = write_inventory(tmp_path, node)
    before = snapshot(node)
    assert {"cni0", "veth0a1b2c3d", "veth9f8e7d6c", "flannel.1", "kube-ipvs0", "docker0"} <= link_names(before["links"])
    assert all(rule in before["iptables"] for rule in K3S_IPTABLES + FOREIGN_IPTABLES), before["iptables"]

    # --check first: it reports, and the node keeps everything.
    checked = run_reset(inventory, "--check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert snapshot(node) | {"ps": ""} == before | {"ps": ""}
    assert running(processes(node), "sleep 31337") == 1

    first = recap(run_reset(inventory))
    assert first["changed"] > 0
    after = snapshot(node)

    # Processes: both shim trees went (shims, children, grandchildren); the foreign ones stayed.
    for seconds in (31337, 31338):
        for args in (f"sleep {seconds}", f"sleep {seconds + 100}", f"sh -c sleep {seconds + 100}; true"):
            assert running(before["ps"], args) == 1, (args, before["ps"])
            assert running(after["ps"], args) == 0, (args, after["ps"])
    assert SHIM not in after["ps"], after["ps"]
    assert running(after["ps"], "sleep 42424") == 1, after["ps"]
    assert running(after["ps"], "/opt/other/containerd-shim-runc-v2 42425") == 1, after["ps"]

    # Interfaces: cni0, its veths (both ends of the root-netns pair), flannel.1 and kube-ipvs0
    # went; Docker's bridge, its veth and the free veth pair stayed.
    names = link_names(after["links"])
    assert not names & {"cni0", "veth0a1b2c3d", "veth9f8e7d6c", "veth9f8e7d6p", "flannel.1", "kube-ipvs0"}, names
    assert {"docker0", "vethd0c4e8a", "vethd0c4e8b", "vethfree1", "vethfree2", "eth0"} <= names, names

    # Network namespaces and mounts.
    assert CNI_NETNS not in after["netns"] and "blue" in after["netns"], after["netns"]
    mounts = after["mounts"].split()
    for path in (POD_MOUNT, RUN_MOUNT, PLUGIN_MOUNT, f"/run/netns/{CNI_NETNS}"):
        assert path not in mounts, mounts
    assert "/srv/foreign" in mounts and "/run/netns/blue" in mounts, mounts

    # iptables: every KUBE-/CNI-/flannel chain and rule went, Docker's and the host's stayed.
    for rule in K3S_IPTABLES:
        assert rule not in after["iptables"], after["iptables"]
    for rule in FOREIGN_IPTABLES:
        assert rule in after["iptables"], after["iptables"]
    assert after["iptables"].count("--dport 22 -j ACCEPT") == 2, after["iptables"]

    # Files: k3s's went (the ctr link to another binary and /etc/rancher/node stayed, as with
    # k3s-uninstall.sh), the unit is stopped and gone.
    files = dict(line.split(" ", 1)[::-1] for line in after["files"].splitlines())
    for path in ("/usr/local/bin/k3s", "/usr/local/bin/kubectl", "/usr/local/bin/crictl", "/etc/rancher/k3s",
                 DATA_DIR, "/var/lib/kubelet", "/var/lib/cni", "/run/flannel", "/etc/systemd/system/k3s.service"):
        assert files[path] == "absent", (path, after["files"])
    for path in ("/usr/local/bin/ctr", "/usr/bin/other-ctr", "/etc/rancher/node/password",
                 "/var/lib/rancher/other-tool/keep", "/srv/foreign/keep"):
        assert files[path] == "present", (path, after["files"])
    assert after["unit"].split()[0] in {"inactive", "unknown"}, after["unit"]

    # A second reset finds nothing left to do.
    second = recap(run_reset(inventory))
    assert second["changed"] == 0, second
    assert snapshot(node) | {"ps": ""} == after | {"ps": ""}


def test_reset_keeps_the_data_when_asked(tmp_path: Path, node: str) -> None:
    """k3s_reset_purge_data=false: services, binary and configuration go; the data dir stays."""
    sh(node, f"install -D -m 0755 /bin/true /usr/local/bin/k3s && install -D /dev/null {DATA_DIR}/server/db/keep"
             " && install -D /dev/null /var/lib/kubelet/keep && install -D /dev/null /etc/rancher/k3s/config.yaml")
    inventory = write_inventory(tmp_path, node)
    assert recap(run_reset(inventory, "-e", "k3s_reset_purge_data=false"))["changed"] > 0
    state = sh(node, f"ls {DATA_DIR}/server/db/keep /var/lib/kubelet/keep; "
                     "! test -e /usr/local/bin/k3s && ! test -e /etc/rancher/k3s && echo gone", check=False)
    assert sorted(state.stdout.split()) == sorted([f"{DATA_DIR}/server/db/keep", "/var/lib/kubelet/keep", "gone"]), state


def test_reset_refuses_a_dangerous_data_dir(tmp_path: Path, node: str) -> None:
    """A data dir like /var/lib stops the reset before anything changes, naming the variable."""
    sh(node, "install -D -m 0755 /bin/true /usr/local/bin/k3s")
    inventory = write_inventory(tmp_path, node)
    result = run_reset(inventory, "-e", "k3s_data_dir=/var/lib")
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "k3s_reset_data_dir=/var/lib is not a k3s data directory" in out, out
    assert sh(node, "test -x /usr/local/bin/k3s && test -d /var/lib/dpkg", check=False).returncode == 0
