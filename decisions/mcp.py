"""MCP door for the decision envelope tools (SPEC §3). Each tool: Actor → one service → same result as REST."""

from __future__ import annotations

from typing import Any

from mcp_server import MCPToolset

from decisions import selectors, services
from decisions.inputs import DecisionAddContext, DecisionClose, DecisionCreate, DecisionGet, DecisionTrace
from decisions.serializers import closed_out, created_out, decision_out, event_ref_out, trace_page_out
from tracemem_site.mcp_door import mcp_actor


class DecisionTools(MCPToolset):
    def decision_create(self, args: DecisionCreate) -> dict[str, Any]:
        """Open a decision envelope before you act. Every later call takes its decision_id.

        intent: what you are about to do, dotted lowercase `domain.entity.action`
        (e.g. `code.refactor.execute`, `customer.discount.apply`).
        automation_mode (fixed for the life of the decision):
        `propose` = a human must approve before any write and before commit;
        `approve` = writes need a granted approval; `override` = like approve, and an approval
        can lift a policy deny; `autonomous` = you may write unless a policy requires an exception.
        metadata: free-form object (secrets are redacted before storage).

        Returns {decision_id, status: "open", created_at}. Next: decision_add_context as you
        work, decision_evaluate for policies, and finally decision_close.
        """
        decision = services.decision_create(
            actor=mcp_actor(self.request),
            intent=args.intent,
            automation_mode=args.automation_mode,
            decision_actor=args.actor,
            instance=args.instance,
            version=args.version,
            metadata=args.metadata,
        )
        return created_out(decision)

    def decision_add_context(self, args: DecisionAddContext) -> dict[str, Any]:
        """Record what you know and why you act, as often as the work goes on.

        context: a non-empty object (alias: payload), e.g. {"step": "...", "rationale": "..."}.
        Secrets are redacted before storage; reviewers read this when deciding on approvals.
        Returns {event_id, timestamp}. Fails with [invalid_state] once the decision is closed:
        open a new decision then.
        """
        event = services.decision_add_context(
            actor=mcp_actor(self.request),
            decision_id=args.decision_id,
            context=args.context,
            summary=args.summary,
        )
        return event_ref_out(event)

    def decision_get(self, args: DecisionGet) -> dict[str, Any]:
        """Read a decision's current state. Poll this while waiting for a human.

        Returns status (open | needs_approval | approved | rejected | committed | aborted),
        approval_status (null | pending | approved | rejected | expired), approval_required,
        pending_approval_id, event_count and trace_head. While approval_status is pending, wait
        and poll again (every few seconds to minutes); when approved, continue with your writes
        and decision_close(action="commit"); when rejected or expired, decision_close(action="abort").
        """
        return decision_out(selectors.decision_for(mcp_actor(self.request), args.decision_id))

    def decision_trace(self, args: DecisionTrace) -> dict[str, Any]:
        """Read a decision with its hash-chained trace of events, one page at a time
        (decision_get plus events plus next_after_seq).

        Each event has seq, type, timestamp, actor, payload, prev_hash and hash; anyone can
        recompute the chain from the pages to prove nothing was changed. A page holds the events
        after `after_seq` (default 0), at most `limit` (default 500, at most 1000). While
        `next_after_seq` is not null there are more: call again with after_seq=next_after_seq.
        Only your own decisions are visible ([not_found] otherwise).
        """
        actor = mcp_actor(self.request)
        decision = selectors.decision_for(actor, args.decision_id)
        page = selectors.trace_page(decision, after_seq=args.after_seq, limit=args.limit)
        return trace_page_out(decision, page)

    def decision_close(self, args: DecisionClose) -> dict[str, Any]:
        """Finish a decision: action="commit" when the work is done, "abort" when you give up.

        (Alias: outcome; "rollback" means abort.) Commit is gated: it fails with
        [approval_required] when the automation mode or a policy exception still needs a granted
        approval (call decision_request_approval, then poll decision_get), and with
        [invalid_state] while approval is pending or after a rejection (then abort).
        Abort always works on a decision that is not closed yet.
        Returns {decision_id, status: "committed" | "aborted", closed_at, trace_head}.
        """
        decision = services.decision_close(
            actor=mcp_actor(self.request),
            decision_id=args.decision_id,
            action=args.action,
            summary=args.summary,
            reason=args.reason,
        )
        return closed_out(decision)


# The proof-and-memory tools (decision_receipt, decision_record, decision_search) are their own toolset;
# importing it here is what registers it (django-mcp-server autodiscovers only <app>.mcp).
from decisions import mcp_proof  # noqa: E402,F401
