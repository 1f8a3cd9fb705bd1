"""Filters for the seek role: the SEEK release an image tag names, and the upgrade path to another.

SEEK's upgrade guide asks for upgrades between minor (1.X) versions one at a time
(seek4science/seek-documentation, tech/upgrading.md); the seek role refuses a ``seek_image`` that
skips a minor version and lists the releases to go through instead.
"""

from __future__ import annotations

import re
from typing import Any

# name[:port]/path:MAJOR.MINOR[.PATCH][@sha256:<64 hex>]
_IMAGE = re.compile(r"^(?P<repository>[^@\s]+?):(?P<major>[0-9]+)\.(?P<minor>[0-9]+)(?:\.(?P<patch>[0-9]+))?"
                    r"(?:@sha256:[0-9a-f]{64})?$")


def seek_image_version(image: str) -> dict[str, Any]:
    """Return ``{repository, major, minor, patch}`` of a SEEK image pinned to a release tag.

    ``fairdom/seek:1.18.1`` gives ``{'repository': 'fairdom/seek', 'major': 1, 'minor': 18,
    'patch': 1}``; a missing patch is ``None``. An image without a release tag gives ``{}``.
    """
    match = _IMAGE.match(str(image or ""))
    if not match:
        return {}
    patch = match.group("patch")
    return {"repository": match.group("repository"), "major": int(match.group("major")),
            "minor": int(match.group("minor")), "patch": int(patch) if patch is not None else None}


def seek_upgrade_steps(deployed: str, target: str) -> list[str]:
    """Return the releases to run between ``deployed`` and ``target``, one per skipped minor version.

    An empty list means ``target`` is the same minor version, the next one, or (across a major
    version) the first minor of the next major: seek.yml may go there in one run. A downgrade also
    gives an empty list; check it with ``seek_is_downgrade``.
    """
    old, new = seek_image_version(deployed), seek_image_version(target)
    if not old or not new:
        return []
    repository = new["repository"]
    if new["major"] == old["major"]:
        return [f"{repository}:{old['major']}.{minor}.x" for minor in range(old["minor"] + 1, new["minor"])]
    if new["major"] > old["major"]:
        steps = [f"{repository}:{old['major']}.<last minor>.x"] if new["major"] > old["major"] + 1 else []
        steps += [f"{repository}:{major}.x" for major in range(old["major"] + 1, new["major"])]
        steps += [f"{repository}:{new['major']}.{minor}.x" for minor in range(0, new["minor"])]
        return steps
    return []


def seek_is_downgrade(deployed: str, target: str) -> bool:
    """Return whether ``target`` is an older minor (or major) version than ``deployed``."""
    old, new = seek_image_version(deployed), seek_image_version(target)
    if not old or not new:
        return False
    return (new["major"], new["minor"]) < (old["major"], old["minor"])


class FilterModule:
    """Ansible filters: ``seek_image_version``, ``seek_upgrade_steps``, ``seek_is_downgrade``."""

    def filters(self) -> dict[str, Any]:
        """Return the filters this module provides."""
        return {"seek_image_version": seek_image_version, "seek_upgrade_steps": seek_upgrade_steps,
                "seek_is_downgrade": seek_is_downgrade}
