"""Small helpers shared by the API tests."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from tests.controlplane.fixture import KubeAPI


def get_json(kube_api: KubeAPI, *args: str) -> dict[str, Any]:
    """`kubectl get ... -o json`, parsed."""
    return json.loads(kube_api.run_kubectl("get", *args, "-o", "json").stdout)


def apply(kube_api: KubeAPI, manifest: dict[str, Any]) -> None:
    """`kubectl apply` one object given as a dict."""
    kube_api.run_kubectl("apply", "-f", "-", input=json.dumps(manifest))


def eventually(probe: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def namespace(kube_api: KubeAPI, name: str) -> str:
    """Create a namespace (idempotently) and return its name."""
    apply(kube_api, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name
