"""The files the k3s roles write on a node, rendered from the roles' own templates and vars.

k3s itself cannot be downloaded here (the molecule k3s scenarios run it where there is
network); these tests render config.yaml and the unit through Ansible for an HA inventory and
check what k3s will read: the first server creates the cluster, the others join it, settings
come from variables, node names follow k3s's rule, a --limit run renders the same files, and
no token or registry password ever appears in a file other than the 0600 files meant for it.
The registries task file runs for real against this machine's file system (as root, like on
a node) and is checked for mode, content, idempotence, secrecy and removal.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

PLAYBOOK = """
- name: Render the k3s files of every node
  hosts: k3s_cluster
  gather_facts: true
  # platform facts name the node (ansible_nodename); network facts are what the old API
  # address default read, so the --limit test would see a difference if any template used them.
  gather_subset: ["!all", "min", "network"]
  tasks:
    - name: Load the shared k3s variables
      ansible.builtin.include_role:
        name: k3s
        tasks_from: validate.yml
        public: true
    - name: Load the role variables of the node's kind
      ansible.builtin.include_vars:
        dir: "{{ playbook_dir_roles }}/{{ kind }}/{{ item }}"
      loop: [defaults, vars]
      when: (playbook_dir_roles ~ '/' ~ kind ~ '/' ~ item) is directory
      vars:
        kind: "{{ 'k3s_server' if inventory_hostname in groups['k3s_servers'] else 'k3s_agent' }}"
    - name: Render config.yaml
      ansible.builtin.template:
        src: "{{ playbook_dir_roles }}/{{ kind }}/templates/config.yaml.j2"
        dest: "{{ out }}/{{ inventory_hostname }}.config.yaml"
        mode: "0600"
      vars:
        kind: "{{ 'k3s_server' if inventory_hostname in groups['k3s_servers'] else 'k3s_agent' }}"
      delegate_to: localhost
    - name: Render the unit
      ansible.builtin.template:
        src: "{{ playbook_dir_roles }}/k3s/templates/k3s.service.j2"
        dest: "{{ out }}/{{ inventory_hostname }}.service"
        mode: "0644"
      vars:
        k3s_mode: "{{ 'server' if inventory_hostname in groups['k3s_servers'] else 'agent' }}"
      delegate_to: localhost
    - name: Record the names and paths the waits and gates use
      ansible.builtin.copy:
        content: >-
          {{ {'node_name': __k3s_node_name, 'images_dir': __k3s_images_dir, 'api_url': __k3s_api_url,
              'tls_dir': __k3s_server_tls_dir | default(''),
              'etcd_name_file': __k3s_server_etcd_name_file | default('')} | to_json }}
        dest: "{{ out }}/{{ inventory_hostname }}.vars.json"
        mode: "0600"
      delegate_to: localhost
"""

REGISTRIES_PLAYBOOK = """
- name: Write registries.yaml with the role's own task file
  hosts: node
  gather_facts: false
  tasks:
    - name: Write or remove registries.yaml
      ansible.builtin.include_role:
        name: k3s
        tasks_from: registries.yml
  handlers:
    - name: Restart k3s
      ansible.builtin.debug:
        msg: k3s would be restarted
"""

TOKEN = "s3cr3t-token-value-that-must-not-leak"
REGISTRY_PASSWORD = "registry-password-that-must-not-leak"
REGISTRIES = {
    "mirrors": {"registry.example.org": {"endpoint": ["https://mirror.example.org:5000"]}},
    "configs": {"mirror.example.org:5000": {"auth": {"username": "seek", "password": REGISTRY_PASSWORD}}},
}
PLAIN = {"ingress_controller": "traefik", "k3s_registries": REGISTRIES}


def _env() -> dict[str, str]:
    """Environment for ansible-playbook: the project's configuration, no colour."""
    return dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")


