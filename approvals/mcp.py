"""MCP door of approvals: ``decision_request_approval`` (docs/contract/tools.md)."""

from __future__ import annotations

from typing import Any

from mcp_server import MCPToolset

from approvals.inputs import DecisionRequestApproval
from approvals.serializers import requested_out
from approvals.services import requests as approval_requests
from tracemem_site.mcp import mcp_actor


class ApprovalTools(MCPToolset):
    def decision_request_approval(self, args: DecisionRequestApproval) -> dict[str, Any]:
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
            decision_id=args.decision_id,
            title=args.title,
            message=args.message,
            approval_route_id=args.approval_route_id,
            require_rationale=args.require_rationale,
            expires_in_seconds=args.expires_in_seconds,
        )
        return requested_out(approval)
