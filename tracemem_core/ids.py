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
    return f"{prefix}{ULID()}"


def has_format(value: object, prefix: str) -> bool:
    if not isinstance(value, str) or not value.startswith(prefix):
        return False
    rest = value[len(prefix) :]
    return len(rest) == 26 and re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{26}", rest) is not None
