"""The quick-start demo's policy (``manage.py seed_demo``)."""

from __future__ import annotations

from typing import Any

from agents.models import Agent
from policies.config import apply_policies
from tracemem_core.actor import Actor

# --- demo data -------------------------------------------------------------------------------

DEMO_POLICY: dict[str, Any] = {
    "policy_id": "code_change_policy_v1",
    "name": "Code change policy",
    "description": "What an agent may change on its own. Refactors need a human exception (docs/contract/story.md).",
    "inputs_schema": {
        "type": "object",
        "properties": {"change_type": {"type": "string"}, "component": {"type": "string"}},
        "required": ["change_type"],
    },
    "rules": [
        {
            "name": "no_destructive_changes",
            "when": 'inputs.change_type in ["delete", "schema_drop"]',
            "outcome": "deny",
            "message": "destructive changes are not made by agents; abort and hand over to a human",
        },
        {
            "name": "refactor_needs_exception",
            "when": 'inputs.change_type == "refactor"',
            "outcome": "requires_exception",
            "message": "refactors need a reviewer's approval",
        },
        {
            "name": "routine_changes",
            "when": 'inputs.change_type in ["bugfix", "feature", "docs", "test"]',
            "outcome": "allow",
            "message": "routine change",
        },
    ],
    "default_outcome": "deny",
    "publish": True,
}


def seed_demo_policies(*, actor: Actor, agent: Agent) -> list[str]:
    """``seed_demo``: publish ``code_change_policy_v1`` and grant it to the demo agent (idempotent)."""
    return apply_policies(actor=actor, items=[{**DEMO_POLICY, "grants": [agent.agent_id]}], dry_run=False)
