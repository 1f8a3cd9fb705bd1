"""The k8s_objects role's wait filters decide like ``kubectl rollout status`` and read Job outcomes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "roles" / "k8s_objects" / "filter_plugins"))
from k8s_objects import (  # noqa: E402
    k8s_objects_failed_jobs,
    k8s_objects_job_failure,
    k8s_objects_job_state,
    k8s_objects_settled,
)


def deployment(generation: int = 2, replicas: int = 2, **status: Any) -> dict[str, Any]:
    """A Deployment as k8s_info returns it."""
    return {"kind": "Deployment", "metadata": {"generation": generation},
            "spec": {"replicas": replicas}, "status": status}


def statefulset(**status: Any) -> dict[str, Any]:
    """A one-replica StatefulSet at generation 3."""
    return {"kind": "StatefulSet", "metadata": {"generation": 3}, "spec": {"replicas": 1}, "status": status}


def job(**status: Any) -> dict[str, Any]:
    """A Job with the given status."""
    return {"kind": "Job", "metadata": {"generation": 1}, "status": status}


FAILED = {"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}
COMPLETE = {"type": "Complete", "status": "True"}


@pytest.mark.parametrize(("obj", "kind", "settled"), [
    ({}, "Deployment", False),  # not created yet (the Helm controller may still be at it)
    (deployment(observedGeneration=1, replicas=2, updatedReplicas=2, availableReplicas=2), "Deployment", False),
    (deployment(observedGeneration=2, replicas=3, updatedReplicas=2, availableReplicas=2), "Deployment", False),
    (deployment(observedGeneration=2, replicas=2, updatedReplicas=1, availableReplicas=2), "Deployment", False),
    (deployment(observedGeneration=2, replicas=2, updatedReplicas=2, availableReplicas=1), "Deployment", False),
    (deployment(observedGeneration=2, replicas=2, updatedReplicas=2, availableReplicas=2), "Deployment", True),
    (deployment(replicas=0, observedGeneration=2), "Deployment", True),
    (statefulset(observedGeneration=3, readyReplicas=1, updateRevision="b", currentRevision="a"), "StatefulSet", False),
    (statefulset(observedGeneration=3, readyReplicas=0, updateRevision="b", currentRevision="b"), "StatefulSet", False),
    (statefulset(observedGeneration=2, readyReplicas=1, updateRevision="b", currentRevision="b"), "StatefulSet", False),
    (statefulset(observedGeneration=3, readyReplicas=1, updateRevision="b", currentRevision="b"), "StatefulSet", True),
    (job(active=1), "Job", False),
    # succeeded counted but Complete not yet set (SuccessCriteriaMet, pods being cleaned up): running
    (job(succeeded=1, conditions=[{"type": "SuccessCriteriaMet", "status": "True"}]), "Job", False),
    (job(succeeded=1, conditions=[COMPLETE]), "Job", True),
    (job(failed=1, conditions=[{"type": "FailureTarget", "status": "True"}]), "Job", False),
    (job(failed=7, conditions=[FAILED]), "Job", True),
    (job(conditions=[{"type": "Failed", "status": "False"}]), "Job", False),
])
def test_settled(obj: dict[str, Any], kind: str, settled: bool) -> None:
    """Rolled out (every replica updated and available/ready, spec seen), or a Job finished."""
    assert k8s_objects_settled(obj, kind) is settled


def test_unknown_kind_is_refused() -> None:
    """A kind the role cannot judge is an error, not a silent pass."""
    with pytest.raises(ValueError, match="DaemonSet"):
        k8s_objects_settled({"status": {}}, "DaemonSet")


def test_job_failure_and_failed_jobs() -> None:
    """The reason of a failed Job, nothing for a succeeded one; only failed Jobs are selected."""
    failed, succeeded = job(conditions=[FAILED]), job(succeeded=1, conditions=[COMPLETE])
    assert k8s_objects_job_failure(failed) == "DeadlineExceeded"
    assert k8s_objects_job_failure(failed, detail=True) == "DeadlineExceeded"  # no message: the reason alone
    assert k8s_objects_job_failure(succeeded) == ""
    assert k8s_objects_job_failure(job(active=1)) == ""
    results = [{"__k8s_objects_workload": {"kind": "Job", "name": "a"}, "resources": [failed]},
               {"__k8s_objects_workload": {"kind": "Job", "name": "b"}, "resources": [succeeded]},
               {"__k8s_objects_workload": {"kind": "Deployment", "name": "c"}, "resources": [deployment()]}]
    assert [r["__k8s_objects_workload"]["name"] for r in k8s_objects_failed_jobs(results)] == ["a"]


def test_job_state_reads_only_the_final_conditions() -> None:
    """Complete/Failed True finish a Job; a succeeded count, interim or False conditions do not."""
    assert k8s_objects_job_state(job(conditions=[COMPLETE])) == "succeeded"
    assert k8s_objects_job_state(job(conditions=[FAILED])) == "failed"
    assert k8s_objects_job_state(job(succeeded=1)) == "running"
    assert k8s_objects_job_state(job(conditions=[{"type": "Complete", "status": "False"}])) == "running"
    assert k8s_objects_job_state(None) == "running"
