"""restore-etcd.yml picks the cluster token without needing the vault, and rotate-token.yml checks
its input and never puts a token on a command line or in the output.

The first server (and backup host) is a real systemd container from the node image reached over
the docker connection; the controller is this machine. k3s itself cannot run here, so both
playbooks are run up to the point where they would call k3s: restore-etcd.yml stops at its
confirmation (not given), rotate-token.yml fails at `k3s token rotate` (no k3s binary). The
rotation itself is proven where k3s can be downloaded (docs/cluster.md, "Rotating the token").
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.k3s_nodes.node_container import running_node
import yaml

ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = "/var/lib/rancher/k3s"
CONFIG_DIR = "/etc/rancher/k3s"
CA_HASH = "0123456789abcdef" * 4
CLUSTER_SECRET = "clustersecret" + uuid.uuid4().hex
FULL_TOKEN = f"K10{CA_HASH}::server:{CLUSTER_SECRET}"



@pytest.fixture(scope="module")
def node() -> str:
    """A running systemd container playing the first server and the backup host."""
    with running_node("seek-k3s-token") as name:
        yield name


def sh(node: str, script: str) -> subprocess.CompletedProcess:
    """Run a shell script as root in the container."""
    return subprocess.run(["docker", "exec", node, "sh", "-c", script], capture_output=True, text=True)


def set_cluster_token(node: str, present: bool) -> None:
    """Give the container k3s's token file and config directory (as a server has them), or take
    both away."""
    sh(node, f"rm -rf {DATA_DIR} {CONFIG_DIR}")
    if present:
        assert sh(node, f"mkdir -p {DATA_DIR}/server {CONFIG_DIR} && umask 077 && "
                        f"printf '%s\\n' '{FULL_TOKEN}' > {DATA_DIR}/server/token").returncode == 0


def write_inventory(tmp_path: Path, node: str, variables: dict) -> Path:
    """The lab inventory's shape: one server that is also the backup host, and this controller."""
    inventory = {
        "all": {
            "vars": {"ansible_connection": "community.docker.docker", "ansible_host": node,
                     "k3s_token": "{{ vault_k3s_token | default('') }}",
                     "cluster_artifacts_dir": str(tmp_path / "artifacts"), **variables},
            "children": {
                "k3s_cluster": {"children": {"k3s_servers": {"hosts": {"server-1": {}}},
                                             "k3s_agents": {"hosts": {}}}},
                "backup_hosts": {"hosts": {"server-1": {}}},
                "controller": {"hosts": {"localhost": {"ansible_connection": "local",
                                                       "ansible_python_interpreter": "{{ ansible_playbook_python }}"}}},
            },
        }
    }
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(inventory))
    return path


def run(playbook: str, inventory: Path, *extra: str) -> subprocess.CompletedProcess:
    """Run a real playbook of the project, verbosely, with stdin closed (no one answers prompts)."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default")
    return subprocess.run(
        ["ansible-playbook", str(ROOT / "playbooks" / playbook), "-i", str(inventory), "-vvv", *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )


def assert_no_secret(out: str, *secrets: str) -> None:
    """None of the secrets appears anywhere in the run's output (argv echoes, results, messages)."""
    for secret in secrets:
        assert secret not in out, f"a token leaked into the output:\n{out}"


@pytest.mark.parametrize(
    ("token_file", "artifacts", "vault", "override", "source"),
    [
        (True, False, "", False, "first server"),
        (True, True, "", False, "first server"),
        (False, True, "", False, "artifacts"),
        (False, False, "vaultsecret0123456789", False, "vault"),
        (True, True, "", True, "restore_etcd_token_file"),
    ],
    ids=["token-file", "token-file-over-artifacts", "artifacts", "vault", "explicit-file"],
)
def test_restore_chooses_the_token(tmp_path: Path, node: str, token_file: bool, artifacts: bool,
                                   vault: str, override: bool, source: str) -> None:
    set_cluster_token(node, token_file)
    (tmp_path / "artifacts").mkdir(mode=0o700)
    if artifacts:
        (tmp_path / "artifacts" / "k3s-token").write_text("artifactsecret0123456789")
    extra = ["-e", f"vault_k3s_token={vault}"] if vault else []
    if override:
        old = tmp_path / "old-token"
        old.write_text("oldsecret0123456789\n")
        extra += ["-e", f"restore_etcd_token_file={old}"]
    result = run("restore-etcd.yml", write_inventory(tmp_path, node, {}), *extra)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert f"Restoring with the cluster token from {source}." in out, out
    # It stopped at the confirmation: nothing was stopped or written on the server.
    assert "Not confirmed; nothing was changed" in out, out
    assert "PLAY [Restore etcd | Stop k3s on every server]" not in out, out
    assert sh(node, f"test -e {CONFIG_DIR}/cluster-token").returncode == 1
    assert_no_secret(out, CLUSTER_SECRET, "artifactsecret0123456789", "oldsecret0123456789")


