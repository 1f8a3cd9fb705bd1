"""The API VIP (k3s_api_vip): kube-vip's manifests, the VIP in config.yaml, and pre-flight's refusals.

k3s and kube-vip cannot run here (molecule k3s-ha checks the VIP survives the first server's
stop where there is network). These tests render the roles' own templates and vars through
Ansible for an HA inventory whose hosts are this machine (local connection, real gathered
facts), and check:
- kube-vip's RBAC and DaemonSet as kube-vip v1.2.3 generates them for k3s (image pinned to a
  release tag, ARP and control-plane env, leader election, NET_ADMIN/NET_RAW only, servers only),
  and accepted by a real kube-apiserver (server-side dry run);
- the VIP in tls-san, in every joining server's and agent's `server:`, and in the API URL the
  kubeconfig gets; k3s_api_endpoint still wins;
- each refusal names the variable and changes nothing, here and through site.yml's pre-flight
  in a node container.
"""

from __future__ import annotations

import contextlib
import http.server
import importlib.util
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.k3s_nodes.node_container import docker_ready, running_node

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ("kube-vip-rbac.yaml", "kube-vip-daemonset.yaml")

PLAYBOOK = """
- name: Render the k3s files with an API VIP
  hosts: k3s_cluster
  gather_facts: true
  gather_subset: ["!all", "min", "network"]
  # As in pre-flight: a refusal on one host stops every host.
  any_errors_fatal: true
  tasks:
    - name: Validate and load the shared k3s variables
      ansible.builtin.include_role:
        name: k3s
        tasks_from: validate.yml
        public: true
    - name: Load the role variables of the node's kind
      ansible.builtin.include_vars:
        dir: "{{ roles_dir }}/{{ kind }}/{{ item }}"
      loop: [defaults, vars]
      when: (roles_dir ~ '/' ~ kind ~ '/' ~ item) is directory
    - name: Render config.yaml
      ansible.builtin.template:
        src: "{{ roles_dir }}/{{ kind }}/templates/config.yaml.j2"
        dest: "{{ out }}/{{ inventory_hostname }}.config.yaml"
        mode: "0600"
      delegate_to: localhost
    - name: Render kube-vip's manifests as the k3s_server role writes them
      ansible.builtin.template:
        src: "{{ roles_dir }}/k3s_server/templates/{{ item }}.j2"
        dest: "{{ out }}/{{ inventory_hostname }}.{{ item }}"
        mode: "0600"
      loop: "{{ __k3s_server_kube_vip_manifests }}"
      when: kind == 'k3s_server'
      delegate_to: localhost
    - name: Record the API URL the kubeconfig and the waits use
      ansible.builtin.copy:
        content: "{{ {'api_url': __k3s_api_url, 'ping': __k3s_server_vip_ping_url | default('')} | to_json }}"
        dest: "{{ out }}/{{ inventory_hostname }}.vars.json"
        mode: "0600"
      delegate_to: localhost
  vars:
    kind: "{{ 'k3s_server' if inventory_hostname in groups['k3s_servers'] else 'k3s_agent' }}"
"""


def server_play(name: str, task: str, task_file: str) -> str:
    """A play on server-1 that loads the shared k3s variables and k3s_server's defaults and vars,
    then runs one of k3s_server's task files, as the role would."""
    return f"""
- name: {name}
  hosts: server-1
  gather_facts: false
  tasks:
    - name: Load the shared k3s variables
      ansible.builtin.include_role:
        name: k3s
        tasks_from: settings.yml
        public: true
    - name: Load the server defaults and variables
      ansible.builtin.include_vars:
        dir: {ROOT}/roles/k3s_server/{{{{ item }}}}
      loop: [defaults, vars]
    - name: {task}
      ansible.builtin.include_tasks: {ROOT}/roles/k3s_server/tasks/{task_file}
"""


