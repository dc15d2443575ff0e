"""The input of ``decision_request_approval``, declared once for the MCP and REST doors (docs/inputs.md)."""

from __future__ import annotations

from pydantic import Field

from tracemem_core.inputs import Input


class DecisionRequestApproval(Input):
    tool_name = "decision_request_approval"

    decision_id: str
    title: str | None = Field(None, description="what the reviewer should decide")
    message: str | None = Field(None, description="why; secrets are redacted")
    approval_route_id: str | None = Field(
        None, description="default: the policy's exception route, else the default route"
    )
    require_rationale: bool | None = Field(None, description="reviewers must give a reason")
    expires_in_seconds: int | None = Field(None, description="at most the route's expiry")
