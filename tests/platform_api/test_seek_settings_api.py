"""The seek-settings Job against a real kube-apiserver (issue 20, item 8).

The seek role's settings step runs as seek.yml runs it (state.yml, then settings.yml, waiting for
the Job). The Job is admitted under restricted Pod Security (its controller creates the pod); while
it has not succeeded the Ingress does not exist; there is no kubelet here, so the test reports the
Job succeeded through its status subresource, as the Job controller would, and only then does the
Ingress appear. A second run with the same settings changes nothing; another value makes a new Job;
a Job that fails (its deadline passes) stops the play without an Ingress, saying what to do.
"""

from __future__ import annotations

import base64
import json
import subprocess
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.backup_roles.helpers import VENV_BIN, env, run_playbook, write_inventory

pytestmark = pytest.mark.controlplane

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = textwrap.dedent("""\
    - name: SEEK's settings step, as the seek role runs it
      hosts: controller
      gather_facts: false
      tasks:
        - name: Read what is deployed
          ansible.builtin.include_role:
            name: seek
            tasks_from: state.yml
        - name: Create the first administrator and the settings, then the Ingress
          ansible.builtin.include_role:
            name: seek
            tasks_from: settings.yml
    """)
PASSWORD = "Vault-Admin-Password-1"


def _vars(kube_api: Any, tmp_path: Path, namespace: str, **extra: Any) -> dict[str, Any]:
    return {"seek_kubeconfig": str(kube_api.kubeconfig), "cluster_kubeconfig": str(kube_api.kubeconfig),
            "seek_namespace": namespace, "seek_ingress_host": "seek.example.org", "seek_tls": "none",
            "seek_ingress_controller": "ingress-nginx", "seek_artifacts_dir": str(tmp_path / "artifacts"),
            "seek_admin_login": "admin", "seek_admin_email": "admin@example.org",
            "vault_seek_admin_password": PASSWORD, "seek_wait": True, **extra}


def _namespace(kube_api: Any, namespace: str) -> None:
    kube_api.run_kubectl("create", "namespace", namespace, check=False)
    kube_api.run_kubectl("label", "--overwrite", "namespace", namespace,
                         "pod-security.kubernetes.io/enforce=restricted")


def _jobs(kube_api: Any, namespace: str) -> list[dict[str, Any]]:
    items = json.loads(kube_api.run_kubectl("-n", namespace, "get", "jobs", "-o", "json").stdout)["items"]
    return [job for job in items if job["metadata"]["name"].startswith("seek-settings-")]


def _ingress(kube_api: Any, namespace: str) -> bool:
    result = kube_api.run_kubectl("-n", namespace, "get", "ingress", "seek", check=False)
    return result.returncode == 0


def _events(kube_api: Any, namespace: str, name: str) -> set[str]:
    events = json.loads(kube_api.run_kubectl("-n", namespace, "get", "events", "--field-selector",
                                             f"involvedObject.name={name}", "-o", "json").stdout)["items"]
    return {event["reason"] for event in events}


def _mark_succeeded(kube_api: Any, namespace: str, name: str) -> None:
    """Write the status the Job controller writes when the pod succeeded (no kubelet here):
    SuccessCriteriaMet, then Complete, a completionTime, no active pod, the startTime the
    controller set kept (kube-apiserver v1.34 refuses a changed one)."""
    deadline = time.monotonic() + 60
    while not (start := json.loads(kube_api.run_kubectl("-n", namespace, "get", "job", name, "-o", "json").stdout)
               .get("status", {}).get("startTime")):
        assert time.monotonic() < deadline, f"the job controller never started Job {name}"
        time.sleep(1)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    condition = {"status": "True", "reason": "CompletionsReached", "message": "completed by the test",
                 "lastProbeTime": now, "lastTransitionTime": now}
    status = {"status": {"completionTime": max(now, start), "active": 0, "ready": 0, "succeeded": 1,
                         "uncountedTerminatedPods": {},
                         "conditions": [{"type": "SuccessCriteriaMet", **condition},
                                        {"type": "Complete", **condition}]}}
    kube_api.run_kubectl("-n", namespace, "patch", "job", name, "--subresource=status", "--type=merge",
                         "-p", json.dumps(status))


def _start(tmp_path: Path, extra: dict[str, Any]) -> subprocess.Popen:
    playbook = tmp_path / "settings.yml"
    playbook.write_text(PLAYBOOK)
    inventory, evars = write_inventory(tmp_path, extra)
    return subprocess.Popen([str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), "-e", f"@{evars}",
                             str(playbook)], cwd=REPO, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _recap_changed(output: str) -> int:
    for line in output.splitlines():
        if line.startswith("localhost") and "changed=" in line:
            return int(line.split("changed=", 1)[1].split()[0])
    raise AssertionError(f"no recap:\n{output[-3000:]}")


