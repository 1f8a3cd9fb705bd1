"""k3s_server and k3s_agent run through their main entry after pre-flight validated them (site.yml's order).

Regression of 148153f: pre-flight (playbooks/preflight.yml) includes each role's validate.yml and sets
<role>_validated; the roles' main entries then skip validate.yml, which was the only place that made
the k3s role's defaults and vars (k3s_config_dir, __k3s_token_file, ...) visible to them, so the
cluster layer stopped at "Configure | Write config.yaml" with "'k3s_config_dir' is undefined".
Including the roles' validate.yml alone (as test_k3s_files.py does) or their main entry alone (no
pre-flight) cannot see this: it needs pre-flight in one play and the role in a later one.

So these tests run the real playbooks in that order: a playbook that imports playbooks/preflight.yml
and then playbooks/cluster.yml, which is site.yml without its node layer (nodes.yml: node_prereq
loads kernel modules, sets sysctls and the firewall, which an unprivileged container cannot; it
does not load the k3s settings, so the order that broke is unchanged). The nodes are systemd
containers from the node image (tests/k3s_nodes/node_container.py, SYS_ADMIN only) reached over
the docker connection.

What is not real, and how each run ends:
- The k3s binary comes from an airgap bundle (k3s_airgap_dir) holding a STAND-IN named k3s and a
  matching sha256sum-<arch>.txt: the role checks and installs it like the real one. The stand-in
  answers `--version` with k3s_version (the version guard reads it) and otherwise logs a marker
  and never sends READY=1, as k3s cannot run in this container.
- So every run is expected to FAIL, and only at the service start: "Service | Wait until systemd
  reports the unit active" gives up after k3s_start_timeout=5 and fails with the unit's journal,
  which must hold the stand-in's marker. Everything before it (install, join token, config.yaml,
  registries.yaml, the unit) ran for real and is checked on the node afterwards.
- A failed server stops cluster.yml (any_errors_fatal), so the agent gets its own run with
  `--limit` on the agent (adding a node, as docs/cluster.md describes) against a first server
  holding the files a running k3s server leaves (tests/k3s_nodes/token_harness.py make_cluster):
  the agent's token step reads the cluster's full token from there.
"""

from __future__ import annotations

import hashlib
import platform
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.k3s_nodes.node_container import docker_ready, remove_node, start_node, wait_booted
from tests.k3s_nodes.token_harness import (
    NODE_TOKEN_FILE, ROOT, ansible_env, make_cluster, new_secret, private_tmp, read, run_playbook, sh,
    write_inventory,
)

VERSION = "v1.34.2+k3s1"
MARKER = "stand-in k3s: not k3s, never ready"
# k3s prints "k3s version <tag> (<commit>)" for --version; the version guard parses it.
STAND_IN = f"""#!/bin/sh
# STAND-IN for the k3s binary in a test (tests/k3s_nodes/test_roles_after_preflight.py): not k3s.
if [ "$1" = "--version" ]; then
  echo "k3s version {VERSION} (00000000)"
  exit 0
fi
echo "{MARKER}: $*"
exec sleep infinity
"""
# The release file names the role expects for this machine (roles/k3s/vars/main.yml __k3s_arch_map).
ARCH, BINARY = {"x86_64": ("amd64", "k3s"), "aarch64": ("arm64", "k3s-arm64")}.get(platform.machine(), ("", ""))
REGISTRIES = {"mirrors": {"registry.example.org": {"endpoint": ["https://mirror.example.org:5000"]}}}
SECRET = new_secret()
# Pipelining (one `docker exec` per module instead of several) only makes the runs faster.
ENV = ansible_env({"ANSIBLE_PIPELINING": "True"})

PLAYBOOK = f"""
# site.yml's order without the node layer: pre-flight, then the cluster layer.
- name: Check every setting before anything changes
  ansible.builtin.import_playbook: {ROOT}/playbooks/preflight.yml

- name: Form the k3s cluster
  ansible.builtin.import_playbook: {ROOT}/playbooks/cluster.yml
"""


