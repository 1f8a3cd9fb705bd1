"""Filters of the k3s_upgrade role: k3s version strings, and whether a node may move to a target.

k3s release tags are ``vMAJOR.MINOR.PATCH+k3sN`` (release candidates ``vMAJOR.MINOR.PATCH-rcM+k3sN``).
The same string is what a node reports: k3s's build stamps the release tag into both its own
version and Kubernetes' component-base version (k3s-io/k3s tag v1.34.2+k3s1, scripts/version.sh
and scripts/build), so ``k3s --version`` prints ``k3s version v1.34.2+k3s1 (<commit>)`` and the
Node's ``status.nodeInfo.kubeletVersion`` is ``v1.34.2+k3s1``.

k3s's upgrade rule (docs.k3s.io/upgrades/manual): the Kubernetes version skew policy applies, do not
skip intermediate minor versions. A downgrade is not an upgrade in reverse: k3s rolls back only
together with an etcd snapshot restore (docs.k3s.io/upgrades/roll-back).
"""

from __future__ import annotations

import re
from typing import Any

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover - the unit tests import this file without Ansible's path
    AnsibleFilterError = ValueError  # type: ignore[misc,assignment]

_VERSION = re.compile(
    r"v(?P<major>0|[1-9][0-9]*)\.(?P<minor>0|[1-9][0-9]*)\.(?P<patch>0|[1-9][0-9]*)"
    r"(?:-rc(?P<rc>[0-9]+))?\+k3s(?P<k3s>[0-9]+)(?![0-9A-Za-z.-])"
)


class K3sVersionError(AnsibleFilterError):
    """A string that holds no k3s release version."""


def k3s_version_parse(text: str) -> dict[str, Any]:
    """Return the parts of the k3s release version found in ``text``.

    ``text`` is a release tag (``v1.34.2+k3s1``), a Node's kubeletVersion, or the output of
    ``k3s --version``. The result has ``major``, ``minor``, ``patch``, ``rc`` (None for a release),
    ``k3s`` (the N of ``+k3sN``), ``version`` (the tag itself) and ``key`` (a tuple that sorts
    releases in order). Raises K3sVersionError when no release version is found.
    """
    if not isinstance(text, str):
        raise K3sVersionError(f"not a k3s version: {text!r}")
    match = _VERSION.search(text)
    if match is None:
        raise K3sVersionError(f"not a k3s release version (vMAJOR.MINOR.PATCH+k3sN): {text.strip()!r}")
    major, minor, patch, k3s = (int(match.group(name)) for name in ("major", "minor", "patch", "k3s"))
    rc = int(match.group("rc")) if match.group("rc") is not None else None
    # A release sorts after its release candidates: (…, 0, rc) < (…, 1, 0).
    key = (major, minor, patch, 0 if rc is not None else 1, rc or 0, k3s)
    return {"major": major, "minor": minor, "patch": patch, "rc": rc, "k3s": k3s,
            "version": match.group(0), "key": key}


def _steps(running: dict[str, Any], target: dict[str, Any]) -> list[str]:
    """The k3s_version values to go through, one minor at a time, from ``running`` to ``target``."""
    steps = [f"v{running['major']}.{minor}.x+k3sN (the newest v{running['major']}.{minor} release)"
             for minor in range(running["minor"] + 1, target["minor"])]
    return steps + [target["version"]]