def render(tmp_path: Path, variables: dict, *extra: str, refused: str = "",
           output: list[str] | None = None) -> dict[str, str]:
    """Render every node's config.yaml, unit and wait variables; return them by file name.

    With `refused`, the run must fail before writing anything and print that text. The run's
    output is appended to `output` when given.
    """
    def node(address: str, **more) -> dict:
        return {"ansible_host": address, "ansible_connection": "local", **more}

    tmp_path.mkdir(parents=True, exist_ok=True)
    servers = {"server-1": node("192.0.2.11"), "server-2": node("192.0.2.12"),
               "server-3": node("192.0.2.13", k3s_node_name="Server-3", k3s_flannel_iface="eth1")}
    agents = {"agent-1": node("192.0.2.21", k3s_node_labels=["seek/pool=web"],
                              k3s_node_taints=["dedicated=seek:NoSchedule"])}
    inventory = {
        "all": {
            "vars": {"ansible_python_interpreter": sys.executable, "k3s_token": TOKEN,
                     "playbook_dir_roles": str(ROOT / "roles"), "out": str(tmp_path), **variables},
            "children": {"k3s_cluster": {"children": {
                "k3s_servers": {"hosts": servers},
                "k3s_agents": {"hosts": agents},
            }}},
        }
    }
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "render.yml").write_text(PLAYBOOK)
    result = subprocess.run(["ansible-playbook", "-i", str(tmp_path / "hosts.yml"), str(tmp_path / "render.yml"), *extra],
                            cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    files = {p.name: p.read_text() for p in tmp_path.iterdir() if p.suffix in (".yaml", ".service", ".json")}
    if output is not None:
        output.append(result.stdout + result.stderr)
    if refused:
        assert result.returncode != 0 and refused in result.stdout, result.stdout + result.stderr
        return files
    assert result.returncode == 0, result.stdout + result.stderr
    return files


@pytest.fixture(scope="module")
def ha_files(tmp_path_factory) -> dict[str, str]:
    return render(tmp_path_factory.mktemp("ha"), {"k3s_api_endpoint": "k8s.example.org",
                                                  "ingress_controller": "ingress-nginx"})


@pytest.fixture(scope="module")
def plain_files(tmp_path_factory) -> dict[str, str]:
    """No API endpoint, k3s's traefik, a registries configuration in the default directory."""
    return render(tmp_path_factory.mktemp("plain"), PLAIN)


def test_first_server_creates_the_cluster(ha_files):
    config = yaml.safe_load(ha_files["server-1.config.yaml"])
    assert config["cluster-init"] is True
    assert "server" not in config
    assert config["token-file"] == "/etc/rancher/k3s/cluster-token"
    assert config["write-kubeconfig-mode"] == "0600"
    assert config["secrets-encryption"] is True
    # The API endpoint and the address the operator declared for this server.
    assert config["tls-san"] == ["k8s.example.org", "192.0.2.11"]
    assert config["disable"] == ["traefik"]
    # k3s's own default data dir is not written out, so existing configurations do not change.
    assert "data-dir" not in config and "flannel-iface" not in config and "node-name" not in config
    assert "write-kubeconfig" not in config and "private-registry" not in config


def test_other_servers_join_through_the_endpoint(ha_files):
    for name, address in (("server-2", "192.0.2.12"), ("server-3", "192.0.2.13")):
        config = yaml.safe_load(ha_files[f"{name}.config.yaml"])
        assert "cluster-init" not in config
        assert config["server"] == "https://k8s.example.org:6443"
        assert config["tls-san"] == ["k8s.example.org", address]


def test_per_host_node_name_and_flannel_interface(ha_files):
    config = yaml.safe_load(ha_files["server-3.config.yaml"])
    assert config["node-name"] == "Server-3"
    assert config["flannel-iface"] == "eth1"
    assert "flannel-iface" not in yaml.safe_load(ha_files["server-2.config.yaml"])


def test_node_names_follow_k3s(ha_files):
    """node-name lower-cased when set, else the kernel host name (os.Hostname()) lower-cased."""
    assert json.loads(ha_files["server-3.vars.json"])["node_name"] == "server-3"
    hostname = os.uname().nodename.lower()
    for name in ("server-1", "server-2", "agent-1"):
        assert json.loads(ha_files[f"{name}.vars.json"])["node_name"] == hostname, name


def test_agent_joins_with_labels_and_taints(ha_files):
    config = yaml.safe_load(ha_files["agent-1.config.yaml"])
    assert config == {"server": "https://k8s.example.org:6443", "token-file": "/etc/rancher/k3s/cluster-token",
                      "node-label": ["seek/pool=web"], "node-taint": ["dedicated=seek:NoSchedule"]}


def test_units_take_no_flags(ha_files):
    server = ha_files["server-1.service"]
    agent = ha_files["agent-1.service"]
    assert "ExecStart=/usr/local/bin/k3s server\n" in server
    assert "ExecStart=/usr/local/bin/k3s agent\n" in agent
    # Both notify systemd when ready, as install.sh's units do; the roles never start them blocking.
    for unit in (server, agent):
        assert "Type=notify\n" in unit and "TimeoutStartSec=0\n" in unit


def test_no_token_in_any_rendered_file(ha_files):
    for name, text in ha_files.items():
        assert TOKEN not in text, name


def test_traefik_kept_and_first_server_address_without_endpoint(plain_files):
    """Without an endpoint, joiners and the certificate use the first server's ansible_host."""
    files = plain_files
    first = yaml.safe_load(files["server-1.config.yaml"])
    assert "disable" not in first
    assert first["tls-san"] == ["192.0.2.11"]
    second = yaml.safe_load(files["server-2.config.yaml"])
    assert second["server"] == "https://192.0.2.11:6443"
    assert second["tls-san"] == ["192.0.2.11", "192.0.2.12"]
    assert yaml.safe_load(files["agent-1.config.yaml"])["server"] == "https://192.0.2.11:6443"
    assert json.loads(files["server-2.vars.json"])["api_url"] == "https://192.0.2.11:6443"
    # registries.yaml in k3s's default directory needs no private-registry key.
    for name, text in files.items():
        assert "private-registry" not in text and REGISTRY_PASSWORD not in text, name


def test_limit_run_renders_the_same_files(tmp_path, plain_files):
    """Adding one node with --limit: the first server's facts are not gathered, nothing differs."""
    full = plain_files
    limited = render(tmp_path, PLAIN, "--limit", "server-2,agent-1")
    assert sorted(limited) == sorted(n for n in full if n.startswith(("server-2.", "agent-1.")))
    for name, text in limited.items():
        if name.endswith(".json"):
            assert json.loads(text) == json.loads(full[name]), name
        else:
            assert text == full[name], name


def test_data_and_config_dirs_move_every_path(tmp_path):
    files = render(tmp_path, {"k3s_data_dir": "/srv/k3s", "k3s_config_dir": "/etc/seek-k3s",
                              "k3s_registries": REGISTRIES})
    for name in ("server-1", "server-2", "agent-1"):
        config = yaml.safe_load(files[f"{name}.config.yaml"])
        assert config["data-dir"] == "/srv/k3s"
        assert config["token-file"] == "/etc/seek-k3s/cluster-token"
        # k3s reads /etc/rancher/k3s/registries.yaml unless told otherwise.
        assert config["private-registry"] == "/etc/seek-k3s/registries.yaml"
        if name.startswith("server"):
            assert config["write-kubeconfig"] == "/etc/seek-k3s/k3s.yaml"
        assert REGISTRY_PASSWORD not in files[f"{name}.config.yaml"]
        assert json.loads(files[f"{name}.vars.json"])["images_dir"] == "/srv/k3s/agent/images"
    wait = json.loads(files["server-1.vars.json"])
    assert wait["tls_dir"] == "/srv/k3s/server/tls"
    assert wait["etcd_name_file"] == "/srv/k3s/server/db/etcd/name"
    # k3s reads /etc/rancher/k3s/config.yaml unless told otherwise.
    assert "ExecStart=/usr/local/bin/k3s server --config /etc/seek-k3s/config.yaml\n" in files["server-1.service"]


def run_registries(tmp_path: Path, registries: dict, *extra: str) -> subprocess.CompletedProcess:
    """Run the role's registries task file for one local node whose config dir is tmp_path/etc."""
    inventory = {"all": {"hosts": {"node": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        "k3s_config_dir": str(tmp_path / "etc"), "k3s_registries": registries}}}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "registries.yml").write_text(REGISTRIES_PLAYBOOK)
    return subprocess.run(["ansible-playbook", "-i", str(tmp_path / "hosts.yml"), str(tmp_path / "registries.yml"),
                           *extra], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(os.geteuid() != 0, reason="the registries task writes root-owned files, as on a node")
def test_registries_file_written_private_and_idempotent(tmp_path):
    (tmp_path / "etc").mkdir(mode=0o700)
    first = run_registries(tmp_path, REGISTRIES, "-vvv")
    out = first.stdout + first.stderr
    assert first.returncode == 0, out
    assert REGISTRY_PASSWORD not in out, "the registry password was printed"
    assert "changed=1" in out.split("PLAY RECAP", 1)[1]
    path = tmp_path / "etc" / "registries.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_uid == 0
    assert yaml.safe_load(path.read_text()) == REGISTRIES
    assert "RUNNING HANDLER [Restart k3s]" in out

    second = run_registries(tmp_path, REGISTRIES)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "changed=0" in second.stdout.split("PLAY RECAP", 1)[1], second.stdout

    emptied = run_registries(tmp_path, {})
    assert emptied.returncode == 0, emptied.stdout + emptied.stderr
    assert not path.exists(), "an empty k3s_registries must remove the file this role wrote"
    assert "RUNNING HANDLER [Restart k3s]" in emptied.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="the registries task writes root-owned files, as on a node")
