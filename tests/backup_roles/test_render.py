"""The backup objects render for several configurations, validate against the Kubernetes 1.34
schemas, and follow the project's policies (Forbid, deadlines below the interval, time zone,
pinned images, requests and limits, securityContext, restricted Pod Security where it applies)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.backup_roles.helpers import FILES, REPO, VENV_BIN

sys.path.insert(0, str(REPO / "roles" / "backups" / "filter_plugins"))
from cron_interval import cron_min_interval  # noqa: E402

PINNED = re.compile(r"^[^\s:@]+(/[^\s:@]+)*:(?!latest$|main$|master$|stable$)[A-Za-z0-9_][A-Za-z0-9_.-]*$")
RESTRICTED_VOLUMES = {"configMap", "emptyDir", "persistentVolumeClaim", "secret", "projected", "downwardAPI",
                      "csi", "ephemeral"}


def cronjobs(objects: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The CronJobs among the rendered objects."""
    return [o for o in objects.values() if o["kind"] == "CronJob"]


def pod_spec(cronjob: dict[str, Any]) -> dict[str, Any]:
    """The pod spec of a CronJob."""
    return cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every container of a pod spec, init containers included."""
    return spec.get("initContainers", []) + spec["containers"]


def test_kubernetes_validate_strict(rendered) -> None:
    """Every rendered object is valid for Kubernetes 1.34 (unknown fields are errors)."""
    name, _, objects, out_dir = rendered
    files = sorted(str(p) for p in out_dir.glob("*.yaml"))
    assert len(files) == len(objects) >= 7
    result = subprocess.run([str(VENV_BIN / "kubernetes-validate"), "--strict", "-k", "1.34.0", *files],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(files), result.stdout


def test_expected_cronjobs(rendered) -> None:
    """etcd, MySQL and filestore always; the drill unless its schedule is empty."""
    name, evars, objects, _ = rendered
    names = sorted(c["metadata"]["name"] for c in cronjobs(objects))
    expected = ["seek-backup-etcd", "seek-backup-filestore", "seek-backup-mysql"]
    if evars.get("backups_drill_schedule", "x") != "":
        expected.insert(0, "seek-backup-drill")
    assert names == expected


def test_cronjob_schedule_policy(rendered) -> None:
    """Forbid, explicit time zone, deadlines below the interval, history limits, backoff limit."""
    _, evars, objects, _ = rendered
    for cj in cronjobs(objects):
        spec = cj["spec"]
        job = spec["jobTemplate"]["spec"]
        interval = cron_min_interval(spec["schedule"])
        where = cj["metadata"]["name"]
        assert spec["concurrencyPolicy"] == "Forbid", where
        assert spec["timeZone"] == evars.get("backup_timezone", "Etc/UTC"), where
        assert 10 <= spec["startingDeadlineSeconds"] < interval, where
        assert spec["successfulJobsHistoryLimit"] >= 0 and spec["failedJobsHistoryLimit"] >= 1, where
        assert 0 < job["activeDeadlineSeconds"] < interval, f"{where}: deadline not below {interval}s"
        assert job["backoffLimit"] >= 0, where
        assert job["ttlSecondsAfterFinished"] >= 3600, where
        assert job["template"]["spec"]["restartPolicy"] == "Never", where
    mysql = next(c for c in cronjobs(objects) if c["metadata"]["name"] == "seek-backup-mysql")
    filestore = next(c for c in cronjobs(objects) if c["metadata"]["name"] == "seek-backup-filestore")
    assert filestore["spec"]["schedule"] == mysql["spec"]["schedule"], "the filestore goes with the dump"
    assert mysql["spec"]["schedule"] == evars.get("backups_mysql_schedule", "30 1 * * *")


def test_containers_pinned_limited_and_locked_down(rendered) -> None:
    """Pinned images, requests and limits, no privilege escalation, read-only root, no capability."""
    for cj in cronjobs(rendered[2]):
        for c in containers(pod_spec(cj)):
            where = f"{cj['metadata']['name']}/{c['name']}"
            assert PINNED.match(c["image"]), f"{where}: image {c['image']} is not pinned"
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), f"{where}: {kind}"
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert "command" in c, f"{where}: nothing is installed or started implicitly at run time"


def test_mysql_image_follows_the_mysql_role(rendered) -> None:
    """The dump and the drill use the production MySQL image (the mysql role's variable)."""
    _, evars, objects, _ = rendered
    default = yaml.safe_load((REPO / "roles" / "mysql" / "defaults" / "main.yml").read_text())["mysql_image"]
    want = evars.get("mysql_image", default)
    for cj in cronjobs(objects):
        if cj["metadata"]["name"] in ("seek-backup-mysql", "seek-backup-drill"):
            assert {c["image"] for c in containers(pod_spec(cj))} == {want}


def test_seek_namespace_pods_meet_restricted_pod_security(rendered) -> None:
    """SEEK's namespace enforces `restricted`: non-root, seccomp, no host access, allowed volumes."""
    _, evars, objects, _ = rendered
    namespace = evars.get("seek_namespace", "seek")
    checked = 0
    for cj in cronjobs(objects):
        if cj["metadata"]["namespace"] != namespace:
            continue
        spec = pod_spec(cj)
        where = cj["metadata"]["name"]
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), where
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        assert spec["automountServiceAccountToken"] is False, where
        for volume in spec["volumes"]:
            assert set(volume) - {"name"} <= RESTRICTED_VOLUMES, f"{where}: volume {volume}"
        for c in containers(spec):
            assert c["securityContext"]["runAsNonRoot"] is True, f"{where}/{c['name']}"
            assert c["securityContext"]["runAsUser"] > 0, f"{where}/{c['name']}"
        labels = cj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "seek", where
        assert labels["app.kubernetes.io/component"] == "backup", where
        checked += 1
    assert checked >= 2


