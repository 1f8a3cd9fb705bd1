"""The controller never escalates: artifacts/ and the kubeconfig belong to the user running Ansible.

Issue 8, defect 2. `ansible_become: true` for `all` reached localhost, and inventory variables
override the `become: false` keyword of delegated tasks, so artifacts/ and the kubeconfig were
written by root (and the controller needed sudo). Here the cluster layer's token and kubeconfig
tasks run as a freshly created unprivileged user, with the lab inventory's own groups and
variables (inventories/lab/hosts.yml: become on the node groups), against a systemd node
container holding k3s's token and kubeconfig files (tests/k3s_nodes/token_harness.py).

How the unprivileged user reaches things, and why:
- Docker: the user is created in the `docker` group, which owns /var/run/docker.sock (mode 0660,
  as the Debian docker.io package sets it up), so the docker connection works without sudo.
- Python: the project's .venv links to an interpreter under /root (0700 here), so the user runs
  the venv's packages (PYTHONPATH) with the system's /usr/bin/python3 of the same minor version.
- sudo: the user has no sudo rights, and a `sudo` first on its PATH records any call and fails,
  so a controller task that tried to escalate fails the run and leaves a trace.
"""

from __future__ import annotations

import copy
import grp
import os
import pwd
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.k3s_nodes.token_harness import (
    DATA_DIR, NODE_TOKEN_FILE, ROOT, make_cluster, new_secret, nodes, private_tmp, read, reset_node, run_playbook,
    stat,
)

__all__ = ["nodes"]  # the module-scoped fixture, imported for pytest

SITE_PACKAGES = ROOT / ".venv" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
SYSTEM_PYTHON = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")

PLAYBOOK = """
- name: The cluster layer's controller-side tasks, as k3s_server runs them on the first server
  hosts: k3s_servers
  gather_facts: false
  tasks:
    - name: Work out and write the join token
      ansible.builtin.include_role:
        name: k3s
        tasks_from: token.yml
        public: true
      vars:
        k3s_mode: server
    - name: Run the restart handler now, before k3s_server's own handlers are loaded
      ansible.builtin.meta: flush_handlers
    - name: Export the admin kubeconfig
      ansible.builtin.include_role:
        name: k3s_server
        tasks_from: kubeconfig.yml
  handlers:
    # Stands in for the roles' restart handler only to record that a restart was asked for.
    - name: Record that a restart of k3s was asked for
      listen: Restart k3s
      ansible.builtin.copy:
        content: "restart\\n"
        dest: /root/k3s-restart-notified
        mode: "0600"
"""

# What defect 2 was: a delegated task with only the `become: false` keyword, under an inventory
# that sets become for `all`. The probe must catch it, or the tests above could not fail.
ESCALATING_PLAYBOOK = """
- name: A controller task guarded by the become keyword alone
  hosts: k3s_servers
  gather_facts: false
  tasks:
    - name: Write a file on the controller
      ansible.builtin.copy:
        content: "x\\n"
        dest: "{{ cluster_artifacts_dir }}/probe"
        mode: "0600"
      delegate_to: localhost
      become: false
"""


