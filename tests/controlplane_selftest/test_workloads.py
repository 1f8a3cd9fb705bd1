"""The controller manager acts on workloads; the API server enforces immutability."""

from __future__ import annotations

import json

from tests.controlplane_selftest.helpers import apply, eventually, get_json, namespace
from tests.controlplane.fixture import KubeAPI

LABELS = {"app.kubernetes.io/name": "web"}


def _owned_by(items: list[dict], kind: str, uid: str) -> list[dict]:
    return [item for item in items
            if any(ref["kind"] == kind and ref["uid"] == uid and ref.get("controller")
                   for ref in item["metadata"].get("ownerReferences", []))]


def test_deployment_gets_replicaset_and_pending_pods(kube_api: KubeAPI) -> None:
    ns = namespace(kube_api, "wl-deploy")
    apply(kube_api, {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {"replicas": 2, "selector": {"matchLabels": LABELS},
                 "template": {"metadata": {"labels": LABELS},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}},
    })
    deployment = get_json(kube_api, "deployment", "web", "-n", ns)
    replicasets = eventually(lambda: _owned_by(
        get_json(kube_api, "replicasets", "-n", ns)["items"], "Deployment",
        deployment["metadata"]["uid"]), what="a ReplicaSet owned by the Deployment")
    assert len(replicasets) == 1
    replicaset = replicasets[0]
    assert replicaset["spec"]["replicas"] == 2
    pods = eventually(lambda: (lambda owned: owned if len(owned) == 2 else None)(_owned_by(
        get_json(kube_api, "pods", "-n", ns)["items"], "ReplicaSet", replicaset["metadata"]["uid"])),
        what="two Pods owned by the ReplicaSet")
    for pod in pods:
        # No kubelet and no scheduler: the Pods exist but never run.
        assert pod["status"]["phase"] == "Pending"
        assert "nodeName" not in pod["spec"]
        # Admission and defaulting ran: the ServiceAccount admission plugin mounted a token volume.
        assert pod["spec"]["serviceAccountName"] == "default"
        assert any(v["name"].startswith("kube-api-access-") for v in pod["spec"]["volumes"])
    status = eventually(lambda: get_json(kube_api, "deployment", "web", "-n", ns)["status"]
                        if get_json(kube_api, "deployment", "web", "-n", ns)["status"].get("replicas")
                        == 2 else None, what="Deployment status from the controller")
    assert status.get("availableReplicas", 0) == 0


def test_cronjob_manual_job_and_immutable_template(kube_api: KubeAPI) -> None:
    ns = namespace(kube_api, "wl-cron")
    apply(kube_api, {
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "backup", "namespace": ns},
        "spec": {"schedule": "17 3 * * *", "timeZone": "Europe/London",
                 "concurrencyPolicy": "Forbid", "startingDeadlineSeconds": 600,
                 "jobTemplate": {"spec": {"backoffLimit": 1, "activeDeadlineSeconds": 3000,
                                          "template": {"spec": {
                                              "restartPolicy": "Never",
                                              "containers": [{"name": "dump", "image": "busybox:1.36",
                                                              "command": ["true"]}]}}}}},
    })
    cronjob = get_json(kube_api, "cronjob", "backup", "-n", ns)
    created = kube_api.run_kubectl("create", "job", "backup-manual", "--from=cronjob/backup", "-n", ns)
    assert "job.batch/backup-manual created" in created.stdout
    job = get_json(kube_api, "job", "backup-manual", "-n", ns)
    assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    assert job["metadata"]["ownerReferences"][0]["uid"] == cronjob["metadata"]["uid"]
    assert job["spec"]["backoffLimit"] == 1
    # The job controller creates the Pod (it stays Pending: no kubelet).
    pods = eventually(lambda: get_json(kube_api, "pods", "-n", ns, "-l", "job-name=backup-manual")["items"],
                      what="the Job's Pod")
    assert pods[0]["status"]["phase"] == "Pending"

    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": "dump", "image": "busybox:1.37", "command": ["true"]}]}}}}
    result = kube_api.run_kubectl("patch", "job", "backup-manual", "-n", ns, "--type=merge",
                                  "-p", json.dumps(patch), check=False)
    assert result.returncode != 0
    assert "spec.template: Invalid value" in result.stderr
    assert "field is immutable" in result.stderr
    assert get_json(kube_api, "job", "backup-manual", "-n", ns)["spec"]["template"]["spec"][
        "containers"][0]["image"] == "busybox:1.36"