def _load_filters() -> ModuleType:
    """Import the k3s role's network filter plugin by path (plugins are not a package)."""
    path = ROOT / "roles" / "k3s" / "filter_plugins" / "k3s_network.py"
    spec = importlib.util.spec_from_file_location("k3s_network", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def default_route_network() -> tuple[str, ipaddress.IPv4Interface]:
    """This machine's default-route interface and its first IPv4 address (what Ansible gathers)."""
    route = json.loads(subprocess.run(["ip", "-j", "-4", "route", "show", "default"],
                                      capture_output=True, text=True, check=True).stdout)
    if not route:
        pytest.skip("this machine has no IPv4 default route: the VIP checks read its interface")
    iface = route[0]["dev"]
    addresses = json.loads(subprocess.run(["ip", "-j", "-4", "addr", "show", "dev", iface],
                                          capture_output=True, text=True, check=True).stdout)
    info = addresses[0]["addr_info"][0]
    return iface, ipaddress.IPv4Interface(f"{info['local']}/{info['prefixlen']}")


def free_vip(own: ipaddress.IPv4Interface) -> str:
    """An address of ``own``'s subnet that is neither the machine's nor the test hosts'."""
    taken = {own.ip, *(ipaddress.IPv4Address(f"192.0.2.{n}") for n in (11, 12, 13, 21))}
    for host in own.network.hosts():
        if host not in taken and int(host) - int(own.network.network_address) >= 100:
            return str(host)
    for host in own.network.hosts():  # a small subnet: any free one
        if host not in taken:
            return str(host)
    pytest.skip(f"no free address in {own.network} for a VIP")


def _env() -> dict[str, str]:
    """Environment for ansible-playbook: the project's configuration, no colour."""
    return dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")


def render(tmp_path: Path, variables: dict[str, Any], refused: str = "") -> dict[str, str]:
    """Render every node's files for three servers and an agent; return them by file name.

    With ``refused``, the run must fail in validation, print that text and write nothing.
    """
    def node(address: str) -> dict[str, str]:
        return {"ansible_host": address, "ansible_connection": "local"}

    tmp_path.mkdir(parents=True, exist_ok=True)
    inventory = {"all": {
        "vars": {"ansible_python_interpreter": sys.executable, "k3s_token": "not-a-real-token",
                 "roles_dir": str(ROOT / "roles"), "out": str(tmp_path), **variables},
        "children": {"k3s_cluster": {"children": {
            "k3s_servers": {"hosts": {f"server-{i}": node(f"192.0.2.{10 + i}") for i in (1, 2, 3)}},
            "k3s_agents": {"hosts": {"agent-1": node("192.0.2.21")}},
        }}},
    }}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "render.yml").write_text(PLAYBOOK)
    result = subprocess.run(["ansible-playbook", "-i", str(tmp_path / "hosts.yml"), str(tmp_path / "render.yml")],
                            cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    files = {p.name: p.read_text() for p in tmp_path.iterdir() if p.suffix in (".yaml", ".json")}
    if refused:
        output = result.stdout + result.stderr
        assert result.returncode != 0, output
        assert refused in " ".join(result.stdout.split()), output
        assert "Nothing was changed." in output, output
        assert not files, f"files written after a refusal: {sorted(files)}"
        return files
    assert result.returncode == 0, result.stdout + result.stderr
    return files


@pytest.fixture(scope="module")
def network() -> tuple[str, ipaddress.IPv4Interface]:
    return default_route_network()


@pytest.fixture(scope="module")
def vip(network) -> str:
    return free_vip(network[1])


@pytest.fixture(scope="module")
def vip_files(tmp_path_factory, vip) -> dict[str, str]:
    """k3s_api_vip set, no endpoint, the interface left to the default route."""
    return render(tmp_path_factory.mktemp("vip"), {"k3s_api_vip": vip})


def documents(text: str) -> list[dict[str, Any]]:
    """The YAML documents of a manifest file (comments and empty documents dropped)."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def daemonset(files: dict[str, str], host: str = "server-1") -> dict[str, Any]:
    (ds,) = documents(files[f"{host}.kube-vip-daemonset.yaml"])
    return ds


def env_of(ds: dict[str, Any]) -> dict[str, Any]:
    (container,) = ds["spec"]["template"]["spec"]["containers"]
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


# --- the filters behind the checks ---------------------------------------------------------

@pytest.mark.parametrize("value", ["10.0.0.5", "192.168.1.250"])
def test_ipv4_filter_accepts_unicast_addresses(value: str) -> None:
    assert _load_filters().k3s_ipv4_problem(value) == ""


@pytest.mark.parametrize("value", ["", "10.0.0", "10.0.0.256", "10.0.0.5/24", "k8s.example.org", "fd00::5",
                                   "127.0.0.5", "224.0.0.1", "0.0.0.0", "169.254.0.9", "255.255.255.255"])
def test_ipv4_filter_refuses_what_arp_cannot_announce(value: str) -> None:
    assert _load_filters().k3s_ipv4_problem(value) != ""


def test_subnet_filter() -> None:
    problem = _load_filters().k3s_ipv4_network_problem
    assert problem("192.168.1.250", "192.168.1.0", "255.255.255.0") == ""
    assert "not in the interface's subnet 192.168.1.0/24" in problem("192.168.2.250", "192.168.1.0", "255.255.255.0")
    assert "broadcast" in problem("192.168.1.255", "192.168.1.0", "255.255.255.0")
    assert "broadcast" in problem("192.168.1.0", "192.168.1.0", "255.255.255.0")


# --- the manifests ---------------------------------------------------------------------------

def test_manifests_only_on_servers_and_the_same_on_each(vip_files) -> None:
    for name in MANIFESTS:
        assert f"agent-1.{name}" not in vip_files
        contents = {vip_files[f"server-{i}.{name}"] for i in (1, 2, 3)}
        assert len(contents) == 1, f"{name} differs between servers: one cluster object, one content"


def test_rbac_is_kube_vips(vip_files) -> None:
    objects = {(doc["apiVersion"], doc["kind"]): doc for doc in documents(vip_files["server-1.kube-vip-rbac.yaml"])}
    assert set(objects) == {("v1", "ServiceAccount"), ("rbac.authorization.k8s.io/v1", "ClusterRole"),
                            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding")}
    account = objects[("v1", "ServiceAccount")]["metadata"]
    assert (account["name"], account["namespace"]) == ("kube-vip", "kube-system")
    rules = {(group, resource): set(rule["verbs"]) for rule in objects[("rbac.authorization.k8s.io/v1", "ClusterRole")]["rules"]
             for group in rule["apiGroups"] for resource in rule["resources"]}
    # Leader election on a Lease is what moves the VIP.
    assert {"get", "create", "update"} <= rules[("coordination.k8s.io", "leases")]
    binding = objects[("rbac.authorization.k8s.io/v1", "ClusterRoleBinding")]
    assert binding["roleRef"]["name"] == objects[("rbac.authorization.k8s.io/v1", "ClusterRole")]["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kube-vip", "namespace": "kube-system"}]


def test_daemonset_runs_kube_vip_for_the_api_in_arp_mode(vip_files, vip) -> None:
    ds = daemonset(vip_files)
    assert (ds["apiVersion"], ds["kind"], ds["metadata"]["namespace"]) == ("apps/v1", "DaemonSet", "kube-system")
    pod = ds["spec"]["template"]["spec"]
    assert ds["spec"]["selector"]["matchLabels"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()
    assert pod["hostNetwork"] is True and pod["serviceAccountName"] == "kube-vip"
    (container,) = pod["containers"]
    repository, _, tag = container["image"].rpartition(":")
    assert repository == "plndr/kube-vip" and tag == "v1.2.3", container["image"]
    assert container["args"] == ["manager"]
    assert container["securityContext"]["capabilities"] == {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]}
    assert "privileged" not in container["securityContext"]
    env = env_of(ds)
    # Every value is a string, as the API requires for env.
    assert all(isinstance(value, (str, dict)) for value in env.values()), env
    assert env["address"] == vip and env["port"] == "6443" and env["vip_arp"] == "true"
    assert env["cp_enable"] == "true" and env["cp_namespace"] == "kube-system"
    assert env["vip_leaderelection"] == "true" and env["vip_leasename"] == "plndr-cp-lock"
    assert env["vip_nodename"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert "svc_enable" not in env and "bgp_enable" not in env
    # No interface named: kube-vip takes each server's default-route interface.
    assert "vip_interface" not in env


def test_daemonset_stays_on_servers_whatever_their_taints(vip_files) -> None:
    pod = daemonset(vip_files)["spec"]["template"]["spec"]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    keys = {expr["key"] for term in terms for expr in term["matchExpressions"] if expr["operator"] == "Exists"}
    assert "node-role.kubernetes.io/control-plane" in keys
    assert {"effect": "NoSchedule", "operator": "Exists"} in pod["tolerations"]
    assert {"effect": "NoExecute", "operator": "Exists"} in pod["tolerations"]


def test_named_interface_reaches_kube_vip(tmp_path, network, vip) -> None:
    iface, _ = network
    files = render(tmp_path, {"k3s_api_vip": vip, "k3s_api_vip_interface": iface})
    assert env_of(daemonset(files))["vip_interface"] == iface


def test_manifests_are_accepted_by_the_api_server(kube_api, vip_files, tmp_path) -> None:
    """A real kube-apiserver admits every object as written (server-side dry run)."""
    for name in MANIFESTS:
        result = kube_api.run_kubectl("apply", "--dry-run=server", "-f", "-", check=False,
                                      input=vip_files[f"server-1.{name}"])
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"
        assert "(server dry run)" in result.stdout, result.stdout


# --- the VIP in config.yaml and the kubeconfig ------------------------------------------------

def test_vip_is_the_join_address_and_in_tls_san(vip_files, vip) -> None:
    first = yaml.safe_load(vip_files["server-1.config.yaml"])
    assert first["cluster-init"] is True and "server" not in first
    assert first["tls-san"] == [vip, "192.0.2.11"]
    for i in (2, 3):
        config = yaml.safe_load(vip_files[f"server-{i}.config.yaml"])
        assert config["server"] == f"https://{vip}:6443"
        assert config["tls-san"] == [vip, f"192.0.2.1{i}"]
    assert yaml.safe_load(vip_files["agent-1.config.yaml"])["server"] == f"https://{vip}:6443"
    for host in ("server-1", "server-2", "agent-1"):
        recorded = json.loads(vip_files[f"{host}.vars.json"])
        assert recorded["api_url"] == f"https://{vip}:6443", host
    assert json.loads(vip_files["server-2.vars.json"])["ping"] == f"https://{vip}:6443/ping"


def test_endpoint_name_wins_and_the_vip_stays_in_tls_san(tmp_path, vip) -> None:
    files = render(tmp_path, {"k3s_api_vip": vip, "k3s_api_endpoint": "k8s.example.org"})
    config = yaml.safe_load(files["server-2.config.yaml"])
    assert config["server"] == "https://k8s.example.org:6443"
    assert config["tls-san"] == ["k8s.example.org", vip, "192.0.2.12"]
    assert yaml.safe_load(files["agent-1.config.yaml"])["server"] == "https://k8s.example.org:6443"
    assert json.loads(files["server-1.vars.json"])["api_url"] == "https://k8s.example.org:6443"


@contextlib.contextmanager
def ping_stand_in(tmp_path: Path, answer: bytes = b"pong") -> Iterator[str]:
    """A test double of k3s's supervisor /ping (HTTPS, self-signed) on a free loopback port."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=stand-in",
                    "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
                   check=True, capture_output=True)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the standard library's name
            body = answer if self.path == "/ping" else b"404"
            self.send_response(200 if self.path == "/ping" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/ping"
    finally:
        server.shutdown()


def export_kubeconfig(tmp_path: Path, vip: str, ping_url: str, timeout: int = 30) -> subprocess.CompletedProcess:
    """Run the role's kubeconfig.yml (VIP wait, then export) on k3s's admin kubeconfig in tmp_path."""
    admin = tmp_path / "etc"
    admin.mkdir(exist_ok=True)
    (admin / "k3s.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "default", "cluster": {"server": "https://127.0.0.1:6443",
                                                     "certificate-authority-data": "Q0E="}}]}))
    playbook = tmp_path / "kubeconfig.yml"
    playbook.write_text(server_play("Export the kubeconfig as the first server does",
                                    "Wait for the VIP and export", "kubeconfig.yml"))
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {
        "vars": {"ansible_python_interpreter": sys.executable, "ansible_connection": "local", "k3s_api_vip": vip},
        "children": {"k3s_cluster": {"children": {"k3s_servers": {"hosts": {"server-1": {"ansible_host": "192.0.2.11"}}}}}},
    }}))
    # Extra variables outrank the role's vars: the wait asks the stand-in instead of the VIP.
    extra = {"__k3s_server_vip_ping_url": ping_url, "k3s_config_dir": str(admin), "k3s_server_ready_timeout": timeout,
             "k3s_server_kubeconfig_dest": str(tmp_path / "out" / "kubeconfig")}
    return subprocess.run(["ansible-playbook", "-i", str(inventory), str(playbook), "-e", json.dumps(extra)],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)


