"""Systemd node containers from the local node image, shared by the cluster tests.

The image is built by tests/harness/build-node-image.sh (debootstrap, `docker import`). A fully
privileged container does not start on every Docker: the containers get only the capabilities
a test needs (SYS_ADMIN for systemd's mounts, NET_ADMIN for interfaces and iptables)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

IMAGE = os.environ.get("NODE_IMAGE", "seek-k3s-node:bookworm")


def docker_ready() -> str | None:
    """Why the Docker-backed tests cannot run here, or None when they can."""
    if shutil.which("docker") is None:
        return "docker is not installed (tests/harness/ensure-docker.sh installs it)"
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        return "the Docker engine does not answer (tests/harness/ensure-docker.sh starts it)"
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True).returncode != 0:
        return f"the node image {IMAGE} is missing (tests/harness/build-node-image.sh builds it)"
    return None


def start_node(prefix: str, *capabilities: str) -> str:
    """Start a systemd container named <prefix>-<random>; SYS_ADMIN plus the capabilities given."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    caps = [arg for cap in ("SYS_ADMIN", *capabilities) for arg in ("--cap-add", cap)]
    subprocess.run(
        ["docker", "run", "-d", "--name", name, "--cgroupns=host", "--tmpfs", "/run", "--tmpfs", "/run/lock",
         "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", *caps,
         "--security-opt", "apparmor=unconfined", "--security-opt", "seccomp=unconfined",
         IMAGE, "/lib/systemd/systemd"],
        check=True, capture_output=True,
    )
    return name


def wait_booted(name: str, timeout: float = 60) -> str:
    """Wait until systemd in the container has booted (running or degraded); return its state."""
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = subprocess.run(["docker", "exec", name, "systemctl", "is-system-running"],
                               capture_output=True, text=True).stdout.strip()
        if state in ("running", "degraded"):
            return state
        time.sleep(1)
    raise TimeoutError(f"systemd in {name} did not finish booting: {state}")


def remove_node(name: str) -> None:
    """Remove the container and its anonymous volumes."""
    subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True)


@contextmanager
def running_node(prefix: str, *capabilities: str) -> Iterator[str]:
    """A started node container for a fixture, removed afterwards; skips, saying why, when Docker
    or the node image is missing."""
    reason = docker_ready()
    if reason:
        pytest.skip(reason)
    name = start_node(prefix, *capabilities)
    try:
        yield name
    finally:
        remove_node(name)
