"""The `full` scenario's checks, against recorded outputs and real counterparts.

The summary parser reads recorded backup-now.yml output and the live output of the real summary
play; wait_up talks to a local HTTP server that routes by Host header, as the ingress does; the
workload check reads StatefulSets, Deployments and Pods from the real API server."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backup_roles.test_summary import JOBS_OK, OFFSITE_OK, PLAYBOOK, SETS_OK
from tests.backup_roles.helpers import run_playbook
from tests.e2e import checks
from tests.e2e.__main__ import _list

RECORDED = Path(__file__).parent / "recorded"


def test_recorded_good_backup_has_no_problem() -> None:
    """The YAML callback folds long rows: the parser joins them and finds all three sets verified."""
    summary = checks.parse_backup_summary((RECORDED / "backup-summary-ok.txt").read_text())
    assert [row.kind for row in summary.sets] == ["mysql", "filestore", "etcd"]
    assert all(row.status == "local, off-site verified" for row in summary.sets)
    assert summary.offsite_ok is True and summary.backup_ok
    assert checks.backup_problems(summary) == []


def test_recorded_failed_backup_names_the_set() -> None:
    summary = checks.parse_backup_summary((RECORDED / "backup-summary-etcd-not-offsite.txt").read_text())
    problems = checks.backup_problems(summary)
    assert "backup-now.yml did not report 'Backup OK'" in problems
    assert "etcd set 20260301T013000Z: local, NOT OFF-SITE" in problems
    assert len(problems) == 2


@pytest.mark.parametrize("sets, offsite, expected", [
    (SETS_OK[:2], OFFSITE_OK, "no etcd set in the summary"),
    (SETS_OK[:2] + [{"kind": "etcd", "status": "MISSING"}], OFFSITE_OK, "etcd: no set recorded (MISSING)"),
    (SETS_OK, {"ok": False, "detail": "AccessDenied"}, "the off-site pass did not report OK"),
])
def test_live_summary_play_output(sets: list, offsite: dict, expected: str, tmp_path: Path) -> None:
    """The real summary play's output (whatever its current wording) is read the same way; a kind
    missing from the host's summary is a problem even where the play itself passes."""
    playbook = tmp_path / "summary.yml"
    playbook.write_text(PLAYBOOK)
    result = run_playbook(playbook, tmp_path, {"cluster_kubeconfig": "/dev/null", "backup_run_results": JOBS_OK,
                                               "backup_offsite_run_summary": sets,
                                               "backup_offsite_run_result": offsite})
    problems = checks.backup_problems(checks.parse_backup_summary(result.stdout))
    assert expected in problems, problems


