"""Render and run the backup playbooks/roles from the tests: ansible-playbook in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
ROLE = REPO / "roles" / "backups"
FILES = ROLE / "files"

INVENTORY = textwrap.dedent("""\
    all:
      children:
        k3s_cluster:
          children:
            k3s_servers:
              hosts:
                node-a: {}
                node-b: {}
            k3s_agents:
              hosts: {}
        nfs_servers:
          hosts: {}
        backup_hosts:
          hosts:
            node-a: {}
        controller:
          hosts:
            localhost:
              ansible_connection: local
              ansible_python_interpreter: "{{ ansible_playbook_python }}"
    """)

# The role's own entry point: with k8s_render_dir set, k8s_objects writes every object it would
# apply to <k8s_render_dir>/backups/ instead of sending it to the API.
RENDER_PLAYBOOK = textwrap.dedent("""\
    - name: Render the backup objects
      hosts: controller
      gather_facts: false
      roles:
        - backups
    """)


def env() -> dict[str, str]:
    """Environment for ansible-playbook: this repository's roles and config, no colour."""
    out = dict(os.environ)
    out.update({
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_HOST_KEY_CHECKING": "false",
        "PATH": f"{VENV_BIN}:{out.get('PATH', '')}",
    })
    return out


def write_inventory(tmp: Path, extra_vars: dict[str, Any]) -> tuple[Path, Path]:
    """Write the test inventory and an extra-vars file; return both paths."""
    inventory = tmp / "hosts.yml"
    inventory.write_text(INVENTORY)
    evars = tmp / "vars.json"
    evars.write_text(json.dumps(extra_vars))
    return inventory, evars


def run_playbook(playbook: Path, tmp: Path, extra_vars: dict[str, Any],
                 timeout: int = 600) -> subprocess.CompletedProcess:
    """ansible-playbook ``playbook`` against the test inventory with ``extra_vars``."""
    inventory, evars = write_inventory(tmp, extra_vars)
    return subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), "-e", f"@{evars}", str(playbook)],
        cwd=REPO, env=env(), capture_output=True, text=True, timeout=timeout, check=False)


def rendered_dir(tmp: Path) -> Path:
    """The directory ``render(tmp, ...)`` writes the backup objects to."""
    return tmp / "rendered" / "backups"


def render(tmp: Path, extra_vars: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Render every backup object for ``extra_vars``; return {file name: object}."""
    out_dir = rendered_dir(tmp)
    playbook = tmp / "render.yml"
    playbook.write_text(RENDER_PLAYBOOK)
    result = run_playbook(playbook, tmp, {"cluster_kubeconfig": str(tmp / "kubeconfig"),
                                          "k8s_render_dir": str(out_dir.parent), **extra_vars})
    assert result.returncode == 0, f"render failed:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}"
    objects = {}
    for path in sorted(out_dir.glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert len(docs) == 1, f"{path.name}: expected one object, got {len(docs)}"
        objects[path.name] = docs[0]
    return objects


def recap(output: str) -> dict[str, int]:
    """The localhost line of the PLAY RECAP as a dict."""
    for line in output.splitlines():
        if line.startswith("localhost") and "ok=" in line:
            return {k: int(v) for k, v in (p.split("=") for p in line.split(":", 1)[1].split())}
    raise AssertionError(f"no PLAY RECAP for localhost in:\n{output[-3000:]}")


def seek_deployment(name: str, replicas: int, namespace: str) -> dict:
    """A stand-in for SEEK's Deployment (restricted-compliant pod, never scheduled here)."""
    labels = {"app.kubernetes.io/name": name}
    container = {"name": "web", "image": "busybox:1.37.0-musl", "command": ["sleep", "infinity"],
                 "securityContext": {"runAsNonRoot": True, "runAsUser": 33, "allowPrivilegeEscalation": False,
                                     "capabilities": {"drop": ["ALL"]},
                                     "seccompProfile": {"type": "RuntimeDefault"}}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}}}}
