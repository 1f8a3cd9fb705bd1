"""Filter of the backup_restore role: the replicas SEEK goes back to after a restore."""

from __future__ import annotations

from typing import Any

REPLICAS_ANNOTATION = "seek-k3s/replicas-before-restore"


def backup_replicas_before_restore(deployment: dict[str, Any]) -> int:
    """Return the replicas to scale a Deployment back to after a restore.

    Its current ``spec.replicas`` when above zero; else (a restore that failed left it at zero)
    the count recorded in the ``seek-k3s/replicas-before-restore`` annotation; else 1.
    """
    replicas = int((deployment.get("spec") or {}).get("replicas") or 0)
    if replicas > 0:
        return replicas
    recorded = ((deployment.get("metadata") or {}).get("annotations") or {}).get(REPLICAS_ANNOTATION, "")
    return int(recorded) if str(recorded).isdigit() and int(recorded) > 0 else 1


class FilterModule:
    """Ansible filter: ``backup_replicas_before_restore``."""

    def filters(self) -> dict[str, Any]:
        """Return the filters this module provides."""
        return {"backup_replicas_before_restore": backup_replicas_before_restore}
