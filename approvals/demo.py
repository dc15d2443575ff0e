"""The quick-start demo's approval routes (``manage.py seed_demo``)."""

from __future__ import annotations

from typing import Any

from approvals.config import apply_routes
from tracemem_core.actor import Actor

DEMO_ROUTES: list[dict[str, Any]] = [
    {
        "route_id": "route_default",
        "name": "Default (admins by email)",
        "channels": [{"type": "email", "to": ["admin"]}],
        "default": True,
    },
    {
        "route_id": "route_finance",
        "name": "Finance: two approvers with a rationale",
        "channels": [{"type": "email"}],
        "approver_group": "finance-approvers",
        "required_approvals": 2,
        "require_rationale": True,
        "expires_in_seconds": 4 * 3600,
    },
]


def seed_demo_routes(*, actor: Actor) -> list[str]:
    """``seed_demo``: the default route (email to the admin) and a finance-style example."""
    return apply_routes(actor=actor, items=DEMO_ROUTES, dry_run=False)
