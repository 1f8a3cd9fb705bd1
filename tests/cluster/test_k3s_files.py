"""The files the k3s roles write on a node, rendered from the roles' own templates and vars.

k3s itself cannot be downloaded here (the molecule k3s scenarios run it where there is
network); these tests render config.yaml and the unit through Ansible for an HA inventory and
check what k3s will read: the first server creates the cluster, the others join it, settings
come from variables, and no token ever appears in a file other than the 0600 token file.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

PLAYBOOK = """
- name: Render the k3s files of every node
  hosts: k3s_cluster
  gather_facts: false
  tasks:
    - name: Load the shared k3s variables
      ansible.builtin.include_role:
        name: k3s
        tasks_from: validate.yml
        public: true
      vars:
        ansible_architecture: x86_64
    - name: Load the role variables of the node's kind
      ansible.builtin.include_vars:
        dir: "{{ playbook_dir_roles }}/{{ kind }}/{{ item }}"
      loop: [defaults, vars]
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
"""

TOKEN = "s3cr3t-token-value-that-must-not-leak"


def render(tmp_path: Path, variables: dict) -> dict[str, str]:
    """Render every node's config.yaml and unit; return them by file name."""
    def node(address: str, **extra) -> dict:
        return {"ansible_host": address, "ansible_connection": "local", **extra}

    inventory = {
        "all": {
            "vars": {"ansible_python_interpreter": str(Path(os.sys.executable)), "k3s_token": TOKEN,
                     "playbook_dir_roles": str(ROOT / "roles"), "out": str(tmp_path), **variables},
            "children": {"k3s_cluster": {"children": {
                "k3s_servers": {"hosts": {"server-1": node("192.0.2.11"), "server-2": node("192.0.2.12"),
                                          "server-3": node("192.0.2.13")}},
                "k3s_agents": {"hosts": {"agent-1": node("192.0.2.21", k3s_node_labels=["seek/pool=web"],
                                                         k3s_node_taints=["dedicated=seek:NoSchedule"])}},
            }}},
        }
    }
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "render.yml").write_text(PLAYBOOK)
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    result = subprocess.run(["ansible-playbook", "-i", str(tmp_path / "hosts.yml"), str(tmp_path / "render.yml")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return {p.name: p.read_text() for p in tmp_path.iterdir() if p.suffix in (".yaml", ".service")}


@pytest.fixture(scope="module")
def ha_files(tmp_path_factory) -> dict[str, str]:
    return render(tmp_path_factory.mktemp("ha"), {"k3s_api_endpoint": "k8s.example.org",
                                                  "ingress_controller": "ingress-nginx"})


def test_first_server_creates_the_cluster(ha_files):
    config = yaml.safe_load(ha_files["server-1.config.yaml"])
    assert config["cluster-init"] is True
    assert "server" not in config
    assert config["token-file"] == "/etc/rancher/k3s/cluster-token"
    assert config["write-kubeconfig-mode"] == "0600"
    assert config["secrets-encryption"] is True
    assert config["tls-san"] == ["k8s.example.org"]
    assert config["disable"] == ["traefik"]


def test_other_servers_join_through_the_endpoint(ha_files):
    for name in ("server-2", "server-3"):
        config = yaml.safe_load(ha_files[f"{name}.config.yaml"])
        assert "cluster-init" not in config
        assert config["server"] == "https://k8s.example.org:6443"


def test_agent_joins_with_labels_and_taints(ha_files):
    config = yaml.safe_load(ha_files["agent-1.config.yaml"])
    assert config == {"server": "https://k8s.example.org:6443", "token-file": "/etc/rancher/k3s/cluster-token",
                      "node-label": ["seek/pool=web"], "node-taint": ["dedicated=seek:NoSchedule"]}


def test_units_take_no_flags(ha_files):
    server = ha_files["server-1.service"]
    agent = ha_files["agent-1.service"]
    assert "ExecStart=/usr/local/bin/k3s server\n" in server
    assert "Type=notify" in server
    assert "ExecStart=/usr/local/bin/k3s agent\n" in agent


def test_no_token_in_any_rendered_file(ha_files):
    for name, text in ha_files.items():
        assert TOKEN not in text, name


def test_traefik_kept_and_first_server_address_without_endpoint(tmp_path):
    files = render(tmp_path, {"ingress_controller": "traefik"})
    first = yaml.safe_load(files["server-1.config.yaml"])
    assert "disable" not in first and "tls-san" not in first
    assert yaml.safe_load(files["server-2.config.yaml"])["server"] == "https://192.0.2.11:6443"
