"""Filters of the k8s_objects role: when a workload the role waits for has settled, and a Job's
outcome (the one reader of it: backup_run, backup_restore and seek_reindex use these too)."""

from __future__ import annotations

from typing import Any


def _job_condition(job: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    """Return the Job's condition of type ``kind`` when its status is ``True``, else an empty dict."""
    for condition in ((job or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return condition
    return {}


def k8s_objects_job_state(job: dict[str, Any] | None) -> str:
    """Return ``succeeded``, ``failed`` or ``running`` for a Job as k8s_info returns it.

    The one reader of a Job's outcome in this project. A Job is finished only when its
    ``Complete`` or ``Failed`` condition is ``True`` (batch/v1 JobStatus, JobConditionType in
    kubernetes/kubernetes pkg/apis/batch/types.go); the interim ``SuccessCriteriaMet`` and
    ``FailureTarget`` conditions, or a ``succeeded`` count alone, mean its pods are still being
    cleaned up, so it is still running.
    """
    if _job_condition(job, "Complete"):
        return "succeeded"
    if _job_condition(job, "Failed"):
        return "failed"
    return "running"


def k8s_objects_settled(obj: dict[str, Any] | None, kind: str) -> bool:
    """Return whether ``obj`` (as k8s_info returns it, or empty when missing) has settled.

    A Deployment or StatefulSet has settled when ``kubectl rollout status`` would say it rolled
    out (kubernetes/kubernetes staging/src/k8s.io/kubectl/pkg/polymorphichelpers/rollout_status.go):
    its controller has seen the latest spec and every replica runs it and is available (ready for
    a StatefulSet, whose current revision is then the update revision). A Job has settled once its
    ``Complete`` or ``Failed`` condition is ``True`` (k8s_objects_job_state). A missing object has not settled (a controller, e.g. k3s's
    Helm controller, may still be creating it).
    """
    if kind not in ("Deployment", "StatefulSet", "Job"):
        raise ValueError(f"k8s_objects cannot wait for a {kind}: Deployment, StatefulSet or Job")
    if not obj:
        return False
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    if kind == "Job":
        return k8s_objects_job_state(obj) != "running"
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 1):
        return False
    replicas = int(spec.get("replicas", 1) or 0)
    if kind == "Deployment":
        updated = int(status.get("updatedReplicas") or 0)
        return (updated >= replicas
                and int(status.get("replicas") or 0) <= updated
                and int(status.get("availableReplicas") or 0) >= updated)
    return (int(status.get("readyReplicas") or 0) >= replicas
            and status.get("updateRevision") == status.get("currentRevision"))


def k8s_objects_job_failure(obj: dict[str, Any] | None, detail: bool = False) -> str:
    """Return why a Job failed, the reason of its ``True`` ``Failed`` condition (with ``detail``,
    ``reason: message``), or ``""`` when it has not failed."""
    if k8s_objects_job_state(obj) != "failed":
        return ""
    condition = _job_condition(obj, "Failed")
    reason = condition.get("reason") or "Failed"
    return f"{reason}: {condition.get('message') or ''}".strip(": ") if detail else reason


def k8s_objects_failed_jobs(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the results of the wait loop (wait.yml) whose workload is a Job that failed."""
    return [result for result in results
            if result.get("__k8s_objects_workload", {}).get("kind") == "Job"
            and k8s_objects_job_failure((result.get("resources") or [{}])[0])]


class FilterModule:
    """Ansible filters: ``k8s_objects_settled``, ``k8s_objects_job_state``, ``k8s_objects_job_failure``,
    ``k8s_objects_failed_jobs``."""

    def filters(self) -> dict[str, Any]:
        """Return the filters this module provides."""
        return {"k8s_objects_settled": k8s_objects_settled,
                "k8s_objects_job_state": k8s_objects_job_state,
                "k8s_objects_job_failure": k8s_objects_job_failure,
                "k8s_objects_failed_jobs": k8s_objects_failed_jobs}
