"""Command line of the end-to-end checks (molecule/full/verify.yml calls it).

  python -m tests.e2e wait-up --url http://127.0.0.1:18080/up --host seek.test
  python -m tests.e2e workloads --kubeconfig K --namespace seek
  python -m tests.e2e round-trip --kubeconfig K --inventory I --namespace seek --marker e2e-123

round-trip: creates a project in SEEK, runs backup-now.yml (every artifact must be verified off-site),
deletes the project, runs restore.yml -e restore_confirm=true, and checks the project is back and
the reindex Job succeeded. Exits 1 naming every problem."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.e2e import checks

REPO_ROOT = Path(__file__).resolve().parents[2]


def _log(message: str) -> None:
    print(f"e2e: {message}", flush=True)


def _fail(problems: list[str]) -> int:
    for problem in problems:
        print(f"e2e: PROBLEM: {problem}", file=sys.stderr, flush=True)
    return 1 if problems else 0


def _list(kubeconfig: str, namespace: str) -> dict[str, list[dict[str, Any]]]:
    """StatefulSets, Deployments, Pods and Jobs of the namespace, as plain API dicts."""
    from kubernetes import client, config  # the venv has it; imported here to keep --help fast

    api = config.new_client_from_config(config_file=kubeconfig)
    apps, core, batch = client.AppsV1Api(api), client.CoreV1Api(api), client.BatchV1Api(api)
    plain = api.sanitize_for_serialization
    return {
        "statefulsets": plain(apps.list_namespaced_stateful_set(namespace))["items"],
        "deployments": plain(apps.list_namespaced_deployment(namespace))["items"],
        "pods": plain(core.list_namespaced_pod(namespace))["items"],
        "jobs": plain(batch.list_namespaced_job(namespace))["items"],
    }


def _workloads(kubeconfig: str, namespace: str, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        objects = _list(kubeconfig, namespace)
        problems = checks.workload_problems(objects["statefulsets"], objects["deployments"], objects["pods"])
        if not problems or time.monotonic() >= deadline:
            return problems
        time.sleep(10)


def _rails(args: argparse.Namespace, ruby: str) -> int:
    argv = checks.rails_runner_argv(args.kubectl, args.kubeconfig, args.namespace, ruby)
    _log(f"$ {checks.shell_join(argv)}")
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"rails runner failed ({result.returncode}): {result.stderr[-1000:]}")
    return checks.parse_count(result.stdout)


def _playbook(args: argparse.Namespace, playbook: str, *extra: str) -> subprocess.CompletedProcess:
    argv = [str(Path(sys.executable).with_name("ansible-playbook")), f"playbooks/{playbook}",
            "-i", args.inventory, *extra]
    _log(f"$ {checks.shell_join(argv)}")
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"))
    result = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=3600, check=False)
    print(result.stdout[-20000:], flush=True)
    print(result.stderr[-5000:], file=sys.stderr, flush=True)
    return result


def _round_trip(args: argparse.Namespace) -> list[str]:
    marker = checks.check_marker(args.marker)
    if _rails(args, checks.ruby_create_project(marker)) != 1:
        return [f"project {marker} was not created in SEEK"]
    backup = _playbook(args, "backup-now.yml")
    problems = checks.backup_problems(checks.parse_backup_summary(backup.stdout))
    if backup.returncode != 0:
        problems.insert(0, f"backup-now.yml exited {backup.returncode}")
    if problems:
        return problems
    if _rails(args, checks.ruby_delete_project(marker)) != 0:
        return [f"project {marker} could not be deleted before the restore"]
    restore = _playbook(args, "restore.yml", "-e", "restore_confirm=true")
    if restore.returncode != 0:
        return [f"restore.yml exited {restore.returncode}"]
    problems = _workloads(args.kubeconfig, args.namespace, args.timeout)
    count = _rails(args, checks.ruby_count_projects(marker))
    if count != 1:
        problems.append(f"after the restore SEEK has {count} projects titled {marker}, expected 1")
    problems += checks.reindex_problems(_list(args.kubeconfig, args.namespace)["jobs"])
    return problems


def main(argv: list[str] | None = None) -> int:
    """Run one check; exit 0 when it holds, 1 naming every problem otherwise."""
    parser = argparse.ArgumentParser(prog="python -m tests.e2e", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["wait-up", "workloads", "round-trip"])
    parser.add_argument("--url", default="http://127.0.0.1:18080/up")
    parser.add_argument("--host", default="seek.test", help="Host header the ingress routes by")
    parser.add_argument("--kubeconfig")
    parser.add_argument("--inventory")
    parser.add_argument("--namespace", default="seek")
    parser.add_argument("--kubectl", default="kubectl")
    parser.add_argument("--marker", default=f"e2e-{int(time.time())}")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args(argv)
    if args.command == "wait-up":
        return _fail(checks.wait_up(args.url, args.host, args.timeout))
    if not args.kubeconfig:
        parser.error(f"{args.command} needs --kubeconfig")
    if args.command == "workloads":
        return _fail(_workloads(args.kubeconfig, args.namespace, args.timeout))
    if not args.inventory:
        parser.error("round-trip needs --inventory")
    return _fail(_round_trip(args))


if __name__ == "__main__":
    sys.exit(main())
