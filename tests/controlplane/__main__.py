"""Command line: python -m tests.controlplane build|start|stop|status|env [options]."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from tests.controlplane import cluster


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.controlplane",
        description="Build, start and stop a Kubernetes control plane (etcd, kube-apiserver, "
                    "kube-controller-manager) for the tests. There is no kubelet: Pods stay Pending.")
    parser.add_argument("command", choices=["build", "start", "stop", "status", "env", "bin-dir"])
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="where certificates, etcd data, logs and the kubeconfig live "
                             "(default: $SEEK_K3S_CP_STATE or <cache>/controlplane/run)")
    ports = cluster.ports_from_env()
    parser.add_argument("--api-port", type=int, default=ports["apiserver"])
    parser.add_argument("--etcd-port", type=int, default=ports["etcd"])
    parser.add_argument("--etcd-peer-port", type=int, default=ports["etcd_peer"])
    parser.add_argument("--controller-manager-port", type=int, default=ports["controller_manager"])
    parser.add_argument("--build", action="store_true",
                        help="with start: build first when the binaries are not cached")
    parser.add_argument("--timeout", type=float, default=180.0, help="start-up timeout in seconds")
    return parser


def _log(message: str) -> None:
    """Progress goes to stderr, so that stdout carries only the command's result."""
    print(message, file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run one command; return the exit code (1 with a message on any control plane error)."""
    args = _parser().parse_args(argv)
    state_dir = (args.state_dir or cluster.default_state_dir()).resolve()
    try:
        if args.command == "build":
            started = time.monotonic()
            was_built = cluster.is_built()
            path = cluster.build(log=_log)
            print(f"controlplane: binaries in {path}"
                  + (" (cached)" if was_built else f" (built in {time.monotonic() - started:.0f}s)"))
        elif args.command == "bin-dir":
            print(cluster.bin_dir())
        elif args.command == "start":
            if args.build:
                cluster.build(log=_log)
            ports = {"apiserver": args.api_port, "etcd": args.etcd_port,
                     "etcd_peer": args.etcd_peer_port,
                     "controller_manager": args.controller_manager_port}
            plane = cluster.ControlPlane(state_dir=state_dir, ports=ports)
            plane.start(timeout=args.timeout, log=_log)
            print(json.dumps(plane.status(), indent=2))
        elif args.command == "stop":
            if not (state_dir / "state.json").exists():
                print(f"controlplane: nothing recorded in {state_dir}, nothing to stop")
                return 0
            cluster.ControlPlane.load(state_dir).stop(log=print)
        elif args.command == "status":
            plane = cluster.ControlPlane.load(state_dir)
            status = plane.status()
            print(json.dumps(status, indent=2))
            return 0 if status["ready"] else 3
        elif args.command == "env":
            plane = cluster.ControlPlane.load(state_dir)
            print(f"export KUBECONFIG={shlex.quote(str(plane.kubeconfig))}")
            print(f"export K8S_AUTH_KUBECONFIG={shlex.quote(str(plane.kubeconfig))}")
            print(f"export PATH={shlex.quote(str(plane.binaries))}:\"$PATH\"")
    except cluster.ControlPlaneError as error:
        print(f"controlplane: error: {error}", file=sys.stderr)
        return 2 if isinstance(error, cluster.GoMissingError) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
