"""Policy tests over the rendered manifests of every configuration."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.render.conftest import Rendered

REQUIRED_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/instance",
                   "app.kubernetes.io/component", "app.kubernetes.io/part-of",
                   "app.kubernetes.io/managed-by")
WORKLOADS = ("Deployment", "StatefulSet", "Job")
SECRET_ENV = re.compile(r"PASSWORD|PWD|SECRET|TOKEN|_KEY$", re.IGNORECASE)


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = _pod_spec(obj)
    return spec.get("initContainers", []) + spec["containers"]


def _workloads(rendered: Rendered) -> list[dict[str, Any]]:
    return [obj for obj in rendered.objects() if obj["kind"] in WORKLOADS]


def test_every_image_is_pinned_to_a_release(rendered: Rendered) -> None:
    """Images carry an explicit tag, never latest or main, written as short names."""
    images = [c["image"] for obj in _workloads(rendered) for c in _containers(obj)]
    assert images
    for image in images:
        name, _, tag = image.rpartition(":")
        assert name and tag, f"{image} has no tag"
        assert tag not in ("latest", "main", "master"), image
        assert re.match(r"^[0-9]+\.[0-9]+(\.[0-9]+)?$", tag), f"{image}: tag is not a release"
        first = name.split("/")[0]
        assert "." not in first and ":" not in first, f"{image}: write images as short names"


def test_every_container_has_requests_limits_and_security(rendered: Rendered) -> None:
    """Requests and limits (cpu, memory), no privilege escalation, all capabilities dropped."""
    for obj in _workloads(rendered):
        for container in _containers(obj):
            where = f"{obj['kind']}/{obj['metadata']['name']}/{container['name']}"
            resources = container.get("resources", {})
            for part in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    assert resources.get(part, {}).get(resource), f"{where}: no {part}.{resource}"
            security = container.get("securityContext", {})
            assert security.get("allowPrivilegeEscalation") is False, where
            assert security.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not security.get("privileged"), where


def test_every_long_running_container_has_probes(rendered: Rendered) -> None:
    """Deployments and StatefulSets: liveness plus startup or readiness on every container."""
    for obj in rendered.objects():
        if obj["kind"] not in ("Deployment", "StatefulSet"):
            continue
        for container in _pod_spec(obj)["containers"]:
            where = f"{obj['kind']}/{obj['metadata']['name']}/{container['name']}"
            assert "livenessProbe" in container, where
            assert "startupProbe" in container or "readinessProbe" in container, where
            if "startupProbe" in container:
                probe = container["startupProbe"]
                budget = probe["periodSeconds"] * probe["failureThreshold"]
                assert budget >= 300, f"{where}: startupProbe allows only {budget}s"


def test_pods_meet_the_restricted_pod_security_standard(rendered: Rendered) -> None:
    """The seek namespace enforces restricted, so every pod there must comply."""
    namespace = rendered.get("Namespace", "seek")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in _workloads(rendered):
        spec = _pod_spec(obj)
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        security = spec.get("securityContext", {})
        assert security.get("runAsNonRoot") is True, where
        assert security.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        assert security.get("runAsUser", 0) != 0, where
        assert not spec.get("hostNetwork") and not spec.get("hostPID"), where
        assert not any("hostPath" in volume for volume in spec.get("volumes", [])), where
        assert spec.get("automountServiceAccountToken") is False, where


def test_no_secret_value_outside_secrets(rendered: Rendered) -> None:
    """Generated passwords appear only in the Secret; secret-looking env comes from Secrets."""
    passwords = [path.read_text().strip() for path in rendered.artifacts.glob("mysql-*password")]
    assert len(passwords) == 2 and all(len(p) >= 32 for p in passwords)
    for path in rendered.artifacts.glob("mysql-*password"):
        assert path.stat().st_mode & 0o777 == 0o600, f"{path} is not 0600"
    assert rendered.artifacts.stat().st_mode & 0o077 == 0, "artifacts dir readable by others"
    for path, obj in rendered.manifests:
        if obj["kind"] == "Secret":
            continue
        text = path.read_text()
        for password in passwords:
            assert password not in text, f"{path.name} contains a password"
    for obj in rendered.objects("ConfigMap"):
        for key in obj.get("data", {}):
            assert not SECRET_ENV.search(key), f"ConfigMap/{obj['metadata']['name']} has {key}"
    for obj in _workloads(rendered):
        for container in _containers(obj):
            for env in container.get("env", []):
                if SECRET_ENV.search(env["name"]):
                    assert "value" not in env, f"{obj['metadata']['name']}: {env['name']} literal"
                    assert "secretKeyRef" in env["valueFrom"], env["name"]


def test_labels_are_consistent(rendered: Rendered) -> None:
    """Every object carries the five app.kubernetes.io labels; selectors match pod labels."""
    for obj in rendered.objects():
        labels = obj["metadata"].get("labels", {})
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        for label in REQUIRED_LABELS:
            assert labels.get(label), f"{where}: missing {label}"
        assert labels["app.kubernetes.io/part-of"] == "seek", where
        assert labels["app.kubernetes.io/managed-by"] == "ansible", where
    pod_labels = []
    for obj in _workloads(rendered):
        template_labels = obj["spec"]["template"]["metadata"]["labels"]
        for label in REQUIRED_LABELS:
            assert template_labels.get(label), f"{obj['metadata']['name']}: pod lacks {label}"
        if "selector" in obj["spec"]:
            selector = obj["spec"]["selector"]["matchLabels"]
            assert selector.items() <= template_labels.items(), obj["metadata"]["name"]
            assert "app.kubernetes.io/version" not in selector
        pod_labels.append(template_labels)
    for obj in rendered.objects("Service"):
        selector = obj["spec"]["selector"]
        assert any(selector.items() <= labels.items() for labels in pod_labels), \
            f"Service/{obj['metadata']['name']} selects no pod"
    for obj in rendered.objects("NetworkPolicy"):
        selector = obj["spec"]["podSelector"]["matchLabels"]
        assert any(selector.items() <= labels.items() for labels in pod_labels), \
            f"NetworkPolicy/{obj['metadata']['name']} selects no pod"


def test_names_the_backup_layer_relies_on(rendered: Rendered) -> None:
    """Secret keys, Service and PVC names, and the MySQL policy's allowed components."""
    secret = rendered.get("Secret", "mysql-credentials")
    assert set(secret["data"]) == {"root-password", "password", "user", "database"}
    policy = rendered.get("NetworkPolicy", "mysql")
    peer = policy["spec"]["ingress"][0]["from"][0]["podSelector"]
    assert peer["matchLabels"] == {"app.kubernetes.io/part-of": "seek"}
    components = peer["matchExpressions"][0]["values"]
    assert {"web", "workers", "backup"} <= set(components)
    assert rendered.get("Service", "mysql-headless")["spec"]["clusterIP"] == "None"
    for name in ("seek-filestore", "seek-cache"):
        rendered.get("PersistentVolumeClaim", name)