def test_restore_warns_when_the_vault_holds_another_token(tmp_path: Path, node: str) -> None:
    set_cluster_token(node, True)
    result = run("restore-etcd.yml", write_inventory(tmp_path, node, {}),
                 "-e", "vault_k3s_token=someothersecret0123456789")
    out = result.stdout + result.stderr
    assert "vault_k3s_token differs from the token used (first server)" in out, out
    assert_no_secret(out, CLUSTER_SECRET, "someothersecret0123456789")


def test_restore_without_any_token_names_vault_k3s_token(tmp_path: Path, node: str) -> None:
    set_cluster_token(node, False)
    result = run("restore-etcd.yml", write_inventory(tmp_path, node, {}))
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "No cluster token" in out and "set vault_k3s_token" in out, out
    assert "PLAY [Restore etcd | Confirm]" not in out, out


@pytest.mark.parametrize("bad", ["K10" + CA_HASH + "::server:abcdefghijklmnop", "short", "abcdef.0123456789abcdef",
                                 "has,a,comma,in,it,0123456789"])
def test_rotate_refuses_a_bad_new_token(tmp_path: Path, node: str, bad: str) -> None:
    set_cluster_token(node, True)
    result = run("rotate-token.yml", write_inventory(tmp_path, node, {}), "-e", f"k3s_new_token={bad}")
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "k3s_new_token must be empty" in out, out
    assert "PLAY [Rotate token | Rotate it on the first server]" not in out, out
    assert_no_secret(out.replace(f"k3s_new_token={bad}", ""), CLUSTER_SECRET)


def test_rotate_refuses_without_a_running_cluster(tmp_path: Path, node: str) -> None:
    set_cluster_token(node, False)
    result = run("rotate-token.yml", write_inventory(tmp_path, node, {}), "-e", "rotate_token_confirm=true")
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "server/token does not exist on server-1: k3s has not run there" in out, out
    assert "PLAY [Rotate token | Rotate it on the first server]" not in out, out


def test_rotate_keeps_tokens_off_command_lines_and_logs(tmp_path: Path, node: str) -> None:
    """Run up to `k3s token rotate` (absent here): -vvv shows every command Ansible ran on the node
    and every task result; neither the cluster's token nor the requested one may be in them, and
    the 0600 file that carried the requested secret is gone afterwards."""
    set_cluster_token(node, True)
    new_secret = "requestedsecret" + uuid.uuid4().hex
    token_vars = tmp_path / "new-token.yml"
    token_vars.write_text(yaml.safe_dump({"k3s_new_token": new_secret}))
    result = run("rotate-token.yml", write_inventory(tmp_path, node, {}),
                 "-e", "rotate_token_confirm=true", "-e", f"@{token_vars}")
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "TASK [Rotate the token with k3s token rotate]" in out, out
    assert "k3s: not found" in out or "No such file" in out, out
    # The command the shell ran names files only.
    assert f"K3S_TOKEN=$(cat {DATA_DIR}/server/token)" in out, out
    assert_no_secret(out, CLUSTER_SECRET, new_secret)
    assert sh(node, f"test -e {CONFIG_DIR}/rotate-new-token").returncode == 1
    # Nothing was rotated, so nothing was written on the controller.
    assert not (tmp_path / "artifacts" / "k3s-token").exists()
