"""Command line of the end-to-end checks (molecule/full/verify.yml calls it).

  python -m tests.e2e wait-up --url http://127.0.0.1:18080/up --host seek.test
  python -m tests.e2e workloads --kubeconfig K --namespace seek
  python -m tests.e2e round-trip --kubeconfig K --inventory I --namespace seek --marker e2e-123
      --identity AGE_IDENTITY --s3-endpoint http://127.0.0.1:15000 --s3-bucket seek-e2e

round-trip: creates a project and a DataFile (a file in SEEK's filestore with its database row) in
SEEK; runs backup-now.yml (every artifact must be verified off-site); reads each set straight from
the bucket (boto3 with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; the digests recorded in the
manifest, the plaintext with the age identity); deletes the project, the DataFile and its file;
removes the backup host's local MySQL and filestore sets (molecule/full/drop-local-sets.yml);
runs restore.yml for the sets backed up, with the age identity, so they come from the bucket; and
checks that restore.yml fetched them, the project and the DataFile are back with the same file
(sha256), and the reindex Job succeeded. Exits 1 naming every problem."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.e2e import checks

REPO_ROOT = Path(__file__).resolve().parents[2]
# The step that makes restore.yml fetch from the bucket: the backup host loses its local sets.
DROP_LOCAL_SETS = "molecule/full/drop-local-sets.yml"
# The kinds restore.yml restores (etcd has its own playbook, restore-etcd.yml).
RESTORED_KINDS = ("mysql", "filestore")


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


def _seek_state(args: argparse.Namespace, ruby: str) -> checks.SeekState:
    argv = checks.rails_runner_argv(args.kubectl, args.kubeconfig, args.namespace, ruby)
    _log(f"$ {checks.shell_join(argv)}")
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"rails runner failed ({result.returncode}): {result.stderr[-1000:]}")
    state = checks.parse_state(result.stdout)
    _log(f"SEEK: {state}")
    return state


def _playbook(args: argparse.Namespace, playbook: str, *extra: str) -> subprocess.CompletedProcess:
    argv = [str(Path(sys.executable).with_name("ansible-playbook")), playbook, "-i", args.inventory, *extra]
    _log(f"$ {checks.shell_join(argv)}")
    # The bucket credentials are this process's (the bucket check); the playbooks take theirs from
    # the inventory, as an operator's run does.
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env["ANSIBLE_CONFIG"] = str(REPO_ROOT / "ansible.cfg")
    result = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=3600, check=False)
    print(result.stdout[-20000:], flush=True)
    print(result.stderr[-5000:], file=sys.stderr, flush=True)
    return result


def _bucket(args: argparse.Namespace, sets: list[checks.SetRow]) -> list[str]:
    """The sets of the summary read straight from the bucket (boto3, not tools/seek_backup)."""
    import boto3  # the venv has it; imported here to keep --help fast
    from botocore.config import Config

    client = boto3.client("s3", endpoint_url=args.s3_endpoint, region_name=args.s3_region,
                          config=Config(s3={"addressing_style": "path"}))
    report = checks.bucket_report(client, args.s3_bucket, args.s3_prefix, sets,
                                  checks.load_identities(args.identity))
    for key, digest in sorted(report.digests.items()):
        _log(f"s3://{args.s3_bucket}/{key}: sha256 {digest}")
    return report.problems


def _round_trip(args: argparse.Namespace) -> list[str]:
    marker = checks.check_marker(args.marker)
    before = _seek_state(args, checks.ruby_create(marker))
    problems = checks.created_problems(before, marker)
    if problems:
        return problems
    backup = _playbook(args, "playbooks/backup-now.yml")
    summary = checks.parse_backup_summary(backup.stdout)
    problems = checks.backup_problems(summary)
    if backup.returncode != 0:
        problems.insert(0, f"backup-now.yml exited {backup.returncode}")
    if problems:
        return problems
    problems = _bucket(args, summary.sets)
    if problems:
        return problems
    problems = checks.deleted_problems(_seek_state(args, checks.ruby_delete(marker)), before)
    if problems:
        return problems
    wanted = {row.kind: row.stamp for row in summary.sets if row.kind in RESTORED_KINDS}
    drop = _playbook(args, DROP_LOCAL_SETS, "-e", json.dumps({"e2e_drop_sets": wanted}))
    if drop.returncode != 0:
        return [f"{DROP_LOCAL_SETS} exited {drop.returncode}"]
    restore = _playbook(args, "playbooks/restore.yml", "-e", "restore_confirm=true",
                        "-e", f"restore_stamp={wanted['mysql']}", "-e", f"restore_filestore_stamp={wanted['filestore']}",
                        "-e", f"restore_age_identity_file={args.identity}")
    if restore.returncode != 0:
        return [f"restore.yml exited {restore.returncode}"]
    problems = checks.restore_source_problems(checks.parse_restored_sets(restore.stdout), wanted)
    problems += _workloads(args.kubeconfig, args.namespace, args.timeout)
    problems += checks.restored_problems(before, _seek_state(args, checks.ruby_state(marker)), marker)
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
    parser.add_argument("--identity", help="the operator's age identity file (round-trip)")
    parser.add_argument("--s3-endpoint", help="the bucket's S3 endpoint, as this machine reaches it (round-trip)")
    parser.add_argument("--s3-bucket", default="seek-e2e")
    parser.add_argument("--s3-prefix", default="seek-k3s", help="backup_s3_prefix")
    parser.add_argument("--s3-region", default="us-east-1")
    args = parser.parse_args(argv)
    if args.command == "wait-up":
        return _fail(checks.wait_up(args.url, args.host, args.timeout))
    if not args.kubeconfig:
        parser.error(f"{args.command} needs --kubeconfig")
    if args.command == "workloads":
        return _fail(_workloads(args.kubeconfig, args.namespace, args.timeout))
    if not (args.inventory and args.identity and args.s3_endpoint):
        parser.error("round-trip needs --inventory, --identity and --s3-endpoint")
    return _fail(_round_trip(args))


if __name__ == "__main__":
    sys.exit(main())
