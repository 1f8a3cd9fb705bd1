"""`make lab` stops at once, saying what is missing, where it cannot run a lab.

Here the k3s release cannot be downloaded: `make lab` must refuse before setting anything up or
starting anything, naming the missing network and the URL. Where the network is there, this
test cannot run (make lab would bring up a real lab and run site.yml): it is skipped saying so.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def k3s_checksum_url() -> str:
    """The URL the k3s role downloads first, from the role's defaults (as the script builds it)."""
    defaults = (ROOT / "roles/k3s/defaults/main.yml").read_text().splitlines()
    value = {line.split(": ", 1)[0]: line.split(": ", 1)[1] for line in defaults
             if line.startswith(("k3s_release_url: ", "k3s_version: "))}
    return f"{value['k3s_release_url']}/{value['k3s_version'].replace('+', '%2B')}/sha256sum-amd64.txt"


def reachable(url: str) -> bool:
    """Whether an HTTP HEAD of url answers within 10 seconds."""
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=10)
    except (urllib.error.URLError, OSError):
        return False
    return True


def lab_processes() -> list[str]:
    """Lab containers and VM lab state that exist right now."""
    found = []
    if (ROOT / "inventories/vm/.state").exists():
        found.append("inventories/vm/.state")
    docker = subprocess.run(["docker", "ps", "-a", "--filter", "name=seek-lab-", "--format", "{{.Names}}"],
                            capture_output=True, text=True, check=False)
    found += docker.stdout.split()
    return found


def test_make_lab_stops_at_once_without_network_for_k3s():
    url = k3s_checksum_url()
    if reachable(url):
        pytest.skip(f"{url} answers: with network, make lab would bring up a real lab and run site.yml")
    before = lab_processes()
    env = {k: v for k, v in os.environ.items() if k not in ("LAB", "MAKEFLAGS", "MAKELEVEL")}
    started = time.monotonic()
    done = subprocess.run(["make", "--no-print-directory", "lab"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    elapsed = time.monotonic() - started
    assert done.returncode != 0, done.stdout
    assert "make lab cannot run a lab here. Missing:" in done.stderr, done.stderr
    assert "network for the k3s download" in done.stderr
    assert url in done.stderr
    # Stopped at once: no set-up, no image build, no lab brought up.
    assert elapsed < 60, f"make lab took {elapsed:.0f}s before refusing"
    assert "lab:" not in done.stderr.replace("make lab cannot", "")
    assert lab_processes() == before


def test_check_names_both_missing_runtimes(tmp_path):
    """With the network present (a loopback server stands in for the download only) and neither
    privileged containers nor QEMU, the check names what is missing and exits 3."""
    refused = subprocess.run(["docker", "run", "--rm", "--privileged", "--network", "none",
                              "seek-k3s-node:bookworm", "true"], capture_output=True, text=True,
                             check=False)
    if refused.returncode == 0:
        pytest.skip("this Docker runs privileged containers: the container lab would be chosen")
    server = subprocess.Popen(["python3", "-m", "http.server", "--bind", "127.0.0.1", "0",
                               "--directory", str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        line = server.stdout.readline()  # "Serving HTTP on 127.0.0.1 port N ..."
        port = int(line.split(" port ")[1].split()[0])
        (tmp_path / "sha256sum-amd64.txt").write_text("stand-in for the network probe only\n")
        env = {**{k: v for k, v in os.environ.items() if k != "LAB"},
               "SEEK_K3S_LAB_PROBE_URL": f"http://127.0.0.1:{port}/sha256sum-amd64.txt"}
        without_qemu = subprocess.run(["scripts/local-lab.sh", "check"], cwd=ROOT,
                                      env={**env, "QEMU": "qemu-absent-for-this-test", "LAB_INSTALL": "0"},
                                      capture_output=True, text=True, timeout=120, check=False)
        with_qemu = subprocess.run(["scripts/local-lab.sh", "check"], cwd=ROOT, env=env,
                                   capture_output=True, text=True, timeout=120, check=False)
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert without_qemu.returncode == 3, without_qemu.stdout
    assert "make lab cannot run a lab here. Missing:" in without_qemu.stderr
    assert "privileged containers do not work here" in without_qemu.stderr
    assert "QEMU (qemu-absent-for-this-test) is not installed" in without_qemu.stderr
    assert "network for the k3s download" not in without_qemu.stderr
    assert with_qemu.returncode == 0, with_qemu.stderr
    assert with_qemu.stdout.strip() == "vm"
