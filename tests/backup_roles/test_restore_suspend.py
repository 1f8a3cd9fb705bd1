"""The restore's order and the backups' suspension against a real kube-apiserver +
kube-controller-manager (tests/controlplane; no kubelet, so no pod runs: a restore Job fails at its
activeDeadlineSeconds, and a backup Job made from a CronJob stays active).

* backup_restore runs the MySQL restore Job first and never creates the filestore Job when it
  failed; the message says what ran and what state each store is in.
* The backup CronJobs (the backups role's, converged here) are suspended while the restore runs
  (seen while its MySQL Job exists) and resumed after the failure; one the user had suspended
  stays suspended.
* A backup Job already running makes the restore wait (backups_suspend_wait_seconds) and refuse,
  with the CronJobs resumed and nothing else changed (SEEK not scaled down, no restore object).
* The backups role's converge (site.yml, backup-install.yml) during a suspension keeps it;
  resume.yml is idempotent and safe when suspend.yml never ran.
"""

from __future__ import annotations

import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.backup_roles.helpers import VENV_BIN, REPO, env, recap, run_playbook, seek_deployment, write_inventory
from tests.controlplane.fixture import KubeAPI
from tests.controlplane_selftest.helpers import apply, get_json

pytestmark = pytest.mark.controlplane

NAMESPACE = "seek-restore-order"
CRONJOBS = ("seek-backup-mysql", "seek-backup-filestore", "seek-backup-drill")
SUSPENDED_FOR = "seek-k3s/suspended-for"
SUSPEND_BEFORE = "seek-k3s/suspend-before"

CONVERGE = textwrap.dedent("""\
    - name: Converge the backups role
      hosts: controller
      gather_facts: false
      roles:
        - role: backups
    """)

RESTORE = textwrap.dedent("""\
    - name: Restore (restore.yml's last play)
      hosts: controller
      gather_facts: false
      roles:
        - role: backup_restore
    """)


def entry_point(tasks_from: str) -> str:
    """A playbook running one entry point of the backups role, as the restore and the upgrade do."""
    return textwrap.dedent(f"""\
        - name: The backups role's {tasks_from}
          hosts: controller
          gather_facts: false
          tasks:
            - name: Run {tasks_from}
              ansible.builtin.include_role:
                name: backups
                tasks_from: {tasks_from}
            - name: Show the summary
              ansible.builtin.debug:
                msg: "SUMMARY {{{{ backups_resume_summary | default('') }}}}"
        """)


def cronjobs(kube_api: KubeAPI) -> dict[str, dict[str, Any]]:
    """The backup CronJobs of the test namespace by name."""
    items = get_json(kube_api, "cronjobs", "-n", NAMESPACE)["items"]
    return {c["metadata"]["name"]: c for c in items if c["metadata"]["name"] in CRONJOBS}


def suspended(cronjob: dict[str, Any]) -> bool:
    """spec.suspend, false when absent (the API server's default)."""
    return bool(cronjob["spec"].get("suspend", False))


def annotations(cronjob: dict[str, Any]) -> dict[str, str]:
    """The CronJob's annotations (none: {})."""
    return cronjob["metadata"].get("annotations") or {}


def set_suspend(kube_api: KubeAPI, name: str, value: bool) -> None:
    """Suspend or resume a CronJob by hand, as a user does (and drop suspend.yml's annotations)."""
    patch = ('{"spec":{"suspend":%s},"metadata":{"annotations":{"%s":null,"%s":null}}}'
             % (str(value).lower(), SUSPENDED_FOR, SUSPEND_BEFORE))
    kube_api.run_kubectl("-n", NAMESPACE, "patch", "cronjob", name, "--type=merge", "-p", patch)


def start_playbook(text: str, tmp: Path, extra_vars: dict[str, Any]) -> subprocess.Popen:
    """ansible-playbook in the background (the test watches the API meanwhile)."""
    playbook = tmp / "playbook.yml"
    playbook.write_text(text)
    inventory, evars = write_inventory(tmp, extra_vars)
    return subprocess.Popen(
        [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), "-e", f"@{evars}", str(playbook)],
        cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def restore_jobs(kube_api: KubeAPI) -> list[str]:
    """app.kubernetes.io/name of every restore Job in the test namespace."""
    jobs = get_json(kube_api, "jobs", "-n", NAMESPACE, "-l", "seek-k3s/restore")["items"]
    return sorted(j["metadata"]["labels"]["app.kubernetes.io/name"] for j in jobs)