def test_registries_file_placed_by_hand_is_kept(tmp_path):
    (tmp_path / "etc").mkdir(mode=0o700)
    path = tmp_path / "etc" / "registries.yaml"
    path.write_text("mirrors: {}\n")
    result = run_registries(tmp_path, {})
    assert result.returncode == 0, result.stdout + result.stderr
    assert path.read_text() == "mirrors: {}\n"
    assert "changed=0" in result.stdout.split("PLAY RECAP", 1)[1]


def test_bad_settings_refused_before_anything_is_written(tmp_path):
    files = render(tmp_path / "registries", {"k3s_registries": {"mirror": {}}},
                   refused="k3s_registries may only have the keys")
    assert not files, files
    # server-3 sets its own interface in the inventory and is the only host rendered.
    files = render(tmp_path / "iface", {"k3s_flannel_iface": "eth0 eth1"}, refused="k3s_flannel_iface=eth0 eth1")
    assert {name.split(".")[0] for name in files} == {"server-3"}


# --- The unit's environment files and the proxy settings (issue 19, items 4 and 5) ---

def test_units_read_install_sh_environment_files_then_the_proxy_file(ha_files, tmp_path):
    """install.sh's unit reads /etc/default/%N, /etc/sysconfig/%N and its .env file, in that order
    (k3s-io/k3s install.sh create_systemd_service_file); ours reads the same, then proxy.env last."""
    for name, service in (("server-1", "k3s"), ("agent-1", "k3s-agent")):
        unit = ha_files[f"{name}.service"]
        lines = [line for line in unit.splitlines() if line.startswith("EnvironmentFile=")]
        assert lines == ["EnvironmentFile=-/etc/default/%N", "EnvironmentFile=-/etc/sysconfig/%N",
                         f"EnvironmentFile=-/etc/systemd/system/{service}.service.env",
                         "EnvironmentFile=-/etc/rancher/k3s/proxy.env"], unit
    moved = render(tmp_path, {"k3s_config_dir": "/etc/seek-k3s"})
    assert "EnvironmentFile=-/etc/seek-k3s/proxy.env\n" in moved["server-1.service"]


