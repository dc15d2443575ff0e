from __future__ import annotations

from datetime import UTC, datetime


def iso_z(value: datetime | None) -> str | None:
    """ISO-8601 UTC with microseconds and a ``Z`` (docs/contract/surfaces.md), the one timestamp format."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
