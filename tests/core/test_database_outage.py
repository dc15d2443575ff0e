"""PostgreSQL unreachable (docs/contract/interfaces.md Errors): ``503 unavailable`` with ``Retry-After`` and a message
saying the call was not applied, on every door; never a stack trace, never a 500; and a connection
cut in the middle of a call leaves nothing half-applied (the transaction is all or nothing).

The outage is real: the test database refuses new connections and its open connections are
terminated (only the test database's, never another database's on the server).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.db import connection
from django.test import Client
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import McpError

from agents import keycache
from approvals.models import Approval, Delivery
from approvals.services import requests as approval_requests
from decisions.models import Decision, TraceEvent
from tests.appr_helpers import make_route, open_decision, request_approval
from tests.conftest import AgentClient
from tests.fault_helpers import DatabaseOutage, terminate_backend
from tests.mcp_helpers import mcp_post, mcp_url
from tracemem_core import metrics

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def outage() -> Iterator[DatabaseOutage]:
    cut = DatabaseOutage()
    try:
        yield cut
    finally:
        cut.end()


def _assert_unavailable_rest(response: Any) -> None:
    assert response.status_code == 503, response.content
    assert int(response["Retry-After"]) >= 1
    error = response.json()["error"]
    assert error["code"] == "unavailable"
    assert "not applied" in error["message"] and "retry" in error["message"].lower()
    assert error["details"]["retry_after"] == int(response["Retry-After"])
    assert error["details"]["applied"] is False
    assert "Traceback" not in response.content.decode()


def test_rest_calls_during_an_outage_get_503_unavailable_with_retry_after(
    outage: DatabaseOutage, make_agent: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _, key = make_agent()
    api = AgentClient(key)
    decision_id = open_decision(api)
    before = Decision.objects.count()
    counted = metrics.value("tracemem_dependency_errors_total", dependency="database")
    outage.begin()
    _assert_unavailable_rest(api.get(f"/api/v1/decisions/{decision_id}"))
    _assert_unavailable_rest(
        api.post("/api/v1/decisions", {"intent": "code.refactor.execute", "automation_mode": "propose"})
    )
    # /metrics counts each refusal as a dependency error (issue 18).
    assert metrics.value("tracemem_dependency_errors_total", dependency="database") == counted + 2
    assert not any(r.exc_info for r in caplog.records if r.levelno >= logging.ERROR), "no stack traces"
    outage.end()
    assert Decision.objects.count() == before  # the refused create left nothing behind
    assert api.get(f"/api/v1/decisions/{decision_id}").status_code == 200  # and it recovers by itself


def test_mcp_during_an_outage_gets_jsonrpc_answers_not_a_rest_body(
    outage: DatabaseOutage, make_agent: Any
) -> None:
    _, key = make_agent()
    outage.begin()
    # A tools/call: the tool error every outage during a call gets.
    response = mcp_post(key, "capabilities_get", request_id=42)
    assert response.status_code == 200 and int(response["Retry-After"]) >= 1
    body = response.json()
    assert body["jsonrpc"] == "2.0" and body["id"] == 42 and "error" not in body
    assert body["result"]["isError"] is True
    text = body["result"]["content"][0]["text"]
    assert text.startswith("[unavailable] ") and "not applied" in text
    # Any other request: a JSON-RPC error with the same text and what a program needs.
    listed = Client().post(
        "/mcp",
        json.dumps({"jsonrpc": "2.0", "id": "l1", "method": "tools/list"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )
    assert listed.status_code == 200 and int(listed["Retry-After"]) >= 1
    error = listed.json()["error"]
    assert listed.json()["id"] == "l1" and error["code"] == -32003
    assert error["message"].startswith("[unavailable] ") and "not applied" in error["message"]
    assert error["data"] == {
        "code": "unavailable",
        "retry_after": int(listed["Retry-After"]),
        "applied": False,
    }


def test_a_tool_whose_database_connection_is_cut_mid_call_is_an_unavailable_tool_error(
    make_agent: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, key = make_agent()
    api = AgentClient(key)
    make_route("route_finance")
    decision_id = open_decision(api)
    _cut_connection_before(monkeypatch, "note_approval_requested")
    arguments = {"decision_id": decision_id, "approval_route_id": "route_finance"}
    result = mcp_post(key, "decision_request_approval", arguments).json()["result"]
    assert result["isError"] is True
    text = result["content"][0]["text"]
    assert text.startswith("[unavailable] ") and "not applied" in text
    _assert_nothing_applied(decision_id)


def _cut_connection_before(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Terminate the request's own PostgreSQL connection halfway through the service's transaction."""
    original = getattr(approval_requests, name)

    def cut_then_continue(**kwargs: Any) -> Any:
        assert Approval.objects.filter(decision_id=kwargs["decision"].pk).exists()  # rows already written
        terminate_backend(connection.connection.info.backend_pid)
        return original(**kwargs)

    monkeypatch.setattr(approval_requests, name, cut_then_continue)


