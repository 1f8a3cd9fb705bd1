"""The filters behind issue 9's pre-flight checks, checked against their real counterparts.

- seek_version: SEEK's release from the image tag, and the releases an upgrade must go through.
- timezone_problem: a CronJob timeZone, compared with what the real kube-apiserver admits.
- age_recipient_problems: age recipients, compared with the off-site tool's own parser.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pyrage
import pytest

from tools.seek_backup import crypto
from tools.seek_backup.errors import ConfigError

ROLES = Path(__file__).resolve().parents[2] / "roles"


def _load(role: str, name: str) -> ModuleType:
    """Import a role's filter plugin module by path (plugins are not a package)."""
    spec = importlib.util.spec_from_file_location(f"{role}_{name}", ROLES / role / "filter_plugins" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


seek_version = _load("seek", "seek_version")
timezone = _load("backups", "timezone")
age = _load("backup_host", "age_recipients")


@pytest.mark.parametrize(("image", "expected"), [
    ("fairdom/seek:1.18.1", {"repository": "fairdom/seek", "major": 1, "minor": 18, "patch": 1}),
    ("fairdom/seek:1.18", {"repository": "fairdom/seek", "major": 1, "minor": 18, "patch": None}),
    ("registry.example.org:5000/fairdom/seek:1.19.0@sha256:" + "0" * 64,
     {"repository": "registry.example.org:5000/fairdom/seek", "major": 1, "minor": 19, "patch": 0}),
    ("fairdom/seek:main", {}),
    ("fairdom/seek:1.18-dev", {}),
    ("fairdom/seek@sha256:" + "0" * 64, {}),
    ("fairdom/seek", {}),
])
def test_seek_image_version(image: str, expected: dict[str, Any]) -> None:
    """Only a release tag (optionally with a digest) gives a version."""
    assert seek_version.seek_image_version(image) == expected


@pytest.mark.parametrize(("deployed", "target", "steps", "downgrade"), [
    ("fairdom/seek:1.18.0", "fairdom/seek:1.18.1", [], False),
    ("fairdom/seek:1.18.1", "fairdom/seek:1.19.0", [], False),
    ("fairdom/seek:1.17.4", "fairdom/seek:1.18.1", [], False),
    ("fairdom/seek:1.18.1", "fairdom/seek:1.20.2", ["fairdom/seek:1.19.x"], False),
    ("fairdom/seek:1.16.2", "fairdom/seek:1.19.0", ["fairdom/seek:1.17.x", "fairdom/seek:1.18.x"], False),
    ("fairdom/seek:1.19.0", "fairdom/seek:2.0.0", [], False),
    ("fairdom/seek:1.19.0", "fairdom/seek:2.1.0", ["fairdom/seek:2.0.x"], False),
    ("fairdom/seek:1.19.0", "fairdom/seek:1.18.1", [], True),
    ("fairdom/seek:1.18.1", "fairdom/seek:1.18.0", [], False),
])
def test_seek_upgrade_steps(deployed: str, target: str, steps: list[str], downgrade: bool) -> None:
    """One minor version per run (SEEK's upgrade guide); the skipped releases are listed."""
    assert seek_version.seek_upgrade_steps(deployed, target) == steps
    assert seek_version.seek_is_downgrade(deployed, target) is downgrade


ZONES = ["Etc/UTC", "UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "Etc/GMT+1",
         "Mars/Olympus", "Europe/berlin", "Local", "../etc/passwd", "Europe/Berlin ", "-Europe",
         "America", "EST5EDT"]


def test_timezone_filter_agrees_with_the_api_server(kube_api: Any) -> None:
    """Each zone the filter accepts, the real kube-apiserver admits in a CronJob, and each it
    refuses, the server refuses (server-side dry run: validation runs, nothing is stored)."""
    disagreements = []
    for zone in ZONES:
        cronjob = {"apiVersion": "batch/v1", "kind": "CronJob",
                   "metadata": {"name": "tz-probe", "namespace": "default"},
                   "spec": {"schedule": "0 1 * * *", "timeZone": zone, "jobTemplate": {"spec": {"template": {
                       "spec": {"restartPolicy": "Never",
                                "containers": [{"name": "c", "image": "busybox:1.37"}]}}}}}}
        result = kube_api.run_kubectl("create", "--dry-run=server", "-f", "-", check=False,
                                      input=json.dumps(cronjob))
        server_ok = result.returncode == 0
        filter_ok = timezone.timezone_problem(zone) == ""
        if server_ok != filter_ok:
            disagreements.append((zone, server_ok, filter_ok, result.stderr.strip()[:200]))
    assert not disagreements


def test_timezone_problem_names_the_reason() -> None:
    """The reason is one short phrase for the pre-flight message."""
    assert timezone.timezone_problem("Mars/Olympus") == "the tz database has no such zone"
    assert timezone.timezone_problem("Local") == "Local is not an explicit time zone"
    assert timezone.timezone_problem("") == "it is empty"


def _tool_accepts(text: str) -> bool:
    """Whether the off-site tool's own parser takes ``text`` as a recipient."""
    try:
        crypto.parse_recipient(text)
    except ConfigError:
        return False
    return True


def test_age_recipient_filter_agrees_with_the_offsite_tool() -> None:
    """Valid keys pass, a mistyped character (bech32 checksum), a short key, a private key and
    something else are refused, exactly as tools/seek_backup refuses them."""
    identity = pyrage.x25519.Identity.generate()
    public = str(identity.to_public())
    typo = public[:-1] + ("q" if public[-1] != "q" else "p")
    candidates = [public, typo, public[:20], str(identity), "hello", "ssh-ed25519 AAAAnotakey"]
    for text in candidates:
        assert (age.age_recipient_problem(text) == "") == _tool_accepts(text), text[:16]
    problems = age.age_recipient_problems(candidates)
    assert len(problems) == len(candidates) - 1
    # A problem line shows at most the first 12 characters, never a whole (private) key.
    assert all(str(identity) not in line and public not in line for line in problems)
    assert age.age_recipient_problems("age1notalist")[0].endswith("must be a list of public keys")
