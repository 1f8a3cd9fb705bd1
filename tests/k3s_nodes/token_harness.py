"""Shared plumbing of the token tests: systemd node containers holding k3s's token files.

k3s cannot run here, so a container plays a node on which k3s *has* run: the test writes the files
k3s leaves behind, in k3s's own format (as k3s main-line source writes them):
  <data-dir>/server/tls/server-ca.crt   the cluster CA (a real self-signed certificate)
  <data-dir>/server/token               "K10<sha256 of server-ca.crt>::server:<secret>\\n", 0600
  <data-dir>/server/agent-token         "K10<same hash>::node:<agent secret>\\n", 0600, or a
                                        symlink to token when no agent token is set
  /etc/rancher/k3s/k3s.yaml             the admin kubeconfig, server https://127.0.0.1:6443
(pkg/server/server.go printTokens and writeKubeConfig, pkg/clientaccess/token.go FormatToken.)
That is the file contract the roles read, not a stand-in for k3s: nothing here answers as k3s.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.k3s_nodes.node_container import docker_ready, start_node

ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = "/var/lib/rancher/k3s"
CLUSTER_TOKEN = f"{DATA_DIR}/server/token"
AGENT_TOKEN = f"{DATA_DIR}/server/agent-token"
SERVER_CA = f"{DATA_DIR}/server/tls/server-ca.crt"
NODE_TOKEN_FILE = "/etc/rancher/k3s/cluster-token"
KUBECONFIG = "/etc/rancher/k3s/k3s.yaml"
# Where the test playbooks' handler records that a restart of k3s was asked for.
RESTART_MARKER = "/root/k3s-restart-notified"



@pytest.fixture(scope="module")
def nodes() -> Iterator[list[str]]:
    """Two running node containers: [first server, joining node]."""
    reason = docker_ready()
    if reason:
        pytest.skip(reason)
    names: list[str] = []
    try:
        for _ in range(2):
            names.append(start_node("seek-k3s-token"))
        yield names
    finally:
        for name in names:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def sh(node: str, script: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a shell script as root in the container."""
    return subprocess.run(["docker", "exec", node, "sh", "-ec", script], capture_output=True, text=True,
                          check=check)


def reset_node(node: str) -> None:
    """Remove everything k3s or the roles left on the node, keeping the configuration directory
    the roles' install step creates before the token step runs (k3s/tasks/install.yml)."""
    sh(node, f"rm -rf {DATA_DIR} /etc/rancher {RESTART_MARKER} && mkdir -p -m 0700 /etc/rancher/k3s")


def new_secret() -> str:
    """A secret like k3s's own (util.Random(16): 32 hex digits)."""
    return secrets.token_hex(16)


def make_ca(workdir: Path) -> bytes:
    """A real self-signed CA certificate in PEM, as k3s generates for server-ca.crt."""
    key, crt = workdir / "ca.key", workdir / "ca.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(crt), "-days", "2",
                    "-subj", "/CN=k3s-server-ca@1700000000"], check=True, capture_output=True)
    return crt.read_bytes()


def full_token(ca_pem: bytes, user: str, secret: str) -> str:
    """k3s's full token: K10, the sha256 of the CA file's bytes, '::', user:secret."""
    return f"K10{hashlib.sha256(ca_pem).hexdigest()}::{user}:{secret}"


def put(node: str, path: str, content: bytes, mode: str = "0600") -> None:
    """Write a root-owned file in the container, its directories 0700 like k3s's."""
    sh(node, f"mkdir -p -m 0700 {os.path.dirname(path)}")
    subprocess.run(["docker", "exec", "-i", node, "sh", "-ec", f"cat > {path} && chmod {mode} {path}"],
                   input=content, check=True, capture_output=True)


def make_cluster(node: str, workdir: Path, secret: str, agent_secret: str = "") -> dict[str, str]:
    """Leave on the node what a k3s server that ran leaves: CA, token, agent-token, kubeconfig."""
    ca = make_ca(workdir)
    put(node, SERVER_CA, ca, "0644")
    token = full_token(ca, "server", secret)
    put(node, CLUSTER_TOKEN, (token + "\n").encode())
    agent = ""
    if agent_secret:
        agent = full_token(ca, "node", agent_secret)
        put(node, AGENT_TOKEN, (agent + "\n").encode())
    else:
        sh(node, f"ln -sfn {CLUSTER_TOKEN} {AGENT_TOKEN}")
    kubeconfig = ("apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: AAAA\n"
                  "    server: https://127.0.0.1:6443\n  name: default\ncontexts:\n- context:\n"
                  "    cluster: default\n    user: default\n  name: default\ncurrent-context: default\n"
                  "kind: Config\nusers:\n- name: default\n  user:\n    client-certificate-data: BBBB\n"
                  "    client-key-data: CCCC\n")
    put(node, KUBECONFIG, kubeconfig.encode())
    return {"token": token, "agent": agent, "ca": ca.decode()}


