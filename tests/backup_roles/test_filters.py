"""Unit tests of the backup filter plugins: cron interval (role backups), Job state (role
k8s_objects, the one reader of a Job's outcome, used by backup_run, backup_restore and
seek_reindex) and replicas (role backup_restore)."""

from __future__ import annotations

import sys

import pytest

from tests.backup_roles.helpers import REPO, ROLE

sys.path.insert(0, str(ROLE / "filter_plugins"))
sys.path.insert(0, str(REPO / "roles" / "k8s_objects" / "filter_plugins"))
sys.path.insert(0, str(REPO / "roles" / "backup_restore" / "filter_plugins"))
from cron_interval import CronError, cron_min_interval, cron_valid  # noqa: E402
from k8s_objects import k8s_objects_job_failure, k8s_objects_job_state  # noqa: E402
from restore_replicas import backup_replicas_before_restore  # noqa: E402


@pytest.mark.parametrize("schedule, seconds", [
    ("30 1 * * *", 86400),
    ("15 */6 * * *", 6 * 3600),
    ("*/5 * * * *", 300),
    ("@hourly", 3600),
    ("@weekly", 7 * 86400),
    ("0 2 * * mon-fri", 86400),
    ("0 3 1,15 * *", 14 * 86400),  # 1 -> 15 and 15 Feb -> 1 Mar (non-leap year) are both 14 days
    ("0 0,23 * * *", 3600),
    ("0 4 * * 0,7", 7 * 86400),
])
def test_cron_min_interval(schedule: str, seconds: int) -> None:
    """The shortest gap between two runs, wraparounds included."""
    assert cron_min_interval(schedule) == seconds


@pytest.mark.parametrize("schedule", ["61 * * * *", "* * * *", "0 0 31 2 *", "0 0 * * 8", "*/0 * * * *", 5])
def test_cron_invalid(schedule) -> None:
    """Out-of-range fields, a wrong field count, a schedule that never fires, a non-string."""
    assert not cron_valid(schedule)
    with pytest.raises(CronError):
        cron_min_interval(schedule)


def test_job_state_and_detail() -> None:
    """Only the final Complete/Failed conditions finish a Job."""
    assert k8s_objects_job_state({}) == "running"
    assert k8s_objects_job_state({"status": {"conditions": [{"type": "SuccessCriteriaMet", "status": "True"}]}}) == "running"
    assert k8s_objects_job_state({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}) == "succeeded"
    failed = {"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                                         "message": "Job was active longer than specified deadline"}]}}
    assert k8s_objects_job_state(failed) == "failed"
    assert k8s_objects_job_failure(failed, detail=True).startswith("DeadlineExceeded: Job was active")


def test_replicas_before_restore() -> None:
    """Current replicas, else the annotation a failed restore left, else 1."""
    assert backup_replicas_before_restore({"spec": {"replicas": 2}}) == 2
    assert backup_replicas_before_restore({"spec": {"replicas": 0}, "metadata": {
        "annotations": {"seek-k3s/replicas-before-restore": "3"}}}) == 3
    assert backup_replicas_before_restore({"spec": {"replicas": 0}}) == 1
