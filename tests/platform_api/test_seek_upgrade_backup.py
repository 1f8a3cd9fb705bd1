"""seek.yml's upgrade with the backups installed, against a real kube-apiserver + controller manager
(issue 20, items 2 and 4).

SEEK 1.18.0 is converged (platform.yml + seek.yml) in its own namespace and the backups role
installs its CronJobs there. Then seek.yml alone upgrades to 1.18.1:

- the dump CronJobs' pod templates read SEEK_IMAGE from ConfigMap seek-deployed, which the seek role
  rewrites after the upgrade: no backups-role run is needed for the next dump to name 1.18.1;
- a pre-upgrade backup that does not verify (no kubelet here: its Jobs never finish within a short
  wait) stops the upgrade before anything of SEEK changed; the backup CronJobs are resumed after that
  failure;
- a backup that verifies comes first: a stand-in for the kubelet marks each backup Job (and the restore
  drill) complete through the status subresource, recording what it saw at that moment (the image of
  the web Deployment, the CronJobs' suspend flags); only then does the upgrade Job appear.
"""

from __future__ import annotations

import json
import textwrap
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.controlplane.fixture import KubeAPI
from tests.controlplane_selftest.helpers import get_json
from tests.platform_api.conftest import NO_WAIT, install_test_crds, parse_recap, Recap
from tests.render.harness import CONFIGS, REPO_ROOT, make_inventory, run_playbooks

pytestmark = pytest.mark.controlplane

NAMESPACE = "seek-upgrade"
OLD_IMAGE = "fairdom/seek:1.18.0"
NEW_IMAGE = "fairdom/seek:1.18.1"
SEEK = [REPO_ROOT / "playbooks" / "seek.yml"]
BACKUP_CRONJOBS = ("seek-backup-mysql", "seek-backup-filestore", "seek-backup-drill")
INSTALL_BACKUPS = textwrap.dedent("""\
    - name: Install the backup CronJobs (backup-install.yml's API part)
      hosts: controller
      gather_facts: false
      vars:
        ansible_become: false
      roles:
        - role: backups
    """)


class Setup:
    """The converged namespace and a way to run seek.yml alone in it."""

    def __init__(self, kube_api: KubeAPI, inventory: Path, extra: dict[str, Any]) -> None:
        self.kube_api = kube_api
        self.inventory = inventory
        self.extra = extra

    def seek(self, **extra: Any) -> Recap:
        """Run seek.yml alone (no backups-role run) with ``extra``."""
        return parse_recap(run_playbooks(self.inventory, {**self.extra, **extra}, playbooks=SEEK,
                                         env=self.kube_api.env))

    def get(self, *args: str) -> dict[str, Any]:
        return get_json(self.kube_api, *args, "-n", NAMESPACE)

    def web_image(self) -> str:
        return self.get("deployment", "seek-web")["spec"]["template"]["spec"]["containers"][0]["image"]

    def published(self) -> str:
        return self.get("configmap", "seek-deployed")["data"]["seek_image"]

    def suspended(self) -> dict[str, bool]:
        return {name: bool(self.get("cronjob", name)["spec"].get("suspend")) for name in BACKUP_CRONJOBS}

    def upgrade_jobs(self) -> list[str]:
        return sorted(j["metadata"]["name"] for j in self.get("jobs")["items"]
                      if j["metadata"]["name"].startswith("seek-upgrade-"))

    def backup_jobs(self) -> list[dict[str, Any]]:
        return self.get("jobs", "-l", "seek-k3s/run")["items"]


@pytest.fixture(scope="module")
def setup(kube_api: KubeAPI, tmp_path_factory: pytest.TempPathFactory) -> Setup:
    """SEEK 1.18.0 converged in NAMESPACE, the backup CronJobs installed next to it."""
    install_test_crds(kube_api)
    config = CONFIGS["single-localpath-nginx-notls"]
    directory = tmp_path_factory.mktemp("seek-upgrade")
    inventory = make_inventory(directory, config, kubeconfig=kube_api.kubeconfig)
    extra = {**config.extra, **NO_WAIT, "seek_namespace": NAMESPACE, "seek_image": OLD_IMAGE}
    first = parse_recap(run_playbooks(inventory, extra, env=kube_api.env))
    assert first.returncode == 0, first.output[-6000:]
    playbook = directory / "install-backups.yml"
    playbook.write_text(INSTALL_BACKUPS)
    env = {**kube_api.env, "ANSIBLE_ROLES_PATH": str(REPO_ROOT / "roles")}
    backups = parse_recap(run_playbooks(inventory, extra, playbooks=[playbook], env=env))
    assert backups.returncode == 0, backups.output[-6000:]
    return Setup(kube_api, inventory, extra)