def test_mysql_statefulset_shape(rendered: Rendered) -> None:
    """utf8mb4, 90 s grace, Retain volume, startupProbe, MySQL 8.4."""
    mysql = rendered.get("StatefulSet", "mysql")
    spec = _pod_spec(mysql)
    assert spec["terminationGracePeriodSeconds"] == 90
    assert spec["containers"][0]["image"].startswith("mysql:8.4.")
    assert "startupProbe" in spec["containers"][0]
    assert mysql["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "local-path-retain"
    config = rendered.get("ConfigMap", "mysql-config")["data"]["seek.cnf"]
    assert "character-set-server = utf8mb4" in config
    assert "collation-server = utf8mb4_unicode_ci" in config
    retain = rendered.get("StorageClass", "local-path-retain")
    assert retain["reclaimPolicy"] == "Retain"


CONFIGSET_DIR = "/opt/solr/server/solr/configsets/seek_config"


def test_solr_precreates_the_seek_core(rendered: Rendered) -> None:
    """Stock solr:8.11.x; the configset is copied from seek_image; solr-precreate seek; uid 8983."""
    spec = _pod_spec(rendered.get("StatefulSet", "solr"))
    container = spec["containers"][0]
    assert re.match(r"^solr:8\.11\.[0-9]+$", container["image"]), container["image"]
    assert container["command"] == ["docker-entrypoint.sh", "solr-precreate", "seek", CONFIGSET_DIR]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/solr/seek/admin/ping"
    assert {"name": "SOLR_JAVA_MEM", "value": "-Xms1g -Xmx1g"} in container["env"]
    security = spec["securityContext"]
    assert (security["runAsUser"], security["runAsGroup"], security["fsGroup"]) == (8983, 8983, 8983)
    seek_image = _pod_spec(rendered.get("Deployment", "seek-web"))["containers"][0]["image"]
    [init] = spec["initContainers"]
    assert init["name"] == "configset" and init["image"] == seek_image
    env = {item["name"]: item["value"] for item in init["env"]}
    assert env["CONFIGSET_SOURCE"] == "/seek/solr/seek/conf"
    assert env["CORE_DIR"] == "/var/solr/data/seek"
    assert {"name": "configset", "mountPath": "/configset"} in init["volumeMounts"]
    assert {"name": "data", "mountPath": "/var/solr"} in init["volumeMounts"]
    assert {"name": "configset", "mountPath": CONFIGSET_DIR, "readOnly": True} in container["volumeMounts"]
    assert {"name": "configset", "emptyDir": {"sizeLimit": "64Mi"}} in spec["volumes"]


def _local_path_claims(rendered: Rendered) -> set[str]:
    """Names of the PVCs (and StatefulSet claim templates) on a k3s local-path class."""
    local = {"local-path", "local-path-retain"}
    claims = {obj["metadata"]["name"] for obj in rendered.objects("PersistentVolumeClaim")
              if obj["spec"]["storageClassName"] in local}
    for obj in rendered.objects("StatefulSet"):
        for template in obj["spec"].get("volumeClaimTemplates", []):
            if template["spec"]["storageClassName"] in local:
                claims.add(f"{obj['metadata']['name']}:{template['metadata']['name']}")
    return claims


def test_pods_with_local_path_volumes_are_pinned_to_the_declared_node(rendered: Rendered) -> None:
    """Every pod mounting a local-path volume has the nodeSelector of seek_node_name; no other pod.

    The harness inventory has servers seek-server-N and no k3s_node_name, so the declared node
    defaults to seek-server-1. With NFS the filestore and cache pods are not pinned, while MySQL
    and Solr (local-path even then) are.
    """
    local_claims = _local_path_claims(rendered)
    pinned, free = set(), set()
    for obj in _workloads(rendered):
        spec = _pod_spec(obj)
        name = obj["metadata"]["name"]
        claims = {volume["persistentVolumeClaim"]["claimName"] for volume in spec.get("volumes", [])
                  if "persistentVolumeClaim" in volume}
        claims |= {f"{name}:{t['metadata']['name']}" for t in obj["spec"].get("volumeClaimTemplates", [])}
        if claims & local_claims:
            assert spec.get("nodeSelector") == {"kubernetes.io/hostname": "seek-server-1"}, name
            assert "affinity" not in spec, f"{name}: pinned pods need no pod affinity"
            pinned.add(name)
        else:
            assert "nodeSelector" not in spec, f"{name} mounts no local-path volume but is pinned"
            free.add(name)
    assert {"mysql", "solr"} <= pinned
    seek_pods = {"seek-web", "seek-workers", "seek-db-setup", "seek-upgrade-1-18-1"}
    if rendered.config.cluster["storage_backend"] == "nfs":
        assert seek_pods <= free
    else:
        assert seek_pods <= pinned


def test_seek_web_and_workers_shape(rendered: Rendered) -> None:
    """Web: /up probes, uid 33, no entrypoint workers, waits for the database. Workers: one, Recreate."""
    web = rendered.get("Deployment", "seek-web")
    spec = _pod_spec(web)
    seek = spec["containers"][0]
    assert spec["securityContext"]["fsGroup"] == 33
    assert {"name": "NO_ENTRYPOINT_WORKERS", "value": "1"} in seek["env"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert seek[probe]["httpGet"]["path"] == "/up"
    assert spec["initContainers"][0]["name"] == "wait-for-database"
    mounts = {m["mountPath"] for m in seek["volumeMounts"]}
    assert mounts == {"/seek/filestore", "/seek/tmp/cache"}
    env = rendered.get("ConfigMap", "seek-env")["data"]
    assert env["PUMA_WORKERS_NUM"] == "2" and env["SOLR_HOST"] == "solr" and env["SOLR_PORT"] == "8983"
    workers = rendered.get("Deployment", "seek-workers")
    assert workers["spec"]["replicas"] == 1
    assert workers["spec"]["strategy"] == {"type": "Recreate"}
    worker = _pod_spec(workers)["containers"][0]
    # SEEK's start_workers.sh steps, then supercronic exec'd as PID 1 (tests/render/test_seek_shutdown.py).
    assert worker["command"][:2] == ["bash", "-c"] and "rake seek:workers:start" in worker["command"][2]
    assert worker["livenessProbe"]["exec"]["command"] == ["bash", "script/check_worker_pids.sh"]
    upgrade = rendered.get("Job", "seek-upgrade-1-18-1")
    assert _pod_spec(upgrade)["containers"][0]["command"] == ["docker/upgrade.sh"]
    assert upgrade["spec"]["backoffLimit"] == 0


def test_configuration_specific_choices(rendered: Rendered) -> None:
    """Storage classes, affinity, ingress class, TLS and chart values per configuration."""
    filestore = rendered.get("PersistentVolumeClaim", "seek-filestore")["spec"]
    web = rendered.get("Deployment", "seek-web")
    workers_spec = _pod_spec(rendered.get("Deployment", "seek-workers"))
    ingress = rendered.get("Ingress", "seek")
    if rendered.name == "ha-nfs-certmanager":
        assert filestore["accessModes"] == ["ReadWriteMany"]
        assert filestore["storageClassName"] == "nfs-csi"
        assert "affinity" not in workers_spec
        assert web["spec"]["replicas"] == 3
        assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"
        assert ingress["spec"]["tls"] == [{"hosts": ["seek.example.org"], "secretName": "seek-tls"}]
        nfs = rendered.get("StorageClass", "nfs-csi")
        assert nfs["parameters"] == {"server": "192.0.2.31", "share": "/srv/nfs/seek"}
        issuer = rendered.get("ClusterIssuer", "letsencrypt")["spec"]["acme"]
        assert issuer["solvers"][0]["http01"]["ingress"]["ingressClassName"] == "nginx"
    else:
        assert filestore["accessModes"] == ["ReadWriteOnce"]
        assert filestore["storageClassName"] == "local-path-retain"
        assert workers_spec["nodeSelector"] == _pod_spec(web)["nodeSelector"]
    if rendered.config.cluster["ingress_controller"] == "ingress-nginx":
        assert ingress["spec"]["ingressClassName"] == "nginx"
        assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "50g"
        chart = rendered.get("HelmChart", "ingress-nginx")
        assert chart["spec"]["version"] == "4.15.1"
        values = yaml.safe_load(chart["spec"]["valuesContent"])["controller"]
        assert values["service"]["externalTrafficPolicy"] == "Local"
        assert values["allowSnippetAnnotations"] is False
        assert values["admissionWebhooks"]["enabled"] is True
    else:
        assert ingress["spec"]["ingressClassName"] == "traefik"
        assert ingress["spec"]["tls"][0]["secretName"] == "seek-example-tls"
        values = yaml.safe_load(rendered.get("HelmChartConfig", "traefik")["spec"]["valuesContent"])
        assert values["service"]["spec"]["externalTrafficPolicy"] == "Local"
    if rendered.config.extra["seek_tls"] == "none":
        assert "tls" not in ingress["spec"]