def test_ingress_waits_for_the_settings_job_and_a_rerun_changes_nothing(kube_api: Any, tmp_path: Path) -> None:
    namespace = "settings-test"
    _namespace(kube_api, namespace)
    extra = _vars(kube_api, tmp_path, namespace)
    run = _start(tmp_path, extra)
    try:
        deadline = time.monotonic() + 300
        while not _jobs(kube_api, namespace):
            assert run.poll() is None, run.communicate()[0][-4000:]
            assert time.monotonic() < deadline, "no seek-settings Job was created"
            time.sleep(1)
        (job,) = _jobs(kube_api, namespace)
        name = job["metadata"]["name"]
        # The Job controller created its pod: the restricted admission let it through.
        deadline = time.monotonic() + 60
        while "SuccessfulCreate" not in (reasons := _events(kube_api, namespace, name)):
            assert "FailedCreate" not in reasons and time.monotonic() < deadline, reasons
            time.sleep(1)
        # The play waits for the Job (it polls every 10 s): still no Ingress after two polls.
        time.sleep(25)
        assert run.poll() is None, run.communicate()[0][-4000:]
        assert not _ingress(kube_api, namespace), "the Ingress exists before the settings Job succeeded"
        _mark_succeeded(kube_api, namespace, name)
        output, _ = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 0, output[-4000:]
    assert _ingress(kube_api, namespace)

    # What the Job was given: the script from the ConfigMap, the password only through the Secret.
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert PASSWORD not in json.dumps(job)
    env_vars = {e["name"]: e for e in container["env"]}
    assert env_vars["SEEK_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "seek-settings",
                                                                         "key": "admin-password"}
    assert env_vars["SEEK_SITE_BASE_HOST"]["value"] == "http://seek.example.org"
    secret = json.loads(kube_api.run_kubectl("-n", namespace, "get", "secret", "seek-settings", "-o", "json").stdout)
    assert base64.b64decode(secret["data"]["admin-password"]).decode() == PASSWORD
    configmap = json.loads(kube_api.run_kubectl("-n", namespace, "get", "configmap", "seek-settings",
                                                "-o", "json").stdout)
    assert PASSWORD not in json.dumps(configmap) and "Seek::Config" in configmap["data"]["settings.rb"]
    assert PASSWORD not in output

    # Same settings again: the Job is found, nothing is created or changed.
    again = run_playbook(tmp_path / "settings.yml", tmp_path, extra)
    assert again.returncode == 0, again.stdout[-4000:]
    assert _recap_changed(again.stdout) == 0, again.stdout[-4000:]
    assert [j["metadata"]["name"] for j in _jobs(kube_api, namespace)] == [name]

    # Another value: a new Job (the earlier one is kept, never modified).
    other = run_playbook(tmp_path / "settings.yml", tmp_path,
                         {**extra, "seek_registration_open": True, "seek_wait": False})
    assert other.returncode == 0, other.stdout[-4000:]
    names = {j["metadata"]["name"]: j for j in _jobs(kube_api, namespace)}
    assert len(names) == 2 and name in names
    (new,) = [j for n, j in names.items() if n != name]
    new_env = {e["name"]: e.get("value") for e in new["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert new_env["SEEK_REGISTRATION_OPEN"] == "true"


def test_failed_settings_job_stops_the_play_without_an_ingress(kube_api: Any, tmp_path: Path) -> None:
    """The Job's deadline passes (no kubelet): the play stops naming the Job and what to do, and
    the Ingress was never created."""
    namespace = "settings-fail-test"
    _namespace(kube_api, namespace)
    playbook = tmp_path / "settings.yml"
    playbook.write_text(PLAYBOOK)
    result = run_playbook(playbook, tmp_path, _vars(kube_api, tmp_path, namespace, seek_job_timeout=10))
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, output[-4000:]
    (job,) = _jobs(kube_api, namespace)
    assert f"The Job {namespace}/{job['metadata']['name']} failed" in output, output[-4000:]
    assert "the Ingress was not created: nobody outside the cluster can reach SEEK yet" in output, output[-4000:]
    assert f"kubectl -n {namespace} delete job {job['metadata']['name']}" in output
    assert not _ingress(kube_api, namespace)
    assert PASSWORD not in output
