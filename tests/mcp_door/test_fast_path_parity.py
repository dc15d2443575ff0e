"""The fast path answers exactly like django-mcp-server's stock transport: same status, same body."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import RequestFactory

# Imported before any test patches decisions.selectors.decision_for: these modules bind it by name
# when first imported, and would keep a patched one for the rest of the session.
from decisions import evidence, receipts, services, views  # noqa: F401
from tests.mcp_helpers import shape
from tracemem_core.actor import Actor
from tracemem_site.mcp import MCPView, StockMCPView

stock_view = StockMCPView.as_view()
fast_view = MCPView.as_view()


def _send(view: Any, key: str, message: Any, **headers: str) -> tuple[int, Any]:
    request = RequestFactory().post(
        "/mcp",
        message if isinstance(message, str) else json.dumps(message),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Agent {key}",
        HTTP_ACCEPT="application/json, text/event-stream",
        **headers,
    )
    response = view(request)
    response.render() if hasattr(response, "render") else None
    body = response.content
    return response.status_code, (json.loads(body) if body else None)


def both(key: str, message: Any, **headers: str) -> tuple[tuple[int, Any], tuple[int, Any]]:
    return _send(stock_view, key, message, **headers), _send(fast_view, key, message, **headers)


def call(name: str, arguments: Any, request_id: Any = 7) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }


@pytest.fixture
def agent_decision(make_agent: Any) -> tuple[str, str, str]:
    agent, key = make_agent()
    decision = services.decision_create(
        actor=Actor.for_agent(agent), intent="code.refactor.execute", automation_mode="autonomous"
    )
    services.decision_add_context(
        actor=Actor.for_agent(agent), decision_id=decision.decision_id, context={"a": 1}
    )
    return agent.agent_id, key, decision.decision_id


PROTOCOL_MESSAGES = [
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    },
    {
        "jsonrpc": "2.0",
        "id": "x-1",
        "method": "initialize",
        "params": {
            "protocolVersion": "2024-11-05",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    },
    {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "initialize",
        "params": {
            "protocolVersion": "1999-01-01",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    },
    {"jsonrpc": "2.0", "id": 3, "method": "ping"},
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {"jsonrpc": "2.0", "id": 4, "method": "tools/list"},
    {"jsonrpc": "2.0", "id": "ü/5", "method": "tools/list", "params": {}},
    {"jsonrpc": "2.0", "id": 6, "method": "no/such/method"},
    call("no_such_tool", {}),
    call("capabilities_get", {}),
    call("decision_get", {}),
    call("decision_get", {"decision_id": 42}),
    call("decision_get", {"decision_id": "TMEM_01ARZ3NDEKTSV4RRFFQ69G5FAV"}),
    call("decision_create", {"intent": "x.y", "automation_mode": "yolo"}),
    call("decision_create", {"automation_mode": "propose"}),
    call("decision_create", {"intent": "Not An Intent", "automation_mode": "propose"}),
    call("decision_add_context", {"decision_id": "TMEM_01ARZ3NDEKTSV4RRFFQ69G5FAV"}),
    call("decision_close", {"decision_id": "TMEM_01ARZ3NDEKTSV4RRFFQ69G5FAV", "action": "explode"}),
    {"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"arguments": {}}},
    {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": "nope"},
    {
        "jsonrpc": "2.0",
        "id": 12,
        "method": "tools/call",
        "params": {"name": "decision_get", "arguments": [1]},
    },
    {"jsonrpc": "2.0", "id": None, "method": "ping"},
    {"jsonrpc": "2.0", "id": 13, "result": {}},
    {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}},
    {"jsonrpc": "1.0", "id": 10, "method": "ping"},
    [{"jsonrpc": "2.0", "id": 11, "method": "ping"}],
    "not json at all",
]


@pytest.mark.parametrize("message", PROTOCOL_MESSAGES, ids=lambda m: json.dumps(m)[:60])
def test_fast_path_and_stock_answer_identically(message: Any, agent_decision: tuple[str, str, str]) -> None:
    _, key, _ = agent_decision
    stock, fast = both(key, message)
    assert fast == stock


@pytest.mark.parametrize(
    "tool",
    ["decision_get", "decision_trace"],
)
def test_fast_path_and_stock_read_the_same_decision_identically(
    tool: str, agent_decision: tuple[str, str, str]
) -> None:
    _, key, did = agent_decision
    stock, fast = both(key, call(tool, {"decision_id": did}))
    assert stock[0] == 200 and stock[1]["result"]["isError"] is False
    if tool == "decision_trace":
        # The fast path writes the events' JSON as PostgreSQL wrote it (issue 17): the text content
        # holds the same object, with jsonb's spaces inside actor and payload.
        for answer in (stock, fast):
            content = answer[1]["result"]["content"][0]
            content["text"] = json.loads(content["text"])
    assert fast == stock


@pytest.mark.parametrize(
    "message",
    [
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
    ],
)
def test_unsupported_protocol_version_header_is_refused_alike(
    message: dict[str, Any], agent_decision: tuple[str, str, str]
) -> None:
    _, key, _ = agent_decision
    stock, fast = both(key, message, HTTP_MCP_PROTOCOL_VERSION="1999-01-01")
    assert stock[0] == 400
    assert fast == stock


def _normalised(answer: tuple[int, Any]) -> tuple[int, Any]:
    """Status and body with the result text parsed and volatile ids/timestamps masked."""
    status, body = answer
    result = dict(body["result"])
    result["content"] = [{**c, "text": shape(json.loads(c["text"]))} for c in result["content"]]
    result["structuredContent"] = shape(result["structuredContent"])
    return status, {**body, "result": result}


def test_fast_path_and_stock_write_the_same_shapes(make_agent: Any) -> None:
    agent, key = make_agent()
    create = call(
        "decision_create",
        {"intent": "code.refactor.execute", "automation_mode": "propose", "metadata": {"password": "x"}},
    )
    stock, fast = both(key, create)
    assert stock[1]["result"]["isError"] is False
    assert _normalised(fast) == _normalised(stock)
    stock_did = stock[1]["result"]["structuredContent"]["decision_id"]
    fast_did = fast[1]["result"]["structuredContent"]["decision_id"]

    stock_ctx = _send(
        stock_view, key, call("decision_add_context", {"decision_id": stock_did, "payload": {"s": 1}})
    )
    fast_ctx = _send(
        fast_view, key, call("decision_add_context", {"decision_id": fast_did, "payload": {"s": 1}})
    )
    assert stock_ctx[1]["result"]["isError"] is False
    assert _normalised(fast_ctx) == _normalised(stock_ctx)

    stock_close = _send(
        stock_view, key, call("decision_close", {"decision_id": stock_did, "outcome": "rollback"})
    )
    fast_close = _send(
        fast_view, key, call("decision_close", {"decision_id": fast_did, "outcome": "rollback"})
    )
    assert stock_close[1]["result"]["structuredContent"]["status"] == "aborted"
    assert _normalised(fast_close) == _normalised(stock_close)

    # Closing again is the same refusal on either path.
    again_stock = _send(
        stock_view, key, call("decision_close", {"decision_id": fast_did, "action": "commit"})
    )
    again_fast = _send(fast_view, key, call("decision_close", {"decision_id": fast_did, "action": "commit"}))
    assert again_fast == again_stock
    assert again_fast[1]["result"] == {
        "content": [
            {
                "type": "text",
                "text": f"[invalid_state] decision {fast_did} is aborted: a closed decision cannot change; "
                "create a new decision",
            }
        ],
        "isError": True,
    }


FAST_MESSAGES = [m for m in PROTOCOL_MESSAGES[:6]] + [call("capabilities_get", {}), call("decision_get", {})]


@pytest.mark.parametrize("message", FAST_MESSAGES, ids=lambda m: json.dumps(m)[:60])
def test_common_messages_never_reach_the_stock_transport(
    message: Any, agent_decision: tuple[str, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, key, _ = agent_decision

    def stock_post(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("took the stock path")

    monkeypatch.setattr(StockMCPView, "post", stock_post)
    status, _ = _send(fast_view, key, message)
    # A request (it has an id) is answered; a notification is only accepted.
    assert status == (200 if "id" in message else 202)


def test_an_unexpected_tool_failure_is_an_internal_error_without_details(
    agent_decision: tuple[str, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, key, did = agent_decision

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("database password is hunter2")

    monkeypatch.setattr("decisions.selectors.decision_for", broken)
    stock, fast = both(key, call("decision_get", {"decision_id": did}))
    assert fast == stock
    assert fast[1]["result"]["isError"] is True
    assert fast[1]["result"]["content"][0]["text"].startswith("[internal] ")
    assert "hunter2" not in json.dumps(fast[1])


@pytest.mark.parametrize("version", ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"])
def test_each_spec_protocol_version_is_echoed_on_both_paths(
    version: str, agent_decision: tuple[str, str, str]
) -> None:
    from mcp.shared.version import SUPPORTED_PROTOCOL_VERSIONS

    from tracemem_core.version import PROTOCOL_VERSIONS

    # The stock transport negotiates with the SDK's list, the fast path with ours: they must agree.
    assert sorted(SUPPORTED_PROTOCOL_VERSIONS) == sorted(PROTOCOL_VERSIONS)
    _, key, _ = agent_decision
    message = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    stock, fast = both(key, message)
    assert fast == stock
    assert fast[1]["result"]["protocolVersion"] == version
    assert fast[1]["result"]["serverInfo"] == {"name": "tracemem", "version": "0.1.0"}


def test_an_internal_tool_error_names_the_request_id_an_operator_finds_in_the_log(
    agent_decision: tuple[str, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 18 (audit): the same request id in error bodies, on the MCP door too: the one error an
    agent must report (internal) says which request it was, as the REST body's request_id does."""
    from tests.mcp_helpers import mcp_post

    _, key, did = agent_decision

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("database password is hunter2")

    monkeypatch.setattr("decisions.selectors.decision_for", broken)
    answer = mcp_post(key, "decision_get", {"decision_id": did})
    text = answer.json()["result"]["content"][0]["text"]
    assert text.startswith("[internal] ") and "hunter2" not in text
    assert f"request id {answer['X-Request-ID']}" in text
