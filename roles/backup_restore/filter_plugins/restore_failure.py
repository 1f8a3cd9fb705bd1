"""Filter of the backup_restore role: what a failed restore says (tasks/run.yml's rescue).

A restore runs in phases (prepare, scale-down, mysql, filestore, reindex, scale-up); the MySQL Job
runs first and the filestore Job only after it succeeded. When a phase fails, the message says
exactly what ran and what state each store (the database, the filestore) and SEEK are in.
"""

from __future__ import annotations

from typing import Any

# A restore script's one failure line starts with this and says what state it left its store in
# (restore-mysql.sh, restore-filestore.sh: fail()); it never quotes backup content.
FAILED_PREFIX = "RESTORE FAILED: "
REPLICAS_ANNOTATION = "seek-k3s/replicas-before-restore"
STORES = {"mysql": "database", "filestore": "filestore"}
LABELS = {"mysql": "MySQL", "filestore": "filestore"}


def reported_line(log_lines: list[str] | None) -> str:
    """Return the last ``RESTORE FAILED: `` line of a Job's log without the prefix, or ``""``."""
    lines = [line.strip() for line in (log_lines or []) if line.strip().startswith(FAILED_PREFIX)]
    return lines[-1][len(FAILED_PREFIX):].strip() if lines else ""


def _job_sentence(phase: str, job: dict[str, Any], job_state: str, job_reason: str, log_lines: list[str] | None,
                  log_error: str, error: str, namespace: str) -> str:
    """The sentence about the restore Job of ``phase`` that stopped the restore."""
    store = STORES[phase]
    what = f"The {LABELS[phase]} restore Job {job['name']}"
    line = reported_line(log_lines)
    if job_state == "failed" and line:
        return f'{what} failed ({job_reason}): the {store} is as the Job reports, "{line}".'
    if job_state == "failed":
        return (f"{what} failed ({job_reason}) and left no line saying what state the {store} is in (no log to "
                f"read: {log_error or 'no pod'}): check the {store} before SEEK serves again.")
    if job_state == "running":
        return (f"{what} did not finish ({error}) and may still be changing the {store}: let it end "
                f"(kubectl -n {namespace} get job {job['name']}) before anything else.")
    if job_state == "missing":
        return f"{what} could not be created ({error}): the {store} is unchanged."
    return (f"{what} stopped the restore ({error}) and could not be read ({log_error or 'no message'}): check it "
            f"and the {store} before SEEK serves again.")


def backup_restore_failure(phase: str, jobs: dict[str, dict[str, Any]], done: list[str], *,
                           error: str = "", job_state: str = "", job_reason: str = "",
                           log_lines: list[str] | None = None, log_error: str = "", namespace: str = "seek",
                           deployments: list[str] | None = None, replicas: dict[str, Any] | None = None,
                           filestore_asked: bool = True) -> str:
    """Return the message of a restore that stopped in ``phase``.

    ``jobs`` is the role's ``__backup_restore_jobs`` ({kind: {name, dir, store}}), ``done`` the kinds
    whose Job succeeded, in order. For a Job phase, ``job_state`` is the stopped Job's state as
    ``k8s_objects_job_state`` reads it (``failed``, ``running``), ``missing`` when it does not
    exist, ``unread`` when it could not be read; ``job_reason`` its Failed condition's reason;
    ``log_lines`` the end of its log (``log_error`` why none could be read).
    """
    seek = ", ".join(list((replicas or {}).keys()) or deployments or [])
    at_zero = (f"SEEK ({seek}) stays scaled to zero so nobody writes into the stores meanwhile; its replica "
               f"counts are kept in the annotation {REPLICAS_ANNOTATION}, and a run of playbooks/restore.yml "
               f"that succeeds scales it back to them.")
    restored = " and ".join(f"the {jobs[kind]['store']} from {jobs[kind]['dir']} (Job {jobs[kind]['name']} succeeded)"
                            for kind in done)
    if phase in ("mysql", "filestore"):
        parts = [_job_sentence(phase, jobs[phase], job_state, job_reason, log_lines, log_error, error, namespace)]
        if phase == "mysql":
            parts.append("The filestore restore Job was not started: the filestore is unchanged." if filestore_asked
                         else "No filestore set was asked for: the filestore is unchanged.")
        elif "mysql" in done:
            parts.append(f"The MySQL restore Job {jobs['mysql']['name']} had succeeded: the database holds "
                         f"{jobs['mysql']['dir']}, so the database and the filestore are no longer from one backup "
                         f"(the filestore holds SEEK's secret_key_base and attribute encryption key).")
        else:
            parts.append("No MySQL set was asked for: the database is unchanged.")
        parts += [at_zero, "Fix the cause and run playbooks/restore.yml again."]
        return " ".join(parts)
    if phase == "prepare":
        return (f"The restore stopped before SEEK was scaled down ({error}): no restore Job ran, the database and "
                f"the filestore are unchanged and SEEK runs as before. Fix the cause and run playbooks/restore.yml "
                f"again.")
    if phase == "scale-down":
        return (f"Scaling SEEK to zero failed ({error}): no restore Job ran, the database and the filestore are "
                f"unchanged. SEEK ({seek}) may be partly scaled down; its replica counts are kept in the annotation "
                f"{REPLICAS_ANNOTATION}: run playbooks/restore.yml again, or scale it back by hand.")
    if phase == "reindex":
        return (f"Restored {restored or 'nothing'}. Then the post-restore Job (SEEK's upgrade when needed, cache "
                f"cleared, reindex queued) failed ({error}). {at_zero} Fix the cause and run playbooks/restore.yml "
                f"again, or scale SEEK back by hand and run rake tmp:cache:clear seek:reindex_all in a web pod.")
    scale = "; ".join(f"kubectl -n {namespace} scale deployment {name} --replicas={count}"
                      for name, count in (replicas or {}).items())
    return (f"Restored {restored or 'nothing'}; SEEK's cache is cleared and the reindex queued. Scaling SEEK back "
            f"failed ({error}): scale it by hand: {scale or 'see kubectl -n ' + namespace + ' get deployments'}.")


class FilterModule:
    """Ansible filter: ``backup_restore_failure``."""

    def filters(self) -> dict[str, Any]:
        """Return the filters this module provides."""
        return {"backup_restore_failure": backup_restore_failure}