ENV_PLAYBOOK = """
- name: Write the unit's proxy settings with the role's own task file
  hosts: node
  gather_facts: false
  tasks:
    - name: Write or remove proxy.env
      ansible.builtin.include_role:
        name: k3s
        tasks_from: environment.yml
  handlers:
    - name: Restart k3s
      ansible.builtin.debug:
        msg: k3s would be restarted
"""
PROXY_PASSWORD = "proxy-password-that-must-not-leak"


def run_environment(tmp_path: Path, variables: dict, *extra: str) -> subprocess.CompletedProcess:
    """Run the role's environment task file for one local node of a three-node inventory."""
    def other(address: str, **more) -> dict:
        return {"ansible_host": address, **more}

    inventory = {"all": {
        "vars": {"ansible_python_interpreter": sys.executable, **variables},
        "children": {"k3s_cluster": {"children": {
            "k3s_servers": {"hosts": {
                "node": {"ansible_connection": "local", "ansible_host": "192.0.2.11",
                         "k3s_config_dir": str(tmp_path / "etc")},
                "server-2": other("192.0.2.12", k3s_node_ip="10.0.0.12")}},
            "k3s_agents": {"hosts": {"agent-1": other("192.0.2.21")}},
        }}},
    }}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "environment.yml").write_text(ENV_PLAYBOOK)
    return subprocess.run(["ansible-playbook", "-i", str(tmp_path / "hosts.yml"), str(tmp_path / "environment.yml"),
                           *extra], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)


def read_env_file(path: Path) -> dict[str, str]:
    """The variables of a systemd environment file as this role writes it (KEY='value')."""
    pairs = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, value = line.split("=", 1)
            assert value.startswith("'") and value.endswith("'"), line
            pairs[key] = value[1:-1]
    return pairs


