"""Identifier formats of docs/contract/surfaces.md."""

from __future__ import annotations

import re

from ulid import ULID

DECISION_PREFIX = "TMEM_"
EVENT_PREFIX = "evt_"
APPROVAL_PREFIX = "appr_"
AGENT_PREFIX = "agent_"

SLUG_RE = re.compile(r"^[a-z][a-z0-9_]{1,62}[a-z0-9]$")


def new_id(prefix: str) -> str:
    return prefix + ulid_text(ULID().bytes)


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # every 10 bits as their two digits
_SHIFTS = tuple(range(120, -1, -10))


def ulid_text(value: bytes) -> str:
    """A ULID's 16 bytes as its 26 Crockford base-32 digits, as ``str(ULID)`` writes them: the 128
    bits (two leading zero bits make 130) read ten at a time. python-ulid's encoder computes each of
    the 26 digits on its own, and its ``__str__`` was ~2 % of a ``decision_create``'s instructions for
    the decision's and the event's ids (docs/performance.md section 30)."""
    number = int.from_bytes(value, "big")
    return "".join([_PAIRS[(number >> shift) & 1023] for shift in _SHIFTS])


def has_format(value: object, prefix: str) -> bool:
    if not isinstance(value, str) or not value.startswith(prefix):
        return False
    rest = value[len(prefix) :]
    return len(rest) == 26 and re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{26}", rest) is not None
