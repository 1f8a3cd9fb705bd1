"""The join token: adopted from the running cluster, refused when it differs, full form for joiners.

Issue 8, defects 3 and 4. The nodes are real systemd containers from the node image holding the
files a k3s server leaves behind (tests/k3s_nodes/token_harness.py says which, and where k3s
writes them); the roles' real token tasks and the real pre-flight run against them through the
docker connection. Each test starts from a reset node and checks the node's files, the
controller's artifacts and whether a restart of k3s was asked for.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.k3s_nodes.token_harness import (
    AGENT_TOKEN, CLUSTER_TOKEN, NODE_TOKEN_FILE, RESTART_MARKER, ROOT, TOKEN_PLAYBOOK, changed_hosts, make_cluster,
    new_secret, nodes, private_tmp, put, read, reset_node, run_playbook, sh, stat, task_results, write_inventory,
)

__all__ = ["nodes"]  # the module-scoped fixture, imported for pytest


@pytest.fixture
def work() -> Iterator[Path]:
    """A directory for the inventory, the playbook and the controller's artifacts."""
    path = private_tmp()
    (path / "token.yml").write_text(TOKEN_PLAYBOOK)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def first(nodes: list[str]) -> str:
    """The first server's container, reset."""
    reset_node(nodes[0])
    return nodes[0]


@pytest.fixture
def joiner(nodes: list[str]) -> str:
    """A second container for a joining server or an agent, reset."""
    reset_node(nodes[1])
    return nodes[1]


def artifacts(work: Path) -> dict:
    """Inventory variables that put the controller's artifacts in the test's directory."""
    return {"cluster_artifacts_dir": str(work / "artifacts")}


def output(result) -> str:
    """Everything the run printed."""
    return result.stdout + result.stderr


def test_fresh_clone_adopts_the_running_clusters_token(work: Path, first: str) -> None:
    """(a) No artifacts/, no vault token, cluster running: its token is adopted, nothing restarts."""
    secret = new_secret()
    cluster = make_cluster(first, work, secret)
    # What an earlier run (from another clone) wrote for the first server.
    put(first, NODE_TOKEN_FILE, f"{secret}\n".encode())
    before = {path: (read(first, path), stat(first, path)) for path in (CLUSTER_TOKEN, NODE_TOKEN_FILE)}
    inventory = write_inventory(work / "hosts.yml", {"server-1": first}, variables=artifacts(work))

    result, report = run_playbook(work / "token.yml", inventory)

    assert result.returncode == 0, output(result)
    write = task_results(report, "Token | Write the token file")["server-1"]
    assert write["changed"] is False, write
    assert read(first, RESTART_MARKER) == "", "a restart of k3s was asked for"
    assert {path: (read(first, path), stat(first, path)) for path in before} == before
    kept = work / "artifacts" / "k3s-token"
    assert kept.read_text().strip() == secret
    assert kept.stat().st_mode & 0o777 == 0o600
    assert secret not in output(result) and cluster["token"] not in output(result)

    again, report = run_playbook(work / "token.yml", inventory)
    assert again.returncode == 0, output(again)
    assert changed_hosts(report) == {"server-1": 0}, output(again)


@pytest.mark.parametrize("form", ["short", "full"])
def test_a_different_vault_token_is_refused_in_preflight(work: Path, first: str, form: str) -> None:
    """(b) vault_k3s_token differs from the cluster's: pre-flight fails naming it; nothing changes."""
    secret, other = new_secret(), new_secret()
    cluster = make_cluster(first, work, secret)
    wrong = other if form == "short" else cluster["token"].replace(secret, other)
    before = {path: (read(first, path), stat(first, path)) for path in (CLUSTER_TOKEN, AGENT_TOKEN)}
    inventory = write_inventory(work / "hosts.yml", {"server-1": first},
                                variables={**artifacts(work), "k3s_token": wrong, "node_prereq_min_memory_mb": 256})

    result, report = run_playbook(ROOT / "playbooks" / "preflight.yml", inventory)

    assert result.returncode != 0, output(result)
    failed = task_results(report, "Cluster token | Check the supplied token is the running cluster's")["server-1"]
    assert failed.get("failed") is True, output(result)
    assert "k3s_token (vault_k3s_token) is not the token of the running cluster" in failed["msg"]
    assert "Set vault_k3s_token to the cluster's token" in failed["msg"]
    assert secret not in output(result) and other not in output(result)
    assert {path: (read(first, path), stat(first, path)) for path in before} == before
    assert read(first, NODE_TOKEN_FILE) == ""
    assert not (work / "artifacts").exists()

    # The token tasks refuse it too, before they write anything (a run without pre-flight).
    result, _ = run_playbook(work / "token.yml", inventory)
    assert result.returncode != 0 and "is not the token of the running cluster" in output(result)
    assert read(first, NODE_TOKEN_FILE) == "" and not (work / "artifacts").exists()
    assert read(first, RESTART_MARKER) == ""


