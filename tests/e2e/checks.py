"""What the `full` scenario asserts about a running platform, as testable functions.

Each check returns a list of problems (empty when all is well), so that a failure names every
thing that is wrong at once instead of the first."""

from __future__ import annotations

import http.client
import re
import shlex
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Object names the roles create (roles/mysql, roles/solr, roles/seek templates).
MYSQL_STATEFULSET = "mysql"
SOLR_STATEFULSET = "solr"
WEB_DEPLOYMENT = "seek-web"
WORKERS_DEPLOYMENT = "seek-workers"
BACKUP_KINDS = ("etcd", "mysql", "filestore")

# A marker is put into SEEK's database as a project title and searched for again: keep it to
# characters that need no quoting in Ruby or the shell.
_MARKER = re.compile(r"^[A-Za-z0-9-]{4,64}$")
# One row of the backup summary table (roles/backups/templates/backup-summary.txt.j2), as it
# appears in ansible-playbook's output (possibly inside a quoted YAML or JSON list item).
_SET_ROW = re.compile(
    r"""^[\s\-"']*(?P<kind>etcd|mysql|filestore)\s+(?P<stamp>\d{8}T\d{6}Z|-)\s+(?P<artifact>\S+)\s+"""
    r"""(?P<size>-|[\d.]+\s\S+)\s+(?P<sha256>[0-9a-f]{16}|-)\s+(?P<age>\d+h\d{2}m|-)\s+"""
    r"""(?P<status>.*?)[\s"',]*$""")
_OFFSITE = re.compile(r"off-site pass: (?P<state>OK|FAILED)")
_COUNT = re.compile(r"^E2E_COUNT=(?P<count>\d+)$", re.MULTILINE)


@dataclass
class SetRow:
    """One backup set of the summary table."""

    kind: str
    stamp: str
    artifact: str
    sha256: str
    status: str


@dataclass
class BackupSummary:
    """What backup-now.yml reported: the newest set of each kind, the off-site pass and the verdict."""

    sets: list[SetRow] = field(default_factory=list)
    offsite_ok: bool | None = None
    backup_ok: bool = False
    backup_failed: bool = False


def _unwrap(output: str) -> list[str]:
    """Lines of the output with the YAML callback's folded list items joined again."""
    lines: list[str] = []
    for line in output.splitlines():
        item = re.match(r"^(\s*)- ", lines[-1]) if lines else None
        indent = len(line) - len(line.lstrip())
        if item and line.strip() and indent > len(item[1]) and not line.lstrip().startswith("- "):
            lines[-1] = f"{lines[-1].rstrip()} {line.strip()}"
        else:
            lines.append(line)
    return lines


def parse_backup_summary(output: str) -> BackupSummary:
    """Read backup-now.yml's summary table and verdict out of ansible-playbook's output."""
    summary = BackupSummary()
    for line in _unwrap(output):
        row = _SET_ROW.match(line)
        if row:
            summary.sets.append(SetRow(kind=row["kind"], stamp=row["stamp"], artifact=row["artifact"],
                                       sha256=row["sha256"], status=row["status"].strip()))
            continue
        offsite = _OFFSITE.search(line)
        if offsite:
            summary.offsite_ok = offsite["state"] == "OK"
    summary.backup_ok = "Backup OK" in output
    summary.backup_failed = "BACKUP FAILED" in output
    return summary


def backup_problems(summary: BackupSummary, kinds: Iterable[str] = BACKUP_KINDS) -> list[str]:
    """Problems with a backup run: every kind needs a set that was verified off-site."""
    problems = []
    if not summary.backup_ok or summary.backup_failed:
        problems.append("backup-now.yml did not report 'Backup OK'")
    if summary.offsite_ok is not True:
        problems.append("the off-site pass did not report OK")
    by_kind = {row.kind: row for row in summary.sets}
    for kind in kinds:
        row = by_kind.get(kind)
        if row is None:
            problems.append(f"no {kind} set in the summary")
        elif row.stamp == "-" or row.sha256 == "-":
            problems.append(f"{kind}: no set recorded ({row.status})")
        elif "verified" not in row.status or re.search(r"NOT|FAILED|MISSING", row.status):
            problems.append(f"{kind} set {row.stamp}: {row.status}")
    return problems


def _ready(status: Mapping[str, Any] | None, wanted: int) -> bool:
    status = status or {}
    return wanted > 0 and status.get("readyReplicas", 0) >= wanted


