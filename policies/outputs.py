"""Result shape of ``decision_evaluate`` (documentation: tracemem_site/outputs.py)."""

from __future__ import annotations

from tracemem_core.outputs import Output


class Rationale(Output):
    message: str | None
    rule: str | None


class EvaluationOut(Output):
    event_id: str
    policy_id: str
    policy_version: int
    policy_hash: str
    outcome: str
    rationale: Rationale
    allowed: bool
    requires_approval: bool
    approval_route_id: str | None
