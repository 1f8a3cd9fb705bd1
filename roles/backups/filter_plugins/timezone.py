"""Filter for the backups role: whether a CronJob ``timeZone`` names a known IANA time zone.

The kube-apiserver accepts a CronJob ``timeZone`` only when every ``/``-separated part is 1-14 of
``A-Za-z0-9.-_+`` (not ``.``, ``..`` or a leading ``-``), it is not ``Local``, and Go's
``time.LoadLocation`` finds it in the tz database compiled into the server
(kubernetes v1.34.2, pkg/apis/batch/validation/validation.go ``validateTimeZone``;
cmd/kube-apiserver imports ``time/tzdata``). This filter applies the same rules with the
controller's tz database (Python ``zoneinfo``: the system's zoneinfo files or the tzdata package),
so a misspelt zone stops pre-flight instead of the apply.
"""

from __future__ import annotations

import re
import zoneinfo
from typing import Any

_PART = re.compile(r"^[A-Za-z.\-_0-9+]{1,14}$")


def timezone_problem(name: Any) -> str:
    """Return why ``name`` is not a CronJob time zone the API server accepts, or ``''`` when it is.

    When the controller has no tz database at all the name cannot be looked up; only the syntax is
    checked then (the API server still refuses an unknown zone at apply time).
    """
    text = str(name or "")
    if not text:
        return "it is empty"
    for part in text.split("/"):
        if part in (".", "..") or part.startswith("-") or not _PART.match(part):
            return "it is not a time zone name (parts of 1-14 letters, digits, . - _ +)"
    if text.lower() == "local":
        return "Local is not an explicit time zone"
    try:
        zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        if zoneinfo.available_timezones():
            return "the tz database has no such zone"
    return ""


class FilterModule:
    """Ansible filter: ``timezone_problem``."""

    def filters(self) -> dict[str, Any]:
        """Return the filters this module provides."""
        return {"timezone_problem": timezone_problem}