@pytest.fixture(scope="module")
def work() -> Iterator[Path]:
    """The airgap bundle with the stand-in binary, the wrapper playbook, the controller's artifacts."""
    if not ARCH:
        pytest.skip(f"no k3s build name known here for {platform.machine()}")
    path = private_tmp()
    bundle = path / "airgap"
    bundle.mkdir()
    (bundle / BINARY).write_text(STAND_IN)
    (bundle / BINARY).chmod(0o755)
    digest = hashlib.sha256(STAND_IN.encode()).hexdigest()
    (bundle / f"sha256sum-{ARCH}.txt").write_text(f"{digest}  {BINARY}\n")
    (path / "site-order.yml").write_text(PLAYBOOK)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(work: Path) -> Iterator[dict[str, str]]:
    """Two fresh node containers, {'server-1': name, 'agent-1': name}, and the inventory naming them."""
    reason = docker_ready()
    if reason:
        pytest.skip(reason)
    names: dict[str, str] = {}
    try:
        for host in ("server-1", "agent-1"):
            names[host] = start_node("seek-preflight-order")
        for name in names.values():
            wait_booted(name)
        write_inventory(work / "hosts.yml", {"server-1": names["server-1"]}, {"agent-1": names["agent-1"]}, {
            "k3s_version": VERSION, "k3s_airgap_dir": str(work / "airgap"), "k3s_token": SECRET,
            "k3s_registries": REGISTRIES, "k3s_start_timeout": 5, "k3s_journal_lines": 5,
            # No kubectl/crictl/ctr links (k3s_links): not what this test is about; leaving them out saves time.
            "k3s_links": [], "node_prereq_min_memory_mb": 256, "cluster_artifacts_dir": str(work / "artifacts"),
            # The controller's pre-flight play checks the platform settings too; these two have no
            # default (inventories/lab/group_vars/all sets them so).
            "seek_ingress_host": "seek.example.org", "cluster_kubeconfig": str(work / "artifacts" / "kubeconfig"),
        })
        yield names
    finally:
        for name in names.values():
            remove_node(name)


def results(report: dict, play_prefix: str, task: str) -> dict[str, dict]:
    """Per-host results of the task named `task` (in any role) in the plays whose name starts with
    `play_prefix`."""
    found: dict[str, dict] = {}
    for play in report.get("plays", []):
        if play["play"]["name"].startswith(play_prefix):
            for entry in play.get("tasks", []):
                # Tasks of an included role are named "<role> : <task>".
                if entry["task"]["name"].split(" : ", 1)[-1] == task:
                    found.update(entry["hosts"])
    return found


def failures(report: dict) -> str:
    """Every failed task of the run: play, task, host and message, for assertion messages."""
    lines = [f"{play['play']['name']} / {entry['task']['name']} / {host}: {str(outcome.get('msg'))[:600]}"
             for play in report.get("plays", []) for entry in play.get("tasks", [])
             for host, outcome in entry["hosts"].items() if outcome.get("failed")]
    return "failed tasks:\n" + "\n".join(lines or ["(none)"])


