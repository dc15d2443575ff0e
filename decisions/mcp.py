"""MCP door for the decision tools (docs/contract/tools.md): the envelope, and proof and memory (decision_receipt,
decision_record, decision_search). Each tool: input model → Actor → one service → the same result
as its REST twin in ``decisions/api.py``."""

from __future__ import annotations

from typing import Any

from mcp_server import MCPToolset
from mcp_server.djangomcp import global_mcp_server

from decisions import receipts, records, selectors, services
from decisions.inputs import (
    DecisionAddContext,
    DecisionClose,
    DecisionCreate,
    DecisionGet,
    DecisionReceipt,
    DecisionRecord,
    DecisionSearch,
    DecisionTrace,
    DecisionWait,
)
from decisions.serializers import (
    closed_out,
    created_out,
    decision_out,
    event_ref_out,
    events_ref_out,
    trace_page_out,
    wait_out,
)
from tracemem_core import rawjson
from tracemem_site.mcp import mcp_actor


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
        contexts (instead of context): up to 100 objects recorded at once, in order, as that many
        events; returns {events: [{event_id, seq, timestamp}, ...]}.
        """
        if args.contexts is not None:
            events = services.decision_add_contexts(
                actor=mcp_actor(self.request),
                decision_id=args.decision_id,
                contexts=args.contexts,
                context=args.context,
                summary=args.summary,
            )
            return events_ref_out(events)
        event = services.decision_add_context(
            actor=mcp_actor(self.request),
            decision_id=args.decision_id,
            context=args.context,
            summary=args.summary,
        )
        return event_ref_out(event)

    def decision_get(self, args: DecisionGet) -> dict[str, Any]:
        """Read a decision's current state.

        Returns status (open | needs_approval | approved | rejected | committed | aborted),
        approval_status (null | pending | approved | rejected | expired), approval_required,
        pending_approval_id, event_count and trace_head. While approval_status is pending, call
        decision_wait (it returns the moment a human answers) rather than polling this; when
        approved, continue with your writes and decision_close(action="commit"); when rejected or
        expired, decision_close(action="abort").
        """
        return decision_out(selectors.decision_for(mcp_actor(self.request), args.decision_id))

    def decision_wait(self, args: DecisionWait) -> dict[str, Any]:
        """Wait for a human: returns as soon as the decision's approval is resolved, or after
        timeout_seconds (default 25, at most 50) with timed_out true. Use it instead of polling.

        Call it after decision_request_approval (or whenever approval_status is pending). It returns
        the decision_get object plus timed_out. timed_out false: the wait is over; approval_status
        says how (approved: continue with your writes and decision_close(action="commit");
        rejected or expired: decision_close(action="abort")). timed_out true: nobody has answered
        yet; call decision_wait again right away (approvals can take minutes to days). When nothing
        is pending it returns at once.
        """
        # Under the production server the MCP view lets it park (tracemem_site.mcp, docs/mcp.md).
        outcome = selectors.decision_wait(
            mcp_actor(self.request), args.decision_id, timeout_seconds=args.timeout_seconds
        )
        return wait_out(outcome)

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
        if rawjson.passthrough_wanted():  # the fast path writes PostgreSQL's text as it is (issue 17)
            raw = selectors.trace_page_json(decision, after_seq=args.after_seq, limit=args.limit)
            if raw is not None:
                return trace_page_out(decision, raw)
        page = selectors.trace_page_dicts(decision, after_seq=args.after_seq, limit=args.limit)
        return trace_page_out(decision, page)

    def decision_close(self, args: DecisionClose) -> dict[str, Any]:
        """Finish a decision: action="commit" when the work is done, "abort" when you give up.

        (Alias: outcome; "rollback" means abort.) Commit is gated: it fails with
        [approval_required] when the automation mode or a policy exception still needs a granted
        approval (call decision_request_approval, then decision_wait), and with
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


