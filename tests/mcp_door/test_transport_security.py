"""Security and robustness of POST /mcp over real HTTP: auth, visibility, Origin, GET, bad input."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import httpx
import pytest
from django.test import Client

from decisions import services
from decisions.models import Decision
from tests.mcp_helpers import error_code, jsonrpc, mcp_call, mcp_url
from tracemem_core.actor import Actor

PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}


def post(key: str | None, message: Any, **extra: Any) -> Any:
    """POST /mcp in-process (Django test client): same view and code, without a server thread."""
    if key is not None:
        extra.setdefault("HTTP_AUTHORIZATION", f"Agent {key}")
    extra.setdefault("HTTP_ACCEPT", "application/json, text/event-stream")
    if extra["HTTP_ACCEPT"] is None:  # no Accept header at all
        del extra["HTTP_ACCEPT"]
    body = message if isinstance(message, str) else json.dumps(message)
    return Client().post("/mcp", body, content_type="application/json", **extra)


def _tool(name: str, arguments: Any) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }


def test_no_key_is_401_with_json_reason(db: Any) -> None:
    response = post(None, PING)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    assert response.json()["error"]["details"]["reason"] == "missing"


def test_unknown_key_is_401_and_bearer_scheme_works(live_server: Any, make_agent: Any) -> None:
    _, key = make_agent()
    bad = jsonrpc(live_server, None, PING, headers={"Authorization": "Agent tmem_" + "A" * 40})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "unauthenticated"
    ok = jsonrpc(live_server, None, PING, headers={"Authorization": f"Bearer {key}"})
    assert ok.status_code == 200 and ok.json() == {"jsonrpc": "2.0", "id": 1, "result": {}}
    assert mcp_call(live_server, key, "capabilities_get", scheme="Bearer")[0] is False


def test_another_agents_decision_is_not_found_and_unchanged(live_server: Any, make_agent: Any) -> None:
    owner, _ = make_agent()
    _, intruder_key = make_agent()
    did = services.decision_create(
        actor=Actor.for_agent(owner), intent="code.refactor.execute", automation_mode="autonomous"
    ).decision_id
    for tool, args in [
        ("decision_get", {"decision_id": did}),
        ("decision_trace", {"decision_id": did}),
        ("decision_add_context", {"decision_id": did, "context": {"x": 1}}),
        ("decision_close", {"decision_id": did, "action": "abort"}),
    ]:
        is_error, text = mcp_call(live_server, intruder_key, tool, args)
        assert is_error and error_code(text) == "not_found", (tool, text)
    decision = Decision.objects.get(decision_id=did)
    assert (decision.status, decision.event_count) == ("open", 1)


def test_cross_site_origin_is_403_before_anything_runs(make_agent: Any) -> None:
    _, key = make_agent()
    response = post(
        key,
        _tool("decision_create", {"intent": "a.b", "automation_mode": "autonomous"}),
        HTTP_ORIGIN="https://evil.example",
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert Decision.objects.count() == 0


def test_same_origin_and_allow_listed_origins_are_accepted(make_agent: Any, settings: Any) -> None:
    _, key = make_agent()
    settings.TRACEMEM_MCP_ALLOWED_ORIGINS = ["https://console.example.com"]
    assert post(key, PING, HTTP_ORIGIN="http://testserver").status_code == 200
    assert post(key, PING, HTTP_ORIGIN="https://console.example.com").status_code == 200
    assert post(key, PING, HTTP_ORIGIN="https://console.example.com.evil.example").status_code == 403
    assert post(key, PING, HTTP_ORIGIN="null").status_code == 403


def test_get_is_405_immediately_and_leaves_no_busy_worker(live_server: Any, make_agent: Any) -> None:
    _, key = make_agent()
    started = time.monotonic()
    response = httpx.get(
        mcp_url(live_server),
        headers={"Authorization": f"Agent {key}", "Accept": "text/event-stream"},
        timeout=5,
    )
    assert time.monotonic() - started < 2
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]
    # The live server runs in this process: a busy-looping request thread would burn CPU now.
    cpu_before = sum(os.times()[:2])
    time.sleep(0.5)
    assert sum(os.times()[:2]) - cpu_before < 0.2
    assert jsonrpc(live_server, key, None, method="DELETE").status_code == 405
    assert jsonrpc(live_server, None, None, method="GET").status_code == 405


@pytest.mark.parametrize("accept", [None, "", "*/*", "text/event-stream"])
def test_post_without_json_accept_header_still_works(make_agent: Any, accept: str | None) -> None:
    _, key = make_agent()
    headers = {"HTTP_ACCEPT": accept}
    fast = post(key, _tool("capabilities_get", {}), **headers)
    assert fast.status_code == 200
    assert fast.json()["result"]["isError"] is False
    # resources/list is not served by the fast path: the stock transport must accept it too.
    stock = post(key, {"jsonrpc": "2.0", "id": 3, "method": "resources/list"}, **headers)
    assert stock.status_code == 200
    assert stock.json()["result"] == {"resources": []}


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ("{not json", 400, -32700),  # JSON-RPC parse error
        ("[]", 400, -32602),  # not a JSON-RPC message: the transport's invalid params
        ('"ping"', 400, -32602),
        ('{"jsonrpc": "2.0", "method": 5, "id": 1}', 400, -32602),
    ],
)
def test_malformed_bodies_get_jsonrpc_errors_never_500(
    make_agent: Any, body: str, status: int, code: int
) -> None:
    _, key = make_agent()
    response = post(key, body)
    assert response.status_code == status
    payload = response.json()
    assert payload["jsonrpc"] == "2.0"
    assert payload["error"]["code"] == code


def test_non_json_content_type_and_oversized_body_are_jsonrpc_invalid_requests(make_agent: Any) -> None:
    _, key = make_agent()
    wrong_type = Client().post("/mcp", "ping", content_type="text/plain", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert wrong_type.status_code == 415
    assert wrong_type.json() == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {
            "code": -32600,
            "message": "Invalid Request: send the JSON-RPC message as application/json",
        },
    }
    huge = post(
        key, json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"x": "y" * 2_000_000}})
    )
    assert huge.status_code == 413
    assert huge.json()["error"]["code"] == -32600


def test_an_argument_the_tool_does_not_take_is_refused_not_dropped(make_agent: Any) -> None:
    agent, key = make_agent()
    response = post(
        key,
        _tool("decision_create", {"intent": "a.b", "automation_mode": "propose", "metadta": {"x": 1}}),
    )
    result = response.json()["result"]
    assert result["isError"] is True
    assert result["content"][0]["text"].startswith(
        "[invalid_argument] decision_create does not take the argument 'metadta'; allowed: "
    )
    assert not Decision.objects.filter(agent=agent).exists()


def test_unknown_method_is_a_jsonrpc_error(make_agent: Any) -> None:
    _, key = make_agent()
    response = post(key, {"jsonrpc": "2.0", "id": 9, "method": "tools/explode"})
    assert response.status_code == 200
    # The mcp SDK validates the whole message against its request types, so an unknown method is
    # "invalid params" (-32602), not JSON-RPC's "method not found" (-32601); docs/mcp.md.
    assert response.json()["error"]["code"] == -32602


@pytest.mark.parametrize(
    ("tool", "arguments", "text"),
    [
        ("no_such_tool", {}, "Unknown tool: no_such_tool"),
        ("decision_get", {}, "[invalid_argument] decision_id is required"),
        ("decision_get", {"decision_id": 12}, "[invalid_argument] decision_id must be a valid string"),
        (
            "decision_create",
            {"intent": "a.b", "automation_mode": "yolo"},
            "[invalid_argument] automation_mode must be 'propose', 'approve', 'override' or 'autonomous'",
        ),
        ("decision_create", {"automation_mode": "propose"}, "[invalid_argument] intent is required"),
        (
            "decision_create",
            {"intent": "a.b", "automation_mode": "propose", "metadata": "nope"},
            "[invalid_argument] metadata must be a valid dictionary",
        ),
        ("decision_add_context", {"decision_id": "TMEM_X"}, "[invalid_argument] context is required"),
        ("decision_close", {"decision_id": "TMEM_X"}, "[invalid_argument] action is required"),
    ],
)
def test_bad_tool_calls_are_tool_errors_with_field_messages(
    make_agent: Any, tool: str, arguments: dict[str, Any], text: str
) -> None:
    _, key = make_agent()
    response = post(key, _tool(tool, arguments))
    assert response.status_code == 200
    result = response.json()["result"]
    assert result["isError"] is True
    assert result["content"][0]["text"] == text
    assert Decision.objects.count() == 0