def assert_stopped_only_at_the_service_start(result, report: dict, host: str, play: str, role: str,
                                             service: str) -> None:
    """Pre-flight validated the host, the role's main entry skipped validate.yml, every step up to the
    service ran, and the run failed at the bounded wait for the stand-in, with its journal."""
    out = failures(report) if report else result.stdout[-3000:] + result.stderr[-3000:]
    validated = results(report, "Pre-flight | Check the nodes",
                        "Validate | Remember this role's settings are checked in this run")
    assert host in validated and not validated[host].get("failed"), out
    # The path that broke: the main entry skips validate.yml because pre-flight ran it.
    skipped = results(report, play, f"Validate the {role} settings")
    assert skipped.get(host, {}).get("skipped"), f"{play}: validate.yml was not skipped on {host}\n{out}"
    for task in ("Configure | Write config.yaml", "Token | Write the token file",
                 "Registries | Write registries.yaml"):
        done = results(report, play, task)
        assert host in done, f"{task!r} never ran on {host}:\n{out}"
        assert not done[host].get("failed"), f"{task!r} failed on {host}: {done[host].get('msg')}"
    waited = results(report, play, "Service | Wait until systemd reports the unit active (k3s sent READY=1)")
    assert waited.get(host, {}).get("failed"), f"the run did not get to the service start on {host}:\n{out}"
    failure = results(report, play, "Journal | Fail with the journal tail")[host]["msg"]
    assert f"{service} did not report ready within k3s_start_timeout=5 seconds" in failure, failure
    assert MARKER in failure, f"not the stand-in's journal: {failure}"
    assert result.returncode != 0 and report["stats"][host]["failures"] == 1, report["stats"]


def assert_k3s_files(node: str, service: str, config: dict, token: str) -> None:
    """What the role wrote on the node before the service start: binary, unit, config.yaml, token
    file and registries.yaml, in the k3s role's default configuration directory."""
    assert read(node, "/usr/local/bin/k3s") == STAND_IN
    assert "ExecStart=/usr/local/bin/k3s " in read(node, f"/etc/systemd/system/{service}.service")
    modes = sh(node, "stat -c '%a %U %n' /etc/rancher/k3s/config.yaml /etc/rancher/k3s/cluster-token "
                     "/etc/rancher/k3s/registries.yaml").stdout.split("\n")
    assert all(line.startswith("600 root ") for line in modes if line), modes
    written = yaml.safe_load(read(node, "/etc/rancher/k3s/config.yaml"))
    assert {key: written.get(key) for key in config} == config, written
    assert read(node, NODE_TOKEN_FILE).strip() == token
    registries = yaml.safe_load(read(node, "/etc/rancher/k3s/registries.yaml"))
    assert registries["mirrors"] == REGISTRIES["mirrors"], registries


def test_server_main_entry_after_preflight(work: Path, cluster: dict[str, str]) -> None:
    """A first run of the whole inventory: pre-flight validates both nodes, then the server play runs
    k3s_server's main entry as far as the service start."""
    result, report = run_playbook(work / "site-order.yml", work / "hosts.yml", env=ENV)
    assert_stopped_only_at_the_service_start(result, report, "server-1", "Cluster | Install the k3s servers",
                                             "server", "k3s")
    # The agent was validated too, and the agents' play never started after the failed server.
    assert "agent-1" in results(report, "Pre-flight | Check the nodes", "Validate | Check a join token is available")
    assert not [p for p in report["plays"] if p["play"]["name"] == "Cluster | Join the k3s agents"]
    assert_k3s_files(cluster["server-1"], "k3s",
                     {"cluster-init": True, "token-file": NODE_TOKEN_FILE}, SECRET)


def test_agent_main_entry_after_preflight(work: Path, cluster: dict[str, str]) -> None:
    """Adding the agent to a running cluster (--limit agent-1): pre-flight validates it, then the
    agents' play runs k3s_agent's main entry as far as the service start."""
    running = make_cluster(cluster["server-1"], work, SECRET)
    result, report = run_playbook(work / "site-order.yml", work / "hosts.yml", "--limit", "agent-1", env=ENV)
    assert_stopped_only_at_the_service_start(result, report, "agent-1", "Cluster | Join the k3s agents",
                                             "agent", "k3s-agent")
    # The agent joins with the cluster's full token, so it checks the CA before sending the secret.
    assert_k3s_files(cluster["agent-1"], "k3s-agent",
                     {"server": f"https://{cluster['server-1']}:6443", "token-file": NODE_TOKEN_FILE},
                     running["token"])