def test_backup_uid_and_gid_own_the_writes(rendered) -> None:
    """The dump runs as the backup uid/gid, the filestore as SEEK's uid in the backup group."""
    _, evars, objects, _ = rendered
    uid, gid = evars.get("backup_uid", 10001), evars.get("backup_gid", 10001)
    by_name = {c["metadata"]["name"]: c for c in cronjobs(objects)}
    dump = by_name["seek-backup-mysql"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert (dump["securityContext"]["runAsUser"], dump["securityContext"]["runAsGroup"]) == (uid, gid)
    archive = pod_spec(by_name["seek-backup-filestore"])["containers"][0]
    assert (archive["securityContext"]["runAsUser"], archive["securityContext"]["runAsGroup"]) == (33, gid)
    snap = pod_spec(by_name["seek-backup-etcd"])["containers"][0]
    assert (snap["securityContext"]["runAsUser"], snap["securityContext"]["runAsGroup"]) == (0, gid)


def test_etcd_snapshot_runs_on_a_server_with_only_the_client_certs(rendered) -> None:
    """hostNetwork on a control-plane node, the client cert/key and CA read-only, never a CA key."""
    name, evars, objects, _ = rendered
    cj = next(c for c in cronjobs(objects) if c["metadata"]["name"] == "seek-backup-etcd")
    spec = pod_spec(cj)
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert spec["nodeSelector"]["node-role.kubernetes.io/control-plane"] == "true"
    assert any(t["key"] == "node-role.kubernetes.io/control-plane" for t in spec["tolerations"])
    host_paths = {v["name"]: v["hostPath"] for v in spec["volumes"] if "hostPath" in v}
    cert_paths = sorted(hp["path"] for hp in host_paths.values() if hp.get("type") == "File")
    tls = "/var/lib/rancher/k3s/server/tls/etcd"
    assert cert_paths == [f"{tls}/client.crt", f"{tls}/client.key", f"{tls}/server-ca.crt"]
    snapshot = spec["containers"][0]
    env = {e["name"]: e.get("value") for e in snapshot["env"]}
    assert env["ETCDCTL_ENDPOINTS"] == "https://127.0.0.1:2379"
    for key in ("ETCDCTL_CACERT", "ETCDCTL_CERT", "ETCDCTL_KEY"):
        mount = next(m for m in snapshot["volumeMounts"] if m["mountPath"] == env[key])
        assert mount["readOnly"] is True and mount["name"] in host_paths
    assert snapshot["command"][1].endswith("/etcd-backup.sh")


def test_backup_volume_follows_the_storage_backend(rendered) -> None:
    """local-path: a local PV and hostname selectors on the backup node; nfs: the NFS export."""
    name, evars, objects, _ = rendered
    pv = objects["backups-persistentvolume.yaml"]["spec"]
    pvc = objects["backups-persistentvolumeclaim.yaml"]["spec"]
    assert pvc["volumeName"] == objects["backups-persistentvolume.yaml"]["metadata"]["name"]
    assert pv["persistentVolumeReclaimPolicy"] == "Retain" and pv["storageClassName"] == ""
    etcd_volume = next(v for v in pod_spec(next(c for c in cronjobs(objects)
                                                 if c["metadata"]["name"] == "seek-backup-etcd"))["volumes"]
                       if v["name"] == "backup")
    seek_jobs = [c for c in cronjobs(objects) if c["metadata"]["name"] != "seek-backup-etcd"]
    if name == "nfs":
        assert pv["nfs"] == {"server": "nfs.lab.test", "path": evars["backup_root"]}
        assert etcd_volume["nfs"] == pv["nfs"]
        for cj in seek_jobs:
            assert "nodeSelector" not in pod_spec(cj)
    else:
        assert pv["local"]["path"] == "/var/backups/seek-k3s"
        term = pv["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
        assert term["values"] == ["node-a"]
        assert etcd_volume["hostPath"] == {"path": "/var/backups/seek-k3s", "type": "Directory"}
        for cj in cronjobs(objects):
            assert pod_spec(cj)["nodeSelector"]["kubernetes.io/hostname"] == "node-a"


def test_scripts_configmap_ships_the_producer_scripts(rendered) -> None:
    """The ConfigMap holds the producer scripts and their library byte for byte, plus the drill (the
    restore scripts are the backup_restore role's own ConfigMap, checked in test_controlplane)."""
    _, evars, objects, _ = rendered
    maps = [o for o in objects.values() if o["kind"] == "ConfigMap"]
    assert {m["metadata"]["namespace"] for m in maps} == {evars.get("seek_namespace", "seek"), "kube-system"}
    for cm in maps:
        data = cm["data"]
        for script in ("backup-lib.sh", "mysql-backup.sh", "filestore-backup.sh", "etcd-backup.sh"):
            assert data[script] == (FILES / script).read_text().rstrip("\n")
        assert data["backup-drill.sh"].startswith("#!/bin/bash\n")
        assert "restore-mysql.sh" not in data and "restore-filestore.sh" not in data
        for value in data.values():
            assert not re.search(r"(?i)password\s*[:=]\s*['\"]?\w{6,}", value.replace("MYSQL_PASSWORD", "")), \
                "a ConfigMap must not carry a secret"


def test_every_container_command_exists_in_the_configmap(rendered) -> None:
    """Each CronJob runs a script that the ConfigMap mounted into it provides."""
    _, _, objects, _ = rendered
    scripts = set(next(o for o in objects.values() if o["kind"] == "ConfigMap")["data"])
    for cj in cronjobs(objects):
        main = pod_spec(cj)["containers"][0]
        script = Path(main["command"][-1]).name
        assert script in scripts, f"{cj['metadata']['name']} runs {script}"


def test_drill_mysqld_never_needs_the_image_secure_file_priv_dir(rendered) -> None:
    """Issue 20, item 9: each mysqld run of the drill's sidecar, --initialize-insecure included,
    sets --secure-file-priv=NULL (no option file is read: --no-defaults), so neither run depends
    on the image providing the RPM build's default directory /var/lib/mysql-files."""
    _, evars, objects, _ = rendered
    drill = [cj for cj in cronjobs(objects) if cj["metadata"]["name"] == "seek-backup-drill"]
    if evars.get("backups_drill_schedule", "x") == "":
        assert not drill
        return
    (sidecar,) = [c for c in pod_spec(drill[0])["initContainers"] if c["name"] == "mysqld"]
    assert sidecar["command"][:2] == ["/bin/sh", "-c"]
    runs = [run.split() for run in sidecar["command"][2].split("&&")]
    mysqld = [run for run in runs if "mysqld" in run[:2]]
    assert len(mysqld) == 2 and "--initialize-insecure" in mysqld[0], runs
    for run in mysqld:
        assert "--no-defaults" in run and "--secure-file-priv=NULL" in run, run
        assert not any(arg.startswith("--secure-file-priv=") and arg != "--secure-file-priv=NULL"
                       for arg in run), run
