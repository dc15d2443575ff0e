"""The seed's approval flow end to end through the official MCP client (docs/contract/story.md steps 4–8)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model

from agents.services import tokens as agent_tokens
from tests.appr_helpers import Reviewer, make_route
from tests.mcp_helpers import DOORS, call_tool, error_code, mcp_call
from tracemem_core.actor import Actor
from tracemem_site import demo

pytestmark = pytest.mark.django_db(transaction=True)


def seeded_key() -> str:
    lines = demo.seed()
    [line] = [line for line in lines if "export TRACEMEM_API_KEY=" in line]
    return line.split("=", 1)[1].strip()


def test_seed_flow_evaluate_request_approve_over_rest_then_write_and_commit(live_server: Any) -> None:
    key = seeded_key()

    def call(tool: str, **arguments: Any) -> tuple[bool, Any]:
        return mcp_call(live_server, key, tool, arguments)

    failed, created = call(
        "decision_create",
        intent="code.refactor.execute",
        automation_mode="propose",
        metadata={"component": "user-service", "change_type": "refactor"},
    )
    assert not failed, created
    decision_id = created["decision_id"]
    failed, evaluated = call(
        "decision_evaluate",
        decision_id=decision_id,
        policy_id="code_change_policy_v1",
        inputs={"change_type": "refactor", "component": "user-service"},
    )
    assert not failed, evaluated
    assert (evaluated["outcome"], evaluated["requires_approval"]) == ("requires_exception", True)

    failed, requested = call(
        "decision_request_approval",
        decision_id=decision_id,
        title="Refactoring Approval Required",
        message="Extract auth logic from user-service",
    )
    assert not failed, requested
    assert (requested["status"], requested["route_id"]) == ("pending", "route_default")
    assert requested["delivery"]["channels"] == [{"channel": "email", "status": "pending"}]
    failed, again = call("decision_request_approval", decision_id=decision_id)
    assert failed and error_code(again) == "conflict"

    write = {
        "decision_id": decision_id,
        "product": "pg_orders_insert_v1",
        "purpose": "order_processing",
        "mutation": {"data": {"customer_id": 3, "amount": 10}},
    }
    failed, refused = call("decision_write", **write)
    assert failed and error_code(refused) == "invalid_state"

    admin = get_user_model().objects.get(username=demo.DEMO_ADMIN)
    reviewer = Reviewer(admin, agent_tokens.personal_token_create(actor=Actor.system(), user=admin).secret)
    approved = reviewer.approve(requested["approval_id"], "refactor reviewed")
    assert approved.status_code == 200 and approved.json()["status"] == "approved"

    failed, got = call("decision_get", decision_id=decision_id)
    assert not failed and (got["status"], got["approval_status"]) == ("approved", "approved")
    assert got["delivery"]["channels"][0]["channel"] == "email"
    failed, written = call("decision_write", **write)
    assert not failed, written
    assert (written["status"], written["affected_rows"]) == ("executed", 1)
    failed, closed = call("decision_close", decision_id=decision_id, action="commit", reason="refactored")
    assert not failed and closed["status"] == "committed"
    failed, trace = call("decision_trace", decision_id=decision_id)
    types = [e["type"] for e in trace["events"]]
    assert types.index("approval_requested") < types.index("approval_vote") < types.index("approval_resolved")
    resolved = trace["events"][types.index("approval_resolved")]["payload"]
    assert resolved["approvers"] == [{"id": f"user_{admin.pk}", "name": "admin"}]
    assert types[-2:] == ["write", "close"]


@pytest.mark.parametrize("door", DOORS)
def test_request_approval_contract_same_result_and_refusals_on_both_doors(
    door: str, live_server: Any, make_agent: Any
) -> None:
    make_route("route_default", is_default=True, channels=[{"type": "email"}])
    _, key = make_agent(f"contract-{door}")
    created = call_tool(
        door, live_server, key, "decision_create", {"intent": "a.b.c", "automation_mode": "propose"}
    )
    decision_id = created[1]["decision_id"]
    failed, result = call_tool(
        door, live_server, key, "decision_request_approval", {"decision_id": decision_id}
    )
    assert not failed
    assert set(result) == {"approval_id", "status", "expires_at", "route_id", "delivery"}
    assert (result["status"], result["route_id"]) == ("pending", "route_default")
    assert result["delivery"]["channels"] == [{"channel": "email", "status": "pending"}]
    for args, code in [
        ({"decision_id": decision_id}, "conflict"),
        ({"decision_id": "TMEM_01J00000000000000000000000"}, "not_found"),
        ({"decision_id": decision_id, "approval_route_id": "route_missing"}, "conflict"),
    ]:
        failed, text = call_tool(door, live_server, key, "decision_request_approval", args)
        assert failed and error_code(text) == code, (args, text)
    other = call_tool(
        door, live_server, key, "decision_create", {"intent": "a.b.c", "automation_mode": "propose"}
    )
    failed, text = call_tool(
        door,
        live_server,
        key,
        "decision_request_approval",
        {"decision_id": other[1]["decision_id"], "approval_route_id": "route_missing"},
    )
    assert failed and error_code(text) == "invalid_argument"
