"""Data products through the doors users use: the MCP/REST contract for the four data tools,
the admin API, concurrent idempotent retries and an external PostgreSQL source. These tests need
committed tables (live server, threads, a second connection), so they seed and drop them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connections
from django.test import Client

from agents.models import Agent
from agents.selectors import capabilities
from agents.services import tokens as agent_tokens
from decisions import services as decision_services
from decisions.models import TraceEvent
from products import demo as product_demo
from products.demo import demo_tables_create
from products.models import WriteResult
from products.services import definitions as product_definitions
from products.services import reads as product_reads
from products.services import sources as product_sources
from products.services import writes as product_writes
from tests.conftest import as_products_role, owner_dsn
from tests.mcp_helpers import VOLATILE_KEYS, call_both, error_code, mcp_call, shape
from tests.perm_helpers import make_staff
from tracemem_core.actor import Actor

SYSTEM = Actor.system("test")
VOLATILE = VOLATILE_KEYS | {"data_ref"}


@pytest.fixture
def committed_demo(transactional_db: Any, make_agent: Any) -> Iterator[tuple[Agent, str]]:
    agent, key = make_agent("door-agent")
    # The owner creates the business tables, starting from the seed's own rows.
    demo_tables_create(reset=True)
    product_demo.products_seed_demo(actor=SYSTEM, agent=agent)
    yield agent, key


def _orders() -> list[tuple[Any, ...]]:
    with as_products_role() as cursor:
        cursor.execute("SELECT id, customer_id, amount, status, note FROM orders ORDER BY id")
        return [tuple(r) for r in cursor.fetchall()]


def _decision(agent: Agent, mode: str = "autonomous") -> str:
    return decision_services.decision_create(
        actor=Actor.for_agent(agent), intent="orders.order.process", automation_mode=mode
    ).decision_id


def test_data_tools_answer_the_same_through_mcp_and_rest(live_server: Any, committed_demo: Any) -> None:
    agent, key = committed_demo
    listed = call_both(live_server, key, "products_list", {"purpose": "order_processing"})
    assert listed["mcp"] == listed["rest"]
    assert listed["rest"] == (
        False,
        {
            "products": [
                {
                    "product_id": "pg_customers_v1",
                    "name": "Customers (read)",
                    "description": "Look up a customer by id, email or tier. Internal notes are not exposed.",
                    "permissions": ["read"],
                    "purposes": ["customer_support", "order_processing"],
                },
                {
                    "product_id": "pg_orders_insert_v1",
                    "name": "Orders (insert)",
                    "description": "Create orders for existing customers.",
                    "permissions": ["insert"],
                    "purposes": ["order_processing"],
                },
                {
                    "product_id": "pg_orders_update_v1",
                    "name": "Orders (update)",
                    "description": "Change an order's status or note, addressed by order_id.",
                    "permissions": ["update"],
                    "purposes": ["order_processing"],
                },
            ]
        },
    )

    got = call_both(live_server, key, "product_get", {"product": "pg_customers_v1"})
    assert got["mcp"] == got["rest"]
    product = got["rest"][1]
    assert [f["name"] for f in product["schema"]] == ["customer_id", "name", "email", "tier"]
    assert product["exposed_schema"] == product["schema"] and product["key_fields"] == ["customer_id"]
    # agents never see the source: no table, no column names
    assert 'customers"' not in str(product) and "'table'" not in str(product) and "column" not in str(product)
    assert "internal_notes" not in str(product)
    # the compatibility alias `name` (REST carries the product in the path)
    assert mcp_call(live_server, key, "product_get", {"name": "pg_customers_v1"}) == got["mcp"]

    decision_id = _decision(agent)
    read = call_both(
        live_server,
        key,
        "decision_read",
        {
            "decision_id": decision_id,
            "product": "pg_customers_v1",
            "purpose": "customer_support",
            "query": {"customer_id": 1},
        },
    )
    assert shape(read["mcp"], VOLATILE) == shape(read["rest"], VOLATILE)
    assert read["rest"][1]["records"] == [
        {"customer_id": 1, "name": "Ada Lovelace", "email": "ada@example.com", "tier": "gold"}
    ]

    write = call_both(
        live_server,
        key,
        "decision_write",
        {
            "decision_id": decision_id,
            "product": "pg_orders_update_v1",
            "purpose": "order_processing",
            "keys": {"order_id": 2},
            "mutation": {"fields": {"status": "shipped"}},
        },
    )
    assert shape(write["mcp"], VOLATILE) == shape(write["rest"], VOLATILE)
    assert write["rest"][1]["affected_rows"] == 1 and write["rest"][1]["status"] == "executed"
    assert _orders()[1][3] == "shipped"
    types = list(
        TraceEvent.objects.filter(decision_id=decision_id).order_by("seq").values_list("type", flat=True)
    )
    assert types == ["created", "read", "read", "write", "write"]


@pytest.mark.parametrize(
    ("tool", "arguments", "code"),
    [
        ("product_get", {"product": "pg_secret_v1"}, "not_found"),
        (
            "decision_read",
            {"product": "pg_customers_v1", "purpose": "marketing", "query": {"customer_id": 1}},
            "purpose_not_allowed",
        ),
        ("decision_read", {"product": "pg_customers_v1", "purpose": "customer_support"}, "conflict"),
        (
            "decision_write",
            {
                "product": "pg_orders_insert_v1",
                "purpose": "order_processing",
                "mutation": {"data": {"id": 1}},
            },
            "invalid_argument",
        ),
        # lenient types: MCP must not coerce what REST refuses (pydantic's lax mode would)
        (
            "decision_read",
            {
                "product": "pg_customers_v1",
                "purpose": "customer_support",
                "query": {"customer_id": 1},
                "allow_multiple": "yes",
            },
            "invalid_argument",
        ),
        (
            "decision_read",
            {
                "product": "pg_customers_v1",
                "purpose": "customer_support",
                "query": {"customer_id": 1},
                "allow_multiple": 1,
            },
            "invalid_argument",
        ),
        (
            "decision_write",
            {
                "product": "pg_orders_insert_v1",
                "purpose": "order_processing",
                "mutation": {"data": {"customer_id": 1, "amount": 1}},
                "return_created": "yes",
            },
            "invalid_argument",
        ),
        (
            "decision_write",
            {
                "product": "pg_orders_update_v1",
                "purpose": "order_processing",
                "keys": [1],
                "mutation": {"records": [{"order_id": 1, "status": "x"}]},
            },
            "invalid_argument",
        ),
        (
            "decision_write",
            {
                "product": "pg_orders_update_v1",
                "purpose": "order_processing",
                "keys": "order_id",
                "mutation": {"fields": {"status": "x"}},
            },
            "invalid_argument",
        ),
    ],
)
def test_data_tool_refusals_have_the_same_code_through_both_doors(
    live_server: Any, committed_demo: Any, tool: str, arguments: dict[str, Any], code: str
) -> None:
    agent, key = committed_demo
    if tool != "product_get":
        arguments = {"decision_id": _decision(agent), **arguments}
    before = _orders()
    results = call_both(live_server, key, tool, arguments)
    assert results["mcp"] == results["rest"]
    is_error, text = results["rest"]
    assert is_error and error_code(text) == code
    assert _orders() == before


def test_write_gate_refusal_is_the_same_through_both_doors(live_server: Any, committed_demo: Any) -> None:
    agent, key = committed_demo
    decision_id = _decision(agent, "propose")
    results = call_both(
        live_server,
        key,
        "decision_write",
        {
            "decision_id": decision_id,
            "product": "pg_orders_insert_v1",
            "purpose": "order_processing",
            "mutation": {"data": {"customer_id": 1, "amount": 1}},
        },
    )
    assert results["mcp"] == results["rest"]
    assert error_code(results["rest"][1]) == "approval_required"
    assert len(_orders()) == 2


def test_ten_concurrent_retries_with_one_idempotency_key_write_once(committed_demo: Any) -> None:
    agent, _ = committed_demo
    actor = Actor.for_agent(agent)
    decision_id = _decision(agent)
    results: list[Any] = []
    barrier = threading.Barrier(10)

    def retry() -> None:
        try:
            barrier.wait()
            results.append(
                product_writes.decision_write(
                    actor=actor,
                    decision_id=decision_id,
                    product="pg_orders_insert_v1",
                    purpose="order_processing",
                    mutation={"data": {"customer_id": 2, "amount": 42}},
                    idempotency_key="order-42",
                )
            )
        except Exception as exc:  # collected and asserted below
            results.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=retry) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 10 and all(isinstance(r, dict) for r in results), results
    assert all(r == results[0] for r in results)
    assert len(_orders()) == 3
    assert WriteResult.objects.filter(decision_id=decision_id).count() == 1
    assert TraceEvent.objects.filter(decision_id=decision_id, type="write").count() == 1


def _external_source() -> None:
    """An external source "replica": a second connection (its own transaction, its own credentials:
    the owner's here) to the test database."""
    product_sources.data_source_save(actor=SYSTEM, source_id="replica", dsn=owner_dsn())


def _external_orders_insert_product(agent: Agent) -> None:
    product_definitions.product_create(
        actor=SYSTEM,
        product_id="ext_orders_insert_v1",
        definition={
            "operation": "insert",
            "source": "replica",
            "table": "tracemem_data.orders",
            "fields": [
                {"name": "id", "type": "integer", "primary_key": True},
                {"name": "customer_id", "type": "integer", "writable": True, "required": True},
                {"name": "amount", "type": "number", "writable": True, "required": True},
            ],
            "allowed_purposes": ["billing"],
        },
    )
    product_definitions.product_publish(actor=SYSTEM, product_id="ext_orders_insert_v1")
    product_definitions.product_grant(
        actor=SYSTEM, product_id="ext_orders_insert_v1", agent_id=agent.agent_id
    )


def test_external_postgresql_source_reads_through_its_encrypted_dsn(committed_demo: Any) -> None:
    agent, _ = committed_demo
    _external_source()
    product_definitions.product_create(
        actor=SYSTEM,
        product_id="ext_customers_v1",
        definition={
            "operation": "read",
            "source": "replica",
            "table": "tracemem_data.customers",
            "fields": [
                {"name": "id", "type": "integer", "primary_key": True},
                {"name": "label", "column": "name", "type": "string"},
            ],
            "allowed_purposes": ["customer_support"],
        },
    )
    product_definitions.product_publish(actor=SYSTEM, product_id="ext_customers_v1")
    product_definitions.product_grant(actor=SYSTEM, product_id="ext_customers_v1", agent_id=agent.agent_id)
    result = product_reads.decision_read(
        actor=Actor.for_agent(agent),
        decision_id=_decision(agent),
        product="ext_customers_v1",
        purpose="customer_support",
        query={"id": 3},
    )
    assert result["records"] == [{"id": 3, "label": "Alan Turing"}]

    _external_orders_insert_product(agent)
    decision_id = _decision(agent)
    written = product_writes.decision_write(
        actor=Actor.for_agent(agent),
        decision_id=decision_id,
        product="ext_orders_insert_v1",
        purpose="billing",
        mutation={"records": [{"customer_id": 3, "amount": "5.25"}]},
        return_created=True,
    )
    assert written["affected_rows"] == 1 and written["created_records"][0]["amount"] == 5.25
    assert len(_orders()) == 3
    # a refused external write (unknown customer) changes nothing there either
    from tracemem_core.errors import Conflict

    with pytest.raises(Conflict):
        product_writes.decision_write(
            actor=Actor.for_agent(agent),
            decision_id=decision_id,
            product="ext_orders_insert_v1",
            purpose="billing",
            mutation={"records": [{"customer_id": 1, "amount": 1}, {"customer_id": 999, "amount": 1}]},
        )
    assert len(_orders()) == 3


def test_admin_api_with_personal_token(committed_demo: Any) -> None:
    agent, _ = committed_demo
    staff = make_staff("ops", password="x")
    token = agent_tokens.personal_token_create(actor=SYSTEM, user=staff).secret
    client = Client()
    auth = {"HTTP_AUTHORIZATION": f"Token {token}"}

    created = client.post(
        "/api/v1/admin/data-sources",
        {"source_id": "warehouse", "dsn": "postgresql://bob:pa55word-xyz@db.example.com/shop"},
        content_type="application/json",
        **auth,
    )
    assert created.status_code == 201, created.content
    listed = client.get("/api/v1/admin/data-sources", **auth)
    assert "pa55word-xyz" not in created.content.decode() + listed.content.decode()
    assert [s["source_id"] for s in listed.json()["data_sources"]] == ["builtin", "warehouse"]

    definition = {
        "product_id": "pg_tiers_v1",
        "operation": "read",
        "table": "customers",
        "fields": [
            {"name": "customer_id", "column": "id", "type": "integer", "primary_key": True},
            {"name": "tier", "type": "string"},
        ],
        "allowed_purposes": ["analytics"],
    }
    response = client.post("/api/v1/admin/products", definition, content_type="application/json", **auth)
    assert response.status_code == 201 and response.json()["status"] == "draft"
    patched = client.patch(
        "/api/v1/admin/products/pg_tiers_v1", {"max_rows": 10}, content_type="application/json", **auth
    )
    assert patched.status_code == 200 and patched.json()["max_rows"] == 10
    published = client.post("/api/v1/admin/products/pg_tiers_v1/publish", **auth)
    assert published.json()["status"] == "published" and published.json()["hash"] == patched.json()["hash"]
    granted = client.post(
        "/api/v1/admin/products/pg_tiers_v1/grants",
        {"agent_id": agent.agent_id},
        content_type="application/json",
        **auth,
    )
    assert granted.status_code == 201 and granted.json()["permissions"] == ["read"]
    frozen = client.patch(
        "/api/v1/admin/products/pg_tiers_v1", {"max_rows": 5}, content_type="application/json", **auth
    )
    assert frozen.status_code == 409 and frozen.json()["error"]["code"] == "invalid_state"
    assert client.get("/api/v1/admin/products/pg_tiers_v1", **auth).json()["max_rows"] == 10

    # capabilities_get lists the new grant

    assert {"product_id": "pg_tiers_v1", "permissions": ["read"], "purposes": ["analytics"]} in capabilities(
        agent
    )["permissions"]["data_products"]

    plain = get_user_model().objects.create_user("reviewer", password="x")
    plain_token = agent_tokens.personal_token_create(actor=SYSTEM, user=plain).secret
    refused = client.get("/api/v1/admin/products", HTTP_AUTHORIZATION=f"Token {plain_token}")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "permission_denied"


def test_external_write_is_rolled_back_when_its_trace_event_cannot_be_written(
    committed_demo: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent, _ = committed_demo
    _external_source()
    _external_orders_insert_product(agent)
    decision_id = _decision(agent)
    orders_before = _orders()

    def broken_append(**kwargs: Any) -> Any:
        raise RuntimeError("trace store unavailable")

    monkeypatch.setattr(product_writes, "trace_append", broken_append)
    with pytest.raises(RuntimeError):
        product_writes.decision_write(
            actor=Actor.for_agent(agent),
            decision_id=decision_id,
            product="ext_orders_insert_v1",
            purpose="billing",
            mutation={"records": [{"customer_id": 3, "amount": 9}]},
        )
    # The external source's transaction was still open when the trace failed, so nothing stands.
    assert _orders() == orders_before
    assert not TraceEvent.objects.filter(decision_id=decision_id, type="write").exists()


def test_nul_characters_are_invalid_argument_through_rest_never_a_500(committed_demo: Any) -> None:
    from policies.services import authoring as policy_authoring
    from tests.conftest import AgentClient

    agent, key = committed_demo
    policy_authoring.policy_create(
        actor=SYSTEM,
        policy_id="nul_v1",
        definition={
            "name": "N",
            "rules": [{"name": "r", "when": "inputs.x > 1", "outcome": "allow", "message": ""}],
        },
    )
    policy_authoring.policy_publish(actor=SYSTEM, policy_id="nul_v1")
    policy_authoring.policy_grant(actor=SYSTEM, policy_id="nul_v1", agent_id=agent.agent_id)
    did = _decision(agent)
    api = AgentClient(key)
    before = (_orders(), list(TraceEvent.objects.filter(decision_id=did).values_list("event_id", flat=True)))
    cases = [
        (
            "write",
            {
                "product": "pg_orders_insert_v1",
                "purpose": "order_processing",
                "mutation": {"data": {"customer_id": 1, "amount": 1}},
                "idempotency_key": "a\u0000b",
            },
            "idempotency_key",
            "idempotency_key contains a NUL character (\\u0000), which cannot be stored; remove it",
        ),
        (
            "read",
            {"product": "pg_customers_v1\u0000", "purpose": "customer_support"},
            "product",
            "product contains a NUL character (\\u0000), which cannot be stored; remove it",
        ),
        (
            "evaluate",
            {"policy_id": "nul_v1", "inputs": {"x": {"y": "\u0000"}}},
            "inputs.x.y",
            "inputs.x.y contains a NUL character (\\u0000), which cannot be stored; remove it",
        ),
        (
            "evaluate",
            {"policy_id": "nul_v1", "inputs": {"x": {"a\u0000": 1}}},
            "inputs.x",
            "inputs.x (an object key) contains a NUL character (\\u0000), which cannot be stored; remove it",
        ),
    ]
    for tool, body, field, message in cases:
        response = api.post(f"/api/v1/decisions/{did}/{tool}", body)
        assert response.status_code == 400, (tool, response.content)
        assert response.json()["error"] == {
            "code": "invalid_argument",
            "message": message,
            "details": {"field": field},
        }
    after = (_orders(), list(TraceEvent.objects.filter(decision_id=did).values_list("event_id", flat=True)))
    assert after == before
