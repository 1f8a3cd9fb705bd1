"""Filters for the backups role: the shortest interval between two runs of a cron schedule.

The backups role refuses a CronJob whose ``activeDeadlineSeconds`` is not below the time between
two of its runs. Kubernetes CronJob schedules are standard five-field cron expressions (or one of
the ``@hourly``-style macros), evaluated in the CronJob's ``timeZone``; this module computes the
shortest gap between two consecutive firings over a two-year window, wall-clock minutes, without
daylight-saving shifts (a DST change can shorten one gap by an hour: keep a margin).
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTH_NAMES = {n: i + 1 for i, n in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])}
DOW_NAMES = {n: i for i, n in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
FIELDS = (("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}),
          ("month", 1, 12, MONTH_NAMES), ("day of week", 0, 7, DOW_NAMES))


class CronError(ValueError):
    """A schedule that is not a valid five-field cron expression."""


def _value(text: str, names: dict[str, int], what: str) -> int:
    """Parse one number or name of a cron field."""
    low = text.lower()
    if low in names:
        return names[low]
    if not text.isdigit():
        raise CronError(f"{what}: {text!r} is not a number")
    return int(text)


def _field(text: str, low: int, high: int, names: dict[str, int], what: str) -> tuple[set[int], bool]:
    """Parse one cron field into its set of values and whether it was restricted (not ``*``)."""
    values: set[int] = set()
    restricted = not text.startswith("*") and not text.startswith("?")
    for part in text.split(","):
        rng, _, step_text = part.partition("/")
        step = _value(step_text, {}, what) if step_text else 1
        if step < 1:
            raise CronError(f"{what}: step must be at least 1")
        if rng in ("*", "?"):
            start, end = low, high
        elif "-" in rng:
            a, _, b = rng.partition("-")
            start, end = _value(a, names, what), _value(b, names, what)
        else:
            start = _value(rng, names, what)
            end = high if step_text else start
        if not (low <= start <= high and low <= end <= high) or start > end:
            raise CronError(f"{what}: {part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return values, restricted


def cron_min_interval(schedule: str) -> int:
    """Return the shortest time in seconds between two consecutive runs of ``schedule``.

    Raises ``CronError`` for an expression Kubernetes would not accept or that never fires.
    """
    if not isinstance(schedule, str):
        raise CronError(f"schedule must be a string, got {type(schedule).__name__}")
    expr = MACROS.get(schedule.strip().lower(), schedule.strip())
    parts = expr.split()
    if len(parts) != 5:
        raise CronError(f"{schedule!r}: a schedule has five fields (minute hour day month weekday)")
    parsed = [_field(p, lo, hi, names, what) for p, (what, lo, hi, names) in zip(parts, FIELDS)]
    (minutes, _), (hours, _), (doms, dom_r), (months, _), (dows, dow_r) = parsed
    dows = {d % 7 for d in dows}
    day_minutes = sorted(h * 60 + m for h in hours for m in minutes)
    start = _dt.date(2025, 1, 1)
    firings: list[int] = []
    for offset in range(731):
        day = start + _dt.timedelta(days=offset)
        if day.month not in months:
            continue
        dom_ok = day.day in doms
        dow_ok = (day.isoweekday() % 7) in dows
        # cron semantics: when both day fields are restricted, either may match
        if (dom_ok or dow_ok) if (dom_r and dow_r) else (dom_ok and dow_ok):
            firings.extend(offset * 1440 + m for m in day_minutes)
    if len(firings) < 2:
        raise CronError(f"{schedule!r} fires fewer than twice in two years")
    return min(b - a for a, b in zip(firings, firings[1:])) * 60


def cron_valid(schedule: Any) -> bool:
    """Return whether ``schedule`` is a cron expression this module understands."""
    try:
        cron_min_interval(schedule)
    except CronError:
        return False
    return True


class FilterModule:
    """Ansible filters: ``cron_min_interval`` and ``cron_valid``."""

    def filters(self) -> dict[str, Any]:
        """Return the filters this module provides."""
        return {"cron_min_interval": cron_min_interval, "cron_valid": cron_valid}
