"""docs/contract/story.md, the story every release must pass, driven through MCP with the official client.

The demo seed provides the agent key, ``code_change_policy_v1`` and the approval routes; a reviewer
approves through the approvals service (the browser/email/Slack doors are tested elsewhere).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.test import Client
from mcp import ClientSession

from approvals.services import requests as approval_requests
from tests.mcp_helpers import run_mcp, tool_result_value
from tracemem_core.actor import Actor
from tracemem_site import demo
from tracemem_verify.chain import GENESIS_HASH, event_hash
from tracemem_verify.receipt import keys_from_document, verify_receipt, verify_trace_against

HASHED = ("decision_id", "event_id", "seq", "type", "timestamp", "actor", "payload", "prev_hash")


async def _call(session: ClientSession, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    is_error, value = tool_result_value(await session.call_tool(tool, arguments))
    assert not is_error, f"{tool}: {value}"
    return value


def test_refactor_story_over_mcp_propose_evaluate_approve_write_commit_receipt(
    live_server: Any, redis_url: str
) -> None:
    lines = demo.seed()
    key = next(line.split("=", 1)[1] for line in lines if "export TRACEMEM_API_KEY=" in line)

    async def until_approval(session: ClientSession) -> dict[str, Any]:
        caps = await _call(session, "capabilities_get", {})
        assert caps["name"] == demo.DEMO_AGENT
        assert "code_change_policy_v1" in [p["policy_id"] for p in caps["permissions"]["policies"]]
        created = await _call(
            session,
            "decision_create",
            {
                "intent": "code.refactor.execute",
                "automation_mode": "propose",
                "metadata": {"component": "user-service", "change_type": "refactor"},
            },
        )
        did = created["decision_id"]
        await _call(
            session,
            "decision_add_context",
            {
                "decision_id": did,
                "context": {"step": "extracting_auth_logic", "rationale": "Improving testability"},
            },
        )
        evaluation = await _call(
            session,
            "decision_evaluate",
            {
                "decision_id": did,
                "policy_id": "code_change_policy_v1",
                "inputs": {"change_type": "refactor", "component": "user-service"},
            },
        )
        assert evaluation["outcome"] == "requires_exception"
        # Committing now is refused with a message that says what to do.
        refused = tool_result_value(
            await session.call_tool("decision_close", {"decision_id": did, "action": "commit"})
        )
        assert refused[0] is True and refused[1].startswith("[approval_required] ")
        approval = await _call(
            session,
            "decision_request_approval",
            {"decision_id": did, "title": "Refactoring Approval Required", "message": "Extract auth logic"},
        )
        assert approval["status"] == "pending"
        got = await _call(session, "decision_get", {"decision_id": did})
        assert (got["status"], got["approval_status"]) == ("needs_approval", "pending")
        return {"decision_id": did, "approval_id": approval["approval_id"]}

    pending = run_mcp(live_server, key, until_approval)
    reviewer = get_user_model().objects.get(username=demo.DEMO_ADMIN)
    approval_requests.approval_vote(
        actor=Actor.for_user(reviewer),
        approval_id=pending["approval_id"],
        decision="approve",
        rationale="Looks safe",
    )
    did = pending["decision_id"]

    async def after_approval(session: ClientSession) -> tuple[dict[str, Any], ...]:
        got = await _call(session, "decision_get", {"decision_id": did})
        written = await _call(
            session,
            "decision_write",
            {
                "decision_id": did,
                "product": "pg_orders_insert_v1",
                "purpose": "order_processing",
                "mutation": {"data": {"customer_id": 1, "amount": 42.5, "status": "new"}},
                "idempotency_key": "story-order-1",
            },
        )
        assert (written["status"], written["affected_rows"]) == ("executed", 1)
        closed = await _call(
            session,
            "decision_close",
            {
                "decision_id": did,
                "action": "commit",
                "reason": "Successfully refactored authentication logic",
            },
        )
        trace = await _call(session, "decision_trace", {"decision_id": did})
        receipt = await _call(session, "decision_receipt", {"decision_id": did})
        return got, closed, trace, receipt

    got, closed, trace, receipt = run_mcp(live_server, key, after_approval)
    assert (got["status"], got["approval_status"]) == ("approved", "approved")
    assert closed["status"] == "committed"
    types = [e["type"] for e in trace["events"]]
    assert types[:3] == ["created", "context", "evaluate"]
    assert "approval_requested" in types and "approval_resolved" in types and types[-1] == "close"
    prev = GENESIS_HASH
    for event in trace["events"]:
        assert event["prev_hash"] == prev
        assert event_hash({k: event[k] for k in HASHED}) == event["hash"]
        prev = event["hash"]
    assert prev == closed["trace_head"] == trace["trace_head"]
    assert "write" in types and types.index("approval_resolved") < types.index("write")
    # Step 8: the receipt proves afterwards what happened, verified offline with the published keys.
    published = Client().get("/.well-known/tracemem/receipt-keys").json()
    assert str(verify_receipt(receipt, keys_from_document(published))).startswith("OK")
    assert verify_trace_against(receipt["receipt_data"], trace["events"]).ok