@pytest.mark.skipif(os.geteuid() != 0, reason="the environment task writes root-owned files, as on a node")
def test_proxy_settings_written_private_with_the_cluster_in_no_proxy(tmp_path):
    (tmp_path / "etc").mkdir(mode=0o700)
    proxy = f"http://seek:{PROXY_PASSWORD}@proxy.example.org:3128"
    settings = {"k3s_http_proxy": proxy, "k3s_https_proxy": "http://proxy.example.org:3129",
                "k3s_no_proxy": [".example.org", "198.51.100.0/24"]}
    first = run_environment(tmp_path, settings, "-vvv")
    out = first.stdout + first.stderr
    assert first.returncode == 0, out
    assert PROXY_PASSWORD not in out, "the proxy password was printed"
    assert "changed=1" in out.split("PLAY RECAP", 1)[1]
    assert "RUNNING HANDLER [Restart k3s]" in out
    path = tmp_path / "etc" / "proxy.env"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.stat().st_uid == 0
    env = read_env_file(path)
    assert env["HTTP_PROXY"] == env["CONTAINERD_HTTP_PROXY"] == proxy
    assert env["HTTPS_PROXY"] == env["CONTAINERD_HTTPS_PROXY"] == "http://proxy.example.org:3129"
    assert env["NO_PROXY"] == env["CONTAINERD_NO_PROXY"]
    no_proxy = env["NO_PROXY"].split(",")
    # The defaults (k3s_server's CIDRs read from its defaults: no inventory sets them here), every
    # node's inventory name and addresses, the API address (the first server's), then the user's.
    for entry in ("127.0.0.1", "localhost", ".svc", ".cluster.local", "10.42.0.0/16", "10.43.0.0/16",
                  "192.0.2.11", "192.0.2.12", "10.0.0.12", "192.0.2.21", "server-2", "agent-1",
                  ".example.org", "198.51.100.0/24"):
        assert entry in no_proxy, (entry, no_proxy)
    assert len(no_proxy) == len(set(no_proxy)) and "" not in no_proxy, no_proxy

    second = run_environment(tmp_path, settings)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "changed=0" in second.stdout.split("PLAY RECAP", 1)[1], second.stdout
    assert "RUNNING HANDLER" not in second.stdout

    # The owner's setting moves the CIDRs on every node, agents included.
    moved = run_environment(tmp_path, {**settings, "k3s_server_cluster_cidr": "10.52.0.0/16"})
    assert moved.returncode == 0, moved.stdout + moved.stderr
    no_proxy = read_env_file(path)["NO_PROXY"].split(",")
    assert "10.52.0.0/16" in no_proxy and "10.42.0.0/16" not in no_proxy, no_proxy
    assert "RUNNING HANDLER [Restart k3s]" in moved.stdout

    emptied = run_environment(tmp_path, {})
    assert emptied.returncode == 0, emptied.stdout + emptied.stderr
    assert not path.exists(), "removing the proxy settings must remove the file this role wrote"
    assert "RUNNING HANDLER [Restart k3s]" in emptied.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="the environment task writes root-owned files, as on a node")
def test_proxy_file_without_credentials_is_shown_and_a_hand_placed_one_kept(tmp_path):
    (tmp_path / "etc").mkdir(mode=0o700)
    result = run_environment(tmp_path, {"k3s_https_proxy": "https://proxy.example.org:3129/"})
    assert result.returncode == 0, result.stdout + result.stderr
    env = read_env_file(tmp_path / "etc" / "proxy.env")
    assert "HTTP_PROXY" not in env and env["HTTPS_PROXY"] == "https://proxy.example.org:3129/"
    # No credentials: the task is not hidden (its result names the file).
    assert "proxy.env" in result.stdout and "censored" not in result.stdout

    (tmp_path / "etc" / "proxy.env").write_text("HTTP_PROXY=http://mine.example.org:8080\n")
    kept = run_environment(tmp_path, {})
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert (tmp_path / "etc" / "proxy.env").read_text() == "HTTP_PROXY=http://mine.example.org:8080\n"
    assert "changed=0" in kept.stdout.split("PLAY RECAP", 1)[1]


@pytest.mark.parametrize(("variables", "message"), [
    ({"k3s_http_proxy": "proxy.example.org:3128"}, "k3s_http_proxy on server-1 is not an http:// or https:// URL"),
    ({"k3s_https_proxy": "socks5://proxy.example.org:1080"}, "k3s_https_proxy on server-1 is not an http://"),
    ({"k3s_https_proxy": f"http://seek:{PROXY_PASSWORD} x@proxy:3128"}, "k3s_https_proxy on server-1 is not"),
    ({"k3s_no_proxy": ["a.example.org,b.example.org"]}, "k3s_no_proxy must be a list of host names"),
])
def test_bad_proxy_settings_refused_by_name(tmp_path, variables, message):
    output: list[str] = []
    files = render(tmp_path, variables, "-v", refused=message, output=output)
    assert not files, files
    # The refusal never shows a proxy URL: it may hold a password.
    assert PROXY_PASSWORD not in output[0], output[0]
