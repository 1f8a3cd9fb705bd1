"""Unit tests of backup_restore's failure message (filter_plugins/restore_failure.py): for every
phase a restore can stop in, it says what ran and what state the database, the filestore and SEEK
are in. The phases the API tests cannot reach (no kubelet: no restore Job succeeds there) are
covered here; test_restore_suspend.py checks the MySQL phase end to end."""

from __future__ import annotations

import sys

import pytest

from tests.backup_roles.helpers import REPO

sys.path.insert(0, str(REPO / "roles" / "backup_restore" / "filter_plugins"))
from restore_failure import backup_restore_failure, reported_line  # noqa: E402

JOBS = {
    "mysql": {"name": "seek-restore-mysql-1", "dir": "mysql/20260101T013000Z", "store": "database"},
    "filestore": {"name": "seek-restore-filestore-1", "dir": "filestore/20260101T013004Z", "store": "filestore"},
}
REPLICAS = {"seek-web": 2, "seek-workers": 1}
LOG = ["restore: checking",
       "RESTORE FAILED: loading x failed (ERROR 1064): seek was not touched, seek_restore_1 is dropped"]


def test_reported_line_is_the_last_failure_line_without_its_prefix() -> None:
    """The script's one failure line, whatever came before; none: empty."""
    assert reported_line(LOG) == "loading x failed (ERROR 1064): seek was not touched, seek_restore_1 is dropped"
    assert reported_line(["restore: ok"]) == ""
    assert reported_line(None) == ""


def test_mysql_failure_says_the_filestore_job_was_not_started() -> None:
    """The MySQL Job failed: its own line says the database's state; the filestore is unchanged."""
    message = backup_restore_failure("mysql", JOBS, [], error="The Job failed", job_state="failed",
                                     job_reason="BackoffLimitExceeded", log_lines=LOG, replicas=REPLICAS)
    assert message.startswith("The MySQL restore Job seek-restore-mysql-1 failed (BackoffLimitExceeded): the "
                              'database is as the Job reports, "loading x failed (ERROR 1064): seek was not touched')
    assert "The filestore restore Job was not started: the filestore is unchanged." in message
    assert "SEEK (seek-web, seek-workers) stays scaled to zero" in message
    assert "Nothing else" not in message


def test_mysql_failure_without_a_log_says_the_state_is_unknown() -> None:
    """No pod log (never scheduled, or gone): the database's state is not claimed."""
    message = backup_restore_failure("mysql", JOBS, [], job_state="failed", job_reason="DeadlineExceeded: too long",
                                     log_error="no pod", filestore_asked=False, deployments=["seek-web"])
    assert "failed (DeadlineExceeded: too long) and left no line saying what state the database is in" in message
    assert "check the database before SEEK serves again" in message
    assert "No filestore set was asked for: the filestore is unchanged." in message
    assert "SEEK (seek-web) stays scaled to zero" in message


@pytest.mark.parametrize("state, expected", [
    ("running", "did not finish (wait timed out) and may still be changing the database"),
    ("missing", "could not be created (wait timed out): the database is unchanged"),
    ("unread", "stopped the restore (wait timed out) and could not be read"),
])
def test_mysql_job_not_failed(state: str, expected: str) -> None:
    """The play stopped while the Job was not failed: what is known about the database, no more."""
    message = backup_restore_failure("mysql", JOBS, [], error="wait timed out", job_state=state)
    assert expected in message


def test_filestore_failure_after_mysql_says_the_stores_no_longer_match() -> None:
    """The filestore Job failed after the MySQL one succeeded: the database holds the set, the two
    stores are from different backups."""
    message = backup_restore_failure("filestore", JOBS, ["mysql"], job_state="failed", job_reason="DeadlineExceeded",
                                     log_lines=["RESTORE FAILED: extracting a failed: the old filestore is untouched"])
    assert message.startswith("The filestore restore Job seek-restore-filestore-1 failed (DeadlineExceeded): the "
                              'filestore is as the Job reports, "extracting a failed: the old filestore is untouched".')
    assert ("The MySQL restore Job seek-restore-mysql-1 had succeeded: the database holds mysql/20260101T013000Z, "
            "so the database and the filestore are no longer from one backup") in message


def test_filestore_only_restore_leaves_the_database_unchanged() -> None:
    """A filestore set alone (restore_mysql=false): the database was never touched."""
    message = backup_restore_failure("filestore", JOBS, [], job_state="failed", job_reason="DeadlineExceeded")
    assert "No MySQL set was asked for: the database is unchanged." in message


@pytest.mark.parametrize("phase, done, expected", [
    ("prepare", [], "The restore stopped before SEEK was scaled down (boom): no restore Job ran, the database and "
                    "the filestore are unchanged and SEEK runs as before."),
    ("scale-down", [], "Scaling SEEK to zero failed (boom): no restore Job ran, the database and the filestore are "
                       "unchanged. SEEK (seek-web, seek-workers) may be partly scaled down"),
    ("reindex", ["mysql", "filestore"], "Restored the database from mysql/20260101T013000Z (Job seek-restore-mysql-1 "
                                        "succeeded) and the filestore from filestore/20260101T013004Z (Job "
                                        "seek-restore-filestore-1 succeeded). Then the post-restore Job"),
    ("scale-up", ["mysql"], "scale it by hand: kubectl -n seek scale deployment seek-web --replicas=2; "
                            "kubectl -n seek scale deployment seek-workers --replicas=1."),
])
def test_other_phases(phase: str, done: list[str], expected: str) -> None:
    """Before the Jobs nothing changed; after them, what was restored and what is left to do."""
    assert expected in backup_restore_failure(phase, JOBS, done, error="boom", replicas=REPLICAS)
