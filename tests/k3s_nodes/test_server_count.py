"""Pre-flight's server count check (roles/k3s_server/tasks/validate.yml): etcd keeps its quorum
with 2 of 2 and 4 of 4 members, so an even number of servers is warned about, not refused (a
replacement passes through one: add a server, then remove the old one); only an empty
k3s_servers group is refused.

The check runs as pre-flight runs it (include_role k3s_server, tasks_from validate.yml) on
inventory hosts reached locally: it needs no node, only the inventory and gathered facts.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WARNING = "Warning: the k3s_servers group has"


def run_validate(tmp_path: Path, servers: int) -> subprocess.CompletedProcess:
    """Run k3s_server's validate.yml for an inventory of `servers` servers (and one agent)."""
    def hosts(prefix: str, count: int, first: int) -> dict:
        return {f"{prefix}-{i}": {"ansible_host": f"192.0.2.{first + i}", "k3s_node_name": f"{prefix}-{i}"}
                for i in range(1, count + 1)}

    inventory = {"all": {
        "vars": {"ansible_connection": "local", "ansible_become": False,
                 "ansible_python_interpreter": "{{ ansible_playbook_python }}"},
        "children": {"k3s_cluster": {"children": {"k3s_servers": {"hosts": hosts("server", servers, 10)},
                                                  "k3s_agents": {"hosts": hosts("agent", 1, 20)}}}},
    }}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    # With servers, on them (as preflight.yml); without, on the agent (the role's check alone).
    (tmp_path / "validate.yml").write_text(yaml.safe_dump([{
        "name": "Check the server settings", "hosts": "k3s_servers" if servers else "k3s_agents",
        "gather_facts": True, "gather_subset": ["min"],
        "tasks": [{"name": "Validate", "ansible.builtin.include_role": {
            "name": "k3s_server", "tasks_from": "validate.yml"}}],
    }]))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default")
    return subprocess.run(["ansible-playbook", "-i", str(tmp_path / "hosts.yml"), str(tmp_path / "validate.yml")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("servers", [2, 4])
def test_even_number_of_servers_is_warned_about(tmp_path: Path, servers: int) -> None:
    result = run_validate(tmp_path, servers)
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 0, out
    assert f"{WARNING} {servers} hosts. Embedded etcd keeps its quorum" in out, out
    assert "Fine while replacing a server" in out, out
    assert ("(with 2 the cluster stops when either fails)" in out) == (servers == 2), out
    # Once per run, not per server.
    assert out.count(WARNING) == 1, out


@pytest.mark.parametrize("servers", [1, 3])
def test_odd_number_of_servers_passes_quietly(tmp_path: Path, servers: int) -> None:
    result = run_validate(tmp_path, servers)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert WARNING not in out, out


def test_no_server_is_refused(tmp_path: Path) -> None:
    result = run_validate(tmp_path, 0)
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, out
    assert "The k3s_servers group is empty: a k3s cluster needs at least one server" in out, out
    assert "Nothing was changed" in out, out