def test_kubeconfig_is_exported_pointing_at_the_vip_once_it_answers(tmp_path, vip) -> None:
    with ping_stand_in(tmp_path) as url:
        result = export_kubeconfig(tmp_path, vip, url)
    assert result.returncode == 0, result.stdout + result.stderr
    exported = yaml.safe_load((tmp_path / "out" / "kubeconfig").read_text())
    assert exported["clusters"][0]["cluster"]["server"] == f"https://{vip}:6443"


def test_kubeconfig_is_not_exported_while_the_vip_is_silent(tmp_path, vip) -> None:
    """Nothing answers (a closed port): a bounded wait, then a failure that names k3s_api_vip."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    started = time.monotonic()
    result = export_kubeconfig(tmp_path, vip, f"https://127.0.0.1:{closed}/ping", timeout=10)
    output = " ".join(result.stdout.split())
    assert result.returncode != 0, output
    assert time.monotonic() - started < 120
    assert f"The API VIP k3s_api_vip={vip} did not answer" in output, output
    assert "within k3s_server_ready_timeout=10 seconds" in output
    assert "the kubeconfig was not exported" in output
    assert not (tmp_path / "out" / "kubeconfig").exists()


def test_wait_wants_k3s_answer_not_any_https(tmp_path, vip) -> None:
    """An HTTPS server that answers /ping with something else is not k3s: still refused."""
    with ping_stand_in(tmp_path, answer=b"hello") as url:
        result = export_kubeconfig(tmp_path, vip, url, timeout=5)
    assert result.returncode != 0 and "did not answer" in result.stdout, result.stdout
    assert not (tmp_path / "out" / "kubeconfig").exists()


# --- refusals, by name, before anything is written ------------------------------------------

@pytest.mark.parametrize("value", ["10.0.0.256", "k8s.example.org", "192.168.1.250/24"])
def test_refuses_a_vip_that_is_not_an_ipv4_address(tmp_path, value) -> None:
    render(tmp_path, {"k3s_api_vip": value}, refused=f"k3s_api_vip={value} is not an IPv4 address")


def test_refuses_a_vip_outside_the_servers_subnet(tmp_path, network) -> None:
    iface, own = network
    outside = str(next(net for net in (ipaddress.IPv4Network("198.51.100.0/24"), ipaddress.IPv4Network("203.0.113.0/24"))
                       if not net.overlaps(own.network)).network_address + 7)
    render(tmp_path, {"k3s_api_vip": outside},
           refused=f"k3s_api_vip={outside} is not in the interface's subnet {own.network} ({iface} on server-1")


def test_refuses_a_vip_that_is_a_nodes_address(tmp_path, network) -> None:
    # 192.0.2.12 is server-2's ansible_host; pick it only when it is inside this machine's subnet,
    # else the machine's own default-route address (a node's gathered address) shows the same refusal.
    _, own = network
    taken = "192.0.2.12" if ipaddress.IPv4Address("192.0.2.12") in own.network else str(own.ip)
    render(tmp_path, {"k3s_api_vip": taken}, refused=f"k3s_api_vip={taken} is the address of")


def test_refuses_an_interface_the_servers_do_not_have(tmp_path, vip) -> None:
    render(tmp_path, {"k3s_api_vip": vip, "k3s_api_vip_interface": "nosuch0"},
           refused='has no IPv4 interface "nosuch0" for the VIP')


def test_refuses_an_endpoint_address_that_bypasses_the_vip(tmp_path, vip) -> None:
    render(tmp_path, {"k3s_api_vip": vip, "k3s_api_endpoint": "192.0.2.11"},
           refused=f"k3s_api_endpoint=192.0.2.11 is an address other than k3s_api_vip={vip}")


# --- through site.yml's pre-flight in a node container ---------------------------------------

@pytest.fixture(scope="module")
def node() -> str:
    reason = docker_ready()
    if reason:
        pytest.skip(reason)
    with running_node("seek-k3s-vip") as name:
        yield name


def test_site_refuses_a_vip_outside_the_subnet_before_any_change(tmp_path, node) -> None:
    from tests.k3s_nodes.test_bad_input import assert_refused_unchanged, run_site, write_inventory

    inventory = write_inventory(tmp_path, node, servers=1, agents=1, variables={"k3s_api_vip": "198.51.100.7"})
    result = run_site(inventory)
    assert_refused_unchanged(result, node, "k3s_api_vip=198.51.100.7 is not in the interface's subnet",
                             "Nothing was changed.")


def test_site_refuses_a_missing_vip_interface_before_any_change(tmp_path, node) -> None:
    from tests.k3s_nodes.test_bad_input import assert_refused_unchanged, run_site, write_inventory

    address = subprocess.run(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", node],
                             capture_output=True, text=True, check=True).stdout.strip()
    own = ipaddress.IPv4Interface(f"{address}/24")
    inventory = write_inventory(tmp_path, node, servers=1, agents=0,
                                variables={"k3s_api_vip": free_vip(own), "k3s_api_vip_interface": "bond7"})
    result = run_site(inventory)
    assert_refused_unchanged(result, node, 'has no IPv4 interface "bond7" for the VIP')


# --- turning the VIP off: the objects k3s would leave behind are deleted ------------------------

# A test double of k3s's Addon CRD (k3s.cattle.io/v1, namespaced, plural addons): the deploy
# controller's record of each manifest file, which the test API server does not have.
ADDON_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: addons.k3s.cattle.io}
spec:
  group: k3s.cattle.io
  scope: Namespaced
  names: {kind: Addon, plural: addons, singular: addon}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""

REMOVE_PLAYBOOK = server_play("Remove kube-vip with the role's own task file", "Deploy or remove kube-vip", "vip.yml")


def test_turning_the_vip_off_deletes_kube_vips_objects_then_the_files(kube_api, vip_files, tmp_path) -> None:
    manifests = tmp_path / "data" / "server" / "manifests"
    manifests.mkdir(parents=True)
    for name in MANIFESTS:
        (manifests / name).write_text(vip_files[f"server-1.{name}"])
    crd = kube_api.run_kubectl("apply", "-f", "-", input=ADDON_CRD)
    assert crd.returncode == 0, crd.stderr
    kube_api.run_kubectl("wait", "--for=condition=Established", "crd/addons.k3s.cattle.io", "--timeout=60s")
    # What k3s's deploy controller leaves in the cluster: the objects, an Addon per file, kube-vip's Lease.
    extra = "\n---\n".join(
        [f"apiVersion: k3s.cattle.io/v1\nkind: Addon\nmetadata: {{name: {name[:-5]}, namespace: kube-system}}"
         for name in MANIFESTS]
        + ["apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {name: plndr-cp-lock, namespace: kube-system}\n"
           "spec: {holderIdentity: server-1}"])
    for document in [*(vip_files[f"server-1.{name}"] for name in MANIFESTS), extra]:
        applied = kube_api.run_kubectl("apply", "-f", "-", input=document, check=False)
        assert applied.returncode == 0, applied.stderr

    # Stand-ins named as such: `k3s kubectl` is the test API server's kubectl; systemd says k3s runs.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "k3s").write_text('#!/bin/sh\n[ "$1" = kubectl ] && shift\nexec kubectl "$@"\n')
    (bin_dir / "systemctl").write_text('#!/bin/sh\n[ "$1 $2" = "is-active k3s" ] && echo active && exit 0\nexit 3\n')
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    (config_dir / "k3s.yaml").write_text(Path(kube_api.kubeconfig).read_text())
    (tmp_path / "remove.yml").write_text(REMOVE_PLAYBOOK)
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"all": {
        "vars": {"ansible_python_interpreter": sys.executable, "ansible_connection": "local",
                 "roles_dir": str(ROOT / "roles"), "k3s_api_vip": "", "k3s_data_dir": str(tmp_path / "data"),
                 "k3s_install_dir": str(bin_dir), "k3s_config_dir": str(config_dir)},
        "children": {"k3s_cluster": {"children": {"k3s_servers": {"hosts": {"server-1": {}}}}}},
    }}))
    env = dict(_env(), PATH=f"{bin_dir}{os.pathsep}{kube_api.env['PATH']}")

    def run() -> subprocess.CompletedProcess:
        return subprocess.run(["ansible-playbook", "-i", str(tmp_path / "hosts.yml"), str(tmp_path / "remove.yml")],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

    first = run()
    assert first.returncode == 0, first.stdout + first.stderr
    assert not any(manifests.iterdir()), sorted(p.name for p in manifests.iterdir())
    for kind, name, namespace in [("daemonset", "kube-vip-ds", "kube-system"), ("serviceaccount", "kube-vip", "kube-system"),
                                  ("clusterrole", "system:kube-vip-role", ""),
                                  ("clusterrolebinding", "system:kube-vip-binding", ""),
                                  ("lease", "plndr-cp-lock", "kube-system"),
                                  ("addons.k3s.cattle.io", "kube-vip-rbac", "kube-system"),
                                  ("addons.k3s.cattle.io", "kube-vip-daemonset", "kube-system")]:
        where = ["-n", namespace] if namespace else []
        # Gone, or going (deleted without waiting: a deletion timestamp while the garbage collector works).
        left = kube_api.run_kubectl("get", kind, name, "--ignore-not-found", *where,
                                    "-o", "jsonpath={.metadata.name} {.metadata.deletionTimestamp}", check=False)
        fields = left.stdout.split()
        assert len(fields) != 1, f"{kind}/{name} left in the cluster:\n{first.stdout}"
    second = run()
    assert second.returncode == 0, second.stdout + second.stderr
    recap = second.stdout.split("PLAY RECAP", 1)[1]
    assert "changed=0" in recap, second.stdout