@pytest.fixture(scope="module")
def backups_installed(kube_api: KubeAPI, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The backups role converged into a restricted namespace of its own; the extra vars to use."""
    labels = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")}
    apply(kube_api, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": labels}})
    evars = {"seek_namespace": NAMESPACE, "backups_kubeconfig": str(kube_api.kubeconfig),
             "backup_restore_kubeconfig": str(kube_api.kubeconfig)}
    tmp = tmp_path_factory.mktemp("backups-installed")
    converge = tmp / "converge.yml"
    converge.write_text(CONVERGE)
    result = run_playbook(converge, tmp, evars)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert set(cronjobs(kube_api)) == set(CRONJOBS)
    return evars


@pytest.fixture
def clean(kube_api: KubeAPI, backups_installed: dict[str, Any]):
    """Every backup CronJob resumed and SEEK's stand-ins, Jobs and restore objects gone, before and after."""
    def reset() -> None:
        for name in CRONJOBS:
            set_suspend(kube_api, name, False)
        kube_api.run_kubectl("-n", NAMESPACE, "delete", "deployment", "seek-web", "seek-workers",
                             "--ignore-not-found", "--wait=true", "--timeout=120s")
        kube_api.run_kubectl("-n", NAMESPACE, "delete", "jobs", "--all", "--ignore-not-found",
                             "--wait=true", "--timeout=120s")
        kube_api.run_kubectl("-n", NAMESPACE, "delete", "configmap", "seek-restore-scripts", "--ignore-not-found")
    reset()
    yield backups_installed
    reset()


def test_mysql_job_failure_never_starts_the_filestore_job_and_backups_resume(
        kube_api: KubeAPI, clean: dict[str, Any], tmp_path: Path) -> None:
    """(a) The MySQL Job fails (its deadline, no kubelet): the filestore Job is never created, the
    message says what ran and each store's state. (b) Meanwhile every backup CronJob is suspended,
    with why and its previous state recorded; afterwards they are resumed, and the drill, which
    the user had suspended, stays suspended."""
    set_suspend(kube_api, "seek-backup-drill", True)  # the user's own choice, before the restore
    apply(kube_api, seek_deployment("seek-web", 2, NAMESPACE))
    apply(kube_api, seek_deployment("seek-workers", 1, NAMESPACE))
    run = start_playbook(RESTORE, tmp_path, {
        **clean, "backup_restore_timeout_seconds": 15, "backups_suspend_wait_seconds": 10,
        "backup_restore_mysql_dir": "mysql/20260101T013000Z",
        "backup_restore_filestore_dir": "restore/filestore/20260101T013004Z"})
    during: dict[str, dict[str, Any]] = {}
    seen_jobs: set[str] = set()
    try:
        deadline = time.monotonic() + 300
        while run.poll() is None and time.monotonic() < deadline:
            jobs = restore_jobs(kube_api)
            seen_jobs.update(jobs)
            if "seek-restore-mysql" in jobs and not during:
                during = cronjobs(kube_api)  # read while the MySQL restore Job exists
            time.sleep(0.5)
        output, _ = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode != 0, output[-5000:]

    # (b) suspended during the restore, each recording why and what it was.
    assert set(during) == set(CRONJOBS), f"the MySQL restore Job was never seen:\n{output[-5000:]}"
    for name, cronjob in during.items():
        assert suspended(cronjob), f"{name} was not suspended while the MySQL restore Job ran"
        assert annotations(cronjob)[SUSPENDED_FOR].startswith("restore "), annotations(cronjob)
        assert annotations(cronjob)[SUSPEND_BEFORE] == ("true" if name == "seek-backup-drill" else "false")

    # (a) MySQL first, and only MySQL: its failure stops the restore before the filestore Job.
    assert seen_jobs == {"seek-restore-mysql"}, seen_jobs
    assert restore_jobs(kube_api) == ["seek-restore-mysql"]
    message = " ".join(output.split())
    assert "The MySQL restore Job seek-restore-mysql-" in message and "failed (DeadlineExceeded" in message, \
        output[-5000:]
    assert "The filestore restore Job was not started: the filestore is unchanged." in message, output[-5000:]
    assert "stays scaled to zero" in message
    assert "Nothing else of this restore ran" not in message
    for name, before in (("seek-web", "2"), ("seek-workers", "1")):
        deployment = get_json(kube_api, "deployment", "-n", NAMESPACE, name)
        assert deployment["spec"]["replicas"] == 0, name
        assert deployment["metadata"]["annotations"]["seek-k3s/replicas-before-restore"] == before

    # (b) resumed after the failure, as they were; the summary says so.
    after = cronjobs(kube_api)
    assert not suspended(after["seek-backup-mysql"]) and not suspended(after["seek-backup-filestore"])
    assert suspended(after["seek-backup-drill"]), "the drill the user had suspended was resumed"
    for name, cronjob in after.items():
        assert SUSPENDED_FOR not in annotations(cronjob) and SUSPEND_BEFORE not in annotations(cronjob), name
    assert "are resumed: seek-backup-mysql, seek-backup-filestore." in message, output[-5000:]
    assert "seek-backup-drill stay(s) suspended, as before." in message


def test_running_backup_job_makes_the_restore_wait_then_refuse(
        kube_api: KubeAPI, clean: dict[str, Any], tmp_path: Path) -> None:
    """(c) A dump Job already running (made from the CronJob, as backup-now.yml or kubectl do; it
    stays active without a kubelet): the restore suspends the CronJobs, waits
    backups_suspend_wait_seconds, then resumes them and refuses. Nothing else changed: SEEK keeps
    its replicas, no restore object exists."""
    kube_api.run_kubectl("-n", NAMESPACE, "create", "job", "seek-backup-mysql-by-hand",
                         "--from=cronjob/seek-backup-mysql")
    apply(kube_api, seek_deployment("seek-web", 2, NAMESPACE))
    apply(kube_api, seek_deployment("seek-workers", 1, NAMESPACE))
    started = time.monotonic()
    run = start_playbook(RESTORE, tmp_path, {
        **clean, "backup_restore_timeout_seconds": 15, "backups_suspend_wait_seconds": 12,
        "backup_restore_mysql_dir": "mysql/20260101T013000Z",
        "backup_restore_filestore_dir": "restore/filestore/20260101T013004Z"})
    seen_suspended = False
    try:
        deadline = time.monotonic() + 300
        while run.poll() is None and time.monotonic() < deadline:
            seen_suspended = seen_suspended or suspended(cronjobs(kube_api)["seek-backup-mysql"])
            time.sleep(0.5)
        output, _ = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
    elapsed = time.monotonic() - started
    message = " ".join(output.split())
    assert run.returncode != 0, output[-5000:]
    assert seen_suspended, "the CronJobs were not suspended while the restore waited"
    assert elapsed >= 12, f"the restore did not wait for the running dump ({elapsed:.0f} s)"
    assert ("The backup Job(s) seek-backup-mysql-by-hand in seek-restore-order still run after "
            "backups_suspend_wait_seconds (12 s)") in message, output[-5000:]
    assert "Nothing else was changed." in message
    assert "are resumed: seek-backup-mysql, seek-backup-filestore, seek-backup-drill." in message, output[-5000:]

    for name, replicas in (("seek-web", 2), ("seek-workers", 1)):
        deployment = get_json(kube_api, "deployment", "-n", NAMESPACE, name)
        assert deployment["spec"]["replicas"] == replicas, f"{name} was scaled"
        assert "seek-k3s/replicas-before-restore" not in (deployment["metadata"].get("annotations") or {}), name
    assert restore_jobs(kube_api) == []
    configmaps = kube_api.run_kubectl("-n", NAMESPACE, "get", "configmap", "seek-restore-scripts",
                                      check=False)
    assert configmaps.returncode != 0, "the restore scripts ConfigMap was applied"
    for name, cronjob in cronjobs(kube_api).items():
        assert not suspended(cronjob), f"{name} stayed suspended"
        assert SUSPENDED_FOR not in annotations(cronjob), name


def test_converge_keeps_a_suspension_and_resume_is_idempotent(
        kube_api: KubeAPI, clean: dict[str, Any], tmp_path: Path) -> None:
    """resume.yml with nothing suspended changes nothing; the backups role's converge (what
    site.yml and backup-install.yml run) during a suspension leaves the CronJobs suspended;
    resume.yml then puts them back, and a second resume changes nothing."""
    resume = tmp_path / "resume.yml"
    resume.write_text(entry_point("resume.yml"))
    suspend = tmp_path / "suspend.yml"
    suspend.write_text(entry_point("suspend.yml"))
    converge = tmp_path / "converge.yml"
    converge.write_text(CONVERGE)

    never = run_playbook(resume, tmp_path, clean)
    assert never.returncode == 0, never.stdout[-5000:]
    assert recap(never.stdout)["changed"] == 0
    assert "none needed resuming" in never.stdout

    refused = run_playbook(suspend, tmp_path, clean)  # no reason given: refused before any change
    assert refused.returncode != 0 and "backups_suspend_reason must say why" in refused.stdout, refused.stdout[-3000:]
    assert not any(suspended(c) for c in cronjobs(kube_api).values())

    done = run_playbook(suspend, tmp_path, {**clean, "backups_suspend_reason": "SEEK upgrade (test)"})
    assert done.returncode == 0, done.stdout[-5000:]
    assert all(suspended(c) for c in cronjobs(kube_api).values())

    again = run_playbook(converge, tmp_path, clean)
    assert again.returncode == 0, again.stdout[-5000:]
    for name, cronjob in cronjobs(kube_api).items():
        assert suspended(cronjob), f"the converge resumed {name} during a suspension"
        assert annotations(cronjob)[SUSPENDED_FOR] == "SEEK upgrade (test)"

    resumed = run_playbook(resume, tmp_path, clean)
    assert resumed.returncode == 0, resumed.stdout[-5000:]
    assert "The backup CronJobs were suspended (SEEK upgrade (test)) and are resumed" in resumed.stdout
    for name, cronjob in cronjobs(kube_api).items():
        assert not suspended(cronjob), name
        assert SUSPENDED_FOR not in annotations(cronjob) and SUSPEND_BEFORE not in annotations(cronjob), name
    twice = run_playbook(resume, tmp_path, clean)
    assert twice.returncode == 0 and recap(twice.stdout)["changed"] == 0, twice.stdout[-5000:]


BACKUP_NOW = textwrap.dedent("""\
    - name: Take a backup now (backup-now.yml's first play)
      hosts: controller
      gather_facts: false
      roles:
        - role: backup_run
    """)


def backup_jobs(kube_api: KubeAPI) -> list[str]:
    """The Jobs made from the MySQL and filestore CronJobs in the test namespace."""
    jobs = get_json(kube_api, "jobs", "-n", NAMESPACE)["items"]
    return sorted(j["metadata"]["name"] for j in jobs
                  if j["metadata"]["name"].startswith(("seek-backup-mysql", "seek-backup-filestore")))


def test_backup_now_is_refused_while_the_backups_are_suspended(
        kube_api: KubeAPI, clean: dict[str, Any], tmp_path: Path) -> None:
    """A backup-now.yml run (by hand or from a timer) while a restore or a SEEK upgrade has
    suspended the CronJobs would dump a half-restored database: backup_run refuses it, naming the
    reason, and creates no Job. The SEEK upgrade's own backup (backup_run_while_suspended) runs."""
    suspend = tmp_path / "suspend.yml"
    suspend.write_text(entry_point("suspend.yml"))
    done = run_playbook(suspend, tmp_path, {**clean, "backups_suspend_reason": "restore of 20261207 (test)"})
    assert done.returncode == 0, done.stdout[-5000:]

    playbook = tmp_path / "backup-now.yml"
    playbook.write_text(BACKUP_NOW)
    run = {**clean, "backup_run_kubeconfig": str(kube_api.kubeconfig), "backup_run_wait": False,
           "backup_run_drill": False}
    refused = run_playbook(playbook, tmp_path, run)
    assert refused.returncode != 0, refused.stdout[-5000:]
    assert "The backups are suspended for restore of 20261207 (test)" in refused.stdout, refused.stdout[-3000:]
    assert "Nothing was changed." in refused.stdout
    assert backup_jobs(kube_api) == []

    upgrade = run_playbook(playbook, tmp_path, {**run, "backup_run_while_suspended": True})
    assert upgrade.returncode == 0, upgrade.stdout[-5000:]
    assert len(backup_jobs(kube_api)) == 2, backup_jobs(kube_api)
