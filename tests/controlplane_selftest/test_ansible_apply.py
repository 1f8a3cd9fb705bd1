"""kubernetes.core.k8s applies manifests to the real API server; a second apply changes nothing."""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

from tests.controlplane_selftest.helpers import get_json
from tests.controlplane.fixture import KubeAPI

PLAYBOOK = textwrap.dedent("""\
    - name: Apply sample objects with kubernetes.core.k8s
      hosts: localhost
      connection: local
      gather_facts: false
      tasks:
        - name: Apply the manifests
          kubernetes.core.k8s:
            state: present
            apply: "{{ item.apply | default(false) }}"
            definition: "{{ item.definition }}"
          loop:
            - definition:
                apiVersion: v1
                kind: Namespace
                metadata: {name: ansible-apply}
            - definition:
                apiVersion: v1
                kind: ConfigMap
                metadata: {name: settings, namespace: ansible-apply}
                data: {SOLR_PORT: "8983"}
            - apply: true
              definition:
                apiVersion: apps/v1
                kind: Deployment
                metadata:
                  name: web
                  namespace: ansible-apply
                  labels: {app.kubernetes.io/name: web}
                spec:
                  replicas: 1
                  strategy: {type: Recreate}
                  selector: {matchLabels: {app.kubernetes.io/name: web}}
                  template:
                    metadata: {labels: {app.kubernetes.io/name: web}}
                    spec:
                      containers:
                        - name: web
                          image: nginx:1.27
                          resources:
                            requests: {cpu: 100m, memory: 64Mi}
                            limits: {memory: 128Mi}
            - definition:
                apiVersion: v1
                kind: Service
                metadata: {name: web, namespace: ansible-apply}
                spec:
                  selector: {app.kubernetes.io/name: web}
                  ports: [{port: 80, targetPort: 8080}]
            - definition:
                apiVersion: batch/v1
                kind: CronJob
                metadata: {name: nightly, namespace: ansible-apply}
                spec:
                  schedule: "0 2 * * *"
                  timeZone: Etc/UTC
                  jobTemplate:
                    spec:
                      template:
                        spec:
                          restartPolicy: Never
                          containers: [{name: run, image: "busybox:1.36", command: ["true"]}]
    """)


def _recap(output: str) -> dict[str, int]:
    match = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)",
                      output)
    assert match, output
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups())))


def test_k8s_module_applies_then_reports_no_change(kube_api: KubeAPI, tmp_path: Path) -> None:
    playbook = tmp_path / "apply.yml"
    playbook.write_text(PLAYBOOK, encoding="utf-8")
    args = ("-i", "localhost,", "-e", f"ansible_python_interpreter={sys.executable}")

    first = kube_api.ansible_playbook(playbook, *args)
    assert first.returncode == 0, first.stdout + first.stderr
    assert _recap(first.stdout)["changed"] == 1, first.stdout  # one task, five changed items
    assert first.stdout.count("changed: [localhost]") == 5, first.stdout
    assert get_json(kube_api, "service", "web", "-n", "ansible-apply")["spec"]["clusterIP"].startswith("10.96.")

    second = kube_api.ansible_playbook(playbook, *args)
    assert second.returncode == 0, second.stdout + second.stderr
    assert _recap(second.stdout) == {"ok": 1, "changed": 0, "unreachable": 0, "failed": 0}, second.stdout
