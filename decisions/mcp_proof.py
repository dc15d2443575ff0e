"""MCP door for proof and memory: decision_receipt, decision_record, decision_search (SPEC §3).

Imported by ``decisions/mcp.py`` (django-mcp-server only autodiscovers ``<app>.mcp``). Each tool:
Actor → one service/selector → the same result object as the REST twin in ``decisions/api_proof.py``.
"""

from __future__ import annotations

from typing import Any

from mcp_server import MCPToolset

from decisions import receipts, records
from decisions.inputs import DecisionReceipt, DecisionRecord, DecisionSearch
from tracemem_site.mcp_door import mcp_actor


class ProofTools(MCPToolset):
    def decision_receipt(self, args: DecisionReceipt) -> dict[str, Any]:
        """Get a signed receipt proving how one of your decisions ended and that its trace is unchanged.

        Call it after decision_close. Returns {decision_id, status, receipt_data: {decision_id, intent,
        status, automation_mode, agent_id, created_at, closed_at, event_count, trace_head}, signature,
        key_id, algorithm: "ed25519", signed_at}. The signature (base64url) covers the RFC 8785
        canonical JSON of receipt_data; anyone can check it offline with the public keys at
        /.well-known/tracemem/receipt-keys (`python -m tracemem_verify receipt.json --keys keys.json
        --trace trace.json`). Keep the receipt with your work's output. Fails with [invalid_state] while
        the decision is still open: close it first.
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