def k3s_upgrade_check(running: dict[str, str] | list[str], target: str) -> dict[str, Any]:
    """Decide whether every node may move from the version it runs to ``target`` (``k3s_version``).

    ``running`` maps a source (a node name, or ``host (binary)``) to the version it reports (a tag,
    a kubeletVersion or ``k3s --version`` output); a list is taken as unnamed sources. Allowed:
    the same version, a newer patch or ``+k3sN`` within the minor, or the next minor. Refused: an
    older version (a downgrade), a jump of more than one minor, another major, and a version that
    cannot be read. Returns ``allowed`` (bool), ``problems`` (one sentence each), ``steps`` (the
    k3s_version values to use, in order, when minors would be skipped), ``upgrades`` (the sources
    that would change) and ``message`` (everything, for a fail_msg).
    """
    if isinstance(running, list):
        running = {f"node {index + 1}": version for index, version in enumerate(running)}
    try:
        wanted = k3s_version_parse(target)
    except K3sVersionError:
        message = (f"k3s_version={target!r} is not a k3s release tag; write it as it appears on the "
                   "k3s releases page, for example v1.34.2+k3s1.")
        return {"allowed": False, "problems": [message], "steps": [], "upgrades": [], "message": message}
    if wanted["version"] != target:
        message = f"k3s_version={target!r} is not a k3s release tag; write only the tag, for example v1.34.2+k3s1."
        return {"allowed": False, "problems": [message], "steps": [], "upgrades": [], "message": message}

    problems: list[str] = []
    upgrades: list[str] = []
    oldest: dict[str, Any] | None = None
    newest: dict[str, Any] | None = None
    for source, text in sorted(running.items()):
        try:
            current = k3s_version_parse(text)
        except K3sVersionError:
            problems.append(f"{source} reports {str(text).strip()!r}, which is not a k3s release version; "
                            "check that node by hand before changing k3s_version.")
            continue
        if current["major"] != wanted["major"]:
            problems.append(f"{source} runs {current['version']}: k3s_version={target} changes the major "
                            "version, which k3s does not support.")
        elif current["key"] > wanted["key"]:
            problems.append(f"{source} runs {current['version']}, newer than k3s_version={target}: k3s is not "
                            "downgraded in place (a rollback restores an etcd snapshot taken before the "
                            f"upgrade, docs.k3s.io/upgrades/roll-back). Set k3s_version={current['version']} "
                            "or newer.")
        elif wanted["minor"] - current["minor"] > 1:
            problems.append(f"{source} runs {current['version']}: k3s_version={target} skips minor versions "
                            "(k3s upgrades one minor version at a time).")
        if current["key"] != wanted["key"]:
            upgrades.append(source)
        if current["major"] == wanted["major"] and (oldest is None or current["key"] < oldest["key"]):
            oldest = current
        if current["major"] == wanted["major"] and (newest is None or current["key"] > newest["key"]):
            newest = current

    steps = _steps(oldest, wanted) if oldest and wanted["minor"] - oldest["minor"] > 1 else []
    if oldest and newest and newest["minor"] - oldest["minor"] > 1:
        # No single k3s_version is a step for every node: the older ones must catch up first.
        problems.append(f"The nodes already run versions more than one minor apart ({oldest['version']} to "
                        f"{newest['version']}): no one k3s_version suits them all; bring the older nodes "
                        "up one minor at a time first (with --limit), then upgrade the cluster.")
        steps = []
    message = " ".join(problems)
    if steps:
        message += (" Upgrade one minor version at a time: set k3s_version to each of "
                    + ", then ".join(steps) + " in turn and run playbooks/upgrade.yml after each.")
    return {"allowed": not problems, "problems": problems, "steps": steps, "upgrades": upgrades,
            "message": message}


def k3s_version_summary(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Return one line per node, ``name: before -> after`` (or ``name: version (unchanged)``).

    ``before`` and ``after`` map Node names to the kubeletVersion they reported; a node only in
    ``after`` joined meanwhile, one only in ``before`` is gone.
    """
    lines = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            lines.append(f"{name}: {new} (unchanged)")
        else:
            lines.append(f"{name}: {old or '(not there)'} -> {new or '(gone)'}")
    return lines


class FilterModule:
    """Ansible filters: ``k3s_version_parse``, ``k3s_upgrade_check``, ``k3s_version_summary``."""

    def filters(self) -> dict[str, Any]:
        """Return the filters this module provides."""
        return {"k3s_version_parse": k3s_version_parse, "k3s_upgrade_check": k3s_upgrade_check,
                "k3s_version_summary": k3s_version_summary}
