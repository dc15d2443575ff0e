"""MCP door of approvals: ``decision_request_approval`` (docs/contract/tools.md)."""

from __future__ import annotations

from typing import Any

from mcp_server import MCPToolset

from approvals.serializers import requested_out
from approvals.services import requests as approval_requests
from tracemem_site.mcp import mcp_actor


class ApprovalTools(MCPToolset):
    def decision_request_approval(
        self,
        decision_id: str,
        title: str | None = None,
        message: str | None = None,
        approval_route_id: str | None = None,
        require_rationale: bool | None = None,
        expires_in_seconds: int | None = None,
    ) -> dict[str, Any]:
        """Ask a human to approve this decision. Call it when decision_evaluate returned
        requires_exception, or when your automation_mode (propose/approve/override) needs a granted
        approval before writes or commit.

        title/message: what the reviewer should decide and why (secrets are redacted). The route is
        approval_route_id, else the policy's exception route, else the default route.
        Result: {approval_id, status: "pending", expires_at, route_id, delivery}. The decision is now
        needs_approval: do not write; call decision_wait (it returns when a human answers, or after
        its timeout: then call it again) until approval_status is approved (continue with writes
        and commit), rejected or expired (close the decision with action=abort).
        A second request while one is pending is [conflict]: keep waiting instead.
        """
        approval = approval_requests.decision_request_approval(
            actor=mcp_actor(self.request),
            decision_id=decision_id,
            title=title,
            message=message,
            approval_route_id=approval_route_id,
            require_rationale=require_rationale,
            expires_in_seconds=expires_in_seconds,
        )
        return requested_out(approval)
