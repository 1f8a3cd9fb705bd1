"""The k3s roles start a unit without blocking and bound the wait for it, failing with its journal.

k3s cannot run here, and it is not faked: what these tests exercise is systemd's own
behaviour with a Type=notify unit, which is what makes a blocking `systemctl start k3s` hang
on a node that cannot reach its server (k3s's install.sh writes Type=notify and
TimeoutStartSec=0). In a real systemd container (the node image) the unit named k3s is a
STAND-IN: its ExecStart is a small real program that either never sends READY=1 (as k3s
does while it cannot reach its server) or sends it at once. The role's own task file
(roles/k3s/tasks/service.yml) and handlers (roles/k3s_server/handlers/main.yml) run against it
unchanged.

The restart race: the handler restarts with --no-block, which only queues a job. While systemd
holds that job back the unit keeps reporting the OLD process `active`; a unit that is PartOf=k3s
and ordered After=k3s, with a slow ExecStop, makes systemd stop it first and hold k3s's restart
for that long (systemd's job ordering: a restart waits for a stop of a unit ordered after it). A
wait that only reads ActiveState passes on its first poll there, before anything restarted; the
role's wait compares the unit's InvocationID with the one the handler recorded.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.k3s_nodes.node_container import running_node, wait_booted
import yaml

ROOT = Path(__file__).resolve().parents[2]
RESTARTED = "RUNNING HANDLER [Restart k3s | Restart the unit without waiting for it]"
MARKER = "stand-in: waiting for a k3s server that never answers"

# Stand-in programs (not k3s): one never notifies systemd, one notifies at once.
NEVER_READY = f"""#!/bin/sh
echo "{MARKER}"
exec sleep infinity
"""
READY = """#!/usr/bin/python3
import os, socket, time
address = os.environ["NOTIFY_SOCKET"]
if address.startswith("@"):
    address = "\\0" + address[1:]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.sendto(b"READY=1", address)
print("stand-in: sent READY=1", flush=True)
time.sleep(10**9)
"""
# The [Service] settings that matter here are those of the unit the role writes.
UNIT = """[Unit]
Description=STAND-IN for k3s in a test: {program}
[Service]
Type=notify
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStart=/usr/local/libexec/{program}
[Install]
WantedBy=multi-user.target
"""

PLAYBOOK = """
- name: Start the unit with the role's task file
  hosts: node
  gather_facts: false
  tasks:
    - name: Mark the unit changed, as a new binary or config.yaml would
      ansible.builtin.command: "true"
      changed_when: restart | bool
      notify: Restart k3s
    - name: Start k3s and wait until it reports ready
      ansible.builtin.include_role:
        name: k3s
        tasks_from: service.yml
      vars:
        k3s_mode: server
    - name: Read the invocation that runs when the role's wait has returned
      ansible.builtin.command: systemctl show k3s --property=InvocationID --value
      register: after_wait
      changed_when: false
    - name: Print it
      ansible.builtin.debug:
        msg: "invocation after the wait: [{{{{ after_wait.stdout }}}}]"
  handlers:
    - name: The role's handlers
      ansible.builtin.import_tasks: {handlers}
"""



def _exec(node: str, *command: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run a command in the container."""
    return subprocess.run(["docker", "exec", "-i", node, *command], input=stdin, capture_output=True, text=True)


@pytest.fixture()
def node() -> str:
    """A fresh systemd container from the node image."""
    with running_node("seek-k3s-wait") as name:
        wait_booted(name)
        yield name


def install_stand_in(node: str, program: str, text: str) -> None:
    """Put the stand-in program and a unit named k3s that runs it into the container."""
    _exec(node, "mkdir", "-p", "/usr/local/libexec")
    _exec(node, "sh", "-c", f"cat > /usr/local/libexec/{program} && chmod 0755 /usr/local/libexec/{program}", stdin=text)
    _exec(node, "sh", "-c", "cat > /etc/systemd/system/k3s.service", stdin=UNIT.format(program=program))