@pytest.mark.parametrize("form", ["short", "full"])
def test_the_clusters_own_token_is_accepted(work: Path, first: str, form: str) -> None:
    """(c) vault_k3s_token equal to the cluster's (the secret alone, or the whole K10 token) passes."""
    secret = new_secret()
    cluster = make_cluster(first, work, secret)
    supplied = secret if form == "short" else cluster["token"]
    inventory = write_inventory(work / "hosts.yml", {"server-1": first},
                                variables={**artifacts(work), "k3s_token": supplied})

    result, _ = run_playbook(work / "token.yml", inventory)

    assert result.returncode == 0, output(result)
    # The first server is given the secret alone, as k3s documents for the server that created
    # the cluster; the vault keeps the token, so nothing is written to artifacts/.
    assert read(first, NODE_TOKEN_FILE) == f"{secret}\n"
    assert not (work / "artifacts" / "k3s-token").exists()
    assert read(first, CLUSTER_TOKEN) == cluster["token"] + "\n"


def test_a_stale_generated_token_is_refused(work: Path, first: str) -> None:
    """artifacts/k3s-token from another cluster: refused, naming the file, nothing overwritten."""
    make_cluster(first, work, new_secret())
    stale = new_secret()
    (work / "artifacts").mkdir(mode=0o700)
    (work / "artifacts" / "k3s-token").write_text(stale)
    inventory = write_inventory(work / "hosts.yml", {"server-1": first}, variables=artifacts(work))

    result, report = run_playbook(work / "token.yml", inventory)

    assert result.returncode != 0, output(result)
    failed = task_results(report, "Cluster token | Check the supplied token is the running cluster's")["server-1"]
    assert f"{work}/artifacts/k3s-token" in failed["msg"] and "vault_k3s_token" in failed["msg"]
    assert (work / "artifacts" / "k3s-token").read_text() == stale
    assert read(first, NODE_TOKEN_FILE) == ""


def test_a_new_cluster_gets_one_token_generated_once(work: Path, first: str) -> None:
    """(d) No cluster yet: one token is generated into artifacts/ and reused by the next run."""
    inventory = write_inventory(work / "hosts.yml", {"server-1": first}, variables=artifacts(work))

    result, _ = run_playbook(work / "token.yml", inventory)

    assert result.returncode == 0, output(result)
    kept = work / "artifacts" / "k3s-token"
    generated = kept.read_text()
    assert re.fullmatch(r"[a-z0-9]{64}", generated), "not a 64-character lower-case secret"
    assert kept.stat().st_mode & 0o777 == 0o600
    assert (work / "artifacts").stat().st_mode & 0o777 == 0o700
    assert read(first, NODE_TOKEN_FILE) == f"{generated}\n"
    assert stat(first, NODE_TOKEN_FILE).startswith("600 root ")
    assert read(first, RESTART_MARKER) == "restart\n", "writing a new token must restart k3s"
    assert generated not in output(result)

    sh(first, f"rm -f {RESTART_MARKER}")
    again, report = run_playbook(work / "token.yml", inventory)
    assert again.returncode == 0, output(again)
    assert changed_hosts(report) == {"server-1": 0}, output(again)
    assert kept.read_text() == generated
    assert read(first, RESTART_MARKER) == ""


def test_joining_servers_get_the_full_token(work: Path, first: str, joiner: str) -> None:
    """Defect 4: a joining server's token file holds K10<CA hash>::server:<secret> from the first server."""
    secret = new_secret()
    cluster = make_cluster(first, work, secret)
    inventory = write_inventory(work / "hosts.yml", {"server-1": first, "server-2": joiner},
                                variables={**artifacts(work), "k3s_token": secret})

    result, _ = run_playbook(work / "token.yml", inventory, "--limit", "server-2")

    assert result.returncode == 0, output(result)
    assert read(joiner, NODE_TOKEN_FILE) == cluster["token"] + "\n"
    assert stat(joiner, NODE_TOKEN_FILE).startswith("600 root ")
    assert read(first, NODE_TOKEN_FILE) == "", "--limit server-2 changed the first server"
    assert cluster["token"] not in output(result) and secret not in output(result)


@pytest.mark.parametrize("agent_token", [False, True])
def test_agents_get_the_full_token(work: Path, first: str, joiner: str, agent_token: bool) -> None:
    """Defect 4: an agent joins with the full server token, or the full agent token when one is set."""
    secret, agent_secret = new_secret(), new_secret()
    cluster = make_cluster(first, work, secret, agent_secret if agent_token else "")
    variables = {**artifacts(work), **({"k3s_agent_token": agent_secret} if agent_token else {})}
    inventory = write_inventory(work / "hosts.yml", {"server-1": first}, {"agent-1": joiner}, variables)

    result, _ = run_playbook(work / "token.yml", inventory, "--limit", "agent-1")

    assert result.returncode == 0, output(result)
    expected = cluster["agent"] if agent_token else cluster["token"]
    assert expected.startswith("K10") and ("::node:" if agent_token else "::server:") in expected
    assert read(joiner, NODE_TOKEN_FILE) == expected + "\n"
    assert secret not in output(result) and agent_secret not in output(result)


def test_a_joiner_without_a_running_first_server_is_refused(work: Path, first: str, joiner: str) -> None:
    """No token on the first server: a joining server cannot pin the CA, so nothing is written."""
    inventory = write_inventory(work / "hosts.yml", {"server-1": first, "server-2": joiner},
                                variables={**artifacts(work), "k3s_token": new_secret()})

    result, _ = run_playbook(work / "token.yml", inventory, "--limit", "server-2")

    assert result.returncode != 0
    assert f"{CLUSTER_TOKEN} does not exist there" in output(result)
    assert read(joiner, NODE_TOKEN_FILE) == ""
