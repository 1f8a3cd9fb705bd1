"""Retention policy: keep N daily and M weekly backups, judged by the stamp in the key.

Semantics (the same as restic's ``--keep-daily``/``--keep-weekly``): walk the stamps from the
newest; for the newest ``keep_daily`` distinct UTC days that have a backup keep that day's newest
backup, and for the newest ``keep_weekly`` distinct ISO weeks keep that week's newest backup.
The union is kept. Whatever else is in ``protect`` (the newest verified backup) is always kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Plan:
    """What to keep and what to delete, each sorted oldest first."""

    keep: list[str]
    delete: list[str]
    reasons: dict[str, list[str]]


def plan(stamps: Iterable[str], keep_daily: int, keep_weekly: int, parse: Callable[[str], datetime],
         protect: Iterable[str] = ()) -> Plan:
    """Decide which of ``stamps`` survive.

    ``parse`` turns a stamp into a datetime; ``protect`` names stamps that must survive whatever
    the policy says (the caller passes the newest verified backup).
    """
    if keep_daily < 0 or keep_weekly < 0:
        raise ValueError("keep counts must not be negative")
    ordered = sorted(set(stamps), key=parse, reverse=True)
    reasons: dict[str, list[str]] = {s: [] for s in ordered}
    days: list[tuple[int, int, int]] = []
    weeks: list[tuple[int, ...]] = []
    for stamp in ordered:
        when: datetime = parse(stamp)
        day = (when.year, when.month, when.day)
        if day not in days:
            days.append(day)
            if len(days) <= keep_daily:
                reasons[stamp].append("daily")
        week = tuple(when.isocalendar())[:2]
        if week not in weeks:
            weeks.append(week)
            if len(weeks) <= keep_weekly:
                reasons[stamp].append("weekly")
    for stamp in protect:
        if stamp in reasons:
            reasons[stamp].append("newest-verified")
    keep = sorted((s for s in ordered if reasons[s]), key=parse)
    delete = sorted((s for s in ordered if not reasons[s]), key=parse)
    return Plan(keep=keep, delete=delete, reasons={s: r for s, r in reasons.items() if r})
