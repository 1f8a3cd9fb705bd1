#!/usr/bin/env python3
"""Measure the wall time of a no-op re-run of platform.yml + seek.yml against a control plane.

Starts the test control plane (etcd, kube-apiserver, kube-controller-manager built from the
Kubernetes Go modules; see docs/testing-controlplane.md) in a temporary directory, installs the
stand-in CRDs of tests/platform_api/crds, converges one configuration once, then times N re-runs
(default 5) that must each report changed=0, and prints the median. Waits are disabled (no
kubelet runs the pods), so the figure is the cost of the API round-trips and of Ansible itself.

    .venv/bin/python tools/bench_noop_rerun.py [--runs 5] [--config ha-nfs-certmanager]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.controlplane import cluster  # noqa: E402
from tests.render.harness import CONFIGS, make_inventory, run_playbooks  # noqa: E402
from tests.platform_api.conftest import NO_WAIT, install_test_crds, parse_recap  # noqa: E402


def bench(runs: int, config_name: str, log=print) -> dict[str, object]:
    """Converge once, time ``runs`` no-op re-runs and return the figures."""
    config = CONFIGS[config_name]
    cluster.build(log=log)
    with tempfile.TemporaryDirectory(prefix="seek-bench-") as tmp:
        directory = Path(tmp)
        names = ("etcd", "etcd_peer", "apiserver", "controller_manager")
        plane = cluster.ControlPlane(state_dir=directory / "controlplane",
                                     ports=dict(zip(names, cluster.free_ports(len(names)))))
        plane.start(log=log)
        try:
            install_test_crds(plane)
            inventory = make_inventory(directory, config, kubeconfig=plane.kubeconfig)
            extra = {**config.extra, **NO_WAIT}
            started = time.monotonic()
            first = parse_recap(run_playbooks(inventory, extra, env=plane.env))
            converge = time.monotonic() - started
            if first.returncode != 0:
                raise SystemExit(f"the first run failed:\n{first.output[-4000:]}")
            log(f"converged in {converge:.1f}s (changed={first.changed})")
            times = []
            for index in range(runs):
                started = time.monotonic()
                recap = parse_recap(run_playbooks(inventory, extra, env=plane.env))
                elapsed = time.monotonic() - started
                if recap.returncode != 0 or recap.changed != 0:
                    raise SystemExit(f"re-run {index + 1} was not a no-op "
                                     f"(rc={recap.returncode}, changed={recap.changed})")
                times.append(elapsed)
                log(f"no-op re-run {index + 1}/{runs}: {elapsed:.1f}s")
        finally:
            plane.stop(log=lambda *_: None)
    return {"config": config_name, "runs": runs, "converge_s": round(converge, 1),
            "times_s": [round(t, 1) for t in times],
            "median_s": round(statistics.median(times), 1)}


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run the benchmark and print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="ha-nfs-certmanager")
    args = parser.parse_args(argv)
    result = bench(args.runs, args.config, log=lambda message: print(message, file=sys.stderr))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