def _why_not() -> str | None:
    """Why an unprivileged controller user cannot be set up here, or None when it can."""
    if os.geteuid() != 0:
        return "creating the unprivileged controller user needs root (useradd, runuser)"
    for tool in ("useradd", "userdel", "runuser", "docker"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    try:
        grp.getgrnam("docker")
    except KeyError:
        return "there is no docker group to give the user access to the Docker socket"
    if not SYSTEM_PYTHON.exists() or not SITE_PACKAGES.is_dir():
        return f"{SYSTEM_PYTHON} or {SITE_PACKAGES} is missing (run make setup)"
    return None


@pytest.fixture(scope="module")
def controller_user() -> Iterator[str]:
    """A new unprivileged user in the docker group, removed afterwards."""
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    name = f"seekctl{uuid.uuid4().hex[:6]}"
    subprocess.run(["useradd", "--create-home", "--groups", "docker", "--shell", "/bin/sh", name],
                   check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", "--remove", name], capture_output=True)


@pytest.fixture
def work(controller_user: str) -> Iterator[Path]:
    """The user's working directory: inventory, playbooks, artifacts, and the sudo probe."""
    path = private_tmp(controller_user)
    probe = path / "bin" / "sudo"
    probe.parent.mkdir()
    probe.write_text(f"#!/bin/sh\necho \"sudo $*\" >> {path}/sudo-calls\nexit 1\n")
    probe.chmod(0o755)
    for item in (probe.parent, probe):
        shutil.chown(item, controller_user, controller_user)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def lab_inventory(path: Path, node: str, become_for_all: bool) -> Path:
    """inventories/lab/hosts.yml with its hosts pointed at the container, nothing else changed.

    become_for_all rebuilds the old shape (become set for `all`, none on localhost), which the
    roles must refuse.
    """
    inventory = copy.deepcopy(yaml.safe_load((ROOT / "inventories" / "lab" / "hosts.yml").read_text()))
    node_vars = {"ansible_host": node, "ansible_connection": "community.docker.docker", "ansible_user": "root"}
    cluster = inventory["all"]["children"]["k3s_cluster"]["children"]
    for group in cluster.values():
        for host in group["hosts"]:
            group["hosts"][host] = dict(node_vars)
    inventory["all"]["vars"].update({"cluster_artifacts_dir": str(path / "artifacts"), "k3s_data_dir": DATA_DIR})
    if become_for_all:
        for group in ("k3s_cluster", "nfs_servers", "backup_hosts"):
            inventory["all"]["children"][group].pop("vars", None)
        inventory["all"]["children"]["controller"]["hosts"]["localhost"].pop("ansible_become", None)
        inventory["all"]["vars"]["ansible_become"] = True
    target = path / "hosts.yml"
    target.write_text(yaml.safe_dump(inventory))
    return target


def user_env(user: str, work: Path) -> dict[str, str]:
    """A clean login-like environment for the user: the sudo probe first on PATH."""
    home = pwd.getpwnam(user).pw_dir
    return {"HOME": home, "USER": user, "LOGNAME": user, "LANG": "C.UTF-8",
            "PATH": f"{work / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "PYTHONPATH": str(SITE_PACKAGES), "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}


def run_as(user: str, work: Path, playbook: str, inventory: Path) -> tuple[subprocess.CompletedProcess, dict]:
    """ansible-playbook as the user, with the system Python running the venv's packages."""
    (work / "play.yml").write_text(playbook)
    shutil.chown(work / "play.yml", user, user)
    shutil.chown(inventory, user, user)
    return run_playbook(work / "play.yml", inventory, user=user, env=user_env(user, work), cwd=work,
                        python=str(SYSTEM_PYTHON))


def owner_and_mode(path: Path) -> tuple[str, int]:
    """Owner name and permission bits of a controller file."""
    info = path.stat()
    return pwd.getpwuid(info.st_uid).pw_name, info.st_mode & 0o777


def test_controller_files_belong_to_the_user(nodes: list[str], controller_user: str, work: Path,
                                             tmp_path: Path) -> None:
    """Token and kubeconfig on the controller: the user's, 0700/0600, and no sudo was asked for."""
    node = nodes[0]
    reset_node(node)
    secret = new_secret()
    make_cluster(node, tmp_path, secret)
    inventory = lab_inventory(work, node, become_for_all=False)

    result, _ = run_as(controller_user, work, PLAYBOOK, inventory)

    assert result.returncode == 0, result.stdout + result.stderr
    assert not (work / "sudo-calls").exists(), (work / "sudo-calls").read_text()
    assert owner_and_mode(work / "artifacts") == (controller_user, 0o700)
    assert owner_and_mode(work / "artifacts" / "k3s-token") == (controller_user, 0o600)
    assert owner_and_mode(work / "artifacts" / "kubeconfig") == (controller_user, 0o600)
    assert (work / "artifacts" / "k3s-token").read_text().strip() == secret
    assert f"server: https://{node}:6443" in (work / "artifacts" / "kubeconfig").read_text()
    root_owned = [str(p) for p in work.rglob("*") if p.stat().st_uid == 0]
    assert root_owned == [], root_owned
    # The node side did its part as root, through become on the node groups.
    assert read(node, NODE_TOKEN_FILE) == f"{secret}\n"
    assert stat(node, NODE_TOKEN_FILE).startswith("600 root ")


def test_an_inventory_that_escalates_the_controller_is_refused(nodes: list[str], controller_user: str,
                                                               work: Path, tmp_path: Path) -> None:
    """The old shape (become for `all`) stops before anything is written, naming ansible_become."""
    node = nodes[0]
    reset_node(node)
    make_cluster(node, tmp_path, new_secret())
    inventory = lab_inventory(work, node, become_for_all=True)

    result, _ = run_as(controller_user, work, PLAYBOOK, inventory)

    assert result.returncode != 0, result.stdout
    assert "ansible_become is true for the controller (localhost)" in result.stdout
    assert not (work / "sudo-calls").exists(), (work / "sudo-calls").read_text()
    assert not (work / "artifacts").exists()
    assert read(node, NODE_TOKEN_FILE) == ""


def test_the_sudo_probe_catches_an_escalating_controller_task(nodes: list[str], controller_user: str,
                                                              work: Path) -> None:
    """The old shape with a keyword-only guard asks for sudo on the controller, and is caught."""
    node = nodes[0]
    reset_node(node)
    inventory = lab_inventory(work, node, become_for_all=True)
    (work / "artifacts").mkdir()
    shutil.chown(work / "artifacts", controller_user, controller_user)

    result, _ = run_as(controller_user, work, ESCALATING_PLAYBOOK, inventory)

    assert result.returncode != 0, result.stdout
    assert "sudo" in (work / "sudo-calls").read_text()
    assert not (work / "artifacts" / "probe").exists()
