"""One contract test per tool: MCP (official client, real HTTP) and REST give the same result object
and the same refusal codes, because both doors call the same service."""

from __future__ import annotations

from typing import Any

from decisions import services
from decisions.models import Decision
from tests.mcp_helpers import DOORS, call_both, call_tool, error_code, shape
from tracemem_core.actor import Actor


def _decision(agent: Any, mode: str = "autonomous") -> str:
    actor = Actor.for_agent(agent)
    did = services.decision_create(
        actor=actor, intent="code.refactor.execute", automation_mode=mode
    ).decision_id
    services.decision_add_context(actor=actor, decision_id=did, context={"step": "one"})
    return did


def test_capabilities_get_contract(live_server: Any, make_agent: Any) -> None:
    _, key = make_agent("doctor")
    results = call_both(live_server, key, "capabilities_get", {})
    assert results["mcp"] == results["rest"]
    assert results["mcp"][0] is False and results["mcp"][1]["name"] == "doctor"


def test_decision_create_contract(live_server: Any, make_agent: Any) -> None:
    agent, key = make_agent()
    args = {
        "intent": "code.refactor.execute",
        "automation_mode": "propose",
        "instance": "ci-1",
        "metadata": {"component": "user-service", "token": "abc"},
    }
    results = call_both(live_server, key, "decision_create", args)
    assert (
        shape(results["mcp"])
        == shape(results["rest"])
        == (
            False,
            {"decision_id": "<str>", "status": "open", "created_at": "<str>"},
        )
    )
    stored = Decision.objects.filter(agent=agent).order_by("created_at")
    assert [(d.intent, d.automation_mode, d.instance, d.metadata) for d in stored] == [
        ("code.refactor.execute", "propose", "ci-1", {"component": "user-service", "token": "[redacted]"})
    ] * 2
    for bad in (
        {"intent": "code.refactor.execute", "automation_mode": "yolo"},
        {"automation_mode": "propose"},
        {"intent": "NotDotted", "automation_mode": "propose"},
        {"intent": "a.b", "automation_mode": "propose", "metadata": [1]},
    ):
        refusals = call_both(live_server, key, "decision_create", bad)
        codes = {door: (r[0], error_code(r[1])) for door, r in refusals.items()}
        assert codes == {"mcp": (True, "invalid_argument"), "rest": (True, "invalid_argument")}, bad
    assert Decision.objects.filter(agent=agent).count() == 2
    # A missing required argument reads the same through both doors.
    missing = call_both(live_server, key, "decision_create", {"automation_mode": "propose"})
    assert missing["mcp"] == missing["rest"] == (True, "[invalid_argument] intent is required")


def test_decision_add_context_contract(live_server: Any, make_agent: Any) -> None:
    agent, key = make_agent()
    did = _decision(agent)
    results = call_both(live_server, key, "decision_add_context", {"decision_id": did, "payload": {"x": 1}})
    assert (
        shape(results["mcp"])
        == shape(results["rest"])
        == (False, {"event_id": "<str>", "timestamp": "<str>"})
    )
    for bad, code in [
        ({"decision_id": did, "context": {}}, "invalid_argument"),
        ({"decision_id": did}, "invalid_argument"),
        ({"decision_id": "TMEM_01ARZ3NDEKTSV4RRFFQ69G5FAV", "context": {"x": 1}}, "not_found"),
    ]:
        refusals = call_both(live_server, key, "decision_add_context", bad)
        assert {d: error_code(r[1]) for d, r in refusals.items()} == {"mcp": code, "rest": code}, bad
    assert Decision.objects.get(decision_id=did).event_count == 4


def test_decision_get_contract(live_server: Any, make_agent: Any) -> None:
    agent, key = make_agent()
    did = _decision(agent, mode="propose")
    results = call_both(live_server, key, "decision_get", {"decision_id": did})
    assert results["mcp"] == results["rest"]
    assert results["mcp"][1]["status"] == "open" and results["mcp"][1]["event_count"] == 2
    _, other_key = make_agent()
    refusals = call_both(live_server, other_key, "decision_get", {"decision_id": did})
    assert {d: error_code(r[1]) for d, r in refusals.items()} == {"mcp": "not_found", "rest": "not_found"}


def test_decision_trace_contract(live_server: Any, make_agent: Any) -> None:
    agent, key = make_agent()
    did = _decision(agent)
    results = call_both(live_server, key, "decision_trace", {"decision_id": did})
    assert results["mcp"] == results["rest"]
    assert [e["type"] for e in results["mcp"][1]["events"]] == ["created", "context"]
    _, other_key = make_agent()
    refusals = call_both(live_server, other_key, "decision_trace", {"decision_id": did})
    assert {d: error_code(r[1]) for d, r in refusals.items()} == {"mcp": "not_found", "rest": "not_found"}


def test_decision_close_contract(live_server: Any, make_agent: Any) -> None:
    agent, key = make_agent()
    closed = {}
    for door in DOORS:
        did = _decision(agent)
        closed[door] = call_tool(
            door, live_server, key, "decision_close", {"decision_id": did, "action": "commit"}
        )
        again = call_tool(door, live_server, key, "decision_close", {"decision_id": did, "action": "abort"})
        assert again[0] is True and error_code(again[1]) == "invalid_state"
        assert Decision.objects.get(decision_id=did).status == "committed"
    assert shape(closed["mcp"]) == shape(closed["rest"])
    assert closed["mcp"][1]["status"] == "committed"

    for door in DOORS:  # alias outcome, rollback = abort
        did = _decision(agent)
        result = call_tool(
            door, live_server, key, "decision_close", {"decision_id": did, "outcome": "rollback"}
        )
        assert result[1]["status"] == "aborted", door

    for door in DOORS:  # propose needs a granted approval before commit
        did = _decision(agent, mode="propose")
        result = call_tool(door, live_server, key, "decision_close", {"decision_id": did, "action": "commit"})
        assert (result[0], error_code(result[1])) == (True, "approval_required"), door
        assert Decision.objects.get(decision_id=did).status == "open"