def workload_problems(statefulsets: Iterable[Mapping[str, Any]], deployments: Iterable[Mapping[str, Any]],
                      pods: Iterable[Mapping[str, Any]]) -> list[str]:
    """Problems with SEEK's workloads, from the API objects of its namespace.

    MySQL and Solr must be Ready, the web Deployment available, and the workers pod Running."""
    problems = []
    sets = {item["metadata"]["name"]: item for item in statefulsets}
    for name in (MYSQL_STATEFULSET, SOLR_STATEFULSET):
        item = sets.get(name)
        if item is None:
            problems.append(f"StatefulSet {name} is missing")
        elif not _ready(item.get("status"), item["spec"].get("replicas", 1)):
            problems.append(f"StatefulSet {name} is not Ready: {item.get('status', {})}")
    deploys = {item["metadata"]["name"]: item for item in deployments}
    web = deploys.get(WEB_DEPLOYMENT)
    if web is None:
        problems.append(f"Deployment {WEB_DEPLOYMENT} is missing")
    elif not _ready(web.get("status"), web["spec"].get("replicas", 1)):
        problems.append(f"Deployment {WEB_DEPLOYMENT} has no ready replica: {web.get('status', {})}")
    workers = deploys.get(WORKERS_DEPLOYMENT)
    if workers is None:
        problems.append(f"Deployment {WORKERS_DEPLOYMENT} is missing")
    else:
        selector = workers["spec"]["selector"].get("matchLabels", {})
        mine = [pod for pod in pods
                if all(pod["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())]
        running = [pod for pod in mine if pod.get("status", {}).get("phase") == "Running"
                   and not pod["metadata"].get("deletionTimestamp")]
        if len(running) != 1:
            phases = [pod.get("status", {}).get("phase") for pod in mine]
            problems.append(f"expected one Running workers pod, found {len(running)} (phases {phases})")
    return problems


def http_get(url: str, host: str, timeout: float = 10.0) -> tuple[int, str]:
    """GET url with the given Host header (the ingress routes by it); returns status and body."""
    parts = urllib.parse.urlsplit(url)
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request("GET", parts.path or "/", headers={"Host": host})
        response = connection.getresponse()
        return response.status, response.read(4096).decode("utf-8", "replace")
    finally:
        connection.close()


def wait_up(url: str, host: str, timeout: float, interval: float = 5.0,
            get: Callable[[str, str], tuple[int, str]] = http_get) -> list[str]:
    """Wait until url answers 200 through the ingress; the problem names the last answer."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        try:
            status, body = get(url, host)
            if status == 200:
                return []
            last = f"HTTP {status}: {body[:200]!r}"
        except OSError as error:
            last = f"{type(error).__name__}: {error}"
        if time.monotonic() >= deadline:
            return [f"{url} (Host: {host}) did not answer 200 within {timeout:.0f}s; last: {last}"]
        time.sleep(interval)


def check_marker(marker: str) -> str:
    """The marker, refused unless it is safe to put into Ruby and shell commands as it is."""
    if not _MARKER.match(marker):
        raise ValueError(f"marker {marker!r} must be 4-64 letters, digits or dashes")
    return marker


def rails_runner_argv(kubectl: str, kubeconfig: str, namespace: str, ruby: str) -> list[str]:
    """kubectl exec into the web Deployment running `rails runner` there.

    The running web container has the MySQL database.yml SEEK's entrypoint wrote, so the code
    runs against SEEK's real database."""
    return [kubectl, f"--kubeconfig={kubeconfig}", "--namespace", namespace, "exec",
            f"deployment/{WEB_DEPLOYMENT}", "--", "bundle", "exec", "rails", "runner", ruby]


def ruby_create_project(marker: str) -> str:
    """Ruby that creates a project titled marker (once) and prints how many exist."""
    title = check_marker(marker)
    return (f"Project.find_or_create_by!(title: '{title}'); "
            f"puts \"E2E_COUNT=#{{Project.where(title: '{title}').count}}\"")


def ruby_delete_project(marker: str) -> str:
    """Ruby that deletes the projects titled marker and prints how many are left."""
    title = check_marker(marker)
    return (f"Project.where(title: '{title}').delete_all; "
            f"puts \"E2E_COUNT=#{{Project.where(title: '{title}').count}}\"")


def ruby_count_projects(marker: str) -> str:
    """Ruby that prints how many projects are titled marker."""
    title = check_marker(marker)
    return f"puts \"E2E_COUNT=#{{Project.where(title: '{title}').count}}\""


def parse_count(output: str) -> int:
    """The E2E_COUNT the Ruby snippets print (the last one, Rails may log before it)."""
    found = _COUNT.findall(output)
    if not found:
        raise ValueError(f"no E2E_COUNT line in the rails runner output: {output[-500:]!r}")
    return int(found[-1])


def reindex_problems(jobs: Iterable[Mapping[str, Any]]) -> list[str]:
    """The newest reindex Job (restore.yml creates one per restore) must have succeeded."""
    reindex = [job for job in jobs if "reindex" in job["metadata"]["name"]]
    if not reindex:
        return ["no reindex Job was created by the restore"]
    newest = max(reindex, key=lambda job: job["metadata"].get("creationTimestamp", ""))
    if (newest.get("status") or {}).get("succeeded", 0) < 1:
        return [f"reindex Job {newest['metadata']['name']} has not succeeded: {newest.get('status', {})}"]
    return []


def shell_join(argv: Iterable[str]) -> str:
    """A command line for the log."""
    return " ".join(shlex.quote(arg) for arg in argv)