@pytest.fixture
def ingress() -> Iterator[str]:
    """A local HTTP server answering /up with 200 only for Host seek.test, like an ingress rule."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server API)
            hits.append(self.headers["Host"])
            ok = self.headers["Host"] == "seek.test" and self.path == "/up" and len(hits) > 2
            self.send_response(200 if ok else 404)
            self.end_headers()
            self.wfile.write(b"ok" if ok else b"default backend - 404")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_wait_up_retries_until_200(ingress: str) -> None:
    """The third answer is 200: wait_up keeps asking until then."""
    assert checks.wait_up(f"{ingress}/up", "seek.test", timeout=10, interval=0.05) == []


def test_wait_up_names_the_last_answer(ingress: str) -> None:
    problems = checks.wait_up(f"{ingress}/up", "other.test", timeout=0.3, interval=0.05)
    assert len(problems) == 1 and "HTTP 404" in problems[0] and "Host: other.test" in problems[0]


def test_wait_up_connection_refused() -> None:
    problems = checks.wait_up("http://127.0.0.1:9/up", "seek.test", timeout=0, interval=0)
    assert len(problems) == 1 and "ConnectionRefusedError" in problems[0]


def test_markers_and_ruby() -> None:
    assert checks.ruby_count_projects("e2e-1700000000") == \
        "puts \"E2E_COUNT=#{Project.where(title: 'e2e-1700000000').count}\""
    for bad in ("x", "a'); system('rm", "with space", "a" * 65):
        with pytest.raises(ValueError):
            checks.ruby_create_project(bad)
    argv = checks.rails_runner_argv("kubectl", "/k/config", "seek", "puts 1")
    assert argv[-6:] == ["--", "bundle", "exec", "rails", "runner", "puts 1"]
    assert "deployment/seek-web" in argv


def test_parse_count_takes_the_last_line() -> None:
    assert checks.parse_count("I, [..] INFO -- : E2E_COUNT=7 in a log\nE2E_COUNT=2\nE2E_COUNT=1\n") == 1
    with pytest.raises(ValueError):
        checks.parse_count("Rails boot error")


def test_reindex_problems() -> None:
    def job(name: str, created: str, succeeded: int) -> dict:
        return {"metadata": {"name": name, "creationTimestamp": created}, "status": {"succeeded": succeeded}}

    assert checks.reindex_problems([]) == ["no reindex Job was created by the restore"]
    assert checks.reindex_problems([job("seek-reindex-a", "2026-01-01T00:00:00Z", 0),
                                    job("seek-reindex-b", "2026-01-02T00:00:00Z", 1)]) == []
    assert "seek-reindex-b" in checks.reindex_problems([job("seek-reindex-a", "2026-01-01T00:00:00Z", 1),
                                                        job("seek-reindex-b", "2026-01-02T00:00:00Z", 0)])[0]


def _workloads_manifest(namespace: str) -> str:
    labels = "{app.kubernetes.io/name: %s}"
    template = """
apiVersion: apps/v1
kind: %(kind)s
metadata: {name: %(name)s, namespace: %(ns)s}
spec:
  replicas: 1
  %(extra)s
  selector: {matchLabels: %(labels)s}
  template:
    metadata: {labels: %(labels)s}
    spec: {containers: [{name: c, image: "registry.invalid/none:1"}]}
"""
    docs = [template % {"kind": "StatefulSet", "name": name, "ns": namespace, "labels": labels % name,
                        "extra": "serviceName: " + name} for name in ("mysql", "solr")]
    docs += [template % {"kind": "Deployment", "name": name, "ns": namespace, "labels": labels % name,
                         "extra": ""} for name in ("seek-web", "seek-workers")]
    return "---".join(docs)


def test_workloads_against_the_api_server(kube_api) -> None:
    """Real objects from the API server: nothing is Ready (no kubelet) until the status says so."""
    namespace = f"e2e-{int(time.time())}"
    kube_api.run_kubectl("create", "namespace", namespace)
    kube_api.run_kubectl("apply", "-f", "-", input=_workloads_manifest(namespace))
    deadline = time.monotonic() + 60
    while len(kube_api.run_kubectl("-n", namespace, "get", "pods", "-o", "name").stdout.split()) < 4:
        assert time.monotonic() < deadline, "the controllers did not create the pods"
        time.sleep(1)
    objects = _list(str(kube_api.kubeconfig), namespace)
    problems = checks.workload_problems(objects["statefulsets"], objects["deployments"], objects["pods"])
    assert any(p.startswith("StatefulSet mysql is not Ready") for p in problems), problems
    assert any(p.startswith("StatefulSet solr is not Ready") for p in problems), problems
    assert any(p.startswith("Deployment seek-web has no ready replica") for p in problems), problems
    assert any("expected one Running workers pod, found 0" in p for p in problems), problems
    assert len(problems) == 4

    # What a kubelet would report once the containers run; the controllers then count them.
    pods = kube_api.run_kubectl("-n", namespace, "get", "pods", "-o", "name").stdout.split()
    assert len(pods) == 4, pods
    status = '{"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}'
    for pod in pods:
        kube_api.run_kubectl("-n", namespace, "patch", pod, "--subresource=status", "--type=merge", "-p", status)
    deadline = time.monotonic() + 60
    while True:
        objects = _list(str(kube_api.kubeconfig), namespace)
        problems = checks.workload_problems(objects["statefulsets"], objects["deployments"], objects["pods"])
        if not problems or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert problems == []
    kube_api.run_kubectl("delete", "namespace", namespace, "--wait=false")
