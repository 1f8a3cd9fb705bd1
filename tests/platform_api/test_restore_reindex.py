"""The post-restore Job (role seek_reindex) against a real kube-apiserver.

SEEK's web Deployment, rendered by the seek role itself, is stored on the API server; the Job
made from its pod template must set SEEK up with SEEK's own start-up functions (MySQL
database.yml, search on) before rake, check the queued reindex reached MySQL, pass the
restricted Pod Security admission, and, when it does not finish (no kubelet here, so its
deadline passes), stop the play with a message that keeps SEEK at zero and says what to do.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.backup_roles.helpers import run_playbook
from tests.render.harness import CONFIGS, Config, render

pytestmark = pytest.mark.controlplane

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "reindex-test"
REINDEX = textwrap.dedent("""\
    - name: The post-restore Job alone
      hosts: controller
      gather_facts: false
      tasks:
        - name: Clear the cache and queue the reindex
          ansible.builtin.include_role:
            name: seek_reindex
    """)


def _reindex_script() -> str:
    """The Job's shell script, as reindex.yml defines it."""
    tasks = yaml.safe_load((REPO / "roles" / "seek_reindex" / "tasks" / "reindex.yml").read_text())
    return tasks[0]["ansible.builtin.set_fact"]["__seek_reindex_script"]


