"""Filter for the backup_host role: which configured age recipients the off-site tool would refuse.

The off-site tool (tools/seek_backup/crypto.py ``parse_recipient``) encrypts to ``age1...`` X25519
public keys and ``ssh-ed25519``/``ssh-rsa`` keys, parsed by pyrage (pinned in requirements.txt,
installed on the controller too). Checking them here, with the same parser, stops pre-flight on a
mistyped key (bech32 checksum) instead of the first timer run on the backup host.
"""

from __future__ import annotations

import re
from typing import Any

try:  # the controller's virtualenv has pyrage (requirements.txt); fall back to the key's shape
    from pyrage import ssh, x25519
except ImportError:  # pragma: no cover - only without `make setup`
    ssh = x25519 = None

# bech32 data characters (BIP 173); an age X25519 recipient is "age1" + 58 of them.
_AGE_SHAPE = re.compile(r"^age1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58}$")


def age_recipient_problem(text: Any) -> str:
    """Return why ``text`` is not an age recipient the off-site tool accepts, or ``''``."""
    value = str(text or "").strip()
    if value.upper().startswith("AGE-SECRET-KEY-"):
        return "an AGE-SECRET-KEY is a private key; give its public key (age-keygen -y)"
    if value.startswith("age1"):
        if x25519 is None:
            return "" if _AGE_SHAPE.match(value) else "not an age1 public key (age1 + 58 characters)"
        try:
            x25519.Recipient.from_str(value)
        except Exception:  # pyrage raises its own RecipientError
            return "not a valid age1 public key (a character is wrong or missing)"
        return ""
    if value.startswith(("ssh-ed25519 ", "ssh-rsa ")):
        if ssh is None:
            return ""
        try:
            ssh.Recipient.from_str(value)
        except Exception:  # pyrage raises its own RecipientError
            return "not a valid SSH public key"
        return ""
    return "neither an age1... public key nor an ssh-ed25519/ssh-rsa public key"


def age_recipient_problems(recipients: Any) -> list[str]:
    """Return one ``'<start of key>: <problem>'`` line per unusable recipient (never a whole key)."""
    if isinstance(recipients, str) or not isinstance(recipients, (list, tuple)):
        return [f"{str(recipients)[:12]}...: backup_age_recipients must be a list of public keys"]
    problems = []
    for recipient in recipients:
        problem = age_recipient_problem(recipient)
        if problem:
            problems.append(f"{str(recipient).strip()[:12]}...: {problem}")
    return problems


class FilterModule:
    """Ansible filters: ``age_recipient_problem``, ``age_recipient_problems``."""

    def filters(self) -> dict[str, Any]:
        """Return the filters this module provides."""
        return {"age_recipient_problem": age_recipient_problem, "age_recipient_problems": age_recipient_problems}
