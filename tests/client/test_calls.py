"""Every agent tool through the Python client against a live server (docs/contract/tools.md/docs/contract/errors.md), and each error code
of docs/contract/errors.md that the server produces today mapped to its exception.

``503 unavailable`` is not produced by any agent endpoint of this server yet, and lost answers and
proxy pages cannot be provoked from it: those retry rules are tested against a real local HTTP
server (pytest-httpserver) that answers like the server or a proxy would.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
from tracemem_client import (
    ApprovalRequired,
    Client,
    Conflict,
    InvalidArgument,
    InvalidState,
    NotFound,
    PermissionDenied,
    PolicyDenied,
    PurposeNotAllowed,
    RateLimited,
    TraceMemError,
    TransportError,
    Unauthenticated,
    Unavailable,
)
from werkzeug import Request, Response

from agents.services import registry as agent_registry
from tests.client_helpers import Seeded
from tracemem_core.actor import Actor

pytest_plugins = ["tests.client_fixtures"]  # fixtures: seeded, agent_client
pytestmark = pytest.mark.django_db(transaction=True)


def test_every_tool_round_trips_through_the_client(agent_client: Client) -> None:
    capabilities = agent_client.capabilities_get()
    assert capabilities["name"] == "demo-agent"
    assert "code_change_policy_v1" in [p["policy_id"] for p in capabilities["permissions"]["policies"]]
    products = agent_client.products_list(purpose="order_processing")["products"]
    assert {p["product_id"] for p in products} >= {"pg_customers_v1", "pg_orders_insert_v1"}
    assert agent_client.products_list(purpose="no_such_purpose")["products"] == []
    product = agent_client.product_get("pg_orders_insert_v1")
    assert (product["operation"], product["allowed_purposes"]) == ("insert", ["order_processing"])

    created = agent_client.decision_create(
        "code.refactor.execute",
        "autonomous",
        metadata={"component": "user-service", "api_key": "tmem_should_never_be_stored"},
        instance="ci-7",
    )
    assert created["status"] == "open" and created["decision_id"].startswith("TMEM_")
    decision_id = created["decision_id"]
    added = agent_client.decision_add_context(
        decision_id, {"step": "extracting_auth_logic"}, summary="step 1"
    )
    assert added["event_id"].startswith("evt_")
    evaluated = agent_client.decision_evaluate(
        decision_id, "code_change_policy_v1", inputs={"change_type": "feature", "component": "user-service"}
    )
    assert (evaluated["outcome"], evaluated["allowed"], evaluated["rationale"]["rule"]) == (
        "allow",
        True,
        "routine_changes",
    )
    read = agent_client.decision_read(
        decision_id, "pg_customers_v1", "order_processing", query={"customer_id": 1}
    )
    assert read["records"] == [
        {"customer_id": 1, "name": "Ada Lovelace", "email": "ada@example.com", "tier": "gold"}
    ]
    written = agent_client.decision_write(
        decision_id,
        "pg_orders_insert_v1",
        "order_processing",
        {"data": {"customer_id": 1, "amount": 12.5}},
        idempotency_key="order-1",
    )
    again = agent_client.decision_write(
        decision_id,
        "pg_orders_insert_v1",
        "order_processing",
        {"data": {"customer_id": 1, "amount": 12.5}},
        idempotency_key="order-1",
    )
    assert (written["status"], written["affected_rows"]) == ("executed", 1)
    assert again["event_id"] == written["event_id"]
    got = agent_client.decision_get(decision_id)
    assert (got["status"], got["instance"], got["approval_required"]) == ("open", "ci-7", False)
    closed = agent_client.decision_close(decision_id, "commit", summary="done", reason="refactored")
    assert (
        closed["status"] == "committed"
        and closed["trace_head"] == agent_client.decision_get(decision_id)["trace_head"]
    )
    receipt = agent_client.decision_receipt(decision_id)
    assert receipt["algorithm"] == "ed25519" and receipt["receipt_data"]["status"] == "committed"
    assert receipt["key_id"] in [k["key_id"] for k in agent_client.receipt_keys()]
    trace = agent_client.decision_trace_all(decision_id)
    assert [e["type"] for e in trace["events"]] == [
        "created",
        "context",
        "evaluate",
        "read",
        "write",
        "close",
    ]
    assert "tmem_should_never_be_stored" not in str(trace)

    record = agent_client.decision_record(
        "Use httpx for the client",
        "dependency",
        "the client needs one HTTP library",
        "httpx",
        "typed, sync and async, already used by the server's tests",
        tags=["client", "http"],
    )
    assert (record["status"], record["tags"]) == ("committed", ["client", "http"])
    found = agent_client.decision_search(query="httpx", tags=["client"])
    assert [r["decision_id"] for r in found["results"]] == [record["decision_id"]]


def test_the_decision_object_binds_the_envelope_tools(agent_client: Client) -> None:
    decision = agent_client.open_decision("code.refactor.execute", "autonomous")
    decision.add_context({"step": 1})
    assert decision.evaluate("code_change_policy_v1", inputs={"change_type": "docs"})["outcome"] == "allow"
    assert decision.get()["event_count"] == 3
    assert [e["seq"] for e in decision.events()] == [1, 2, 3]
    decision.abort(reason="changed my mind")
    assert decision.closed is not None and decision.closed["status"] == "aborted"
    assert decision.receipt()["receipt_data"]["status"] == "aborted"


def test_each_error_code_maps_to_its_exception(seeded: Seeded, agent_client: Client, settings: Any) -> None:
    with pytest.raises(InvalidArgument) as invalid:
        agent_client.decision_create("code.refactor.execute", "yolo")  # type: ignore[arg-type]
    assert (invalid.value.status, invalid.value.field) == (400, "automation_mode")
    assert str(invalid.value).startswith("[invalid_argument] ")

    with (
        Client(seeded.url, "tmem_" + "x" * 40) as stranger,
        pytest.raises(Unauthenticated) as unauthenticated,
    ):
        stranger.capabilities_get()
    assert unauthenticated.value.status == 401 and unauthenticated.value.details["reason"] == "malformed"

    other_agent = agent_registry.agent_create(actor=Actor.system(), name="other")
    other_key = agent_registry.agent_key_issue(actor=Actor.system(), agent=other_agent).secret
    with Client(seeded.url, other_key) as other:
        theirs = other.decision_create("a.b.c", "autonomous")["decision_id"]
    with pytest.raises(NotFound) as not_found:
        agent_client.decision_get(theirs)
    assert not_found.value.status == 404

    decision_id = agent_client.decision_create("code.refactor.execute", "autonomous")["decision_id"]
    with pytest.raises(PermissionDenied):
        agent_client.decision_evaluate(decision_id, "no_such_policy_v1", inputs={})
    with pytest.raises(PurposeNotAllowed) as purpose:
        agent_client.decision_read(decision_id, "pg_customers_v1", "marketing", query={"customer_id": 1})
    assert purpose.value.status == 403
    with pytest.raises(Conflict):
        agent_client.decision_read(
            decision_id, "pg_customers_v1", "order_processing", query={"tier": "standard"}
        )

    assert (
        agent_client.decision_evaluate(
            decision_id, "code_change_policy_v1", inputs={"change_type": "delete"}
        )["outcome"]
        == "deny"
    )
    write = ("pg_orders_insert_v1", "order_processing", {"data": {"customer_id": 1, "amount": 1}})
    with pytest.raises(PolicyDenied):
        agent_client.decision_write(decision_id, *write)

    proposed = agent_client.decision_create("code.refactor.execute", "propose")["decision_id"]
    with pytest.raises(ApprovalRequired) as approval_required:
        agent_client.decision_write(proposed, *write)
    assert approval_required.value.status == 409
    agent_client.decision_request_approval(proposed, title="t")
    with pytest.raises(Conflict):
        agent_client.decision_request_approval(proposed)
    with pytest.raises(InvalidState):
        agent_client.decision_write(proposed, *write)

    settings.TRACEMEM_AGENT_RATE_LIMIT = "2/second"
    with pytest.raises(RateLimited) as limited:
        for _ in range(5):
            agent_client.capabilities_get()
    assert limited.value.status == 429 and limited.value.retry_after is not None
    assert 1 <= limited.value.retry_after <= 1  # seconds until the one-second window turns


def test_retries_honour_retry_after_on_429(seeded: Seeded, settings: Any) -> None:
    settings.TRACEMEM_AGENT_RATE_LIMIT = "2/second"
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    with Client(seeded.url, seeded.key, retries=3, sleep=sleep) as patient:
        patient.capabilities_get()  # connected and warm
        # The third call must land in the same one-second window as the first two: start just after
        # a second turns (on a loaded machine the calls could otherwise straddle two windows).
        time.sleep(1.02 - time.time() % 1)
        names = [patient.capabilities_get()["name"] for _ in range(4)]
    assert names == ["demo-agent"] * 4
    assert slept and all(s == 1.0 for s in slept)


def test_a_retry_after_longer_than_max_retry_wait_is_raised_at_once(seeded: Seeded, settings: Any) -> None:
    settings.TRACEMEM_AGENT_RATE_LIMIT = "1/hour"
    slept: list[float] = []
    with Client(seeded.url, seeded.key, retries=3, max_retry_wait=5, sleep=slept.append) as impatient:
        # Windows are fixed (they turn on the hour): in the last seconds of one, the 429's Retry-After
        # would be 5 or less, and both calls could straddle two windows. Start well inside one.
        remaining = 3600 - time.time() % 3600
        if remaining < 30:
            time.sleep(remaining + 0.02)
        impatient.capabilities_get()
        with pytest.raises(RateLimited) as limited:
            impatient.capabilities_get()
    assert slept == [] and (limited.value.retry_after or 0) > 5


# --- what this server cannot be made to do: a real local HTTP server plays it -------------------


def unavailable_then_ok(calls: list[str]) -> Any:
    def handler(request: Request) -> Response:
        calls.append(request.method)
        if len(calls) == 1:
            return Response(
                '{"error": {"code": "unavailable", "message": "the broker is down; nothing was applied", '
                '"details": {}}}',
                status=503,
                headers={"Retry-After": "1", "Content-Type": "application/json"},
            )
        return Response(
            '{"decision_id": "TMEM_X", "status": "open", "created_at": "t"}',
            status=201,
            content_type="application/json",
        )

    return handler


def test_unavailable_is_raised_with_retry_after_and_retried_when_asked(httpserver: Any) -> None:
    calls: list[str] = []
    httpserver.expect_request("/api/v1/decisions", method="POST").respond_with_handler(
        unavailable_then_ok(calls)
    )
    with Client(httpserver.url_for("/"), "tmem_k") as once, pytest.raises(Unavailable) as unavailable:
        once.decision_create("a.b.c", "autonomous")
    assert (unavailable.value.status, unavailable.value.retry_after) == (503, 1.0)
    assert "nothing was applied" in str(unavailable.value)

    calls.clear()
    slept: list[float] = []
    with Client(httpserver.url_for("/"), "tmem_k", retries=1, sleep=slept.append) as retrying:
        # 503 unavailable means "not applied": even a create is safe to repeat.
        assert retrying.decision_create("a.b.c", "autonomous")["decision_id"] == "TMEM_X"
    assert calls == ["POST", "POST"] and slept == [1.0]


def test_a_lost_answer_is_retried_only_for_idempotent_calls(httpserver: Any) -> None:
    calls: list[str] = []

    def slow_first(request: Request) -> Response:
        calls.append(request.method)
        if calls.count(request.method) == 1:
            time.sleep(0.6)  # longer than the client's timeout: the answer is lost
        return Response('{"name": "x"}', content_type="application/json")

    httpserver.expect_request("/api/v1/decisions").respond_with_handler(slow_first)
    httpserver.expect_request("/api/v1/capabilities").respond_with_handler(slow_first)
    # The client's pause lets the (single-threaded) local server finish the slow answer first.
    with Client(
        httpserver.url_for("/"), "tmem_k", timeout=0.3, retries=2, sleep=lambda s: time.sleep(1)
    ) as lossy:
        with pytest.raises(TransportError) as lost_post:
            lossy.decision_create("a.b.c", "autonomous")
        assert lost_post.value.maybe_applied is True
        assert "the server may have applied it" in str(lost_post.value)
        assert calls == ["POST"]  # may have been applied: not repeated
        assert lossy.capabilities_get()["name"] == "x"
        assert calls == ["POST", "GET", "GET"]


def test_a_proxy_page_is_retried_for_gets_only_and_reported_plainly(httpserver: Any) -> None:
    httpserver.expect_request("/api/v1/capabilities").respond_with_data(
        "<html>Bad Gateway</html>", status=502
    )
    httpserver.expect_request("/api/v1/decisions").respond_with_data("<html>Bad Gateway</html>", status=502)
    with Client(httpserver.url_for("/"), "tmem_k", retries=1, sleep=lambda s: None) as proxied:
        with pytest.raises(TraceMemError) as got:
            proxied.capabilities_get()
        with pytest.raises(TraceMemError) as posted:
            proxied.decision_create("a.b.c", "autonomous")
    assert (got.value.code, got.value.status) == ("http_502", 502)
    assert "without a TraceMem error body" in str(got.value)
    assert posted.value.code == "http_502"
    assert [request.method for request, _ in httpserver.log] == ["GET", "GET", "POST"]


def test_no_connection_is_a_transport_error_that_was_never_applied() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    slept: list[float] = []
    with Client(f"http://127.0.0.1:{port}", "tmem_k", retries=2, sleep=slept.append) as nowhere:
        with pytest.raises(TransportError) as refused:
            nowhere.decision_create("a.b.c", "autonomous")
    assert refused.value.maybe_applied is False and refused.value.status is None
    assert slept == [0.5, 1.0]  # never sent, so even a create is retried


def test_ids_cannot_reach_another_endpoint(agent_client: Client) -> None:
    # Unquoted, "../capabilities" would turn decision_get into capabilities_get.
    with pytest.raises(TraceMemError) as refused:
        agent_client.decision_get("../capabilities")
    assert refused.value.status == 404


def test_capabilities_workflow_lists_the_steps_the_agents_grants_allow_in_protocol_order(
    agent_client: Client,
) -> None:
    """The demo agent holds read and insert grants and a policy: its next steps include reading,
    evaluating and writing, in the order the server's instructions teach (issue 16)."""
    steps = [step["tool"] for step in agent_client.capabilities_get()["workflow"]]
    assert steps == [
        "decision_create",
        "decision_add_context",
        "decision_read",
        "decision_evaluate",
        "decision_request_approval",
        "decision_wait",
        "decision_write",
        "decision_close",
    ]
