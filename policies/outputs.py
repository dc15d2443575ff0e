"""Result shape of ``decision_evaluate`` (documentation: tracemem_site/outputs.py)."""

from __future__ import annotations

from tracemem_core.outputs import JsonObject, Output


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


# --- admin API -------------------------------------------------------------------------------


class PolicyVersionOut(Output):
    policy_id: str
    version: int
    status: str
    hash: str | None
    name: str
    description: str
    inputs_schema: JsonObject | None
    rules: list[JsonObject]
    default_outcome: str
    exception_route_id: str | None
    created_at: str
    updated_at: str | None
    published_at: str | None
    published_by: str | None


class PolicySummary(Output):
    policy_id: str
    name: str
    status: str
    version: int | None
    hash: str | None
    draft_version: int | None


class PolicyList(Output):
    policies: list[PolicySummary]


class PolicyGrantOut(Output):
    policy_id: str
    agent_id: str
    agent_name: str
    created_at: str


class PolicyGrantList(Output):
    grants: list[PolicyGrantOut]


class PolicyDetail(PolicySummary):
    versions: list[PolicyVersionOut]
    grants: list[PolicyGrantOut]


class PolicyTestOut(EvaluationOut):
    event_id: str | None  # type: ignore[assignment]  # a test records nothing
    status: str


class Flip(Output):
    decision_id: str
    event_id: str
    timestamp: str
    intent: str
    before: str | None
    after: str
    rule: str | None = None
    error: str | None = None


class ReplayReport(Output):
    policy_id: str
    published_version: int
    draft_version: int
    replayed: int
    skipped: int
    flipped: int
    flips: list[Flip]