def test_reindex_script_uses_seeks_functions_and_checks_mysql() -> None:
    """SEEK's own functions run before rake; the count of ReindexAllJob rows must grow."""
    script = _reindex_script()
    lines = [line.strip() for line in script.splitlines()]
    order = [lines.index(step) for step in (". docker/shared_functions.sh", "use_mysql_db", "enable_search",
                                             "wait_for_mysql", 'before=$(queued)', '"$@"', "after=$(queued)")]
    assert order == sorted(order), order
    assert "FROM delayed_jobs WHERE handler LIKE '%ReindexAllJob%'" in script
    assert '-p"$MYSQL_PASSWORD"' not in script and "MYSQL_PWD" in script
    # A dump from an older SEEK (restore_allow_seek_upgrade) is migrated before the reindex.
    upgrade = lines.index("bundle exec rake seek:upgrade")
    assert order[3] < upgrade < order[4]
    assert 'if [ "${SEEK_RESTORE_RUN_UPGRADE:-0}" = 1 ]; then' in lines[upgrade - 4:upgrade]


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed (tests/host-packages.txt)")
def test_reindex_script_is_shellcheck_clean(tmp_path: Path) -> None:
    """The script passes shellcheck (SEEK's sourced file is in the image, not here: SC1091)."""
    script = tmp_path / "reindex.sh"
    script.write_text("#!/bin/bash\n" + _reindex_script())
    result = subprocess.run(["shellcheck", "-s", "bash", "-e", "SC1091", str(script)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


def _web_deployment(tmp_path: Path) -> dict[str, Any]:
    """SEEK's web Deployment as the seek role renders it, moved to the test namespace."""
    base = CONFIGS["single-localpath-nginx-notls"]
    config = Config(name="reindex", cluster=base.cluster, extra={**base.extra, "seek_namespace": NAMESPACE})
    out = render(tmp_path, config)
    for path in out.rglob("seek-web-deployment.yaml"):
        return yaml.safe_load(path.read_text())
    raise AssertionError("no seek-web-deployment.yaml rendered")


@pytest.mark.parametrize("older_dump", [False, True], ids=["same-seek", "older-seek"])
def test_reindex_job_from_the_web_template_is_admitted_and_fails_visibly(kube_api: Any, tmp_path: Path,
                                                                        older_dump: bool) -> None:
    """Made from the real web pod template, admitted (a Pod is created under restricted), and past
    its deadline the play stops naming the Job, SEEK kept at zero, and what to do next. After a
    dump from an older SEEK (seek_reindex_run_upgrade, set by backup_restore) the Job runs
    SEEK's upgrade first."""
    restore_id = "20260101000001" if older_dump else "20260101000000"
    kube_api.run_kubectl("create", "namespace", NAMESPACE, check=False)
    kube_api.run_kubectl("label", "--overwrite", "namespace", NAMESPACE,
                         "pod-security.kubernetes.io/enforce=restricted")
    web = _web_deployment(tmp_path)
    web["spec"]["replicas"] = 0  # restore.yml scaled SEEK to zero before this Job runs
    kube_api.run_kubectl("apply", "-f", "-", input=json.dumps(web))
    playbook = tmp_path / "reindex.yml"
    playbook.write_text(REINDEX)
    result = run_playbook(playbook, tmp_path, {
        "seek_reindex_kubeconfig": str(kube_api.kubeconfig), "seek_reindex_namespace": NAMESPACE,
        "seek_reindex_timeout_seconds": 10, "seek_reindex_id": restore_id,
        "seek_reindex_run_upgrade": older_dump,
        "seek_reindex_replicas": {"seek-web": 2, "seek-workers": 1}})
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-4000:]
    assert f"The Job reindex-test/seek-reindex-{restore_id} failed" in output, output[-4000:]
    assert "SEEK stays at zero" in output and '"seek-web": 2' in output, output[-4000:]

    job = json.loads(kube_api.run_kubectl("-n", NAMESPACE, "get", "job", f"seek-reindex-{restore_id}",
                                          "-o", "json").stdout)
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == 10
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "backup"  # MySQL's policy admits it
    pod = spec["template"]["spec"]
    web_pod = web["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    seek = next(c for c in web_pod["containers"] if c["name"] == "seek")
    assert container["image"] == seek["image"]
    assert container["command"][:2] == ["bash", "-c"] and "use_mysql_db" in container["command"][2]
    assert container["args"] == ["bundle", "exec", "rake", "tmp:cache:clear", "seek:reindex_all"]
    upgrade = {"name": "SEEK_RESTORE_RUN_UPGRADE", "value": "1" if older_dump else "0"}
    assert container["env"] == seek["env"] + [upgrade] and container["envFrom"] == seek["envFrom"]
    assert container["volumeMounts"] == seek["volumeMounts"]
    assert {v["name"] for v in pod["volumes"]} == {v["name"] for v in web_pod["volumes"]}
    assert not any(key in container for key in ("livenessProbe", "readinessProbe", "startupProbe", "ports"))
    for key in ("nodeSelector", "affinity"):
        assert pod.get(key) == web_pod.get(key), key
    # The Job controller deletes its pod when the deadline passes: its events tell what happened.
    events = json.loads(kube_api.run_kubectl("-n", NAMESPACE, "get", "events", "--field-selector",
                                             f"involvedObject.name={job['metadata']['name']}",
                                             "-o", "json").stdout)["items"]
    reasons = {event["reason"] for event in events}
    assert "SuccessfulCreate" in reasons and "FailedCreate" not in reasons, \
        [(e["reason"], e.get("message", "")[:200]) for e in events]


SOLR_REINDEX = textwrap.dedent("""\
    - name: The seek role's reindex after a Solr configset change
      hosts: controller
      gather_facts: false
      tasks:
        - name: Reindex into the rebuilt core
          ansible.builtin.include_role:
            name: seek
            tasks_from: reindex.yml
    """)


def test_solr_configset_change_reindex_stops_workers_and_fails_visibly(kube_api: Any, tmp_path: Path) -> None:
    """seek's reindex.yml (run when Solr's core was rebuilt without a SEEK upgrade) stops the
    workers, creates the post-restore Job, and a Job that does not finish stops the play saying
    the core is empty until a reindex runs and how to ask for one."""
    kube_api.run_kubectl("create", "namespace", NAMESPACE, check=False)
    web = _web_deployment(tmp_path)
    workers = yaml.safe_load(next(tmp_path.rglob("seek-workers-deployment.yaml")).read_text())
    kube_api.run_kubectl("apply", "-f", "-", input=json.dumps(web))
    kube_api.run_kubectl("apply", "-f", "-", input=json.dumps(workers))
    playbook = tmp_path / "solr-reindex.yml"
    playbook.write_text(SOLR_REINDEX)
    result = run_playbook(playbook, tmp_path, {
        "seek_kubeconfig": str(kube_api.kubeconfig), "cluster_kubeconfig": str(kube_api.kubeconfig),
        "seek_namespace": NAMESPACE, "seek_reindex_timeout_seconds": 10})
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-4000:]
    assert "Solr's core was rebuilt for a new configset" in output, output[-4000:]
    assert "seek_reindex=true" in output and "SEEK stays at zero" not in output, output[-4000:]
    replicas = kube_api.run_kubectl("-n", NAMESPACE, "get", "deployment", "seek-workers",
                                    "-o", "jsonpath={.spec.replicas}").stdout
    assert replicas == "0"
    jobs = kube_api.run_kubectl("-n", NAMESPACE, "get", "jobs", "-o", "name").stdout.split()
    assert any(name.startswith("job.batch/seek-reindex-solr-") for name in jobs), jobs
