"""Render every manifest for each configuration and validate it.

Built-in kinds go through ``kubernetes-validate --strict`` for Kubernetes 1.34; the custom
resources (HelmChart, HelmChartConfig, ClusterIssuer) are checked against the CRD schemas the
API tests install (tests/platform_api/crds), with unknown fields rejected.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tests.render.conftest import Rendered

KUBERNETES_VERSION = "1.34.0"
CRD_DIR = Path(__file__).resolve().parents[1] / "platform_api" / "crds"
CUSTOM_GROUPS = ("helm.cattle.io/", "cert-manager.io/")

# The seek-settings Job is named after a hash of what it applies (tests/render/test_seek_settings.py).
SETTINGS_JOB = "seek-settings-<hash>"
EXPECTED_COMMON = {
    ("StorageClass", "local-path-retain"),
    ("Namespace", "seek"),
    ("Secret", "mysql-credentials"),
    ("ConfigMap", "mysql-config"),
    ("Service", "mysql"),
    ("Service", "mysql-headless"),
    ("NetworkPolicy", "mysql"),
    ("StatefulSet", "mysql"),
    ("Service", "solr"),
    ("Service", "solr-headless"),
    ("NetworkPolicy", "solr"),
    ("StatefulSet", "solr"),
    ("ConfigMap", "seek-env"),
    ("PersistentVolumeClaim", "seek-filestore"),
    ("PersistentVolumeClaim", "seek-cache"),
    ("Service", "seek"),
    ("NetworkPolicy", "seek-web"),
    ("Ingress", "seek"),
    ("Job", "seek-db-setup"),
    ("Secret", "seek-settings"),
    ("ConfigMap", "seek-settings"),
    ("Job", SETTINGS_JOB),
    ("Job", "seek-upgrade-1-18-1"),
    ("Deployment", "seek-web"),
    ("Deployment", "seek-workers"),
    ("ConfigMap", "seek-deployed"),
}
EXPECTED_EXTRA = {
    "single-localpath-nginx-notls": {("HelmChart", "ingress-nginx")},
    "ha-nfs-certmanager": {("HelmChart", "ingress-nginx"), ("HelmChart", "csi-driver-nfs"),
                           ("StorageClass", "nfs-csi"), ("HelmChart", "cert-manager"),
                           ("ClusterIssuer", "letsencrypt"), ("PodDisruptionBudget", "seek-web")},
    "traefik-secret-tls": {("HelmChartConfig", "traefik")},
}


def _crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """Map (apiVersion, kind) to the openAPIV3Schema of the test CRDs, closed to unknown fields."""

    def close(schema: dict[str, Any]) -> dict[str, Any]:
        if schema.get("type") == "object" and "properties" in schema \
                and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema = {**schema, "additionalProperties": False,
                      "properties": {k: close(v) for k, v in schema["properties"].items()}}
        if schema.get("type") == "array" and "items" in schema:
            schema = {**schema, "items": close(schema["items"])}
        return schema

    schemas = {}
    for path in CRD_DIR.glob("*.yaml"):
        for crd in yaml.safe_load_all(path.read_text()):
            for version in crd["spec"]["versions"]:
                schema = version["schema"]["openAPIV3Schema"]
                schema = {**schema, "properties": {
                    "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                    "metadata": {"type": "object"}, **schema["properties"]}}
                key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
                schemas[key] = close(schema)
    return schemas


def test_every_expected_object_is_rendered(rendered: Rendered) -> None:
    """Each configuration renders exactly the objects it should."""
    got = {(obj["kind"], SETTINGS_JOB if re.fullmatch(r"seek-settings-[0-9a-f]{10}", obj["metadata"]["name"])
            else obj["metadata"]["name"]) for obj in rendered.objects()}
    expected = EXPECTED_COMMON | EXPECTED_EXTRA[rendered.name]
    assert got == expected, f"missing {expected - got}, unexpected {got - expected}"


def test_builtin_kinds_pass_kubernetes_validate_strict(rendered: Rendered) -> None:
    """kubernetes-validate --strict for 1.34 accepts every built-in manifest."""
    files = sorted({str(path) for path, obj in rendered.manifests
                    if not obj["apiVersion"].startswith(CUSTOM_GROUPS)})
    assert len(files) >= 20
    binary = Path(sys.executable).with_name("kubernetes-validate")
    result = subprocess.run([str(binary), "--strict", "-k", KUBERNETES_VERSION, *files],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(files), result.stdout


def test_custom_resources_match_their_crd_schema(rendered: Rendered) -> None:
    """HelmChart, HelmChartConfig and ClusterIssuer use only fields their CRDs define."""
    schemas = _crd_schemas()
    custom = [obj for _, obj in rendered.manifests if obj["apiVersion"].startswith(CUSTOM_GROUPS)]
    assert custom, "every configuration installs at least one chart"
    for obj in custom:
        schema = schemas[(obj["apiVersion"], obj["kind"])]
        jsonschema.validate(obj, schema)


def test_helm_values_are_valid_yaml_and_pinned(rendered: Rendered) -> None:
    """Chart values parse as YAML and every chart has an explicit version."""
    for chart in rendered.objects("HelmChart"):
        assert chart["spec"]["version"], chart["metadata"]["name"]
        assert chart["spec"]["repo"].startswith("https://")
        assert isinstance(yaml.safe_load(chart["spec"]["valuesContent"]), dict)
    for config in rendered.objects("HelmChartConfig"):
        assert isinstance(yaml.safe_load(config["spec"]["valuesContent"]), dict)
