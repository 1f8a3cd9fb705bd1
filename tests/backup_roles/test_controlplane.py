"""The backups role against a real kube-apiserver + kube-controller-manager (tests/controlplane):
it converges, a second run changes nothing, and backup_run's Job creation (backup-now.yml) is accepted — the Pods
of the Jobs in SEEK's namespace pass the `restricted` Pod Security admission."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.controlplane_selftest.helpers import apply, eventually, get_json
from tests.backup_roles.helpers import recap, run_playbook, seek_deployment
from tests.controlplane.fixture import KubeAPI

pytestmark = pytest.mark.controlplane

CONVERGE = textwrap.dedent("""\
    - name: Converge the backups role
      hosts: controller
      gather_facts: false
      roles:
        - role: backups
    """)

RUN = textwrap.dedent("""\
    - name: Create a Job from every backup CronJob (backup-now.yml's first play, without waiting)
      hosts: controller
      gather_facts: false
      tasks:
        - name: Trigger the backup Jobs
          ansible.builtin.include_role:
            name: backup_run
        - name: Write the results for the test
          ansible.builtin.copy:
            content: "{{ backup_run_results | to_json }}"
            dest: "{{ results_file }}"
            mode: "0600"
    """)

NAMESPACE = "seek"
RESTORE_FILES = Path(__file__).resolve().parents[2] / "roles" / "backup_restore" / "files"


def restricted_namespace(kube_api: KubeAPI) -> None:
    """SEEK's namespace as the seek role makes it: Pod Security `restricted` enforced."""
    labels = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")}
    labels.update({f"pod-security.kubernetes.io/{mode}-version": "v1.34" for mode in ("enforce", "audit", "warn")})
    apply(kube_api, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": labels}})


def test_backups_role_converges_idempotently_and_jobs_are_accepted(kube_api: KubeAPI, tmp_path: Path) -> None:
    """Converge twice (changed=0 the second time); a Job from each CronJob is created and its Pod admitted."""
    restricted_namespace(kube_api)
    evars = {"backups_kubeconfig": str(kube_api.kubeconfig), "backup_run_kubeconfig": str(kube_api.kubeconfig),
             "backup_run_wait": False}
    converge = tmp_path / "converge.yml"
    converge.write_text(CONVERGE)

    first = run_playbook(converge, tmp_path, evars)
    assert first.returncode == 0, first.stdout[-5000:] + first.stderr[-2000:]
    assert recap(first.stdout)["changed"] > 0
    second = run_playbook(converge, tmp_path, evars)
    assert second.returncode == 0, second.stdout[-5000:]
    assert recap(second.stdout)["changed"] == 0, f"second run changed something:\n{second.stdout[-5000:]}"

    cronjobs = {c["metadata"]["name"]: c for c in get_json(kube_api, "cronjobs", "-A")["items"]}
    for name in ("seek-backup-etcd", "seek-backup-mysql", "seek-backup-filestore", "seek-backup-drill"):
        assert name in cronjobs, f"CronJob {name} missing"
        assert cronjobs[name]["spec"]["concurrencyPolicy"] == "Forbid"
    assert cronjobs["seek-backup-etcd"]["metadata"]["namespace"] == "kube-system"
    assert get_json(kube_api, "pvc", "-n", NAMESPACE, "seek-backups")["spec"]["volumeName"] == "seek-backups"

    run = tmp_path / "run.yml"
    run.write_text(RUN)
    triggered = run_playbook(run, tmp_path, {**evars, "results_file": str(tmp_path / "results.json")})
    assert triggered.returncode == 0, triggered.stdout[-5000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert sorted(r["kind"] for r in results) == ["drill", "etcd", "filestore", "mysql"], triggered.stdout[-6000:]
    assert {r["status"] for r in results} == {"created"}, results

    jobs = get_json(kube_api, "jobs", "-A", "-l", "seek-k3s/run")["items"]
    assert len(jobs) == 4
    for job in jobs:
        owner = job["metadata"]["ownerReferences"][0]
        assert owner["kind"] == "CronJob" and owner["name"] == job["metadata"]["name"].split("-run-")[0]
        assert job["spec"]["activeDeadlineSeconds"] > 0

    # The job controller creates the Pods; admission (restricted in SEEK's namespace) must let them in.
    def pods_created() -> bool:
        pods = get_json(kube_api, "pods", "-A", "-l", "app.kubernetes.io/component=backup")["items"]
        return len({p["metadata"]["labels"].get("job-name") for p in pods}) == 4

    try:
        eventually(pods_created, timeout=60, what="a Pod for each backup Job")
    except AssertionError:
        events = kube_api.run_kubectl("get", "events", "-A", "--field-selector", "reason=FailedCreate",
                                      "-o", "custom-columns=NS:.metadata.namespace,MSG:.message",
                                      check=False).stdout
        raise AssertionError(f"backup Pods were not admitted:\n{events}") from None


def test_backup_run_reports_jobs_that_do_not_finish_in_time(kube_api: KubeAPI, tmp_path: Path) -> None:
    """With a short timeout (no kubelet here, so no Job finishes) every backup Job is reported as
    timed out, the drill is not started on a dump that did not succeed, and nothing raises."""
    restricted_namespace(kube_api)
    evars = {"backups_kubeconfig": str(kube_api.kubeconfig), "backup_run_kubeconfig": str(kube_api.kubeconfig),
             "backup_run_timeout_seconds": 10,
             "results_file": str(tmp_path / "results.json")}
    converge = tmp_path / "converge.yml"
    converge.write_text(CONVERGE)
    assert run_playbook(converge, tmp_path, evars).returncode == 0
    run = tmp_path / "run.yml"
    run.write_text(RUN)
    triggered = run_playbook(run, tmp_path, evars)
    assert triggered.returncode == 0, triggered.stdout[-5000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert sorted(r["kind"] for r in results) == ["etcd", "filestore", "mysql"]
    assert {r["status"] for r in results} == {"timed out"}, results


RESTORE = textwrap.dedent("""\
    - name: Restore (restore.yml's last play)
      hosts: controller
      gather_facts: false
      roles:
        - role: backup_restore
    """)


def test_failed_restore_leaves_seek_at_zero_and_remembers_the_replicas(kube_api: KubeAPI, tmp_path: Path) -> None:
    """restore.yml's role part against the API: SEEK is scaled to zero (replica counts recorded),
    the MySQL restore Job is created and admitted; here no kubelet runs it, so it hits its
    deadline, the controller marks it Failed, and the play fails with SEEK left at zero, before
    the filestore Job (tests/backup_roles/test_restore_suspend.py: the order and the message)."""
    restricted_namespace(kube_api)
    # The stand-ins share the API server (and the seek namespace) with the SEEK layer tests:
    # they are removed afterwards so the real seek-web Deployment, whose selector differs, can
    # be created there.
    # A SEEK layer test that ran earlier on this worker (files are spread over two workers, in no
    # fixed order) may have left the real ones, whose immutable selector differs: start without.
    kube_api.run_kubectl("-n", NAMESPACE, "delete", "deployment", "seek-web", "seek-workers",
                         "--ignore-not-found", "--wait=true", "--timeout=120s")
    # The backup Jobs the tests above made from the CronJobs stay active here (no kubelet): the
    # restore would wait for them and refuse (test_restore_suspend.py tests that).
    kube_api.run_kubectl("-n", NAMESPACE, "delete", "jobs", "-l", "seek-k3s/run", "--ignore-not-found",
                         "--wait=true", "--timeout=120s")
    try:
        apply(kube_api, seek_deployment("seek-web", 2, NAMESPACE))
        apply(kube_api, seek_deployment("seek-workers", 1, NAMESPACE))
        evars = {"backup_restore_kubeconfig": str(kube_api.kubeconfig), "backup_restore_timeout_seconds": 15,
                 "backup_restore_mysql_dir": "mysql/20260101T013000Z",
                 "backup_restore_filestore_dir": "restore/filestore/20260101T013004Z"}
        playbook = tmp_path / "restore.yml"
        playbook.write_text(RESTORE)
        result = run_playbook(playbook, tmp_path, evars)
        output = result.stdout + result.stderr
        assert result.returncode != 0, output[-5000:]
        assert "stays scaled to zero" in output, output[-5000:]
        for name, before in (("seek-web", "2"), ("seek-workers", "1")):
            deployment = get_json(kube_api, "deployment", "-n", NAMESPACE, name)
            assert deployment["spec"]["replicas"] == 0, name
            assert deployment["metadata"]["annotations"]["seek-k3s/replicas-before-restore"] == before
        jobs = get_json(kube_api, "jobs", "-n", NAMESPACE, "-l", "seek-k3s/restore")["items"]
        assert sorted(j["metadata"]["labels"]["app.kubernetes.io/name"] for j in jobs) == ["seek-restore-mysql"]
        envs = {j["metadata"]["labels"]["app.kubernetes.io/name"]:
                {e["name"]: e.get("value") for e in j["spec"]["template"]["spec"]["containers"][0]["env"]} for j in jobs}
        assert envs["seek-restore-mysql"]["RESTORE_SET_DIR"] == "/backup/mysql/20260101T013000Z"
        for job in jobs:
            reasons = [c.get("reason") for c in job["status"].get("conditions", []) if c["type"] == "Failed"]
            assert reasons == ["DeadlineExceeded"], job["status"]
            volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
            assert volumes["scripts"]["configMap"]["name"] == "seek-restore-scripts"
        # The restore scripts the Jobs run: the backup_restore role's files, byte for byte.
        scripts = get_json(kube_api, "configmap", "-n", NAMESPACE, "seek-restore-scripts")["data"]
        for name in ("restore-mysql.sh", "restore-filestore.sh"):
            assert scripts[name] == (RESTORE_FILES / name).read_text().rstrip("\n"), name
    finally:
        kube_api.run_kubectl("-n", NAMESPACE, "delete", "deployment", "seek-web", "seek-workers",
                             "--ignore-not-found", "--wait=false")
        kube_api.run_kubectl("-n", NAMESPACE, "delete", "jobs", "-l", "seek-k3s/restore",
                             "--ignore-not-found", "--wait=false")
