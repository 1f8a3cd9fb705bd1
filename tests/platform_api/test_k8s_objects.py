"""The k8s_objects role (the one way the roles produce their objects) on a real kube-apiserver.

Applied, created-once, absent and rendered objects; waits decided by the controllers' own status
(the control plane runs kube-controller-manager, no kubelet: zero-replica workloads roll out, a Job
with a one-second deadline fails); reads; and the render path, which never talks to the API.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.controlplane

NAMESPACE = "k8s-objects-test"
UNREACHABLE = {"apiVersion": "v1", "kind": "Config", "current-context": "nowhere",
               "clusters": [{"name": "nowhere", "cluster": {"server": "https://127.0.0.1:1"}}],
               "contexts": [{"name": "nowhere", "context": {"cluster": "nowhere", "user": "nobody"}}],
               "users": [{"name": "nobody", "user": {"token": "x"}}]}


def workloads(replicas: int = 0) -> list[dict[str, Any]]:
    """A ConfigMap, a Deployment and a StatefulSet (no pods: zero replicas roll out at once)."""
    labels = {"app": "k8s-objects"}
    pod = {"metadata": {"labels": labels},
           "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}
    meta = {"namespace": NAMESPACE, "labels": labels}
    return [
        {"definition": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", **meta},
                        "data": {"key": "value"}}},
        {"definition": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", **meta},
                        "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": pod}}},
        {"definition": {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", **meta},
                        "spec": {"replicas": replicas, "serviceName": "db", "selector": {"matchLabels": labels},
                                 "template": pod}}, "file": "db.yaml"},
    ]


def job(image: str) -> dict[str, Any]:
    """A Job that can never run here (no kubelet) and fails after its one-second deadline."""
    return {"definition": {"apiVersion": "batch/v1", "kind": "Job",
                           "metadata": {"name": "once", "namespace": NAMESPACE},
                           "spec": {"activeDeadlineSeconds": 1, "backoffLimit": 0, "template": {"spec": {
                               "restartPolicy": "Never",
                               "containers": [{"name": "main", "image": image}]}}}}}


def run(kube_api: Any, tmp_path: Path, variables: dict[str, Any], tasks_from: str = "main.yml"
        ) -> tuple[int, dict[str, int], str]:
    """Include k8s_objects once with ``variables``; return (rc, recap counts, output).

    After read.yml, the playbook writes k8s_objects_found to ``tmp_path/found.json``.
    """
    tasks: list[dict[str, Any]] = [{"name": "Call k8s_objects", "ansible.builtin.include_role": {
        "name": "k8s_objects", "tasks_from": tasks_from}}]
    if tasks_from == "read.yml":
        tasks.append({"name": "Keep what was read", "ansible.builtin.copy": {
            "content": "{{ k8s_objects_found | to_json }}", "dest": str(tmp_path / "found.json"), "mode": "0600"}})
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([{"name": "k8s_objects", "hosts": "localhost", "gather_facts": False,
                                         "tasks": tasks}]))
    evars = tmp_path / "vars.json"
    evars.write_text(json.dumps({"k8s_objects_component": "demo", "k8s_objects_no_log": False,
                                 "k8s_objects_kubeconfig": str(kube_api.kubeconfig),
                                 "ansible_python_interpreter": "{{ ansible_playbook_python }}", **variables}))
    result = kube_api.ansible_playbook(playbook, "-i", "localhost,", "-c", "local", "-e", f"@{evars}")
    output = result.stdout + result.stderr
    recap = {}
    for line in result.stdout.splitlines():
        if line.startswith("localhost") and "ok=" in line:
            recap = {k: int(v) for k, v in (p.split("=") for p in line.split(":", 1)[1].split())}
    return result.returncode, recap, output


def found(tmp_path: Path) -> list[dict[str, Any]]:
    """The k8s_objects_found list the last read.yml run kept."""
    return json.loads((tmp_path / "found.json").read_text())


@pytest.fixture(scope="module")
def namespace(kube_api: Any) -> str:
    """The test namespace."""
    kube_api.run_kubectl("create", "namespace", NAMESPACE, check=False)
    return NAMESPACE


def test_applied_objects_wait_for_their_rollout_and_rerun_changes_nothing(kube_api: Any, namespace: str,
                                                                          tmp_path: Path) -> None:
    """Applied and waited for (the controllers report the rollout); a second run reports no change."""
    wait = [{"kind": "Deployment", "name": "web", "namespace": namespace},
            {"kind": "StatefulSet", "name": "db", "namespace": namespace}]
    variables = {"k8s_objects_manifests": workloads(), "k8s_objects_wait": wait, "k8s_objects_wait_timeout": 120}
    rc, recap, output = run(kube_api, tmp_path, variables)
    assert rc == 0, output[-4000:]
    assert recap["changed"] >= 1, output[-3000:]
    assert "Wait | Wait for the workloads of demo" in output
    web = json.loads(kube_api.run_kubectl("-n", namespace, "get", "deployment", "web", "-o", "json").stdout)
    assert web["status"]["observedGeneration"] >= web["metadata"]["generation"]
    rc, recap, output = run(kube_api, tmp_path, variables)
    assert rc == 0 and recap["changed"] == 0, output[-4000:]


def test_read_returns_the_stored_object_or_an_empty_dict(kube_api: Any, namespace: str, tmp_path: Path) -> None:
    """read.yml: one entry per object asked, the stored object or {}."""
    rc, _, output = run(kube_api, tmp_path, {"k8s_objects_read": [
        {"kind": "ConfigMap", "name": "settings", "namespace": namespace},
        {"kind": "ConfigMap", "name": "missing", "namespace": namespace}]}, tasks_from="read.yml")
    assert rc == 0, output[-4000:]
    stored, missing = found(tmp_path)
    assert stored["data"] == {"key": "value"} and missing == {}


def test_a_created_job_is_never_changed_and_its_failure_stops_the_play(kube_api: Any, namespace: str,
                                                                       tmp_path: Path) -> None:
    """created: made once; a failed Job stops the run naming it, its reason and the advice; a re-run
    with another image leaves the existing Job as it is (its template is immutable)."""
    wait = [{"kind": "Job", "name": "once", "namespace": namespace, "container": "main",
             "advice": "Delete the Job and run again."}]
    variables = {"k8s_objects_state": "created", "k8s_objects_manifests": [job("busybox:1.36")],
                 "k8s_objects_wait": wait, "k8s_objects_wait_timeout": 120}
    rc, _, output = run(kube_api, tmp_path, variables)
    assert rc != 0, output[-4000:]
    flat = " ".join(output.split())
    assert f"The Job {namespace}/once failed (DeadlineExceeded)" in flat, flat[-3000:]
    assert "Delete the Job and run again." in flat
    rc, recap, output = run(kube_api, tmp_path, {**variables, "k8s_objects_wait": [],
                                                 "k8s_objects_manifests": [job("busybox:1.37")]})
    assert rc == 0 and recap["changed"] == 0, output[-4000:]
    stored = json.loads(kube_api.run_kubectl("-n", namespace, "get", "job", "once", "-o", "json").stdout)
    assert stored["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1.36"


def test_absent_removes_and_rendered_sends_nothing(kube_api: Any, namespace: str, tmp_path: Path) -> None:
    """absent deletes (then reports no change); rendered objects never reach the API."""
    configmap = workloads()[0]
    rc, recap, output = run(kube_api, tmp_path, {"k8s_objects_state": "absent", "k8s_objects_manifests": [configmap]})
    assert rc == 0 and recap["changed"] >= 1, output[-4000:]
    assert kube_api.run_kubectl("-n", namespace, "get", "configmap", "settings", check=False).returncode != 0
    rc, recap, output = run(kube_api, tmp_path, {"k8s_objects_state": "absent", "k8s_objects_manifests": [configmap]})
    assert rc == 0 and recap["changed"] == 0, output[-4000:]
    rc, _, output = run(kube_api, tmp_path, {"k8s_objects_state": "rendered", "k8s_objects_manifests": [configmap]})
    assert rc == 0, output[-4000:]
    assert kube_api.run_kubectl("-n", namespace, "get", "configmap", "settings", check=False).returncode != 0


def test_rendering_writes_files_and_never_reads_or_writes_the_api(kube_api: Any, tmp_path: Path) -> None:
    """With k8s_render_dir: one 0600 file per object under <dir>/<component>/ (0700), named after the
    template or given; nothing is sent, read or waited for (the kubeconfig points at a closed port)."""
    kubeconfig = tmp_path / "nowhere"
    kubeconfig.write_text(yaml.safe_dump(UNREACHABLE))
    out = tmp_path / "out"
    wait = [{"kind": "Deployment", "name": "web", "namespace": NAMESPACE}]
    rc, _, output = run(kube_api, tmp_path, {"k8s_render_dir": str(out), "k8s_objects_kubeconfig": str(kubeconfig),
                                             "k8s_objects_manifests": workloads(replicas=2), "k8s_objects_wait": wait})
    assert rc == 0, output[-4000:]
    directory = out / "demo"
    assert directory.stat().st_mode & 0o777 == 0o700
    files = sorted(p.name for p in directory.iterdir())
    assert files == ["configmap-settings.yaml", "db.yaml", "deployment-web.yaml"]
    for name in files:
        assert (directory / name).stat().st_mode & 0o777 == 0o600
    web = yaml.safe_load((directory / "deployment-web.yaml").read_text())
    assert web == workloads(replicas=2)[1]["definition"]
    rc, _, output = run(kube_api, tmp_path, {"k8s_render_dir": str(out), "k8s_objects_kubeconfig": str(kubeconfig),
                                             "k8s_objects_read": [{"kind": "Deployment", "name": "web",
                                                                   "namespace": NAMESPACE}]}, tasks_from="read.yml")
    assert rc == 0, output[-4000:]
    assert found(tmp_path) == [{}]
