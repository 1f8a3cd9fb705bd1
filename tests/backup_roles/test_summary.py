"""backup-now.yml's last play: the summary table, and a non-zero exit when anything failed.

The inputs are what the earlier plays leave behind (the Job results on the controller, the
off-site pass and `seek_backup summary --json` on the backup host), given here directly."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.backup_roles.helpers import run_playbook

PLAYBOOK = textwrap.dedent("""\
    - name: Summary
      hosts: controller
      gather_facts: false
      tasks:
        - name: Print the summary table and fail when anything failed
          ansible.builtin.include_role:
            name: backup_summary
          vars:
            backup_summary_host: node-a
    """)

JOBS_OK = [{"name": f"seek-backup-{k}", "kind": k, "namespace": "seek", "job": f"seek-backup-{k}-run-1",
            "status": "succeeded", "detail": ""} for k in ("etcd", "mysql", "filestore", "drill")]
SETS_OK = [{"kind": k, "stamp": "20260301T013000Z", "artifact": a, "size": 123456789,
            "sha256": "ab" * 32, "age_seconds": 7260, "status": "local, off-site verified"}
           for k, a in (("mysql", "mysql.sql.gz"), ("filestore", "filestore.tar.gz"), ("etcd", "etcd.db"))]
OFFSITE_OK = {"ok": True, "detail": "off-site pass OK"}

CASES: dict[str, tuple[dict[str, Any], str | None]] = {
    "all-good": ({}, None),
    "job-failed": ({"backup_run_results": [dict(JOBS_OK[1], status="failed", detail="BackoffLimitExceeded")]
                    + JOBS_OK[2:]}, "seek-backup-mysql-run-1 failed"),
    "job-timed-out": ({"backup_run_results": [dict(JOBS_OK[0], status="timed out")] + JOBS_OK[1:]},
                      "seek-backup-etcd-run-1 timed out"),
    "offsite-failed": ({"backup_offsite_run_result": {"ok": False, "detail": "AccessDenied"}},
                       "off-site pass: AccessDenied"),
    "set-not-offsite": ({"backup_offsite_run_summary": SETS_OK[:2] + [dict(SETS_OK[2], status="local, NOT OFF-SITE")]},
                        "etcd: local, NOT OFF-SITE"),
    "set-missing": ({"backup_offsite_run_summary": SETS_OK[:2] + [{"kind": "etcd", "status": "MISSING"}]},
                    "etcd: MISSING"),
    "offsite-play-never-ran": ({"backup_offsite_run_summary": [], "backup_offsite_run_result": None}, "off-site pass"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_summary(case: str, tmp_path: Path) -> None:
    """The table lists every set and Job; any failure makes the play (and backup-now.yml) fail, naming it."""
    override, failure = CASES[case]
    evars: dict[str, Any] = {"backup_run_results": JOBS_OK, "backup_offsite_run_summary": SETS_OK,
                             "backup_offsite_run_result": OFFSITE_OK, **override}
    evars = {k: v for k, v in evars.items() if v is not None}
    playbook = tmp_path / "summary.yml"
    playbook.write_text(PLAYBOOK)
    result = run_playbook(playbook, tmp_path, {"cluster_kubeconfig": "/dev/null", **evars})
    output = result.stdout + result.stderr
    if failure is None:
        assert result.returncode == 0, output[-4000:]
        assert "Backup OK" in output
        for row in ("mysql.sql.gz", "filestore.tar.gz", "etcd.db", "117.7 MiB", "abababababababab", "2h01m",
                    "seek-backup-drill-run-1"):
            assert row in output, f"{row!r} missing from the table:\n{output[-4000:]}"
    else:
        assert result.returncode != 0, output[-4000:]
        assert "BACKUP FAILED" in output and failure in output, output[-4000:]