class FakeKubelet(threading.Thread):
    """Marks every new backup Job complete through the status subresource, as the job controller
    would once its pod succeeded (SuccessCriteriaMet, then Complete, completionTime, no active
    pod: the rules kube-apiserver v1.34 enforces on a Job's status), and records what the cluster
    looked like at that moment."""

    def __init__(self, setup: Setup) -> None:
        super().__init__(daemon=True)
        self.setup = setup
        self.known = {j["metadata"]["uid"] for j in get_json(setup.kube_api, "jobs", "-A", "-l", "seek-k3s/run")["items"]}
        self.stop = threading.Event()
        self.seen: list[dict[str, Any]] = []
        self.errors: list[str] = []

    def complete(self, job: dict[str, Any]) -> bool:
        start = job.get("status", {}).get("startTime")
        if not start:
            return False  # the job controller sets startTime first; it may not be changed after
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        condition = {"status": "True", "reason": "FakeKubelet", "message": "completed by the test",
                     "lastProbeTime": now, "lastTransitionTime": now}
        status = {"status": {"active": 0, "ready": 0, "succeeded": 1, "uncountedTerminatedPods": {},
                             "completionTime": max(now, start),
                             "conditions": [{"type": "SuccessCriteriaMet", **condition},
                                            {"type": "Complete", **condition}]}}
        result = self.setup.kube_api.run_kubectl(
            "-n", job["metadata"]["namespace"], "patch", "job", job["metadata"]["name"],
            "--subresource=status", "--type=merge", "-p", json.dumps(status), check=False)
        if result.returncode != 0:
            self.errors.append(result.stderr)
            return False
        return True

    def run(self) -> None:
        while not self.stop.is_set():
            for job in get_json(self.setup.kube_api, "jobs", "-A", "-l", "seek-k3s/run")["items"]:
                if job["metadata"]["uid"] in self.known:
                    continue
                before = {"job": job["metadata"]["name"], "web_image": self.setup.web_image(),
                          "suspended": self.setup.suspended(),
                          "upgrade_jobs": self.setup.upgrade_jobs()}
                if self.complete(job):
                    self.known.add(job["metadata"]["uid"])
                    self.seen.append(before)
            time.sleep(0.5)


