"""python -m tests.vm: build the image, start and stop labs of QEMU guests."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from tests.vm import image as vm_image
from tests.vm import lab


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.vm",
        description="Debian bookworm guests under QEMU (KVM when it really works, else TCG) on a "
                    "private vde network, SSH on 127.0.0.1 ports.")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build the image unless the cache has it; print its directory")
    build.add_argument("--force", action="store_true", help="rebuild even when cached")
    sub.add_parser("accel", help="print kvm or tcg: what guests would run under here")
    start = sub.add_parser("up", help="start guests, wait for SSH, write <state-dir>/inventory.yml; "
                                      "print the state as JSON")
    start.add_argument("--state-dir", type=Path, required=True)
    start.add_argument("--guest", action="append", required=True, metavar="NAME",
                       help="a guest name (repeat; at most 3 keeps a 2-core machine usable)")
    start.add_argument("--ssh-port", action="append", type=int, default=None, metavar="PORT",
                       help="SSH port on 127.0.0.1, one per guest in order (default: free ports)")
    start.add_argument("--forward", action="append", default=[], metavar="NAME:HOSTPORT:GUESTPORT",
                       help="another 127.0.0.1 port forwarded to a guest port")
    start.add_argument("--api-proxy", action="append", default=[], metavar="NAME=ADDRESS:PORT",
                       help="forward the guest's 127.0.0.1:6443 to ADDRESS:PORT (a k3s server)")
    start.add_argument("--network", default=lab.DEFAULT_NETWORK, help="the private network")
    start.add_argument("--memory", type=int, default=1536, help="MiB per guest")
    start.add_argument("--cpus", type=int, default=1, help="vCPUs per guest")
    start.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for SSH")
    start.add_argument("--build", action="store_true", help="build the image first when not cached")
    stop = sub.add_parser("down", help="stop every process of a lab by pid, remove its state directory")
    stop.add_argument("--state-dir", type=Path, required=True)
    status = sub.add_parser("status", help="print the recorded lab and which guests run")
    status.add_argument("--state-dir", type=Path, required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; errors print one line on stderr and exit 1."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "build":
            print(vm_image.build(force=args.force).directory)
        elif args.command == "accel":
            print(lab.detect_accel(vm_image.build()))
        elif args.command == "up":
            image = vm_image.build() if args.build else vm_image.current()
            forwards: dict[str, dict[int, int]] = {}
            for spec in args.forward:
                name, host, guest = spec.rsplit(":", 2)
                forwards.setdefault(name, {})[int(host)] = int(guest)
            proxies = dict(spec.split("=", 1) for spec in args.api_proxy)
            started = time.monotonic()
            state = lab.up(args.state_dir, image, args.guest, network=args.network,
                           ssh_ports=args.ssh_port, extra_forwards=forwards, api_proxy=proxies,
                           memory=args.memory, cpus=args.cpus, timeout=args.timeout)
            print(f"vm-lab: {len(state.guests)} guests up under {state.accel} in "
                  f"{time.monotonic() - started:.0f}s; inventory {args.state_dir}/inventory.yml",
                  file=sys.stderr)
            print(json.dumps(asdict(state), indent=2))
        elif args.command == "down":
            stopped = lab.down(args.state_dir)
            print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        elif args.command == "status":
            state = lab.State.load(args.state_dir.resolve())
            if state is None:
                print(f"no lab in {args.state_dir}")
                return 0
            for guest in state.guests:
                running = lab._ours(guest.pid, state.directory)
                print(f"{guest.name}\t{guest.address}\tssh 127.0.0.1:{guest.ssh_port}\t"
                      f"{'running' if running else 'stopped'} (pid {guest.pid}, {state.accel})")
    except (vm_image.ImageError, lab.LabError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
