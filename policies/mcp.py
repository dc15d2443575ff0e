"""MCP door for ``decision_evaluate`` (docs/contract/tools.md): Actor → one service → the same result as REST."""

from __future__ import annotations

from typing import Any

from mcp_server import MCPToolset

from policies.services import evaluation as policy_evaluation
from tracemem_core.validation import first_present
from tracemem_site.mcp import mcp_actor


class PolicyTools(MCPToolset):
    def decision_evaluate(
        self,
        decision_id: str,
        policy_id: str | None = None,
        inputs: dict[str, Any] | None = None,
        inputs_ref: str | None = None,
        policy: str | None = None,
    ) -> dict[str, Any]:
        """Ask a policy whether the action you are about to take is allowed. Call it before acting.

        policy_id (alias: policy): one of the policies capabilities_get lists for you.
        Pass exactly one of: inputs = an object with the facts the policy needs (e.g.
        {"change_type": "refactor", "component": "user-service"}), or inputs_ref = the event_id of
        an earlier decision_read in this decision (its records become inputs.records).

        Returns {event_id, policy_id, policy_version, policy_hash, outcome, rationale: {message,
        rule}, allowed, requires_approval, approval_route_id}; it is recorded in the trace.
        - outcome "allow": go ahead.
        - outcome "requires_exception": call decision_request_approval, then decision_wait
          until approval_status is approved before writing or committing.
        - outcome "deny": do not act; writes in this decision are now refused, so
          decision_close(action="abort") (only override-mode approvals can lift a deny).
        Errors: [invalid_argument] means the inputs did not fit the policy (the message names the
        problem; the failed attempt is recorded and nothing is allowed) — fix the inputs and call
        again. [permission_denied]: the policy is not granted to you; ask an admin.
        """
        return policy_evaluation.decision_evaluate(
            actor=mcp_actor(self.request),
            decision_id=decision_id,
            policy_id=first_present({"policy_id": policy_id, "policy": policy}, "policy_id", "policy"),
            inputs=inputs,
            inputs_ref=inputs_ref,
        )
