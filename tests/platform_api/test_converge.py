"""platform.yml + seek.yml against a real kube-apiserver: converge, idempotence, upgrade."""

from __future__ import annotations

import pytest

from tests.platform_api.conftest import Platform, changed_tasks

pytestmark = pytest.mark.controlplane

OLD_IMAGE = "fairdom/seek:1.18.0"
NEW_IMAGE = "fairdom/seek:1.18.1"


def _upgrade_jobs(platform: Platform) -> list[str]:
    jobs = platform.kubectl_json("-n", "seek", "get", "jobs")["items"]
    return sorted(job["metadata"]["name"] for job in jobs
                  if job["metadata"]["name"].startswith("seek-upgrade-"))


def test_first_run_converges(platform: Platform) -> None:
    """The first run succeeds and creates the objects."""
    assert platform.first.returncode == 0, platform.first.output[-6000:]
    assert platform.first.failed == 0
    assert platform.first.changed >= 10  # one per task, loops count once


def test_objects_exist_on_the_api_server(platform: Platform) -> None:
    """Every kind the layers create is stored, with the names other layers rely on."""
    kubectl = platform.kube_api.run_kubectl
    for kind, name, namespace in [
        ("storageclass", "local-path-retain", None), ("storageclass", "nfs-csi", None),
        ("helmchart", "ingress-nginx", "kube-system"), ("helmchart", "csi-driver-nfs", "kube-system"),
        ("helmchart", "cert-manager", "kube-system"), ("clusterissuer", "letsencrypt", None),
        ("secret", "mysql-credentials", "seek"), ("service", "mysql", "seek"),
        ("service", "mysql-headless", "seek"), ("statefulset", "mysql", "seek"),
        ("statefulset", "solr", "seek"), ("pvc", "seek-filestore", "seek"),
        ("pvc", "seek-cache", "seek"), ("deployment", "seek-web", "seek"),
        ("deployment", "seek-workers", "seek"), ("ingress", "seek", "seek"),
        ("job", "seek-db-setup", "seek"), ("networkpolicy", "mysql", "seek"),
        ("poddisruptionbudget", "seek-web", "seek"),
    ]:
        args = ["get", kind, name] + (["-n", namespace] if namespace else [])
        kubectl(*args)
    assert _upgrade_jobs(platform) == [], "a first install runs no upgrade Job"


def test_pods_pass_restricted_pod_security_admission(platform: Platform) -> None:
    """The controllers could create every pod in the restricted namespace (they stay Pending)."""
    pods = platform.kubectl_json("-n", "seek", "get", "pods")["items"]
    components = {pod["metadata"]["labels"].get("app.kubernetes.io/component") for pod in pods}
    assert {"database", "search", "web", "workers", "migration"} <= components, components
    namespace = platform.kubectl_json("get", "namespace", "seek")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_second_run_changes_nothing(platform: Platform) -> None:
    """Re-running on the converged state reports changed=0."""
    recap = platform.run("-e", f"seek_image={OLD_IMAGE}")
    assert recap.returncode == 0, recap.output[-6000:]
    assert recap.changed == 0, changed_tasks(recap.output)


def test_check_mode_reports_no_change(platform: Platform) -> None:
    """--check on the converged state reports no change."""
    recap = platform.run("--check", "-e", f"seek_image={OLD_IMAGE}")
    assert recap.returncode == 0, recap.output[-6000:]
    assert recap.changed == 0, changed_tasks(recap.output)


def test_changing_seek_image_runs_exactly_one_upgrade_job(platform: Platform) -> None:
    """A new seek_image creates one upgrade Job named for it, rolls the Deployments, no errors.
    (No backups are installed in this fixture: the pre-upgrade backup is test_seek_upgrade_backup's.)"""
    recap = platform.run("-e", f"seek_image={NEW_IMAGE}", "-e", "seek_upgrade_backup=false")
    assert recap.returncode == 0, recap.output[-6000:]
    assert "field is immutable" not in recap.output
    assert _upgrade_jobs(platform) == ["seek-upgrade-1-18-1"]
    job = platform.kubectl_json("-n", "seek", "get", "job", "seek-upgrade-1-18-1")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == NEW_IMAGE and container["command"] == ["docker/upgrade.sh"]
    web = platform.kubectl_json("-n", "seek", "get", "deployment", "seek-web")
    assert web["spec"]["template"]["spec"]["containers"][0]["image"] == NEW_IMAGE
    workers = platform.kubectl_json("-n", "seek", "get", "deployment", "seek-workers")
    assert workers["spec"]["replicas"] == 1
    assert workers["spec"]["template"]["spec"]["containers"][0]["image"] == NEW_IMAGE
    setup = platform.kubectl_json("-n", "seek", "get", "job", "seek-db-setup")
    assert setup["spec"]["template"]["spec"]["containers"][0]["image"] == OLD_IMAGE


def test_rerun_after_upgrade_changes_nothing(platform: Platform) -> None:
    """After the upgrade a re-run is a no-op and still leaves exactly one upgrade Job."""
    recap = platform.run("-e", f"seek_image={NEW_IMAGE}")
    assert recap.returncode == 0, recap.output[-6000:]
    assert recap.changed == 0, changed_tasks(recap.output)
    assert _upgrade_jobs(platform) == ["seek-upgrade-1-18-1"]


def test_skipping_a_minor_version_is_refused_before_any_change(platform: Platform) -> None:
    """From 1.18.1, seek_image 1.20.0 skips 1.19: the run stops in validation, naming seek_image
    and the release to go through, and nothing changes (the web Deployment keeps 1.18.1)."""
    recap = platform.run("-e", "seek_image=fairdom/seek:1.20.0")
    assert recap.returncode != 0, recap.output[-6000:]
    assert recap.changed == 0, changed_tasks(recap.output)
    before, fatal = recap.output.split("fatal:", 1)
    assert "Validate |" in before.rsplit("TASK [", 1)[1], before[-2000:]
    fatal = " ".join(fatal.split())  # the YAML callback wraps long messages
    assert "seek_image fairdom/seek:1.20.0 skips SEEK minor versions" in fatal, fatal[:2000]
    assert "fairdom/seek:1.18.1 -> fairdom/seek:1.19.x -> fairdom/seek:1.20.0" in fatal, fatal[:2000]
    web = platform.kubectl_json("-n", "seek", "get", "deployment", "seek-web")
    assert web["spec"]["template"]["spec"]["containers"][0]["image"] == NEW_IMAGE
    assert _upgrade_jobs(platform) == ["seek-upgrade-1-18-1"]


def test_next_minor_version_passes_the_check(platform: Platform) -> None:
    """1.18.1 -> 1.19.0 is one step: the version check passes (run with --check: nothing changes)."""
    recap = platform.run("--check", "-e", "seek_image=fairdom/seek:1.19.0", "-e", "seek_upgrade_backup=false")
    assert "skips SEEK minor versions" not in recap.output
    assert "Validate | Check the upgrade goes one SEEK minor version at a time" in recap.output
    assert recap.returncode == 0, recap.output[-6000:]