def run_role(tmp_path: Path, node: str, restart: bool, timeout: int = 10) -> tuple[subprocess.CompletedProcess, float]:
    """Run the role's service task file against the container; return the run and its duration."""
    inventory = {"all": {"hosts": {"node": {
        "ansible_connection": "community.docker.docker", "ansible_host": node,
        "ansible_python_interpreter": "/usr/bin/python3",
        "k3s_start_timeout": timeout, "k3s_journal_lines": 5, "restart": restart}}}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "play.yml").write_text(PLAYBOOK.format(handlers=ROOT / "roles" / "k3s_server" / "handlers" / "main.yml"))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    started = time.monotonic()
    result = subprocess.run(["ansible-playbook", "-i", str(tmp_path / "hosts.yml"), str(tmp_path / "play.yml")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    return result, time.monotonic() - started


def test_unit_that_never_notifies_fails_bounded_with_its_journal(tmp_path: Path, node: str) -> None:
    """The restart and the start return at once; the wait gives up after k3s_start_timeout."""
    install_stand_in(node, "never-ready", NEVER_READY)
    result, took = run_role(tmp_path, node, restart=True, timeout=10)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert RESTARTED in out, out
    assert "k3s did not report ready within k3s_start_timeout=10 seconds" in out, out
    # The unit was not running before the handler restarted it: no invocation to wait out.
    assert "(systemd state: activating, restarted from invocation none (the unit was not running))" in out, out
    assert "Last 5 lines of `journalctl -u k3s` on node" in out, out
    assert MARKER in out, "the journal tail is missing from the failure:\n" + out
    # A blocking start would never have returned; this run is bounded by the timeout.
    assert took < 240, f"the run took {took:.0f}s"
    # systemd is still waiting for READY=1: the unit was started, not abandoned.
    assert _exec(node, "systemctl", "show", "k3s", "--property=ActiveState", "--value").stdout.strip() == "activating"


def test_unit_that_notifies_passes_and_a_rerun_changes_nothing(tmp_path: Path, node: str) -> None:
    install_stand_in(node, "ready", READY)
    first, _ = run_role(tmp_path, node, restart=False, timeout=60)
    assert first.returncode == 0, first.stdout + first.stderr
    assert _exec(node, "systemctl", "is-active", "k3s").stdout.strip() == "active"
    assert _exec(node, "systemctl", "is-enabled", "k3s").stdout.strip() == "enabled"
    pid = _exec(node, "systemctl", "show", "k3s", "--property=MainPID", "--value").stdout.strip()

    second, _ = run_role(tmp_path, node, restart=False, timeout=60)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "changed=0" in second.stdout.split("PLAY RECAP", 1)[1], second.stdout
    # Not restarted: the same process still runs.
    assert _exec(node, "systemctl", "show", "k3s", "--property=MainPID", "--value").stdout.strip() == pid


def test_changed_unit_is_restarted_once(tmp_path: Path, node: str) -> None:
    """A change restarts the running unit through the handler, and the start after it is a no-op."""
    install_stand_in(node, "ready", READY)
    first, _ = run_role(tmp_path, node, restart=False, timeout=60)
    assert first.returncode == 0, first.stdout + first.stderr
    before = _exec(node, "systemctl", "show", "k3s", "--property=MainPID", "--value").stdout.strip()

    changed, _ = run_role(tmp_path, node, restart=True, timeout=60)
    out = changed.stdout
    assert changed.returncode == 0, out + changed.stderr
    assert RESTARTED in out, out
    after = _exec(node, "systemctl", "show", "k3s", "--property=MainPID", "--value").stdout.strip()
    assert after != before, "the handler did not restart the unit"
    # One restart only: the unit started once since (systemd counts starts in the journal).
    journal = _exec(node, "journalctl", "-u", "k3s", "--no-pager", "-o", "cat").stdout
    assert journal.count("stand-in: sent READY=1") == 2, journal
    start_task = out.split("TASK [k3s : Service | Start the unit without waiting", 1)[1].split("TASK [", 1)[0]
    assert "ok: [node]" in start_task, start_task


# A unit bound to k3s (PartOf=) and ordered after it, whose stop takes HOLD seconds: systemd
# stops it before it runs k3s's queued restart, so k3s stays `active`, the old process, that long.
HOLD = 12
HOLD_UNIT = f"""[Unit]
Description=STAND-IN: a unit bound to k3s whose stop takes {HOLD} s
PartOf=k3s.service
After=k3s.service
[Service]
ExecStart=/bin/sleep infinity
ExecStop=/bin/sleep {HOLD}
"""


def _invocation(node: str) -> str:
    return _exec(node, "systemctl", "show", "k3s", "--property=InvocationID", "--value").stdout.strip()


def test_wait_after_a_restart_waits_for_the_new_invocation(tmp_path: Path, node: str) -> None:
    """The restart is queued behind a slow stop; the wait must not pass on the old `active`."""
    install_stand_in(node, "ready", READY)
    first, _ = run_role(tmp_path, node, restart=False, timeout=60)
    assert first.returncode == 0, first.stdout + first.stderr
    _exec(node, "sh", "-c", "cat > /etc/systemd/system/seek-hold.service", stdin=HOLD_UNIT)
    started = _exec(node, "sh", "-c", "systemctl daemon-reload && systemctl start seek-hold")
    assert started.returncode == 0, started.stderr
    before = _invocation(node)
    pid = _exec(node, "systemctl", "show", "k3s", "--property=MainPID", "--value").stdout.strip()
    assert before and pid != "0"

    changed, took = run_role(tmp_path, node, restart=True, timeout=60)
    out = changed.stdout + changed.stderr
    assert changed.returncode == 0, out
    assert RESTARTED in out, out
    # The task right after the role's wait saw a new invocation, not the one the handler restarted.
    seen = out.split("invocation after the wait: [", 1)[1].split("]", 1)[0]
    assert seen, out
    assert seen != before, (f"the wait returned while the old invocation {before} still ran "
                            f"(the restart was held back {HOLD} s)")
    # systemd did hold the restart back: the run lasted through the held stop, and the new process
    # is another one (its journal says READY=1 twice).
    assert took >= HOLD, f"the run took {took:.0f}s, less than the {HOLD} s the restart was held"
    assert _exec(node, "systemctl", "show", "k3s", "--property=MainPID", "--value").stdout.strip() != pid
    assert _exec(node, "systemctl", "is-active", "k3s").stdout.strip() == "active"


def test_wait_after_restarting_a_stopped_unit(tmp_path: Path, node: str) -> None:
    """A unit that was not running has no invocation to compare: any new one that is ready will do."""
    install_stand_in(node, "ready", READY)
    _exec(node, "systemctl", "daemon-reload")
    assert _invocation(node) == ""
    result, _ = run_role(tmp_path, node, restart=True, timeout=60)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert RESTARTED in out, out
    seen = out.split("invocation after the wait: [", 1)[1].split("]", 1)[0]
    assert seen and seen == _invocation(node), out
    assert _exec(node, "systemctl", "is-active", "k3s").stdout.strip() == "active"
