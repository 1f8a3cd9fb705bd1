"""Filters of the Job-running roles (backup_run, backup_restore, seek_reindex): a Job's outcome as one word."""

from __future__ import annotations

from typing import Any


def backup_job_state(job: dict[str, Any]) -> str:
    """Return ``succeeded``, ``failed`` or ``running`` for a Job as returned by k8s_info.

    A Job is finished only when its ``Complete`` or ``Failed`` condition is ``True``; the interim
    ``SuccessCriteriaMet``/``FailureTarget`` conditions mean the pods are still being cleaned up.
    """
    conditions = (job or {}).get("status", {}).get("conditions") or []
    for condition in conditions:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return "succeeded"
        if condition.get("type") == "Failed":
            return "failed"
    return "running"


def backup_job_detail(job: dict[str, Any]) -> str:
    """Return the reason and message of a failed Job's condition, or an empty string."""
    for condition in (job or {}).get("status", {}).get("conditions") or []:
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            return f"{condition.get('reason', '')}: {condition.get('message', '')}".strip(": ")
    return ""


REPLICAS_ANNOTATION = "seek-k3s/replicas-before-restore"


def backup_replicas_before_restore(deployment: dict[str, Any]) -> int:
    """Return the replicas to scale a Deployment back to after a restore.

    Its current ``spec.replicas`` when above zero; else (a restore that failed left it at zero)
    the count recorded in the ``seek-k3s/replicas-before-restore`` annotation; else 1.
    """
    replicas = int((deployment.get("spec") or {}).get("replicas") or 0)
    if replicas > 0:
        return replicas
    recorded = ((deployment.get("metadata") or {}).get("annotations") or {}).get(REPLICAS_ANNOTATION, "")
    return int(recorded) if str(recorded).isdigit() and int(recorded) > 0 else 1


class FilterModule:
    """Ansible filters: ``backup_job_state``, ``backup_job_detail``, ``backup_replicas_before_restore``."""

    def filters(self) -> dict[str, Any]:
        """Return the filters this module provides."""
        return {"backup_job_state": backup_job_state, "backup_job_detail": backup_job_detail,
                "backup_replicas_before_restore": backup_replicas_before_restore}
