"""PostgreSQL unreachable (SPEC §12 Errors): ``503 unavailable`` with ``Retry-After`` and a message
saying the call was not applied, on every door; never a stack trace, never a 500; and a connection
cut in the middle of a call leaves nothing half-applied (the transaction is all or nothing).

The outage is real: the test database refuses new connections and its open connections are
terminated (only the test database's, never another database's on the server).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from approvals import services as approval_services
from approvals.models import Approval, Delivery
from decisions.models import Decision, TraceEvent
from tests.appr_helpers import make_route, open_decision, request_approval
from tests.conftest import AgentClient
from tests.fault_helpers import DatabaseOutage, terminate_backend
from tests.mcp_helpers import mcp_post

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
    outage.begin()
    _assert_unavailable_rest(api.get(f"/api/v1/decisions/{decision_id}"))
    _assert_unavailable_rest(
        api.post("/api/v1/decisions", {"intent": "code.refactor.execute", "automation_mode": "propose"})
    )
    assert not any(r.exc_info for r in caplog.records if r.levelno >= logging.ERROR), "no stack traces"
    outage.end()
    assert Decision.objects.count() == before  # the refused create left nothing behind
    assert api.get(f"/api/v1/decisions/{decision_id}").status_code == 200  # and it recovers by itself


def test_mcp_during_an_outage_gets_a_jsonrpc_error_not_a_rest_body(
    outage: DatabaseOutage, make_agent: Any
) -> None:
    _, key = make_agent()
    outage.begin()
    response = mcp_post(key, "capabilities_get", request_id=42)
    assert response.status_code == 503
    assert int(response["Retry-After"]) >= 1
    body = response.json()
    assert body["jsonrpc"] == "2.0" and body["id"] == 42 and "result" not in body
    assert body["error"]["code"] == -32003
    assert body["error"]["message"].startswith("[unavailable] ") and "not applied" in body["error"]["message"]
    assert body["error"]["data"] == {
        "code": "unavailable",
        "retry_after": int(response["Retry-After"]),
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
    original = getattr(approval_services, name)

    def cut_then_continue(**kwargs: Any) -> Any:
        assert Approval.objects.filter(decision_id=kwargs["decision"].pk).exists()  # rows already written
        terminate_backend(connection.connection.info.backend_pid)
        return original(**kwargs)

    monkeypatch.setattr(approval_services, name, cut_then_continue)


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
