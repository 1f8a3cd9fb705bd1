"""Run platform.yml and seek.yml for a named configuration, rendering or applying.

One source of truth: the roles' own templates, produced by one mechanism (roles/k8s_objects).
In render mode (``k8s_render_dir``) it writes every object to ``<dir>/<component>/<file>.yaml``
instead of sending it to the API, and reads nothing from it; the API tests run the very same
playbooks, through the same code path, against the control plane. Each configuration gets its own inventory built in a
temporary directory from the lab's user-facing group_vars (platform.yml, seek.yml) plus the
cluster-wide variables the configuration sets.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
LAB_GROUP_VARS = REPO_ROOT / "inventories" / "lab" / "group_vars" / "all"
PLAYBOOKS = [REPO_ROOT / "playbooks" / "platform.yml", REPO_ROOT / "playbooks" / "seek.yml"]


@dataclass(frozen=True)
class Config:
    """A deployment configuration: cluster variables, extra variables and the inventory size."""

    name: str
    cluster: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    servers: int = 1


CONFIGS: dict[str, Config] = {
    "single-localpath-nginx-notls": Config(
        name="single-localpath-nginx-notls",
        cluster={"ingress_controller": "ingress-nginx", "storage_backend": "local-path"},
        extra={"seek_tls": "none", "seek_ingress_host": "seek.example.org"},
    ),
    "ha-nfs-certmanager": Config(
        name="ha-nfs-certmanager",
        cluster={"ingress_controller": "ingress-nginx", "storage_backend": "nfs",
                 "nfs_server_host": "192.0.2.31"},
        extra={"seek_tls": "cert-manager", "tls_acme_email": "admin@example.org",
               "seek_ingress_host": "seek.example.org", "seek_web_replicas": 3,
               "ingress_nginx_replicas": 2},
        servers=3,
    ),
    "traefik-secret-tls": Config(
        name="traefik-secret-tls",
        cluster={"ingress_controller": "traefik", "storage_backend": "local-path"},
        extra={"seek_tls": "secret", "seek_tls_secret_name": "seek-example-tls",
               "seek_ingress_host": "seek.example.org"},
    ),
}


def make_inventory(directory: Path, config: Config, kubeconfig: Path | None = None) -> Path:
    """Write an inventory for ``config`` under ``directory`` and return its path."""
    inventory = directory / "inventory"
    group_vars = inventory / "group_vars" / "all"
    group_vars.mkdir(parents=True, exist_ok=True)
    servers = {f"seek-server-{i}": {"ansible_host": f"192.0.2.{10 + i}"}
               for i in range(1, config.servers + 1)}
    hosts = {"all": {"children": {
        "k3s_cluster": {"children": {"k3s_servers": {"hosts": servers},
                                     "k3s_agents": {"hosts": {}}}},
        "nfs_servers": {"hosts": {}},
        "controller": {"hosts": {"localhost": {
            "ansible_connection": "local",
            "ansible_python_interpreter": "{{ ansible_playbook_python }}"}}},
    }}}
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    for name in ("platform.yml", "seek.yml"):
        shutil.copy(LAB_GROUP_VARS / name, group_vars / name)
    cluster = {
        "cluster_artifacts_dir": "{{ inventory_dir }}/artifacts",
        "cluster_kubeconfig": str(kubeconfig) if kubeconfig else "{{ cluster_artifacts_dir }}/kubeconfig",
        "nfs_server_host": "",
        "nfs_export_path": "/srv/nfs/seek",
        **config.cluster,
    }
    (group_vars / "cluster.yml").write_text("---\n" + yaml.safe_dump(cluster, sort_keys=False))
    return inventory


def extra_vars_args(extra: dict[str, Any]) -> list[str]:
    """Return ``-e`` arguments carrying ``extra`` as one JSON document (types preserved)."""
    import json

    return ["-e", json.dumps(extra)] if extra else []


def run_playbooks(inventory: Path, extra: dict[str, Any], *args: str,
                  env: dict[str, str] | None = None, playbooks: list[Path] | None = None,
                  timeout: int = 1200) -> subprocess.CompletedProcess:
    """Run the platform and SEEK playbooks (one ansible-playbook call) and return the result."""
    binary = Path(sys.executable).with_name("ansible-playbook")
    run_env = dict(env if env is not None else os.environ)
    run_env.setdefault("ANSIBLE_CONFIG", str(REPO_ROOT / "ansible.cfg"))
    run_env["ANSIBLE_NOCOLOR"] = "1"
    run_env["ANSIBLE_FORCE_COLOR"] = "0"
    command = [str(binary), "-i", str(inventory),
               *[str(p) for p in (playbooks or PLAYBOOKS)],
               *extra_vars_args(extra), *args]
    return subprocess.run(command, cwd=REPO_ROOT, env=run_env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def render(directory: Path, config: Config) -> Path:
    """Render every manifest of ``config`` into ``directory/out`` and return that path."""
    inventory = make_inventory(directory, config)
    out = directory / "out"
    result = run_playbooks(inventory, {**config.extra, "k8s_render_dir": str(out)})
    if result.returncode != 0:
        raise AssertionError(f"rendering {config.name} failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}")
    return out


def load_manifests(out: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Return every rendered manifest as (file, object), sorted by file name."""
    manifests = []
    for path in sorted(out.rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                manifests.append((path, document))
    return manifests