def _assert_nothing_applied(decision_id: str) -> None:
    decision = Decision.objects.get(pk=decision_id)
    assert (decision.status, decision.approval_status, decision.pending_approval_id) == ("open", None, None)
    assert decision.event_count == 1
    assert list(TraceEvent.objects.filter(decision_id=decision_id).values_list("type", flat=True)) == [
        "created"
    ]
    assert not Approval.objects.filter(decision_id=decision_id).exists()
    assert not Delivery.objects.filter(approval__decision_id=decision_id).exists()


def test_a_connection_cut_mid_request_is_503_and_nothing_is_half_applied(
    make_agent: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, key = make_agent()
    api = AgentClient(key)
    make_route("route_finance")
    decision_id = open_decision(api)
    _cut_connection_before(monkeypatch, "note_approval_requested")
    _assert_unavailable_rest(request_approval(api, decision_id, approval_route_id="route_finance"))
    _assert_nothing_applied(decision_id)
    # The call can simply be repeated once the database is back.
    monkeypatch.undo()
    again = request_approval(api, decision_id, approval_route_id="route_finance")
    assert again.status_code == 201
    assert Decision.objects.get(pk=decision_id).status == "needs_approval"


def test_web_pages_during_an_outage_are_503_not_a_500(outage: DatabaseOutage, admin_client: Client) -> None:
    assert admin_client.get("/decisions/").status_code == 200
    outage.begin()
    response = admin_client.get("/decisions/")
    assert response.status_code == 503
    assert int(response["Retry-After"]) >= 1
    assert b"not applied" in response.content and b"Traceback" not in response.content


def test_readyz_names_the_database_as_the_dependency_that_is_down(outage: DatabaseOutage) -> None:
    outage.begin()
    response = Client().get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"].startswith("error:")
    assert not checks["broker"].startswith("error")


def test_a_connection_cut_after_the_commit_says_the_call_was_applied(
    make_agent: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from approvals import api as approvals_api

    _, key = make_agent()
    api = AgentClient(key)
    make_route("route_finance")
    decision_id = open_decision(api)
    original = approvals_api.requested_out

    def cut_then_render(approval: Any) -> Any:  # the service has committed; reading back fails
        terminate_backend(connection.connection.info.backend_pid)
        return original(approval)

    monkeypatch.setattr(approvals_api, "requested_out", cut_then_render)
    response = request_approval(api, decision_id, approval_route_id="route_finance")
    assert response.status_code == 503 and int(response["Retry-After"]) >= 1
    error = response.json()["error"]
    assert error["details"]["applied"] is True
    assert "was applied" in error["message"] and "do not repeat" in error["message"]
    connection.close()  # the test shares the request's (cut) connection
    assert Decision.objects.get(pk=decision_id).status == "needs_approval"


def test_the_official_mcp_client_gets_a_tool_error_it_can_read_and_keeps_its_session(
    outage: DatabaseOutage, live_server: Any, make_agent: Any
) -> None:
    """What an agent's MCP client actually surfaces: the stock ``mcp`` client raises on any HTTP
    error status and drops the body (and its whole session), so the outage must arrive as a
    JSON-RPC answer it reads: the tool error for a tools/call, a JSON-RPC error otherwise."""
    _, key = make_agent()

    async def main() -> tuple[Any, Any, Any]:
        async with httpx.AsyncClient(headers={"Authorization": f"Agent {key}"}, timeout=30) as http:
            async with streamable_http_client(mcp_url(live_server), http_client=http) as (read, write, _):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    await asyncio.to_thread(outage.begin)
                    during = await session.call_tool("capabilities_get", {})
                    # tools/list reads nothing from the database but the caller's key, which the
                    # process remembers (agents/keycache.py; the call above may have checked it just
                    # before the outage took hold): forget it, as a fresh worker would not have it.
                    await asyncio.to_thread(keycache.forget_local)
                    try:
                        await session.list_tools()
                        listed: Any = None
                    except McpError as exc:
                        listed = exc.error
                    await asyncio.to_thread(outage.end)
                    after = await session.call_tool("capabilities_get", {})  # the same session
                    return during, listed, after

    during, listed, after = asyncio.run(main())
    assert during.isError is True
    text = during.content[0].text
    assert text.startswith("[unavailable] ") and "not applied" in text and "Retry after" in text
    assert listed is not None and listed.code == -32003 and "not applied" in listed.message
    assert after.isError is False