class ProofTools(MCPToolset):
    def decision_receipt(self, args: DecisionReceipt) -> dict[str, Any]:
        """Get a signed receipt proving how one of your decisions ended and that its trace is unchanged,
        with its proof of inclusion in the server's append-only receipt log.

        Call it after decision_close. Returns {decision_id, status, receipt_data: {decision_id, intent,
        status, automation_mode, agent_id, created_at, closed_at, event_count, trace_head, close_action},
        signature, key_id, algorithm: "ed25519", signed_at, inclusion, inclusion_status,
        inclusion_reason}. The signature (base64url) covers the RFC 8785 canonical JSON of receipt_data;
        anyone can check it offline with the public keys at /.well-known/tracemem/receipt-keys
        (`python -m tracemem_verify receipt.json --keys keys.json --trace trace.json`).
        inclusion is {format, decision_id, leaf_index, tree_size, leaf_hash, audit_path, checkpoint}:
        the receipt is leaf leaf_index of the log whose signed checkpoint (tree_size leaves) is
        `checkpoint`, and audit_path proves it (`python -m tracemem_verify inclusion receipt.json --keys
        keys.json --checkpoint CHECKPOINT`, with a checkpoint from /.well-known/tracemem/checkpoint).
        inclusion_status "included" means that proof is there; "pending" means the decision closed
        after the latest checkpoint (inclusion is null; the worker signs a new checkpoint within
        seconds: call decision_receipt again then); "error" means the server's log is damaged
        (inclusion_reason says what; tell an operator). Keep the receipt with your work's output.
        Fails with [invalid_state] while the decision is still open: close it first.
        """
        return receipts.decision_receipt(actor=mcp_actor(self.request), decision_id=args.decision_id)

    def decision_record(self, args: DecisionRecord) -> dict[str, Any]:
        """Write down an engineering decision (ADR-style) so you and later sessions can find it again.

        Call it whenever you settle an architecture, dependency, schema, API design, infra,
        trade-off or convention question. One call creates a committed decision (no
        decision_create/decision_close needed). context: the situation; decision: what was decided;
        rationale: why; tags: short keywords for filtering. Secrets are redacted before storage and
        texts longer than 1000 characters are cut. supersedes: the decision_id of an earlier record of
        yours that this one replaces (find it with decision_search); that record then shows superseded_by.
        Returns {decision_id, status: "committed", created_at, closed_at, title, category, tags,
        supersedes}. [not_found] for supersedes means it is not one of your records; [conflict] means
        it was already superseded — supersede its replacement instead.
        """
        record = records.decision_record(
            actor=mcp_actor(self.request),
            title=args.title,
            category=args.category,
            context=args.context,
            decision=args.decision,
            rationale=args.rationale,
            alternatives_considered=args.alternatives_considered,
            tags=args.tags,
            constraints=args.constraints,
            consequences=args.consequences,
            supersedes=args.supersedes,
        )
        return records.record_out(record)

    def decision_search(self, args: DecisionSearch) -> dict[str, Any]:
        """Search your recorded engineering decisions before you decide something again.

        query: words to find in title, context, decision, rationale and tags (full-text, stemmed).
        category, tags (all must match) and status (committed, or active / superseded) narrow it;
        limit is 1–100 (default 20). Results are newest first: {results: [{decision_id, title,
        category, tags, status, intent, created_at, supersedes, superseded_by}], count}. Follow
        superseded_by to the record that replaced one; to change a past decision, call
        decision_record with supersedes set to the newest one.
        """
        found = records.decision_search(
            actor=mcp_actor(self.request),
            query=args.query,
            category=args.category,
            tags=args.tags,
            status=args.status,
            limit=args.limit,
        )
        return records.search_out(found)


# --- the workflow prompt (issue 16) ----------------------------------------------------------------

GOVERNED_CHANGE = """\
Make this change under TraceMem's governance, step by step, with these tool calls:

1. capabilities_get() — check that policy {policy_id} is among your policies.
2. decision_create(intent="{intent}", automation_mode="{automation_mode}",
   metadata={{"component": "{component}", "change_type": "{change_type}"}}) — keep the decision_id.
3. decision_add_context(decision_id, context={{"step": "planning", "rationale": "<why this change>"}})
   — and again at each step of the work.
4. decision_evaluate(decision_id, policy_id="{policy_id}",
   inputs={{"change_type": "{change_type}", "component": "{component}"}}):
   - allow: go to step 6 (in propose/approve/override mode a human must still approve: step 5);
   - deny: do not make the change; decision_close(decision_id, action="abort", reason=<the rule>);
   - requires_exception: step 5.
5. decision_request_approval(decision_id, title="{title}", message="<what you will change and why>"),
   then decision_wait(decision_id) until timed_out is false (call it again whenever timed_out is true):
   approval_status approved: go on; rejected or expired: decision_close(decision_id, action="abort").
6. Make the change ({change_type} of {component}), recording what you did with decision_add_context
   (and data changes with decision_write through a data product, if any).
7. decision_close(decision_id, action="commit", summary=<what changed>, reason=<why it is done>).
   decision_trace and decision_receipt prove afterwards what happened and who approved it.
"""


@global_mcp_server.prompt(
    name="governed_change",
    description=(
        "Walks you through one governed change (create → context → evaluate → request approval → "
        "wait → change → close) with the tool calls filled in. Defaults are the demo's refactor flow."
    ),
)
def governed_change(
    component: str = "user-service",
    change_type: str = "refactor",
    intent: str = "code.refactor.execute",
    policy_id: str = "code_change_policy_v1",
    automation_mode: str = "propose",
    title: str = "Refactoring Approval Required",
) -> str:
    return GOVERNED_CHANGE.format(
        component=component,
        change_type=change_type,
        intent=intent,
        policy_id=policy_id,
        automation_mode=automation_mode,
        title=title,
    )