def read(node: str, path: str) -> str:
    """A file's content in the container ('' when it does not exist)."""
    result = sh(node, f"cat {path}", check=False)
    return result.stdout if result.returncode == 0 else ""


def stat(node: str, path: str) -> str:
    """'mode owner mtime-ns inode' of a file in the container, to prove it was left alone."""
    return sh(node, f"stat -c '%a %U %Y %i' {path}").stdout.strip()


TOKEN_PLAYBOOK = """
- name: The token tasks of the k3s roles, as k3s_server and k3s_agent run them
  hosts: "{{ target | default('k3s_cluster') }}"
  gather_facts: false
  tasks:
    - name: Work out and write the join token
      ansible.builtin.include_role:
        name: k3s
        tasks_from: token.yml
      vars:
        k3s_mode: "{{ 'server' if inventory_hostname in groups['k3s_servers'] else 'agent' }}"
  handlers:
    # Stands in for the roles' restart handler only to record that a restart was asked for.
    - name: Record that a restart of k3s was asked for
      listen: Restart k3s
      ansible.builtin.copy:
        content: "restart\\n"
        dest: /root/k3s-restart-notified
        mode: "0600"
"""


def ansible_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment ansible-playbook runs with: the project's config, JSON results."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}"
    env.update(extra or {})
    return env


def run_playbook(playbook: Path, inventory: Path, *args: str, user: str | None = None,
                 env: dict[str, str] | None = None, cwd: Path = ROOT,
                 python: str | None = None) -> tuple[subprocess.CompletedProcess, dict]:
    """Run ansible-playbook (as `user` through runuser, with another `python`, when given);
    return the process and its JSON report."""
    launcher = [python, str(ROOT / ".venv" / "bin" / "ansible-playbook")] if python else ["ansible-playbook"]
    command = [*launcher, str(playbook), "-i", str(inventory), *args]
    environment = env or ansible_env()
    if user:
        command = ["runuser", "-u", user, "--", "env", "-i",
                   *[f"{k}={v}" for k, v in environment.items()], *command]
        environment = None
    result = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=600)
    try:
        report = json.loads(result.stdout[result.stdout.index("{"):])
    except ValueError:
        report = {}
    return result, report


def task_results(report: dict, name: str) -> dict[str, dict]:
    """Per-host results of every task whose name ends with `name` (e.g. 'Token | Write the token file')."""
    found: dict[str, dict] = {}
    for play in report.get("plays", []):
        for task in play.get("tasks", []):
            if task["task"]["name"].endswith(name):
                found.update(task["hosts"])
    return found


def changed_hosts(report: dict) -> dict[str, int]:
    """changed= of the recap, per host."""
    return {host: stats.get("changed", 0) for host, stats in report.get("stats", {}).items()}


def write_inventory(path: Path, servers: dict[str, str], agents: dict[str, str] | None = None,
                    variables: dict | None = None) -> Path:
    """An inventory of hosts reached through the docker connection, each its own container."""
    def hosts(mapping: dict[str, str]) -> dict:
        return {name: {"ansible_host": node, "ansible_connection": "community.docker.docker"}
                for name, node in mapping.items()}

    inventory = {"all": {
        "vars": {"k3s_data_dir": DATA_DIR, **(variables or {})},
        "children": {
            "k3s_cluster": {"children": {"k3s_servers": {"hosts": hosts(servers)},
                                         "k3s_agents": {"hosts": hosts(agents or {})}}},
            "controller": {"hosts": {"localhost": {
                "ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}}},
        },
    }}
    path.write_text(json.dumps(inventory))
    return path


def private_tmp(owner: str | None = None) -> Path:
    """A fresh directory under /tmp (reachable by another user, unlike pytest's tmp_path)."""
    path = Path(tempfile.mkdtemp(prefix="seek-k3s-token-", dir="/tmp"))
    if owner:
        shutil.chown(path, owner, owner)
    return path