def test_dump_cronjobs_read_the_image_the_seek_role_published(setup: Setup) -> None:
    """The MySQL and filestore CronJobs take SEEK_IMAGE from ConfigMap seek-deployed, which names
    the image SEEK runs after the first install."""
    assert setup.published() == OLD_IMAGE
    for name in ("seek-backup-mysql", "seek-backup-filestore"):
        cronjob = setup.get("cronjob", name)
        env = {e["name"]: e for e in cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["SEEK_IMAGE"] == {"name": "SEEK_IMAGE", "valueFrom": {"configMapKeyRef": {
            "name": "seek-deployed", "key": "seek_image", "optional": True}}}, env["SEEK_IMAGE"]


def test_an_unverified_backup_stops_the_upgrade_with_nothing_changed(setup: Setup) -> None:
    """No kubelet: the backup Jobs never finish in 10 s. The run fails naming the Jobs, the
    web Deployment keeps 1.18.0, no upgrade Job exists, the workers still run, the published
    image is unchanged, and the CronJobs are not left suspended."""
    recap = setup.seek(seek_image=NEW_IMAGE, seek_upgrade_backup_timeout=10)
    assert recap.returncode != 0, recap.output[-6000:]
    flat = " ".join(recap.output.split())
    assert "The backup before the upgrade to fairdom/seek:1.18.1 did not verify" in flat, flat[-4000:]
    assert "timed out" in flat and "Nothing was changed: SEEK still runs fairdom/seek:1.18.0" in flat
    # The backup path ran (Jobs made from the CronJobs, stage backup), before any change.
    kinds = sorted(j["metadata"]["name"].split("-run-")[0] for j in setup.backup_jobs())
    assert kinds == ["seek-backup-filestore", "seek-backup-mysql"], kinds
    assert setup.web_image() == OLD_IMAGE
    assert setup.upgrade_jobs() == []
    assert setup.get("deployment", "seek-workers")["spec"]["replicas"] == 1
    assert setup.published() == OLD_IMAGE
    tasks = [line for line in recap.output.splitlines() if line.startswith("TASK [")]
    # (an include_role task's banner carries no role prefix)
    steps = ("Upgrade | Suspend the backup CronJobs", "Run | Trigger and wait for the backup Jobs",
             "Backup | Stop the upgrade unless", "Upgrade | Resume the backup CronJobs")
    order = [next((i for i, task in enumerate(tasks) if step in task), -1) for step in steps]
    assert -1 not in order and order == sorted(order), (order, tasks[-40:])
    assert setup.suspended() == dict.fromkeys(BACKUP_CRONJOBS, False)
    assert "The backup CronJobs were suspended (SEEK upgrade to fairdom/seek:1.18.1) and are resumed" in flat


def test_a_verified_backup_comes_first_then_seek_yml_alone_upgrades_and_publishes(setup: Setup) -> None:
    """The backup Jobs and the drill run while the web Deployment still has 1.18.0 and no upgrade
    Job exists, with the CronJobs suspended; then the upgrade Job, the new image everywhere (the
    ConfigMap the dumps read included), the CronJobs resumed, and a summary naming the sets and the
    restore command."""
    # The Jobs of the unverified backup still run (no kubelet): suspend.yml would wait for them.
    for namespace in (NAMESPACE, "kube-system"):
        setup.kube_api.run_kubectl("-n", namespace, "delete", "jobs", "-l", "seek-k3s/run", "--wait=true",
                                   "--timeout=120s")
    kubelet = FakeKubelet(setup)
    kubelet.start()
    try:
        recap = setup.seek(seek_image=NEW_IMAGE, seek_upgrade_backup_timeout=120)
    finally:
        kubelet.stop.set()
        kubelet.join(timeout=30)
    assert recap.returncode == 0, recap.output[-6000:] + "\n".join(kubelet.errors)
    jobs = sorted(seen["job"].split("-run-")[0] for seen in kubelet.seen)
    assert jobs == ["seek-backup-drill", "seek-backup-etcd", "seek-backup-filestore", "seek-backup-mysql"], jobs
    for seen in kubelet.seen:
        assert seen["web_image"] == OLD_IMAGE and seen["upgrade_jobs"] == [], seen
        assert seen["suspended"] == dict.fromkeys(BACKUP_CRONJOBS, True), seen
    assert setup.upgrade_jobs() == ["seek-upgrade-1-18-1"]
    assert setup.web_image() == NEW_IMAGE
    # The next dump's pod reads this: no backups-role run was needed.
    assert setup.published() == NEW_IMAGE
    assert setup.suspended() == dict.fromkeys(BACKUP_CRONJOBS, False)
    flat = " ".join(recap.output.split())
    mysql_job = next(s["job"] for s in kubelet.seen if s["job"].startswith("seek-backup-mysql-run-"))
    assert f"MySQL set mysql/<stamp: see kubectl -n {NAMESPACE} logs job/{mysql_job}>" in flat, flat[-4000:]
    assert "(restore drill: succeeded), made with fairdom/seek:1.18.0" in flat
    assert "set seek_image back to fairdom/seek:1.18.0 in the inventory" in flat
    assert f"ansible-playbook playbooks/restore.yml -i {setup.inventory}" in flat
    assert "SEEK upgrade fairdom/seek:1.18.0 -> fairdom/seek:1.18.1: done." in flat
    assert "The backup CronJobs were suspended (SEEK upgrade to fairdom/seek:1.18.1) and are resumed" in flat
    # A re-run changes nothing and publishes the same image.
    again = setup.seek(seek_image=NEW_IMAGE)
    assert again.returncode == 0 and again.changed == 0, again.output[-4000:]
