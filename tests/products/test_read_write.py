"""Data products through the service layer, on real PostgreSQL tables (the demo ``customers`` and
``orders`` tables of the business schema, created afresh by the owner for each test)."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from agents.models import Agent
from decisions import services as decision_services
from decisions.models import Decision, TraceEvent
from policies.services import authoring as policy_authoring
from policies.services import evaluation as policy_evaluation
from products import demo as product_demo
from products.demo import demo_tables_create
from products.models import DataProduct, DataSource, WriteResult
from products.services import definitions as product_definitions
from products.services import reads as product_reads
from products.services import sources as product_sources
from products.services import writes as product_writes
from tests.conftest import as_products_role, owner_sql
from tracemem_core import crypto
from tracemem_core.actor import Actor
from tracemem_core.errors import (
    ApprovalRequired,
    Conflict,
    InvalidArgument,
    InvalidState,
    NotFound,
    PermissionDenied,
    PolicyDenied,
    PurposeNotAllowed,
)
from tracemem_verify.chain import canonical_json

pytestmark = pytest.mark.django_db
SYSTEM = Actor.system("test")


@pytest.fixture
def demo(make_agent: Any) -> tuple[Agent, Actor]:
    agent, _ = make_agent("prod-agent")
    # The owner creates the business tables (committed), starting from the seed's own rows.
    demo_tables_create(reset=True)
    product_demo.products_seed_demo(actor=SYSTEM, agent=agent)
    return agent, Actor.for_agent(agent)


def _rows(table: str) -> list[tuple[Any, ...]]:
    with as_products_role() as cursor:
        cursor.execute(f"SELECT * FROM {table} ORDER BY id")
        return [tuple(r) for r in cursor.fetchall()]


def _decision(actor: Actor, mode: str = "autonomous") -> Decision:
    return decision_services.decision_create(actor=actor, intent="orders.order.process", automation_mode=mode)


def _grant(decision: Decision) -> None:
    locked = Decision.objects.get(pk=decision.pk)
    decision_services.note_approval_requested(decision=locked, approval_id="appr_test")
    decision_services.note_approval_resolved(decision=locked, outcome="approved", seq=locked.event_count + 1)
    # the approvals app appends the resolving event; keep the chain's numbers consistent with it
    decision_services.trace_append(
        decision=locked, type="approval_resolved", actor=SYSTEM, payload={"outcome": "approved"}
    )


def _policy_outcome(actor: Actor, decision: Decision, outcome: str) -> None:
    """Record a policy outcome the way an evaluation does: an ``evaluate`` event, then the gating fact."""
    locked = Decision.objects.get(pk=decision.pk)
    event = decision_services.trace_append(
        decision=locked, type="evaluate", actor=actor, payload={"outcome": outcome}
    )
    decision_services.note_policy_outcome(
        decision=locked, outcome=outcome, seq=event.seq, exception_route_id=None
    )


def _events(decision: Decision) -> list[TraceEvent]:
    return list(TraceEvent.objects.filter(decision=decision).order_by("seq"))


def _read(actor: Actor, decision: Decision, **kw: Any) -> dict[str, Any]:
    args = {"product": "pg_customers_v1", "purpose": "customer_support", **kw}
    return product_reads.decision_read(actor=actor, decision_id=decision.decision_id, **args)


def _insert(actor: Actor, decision: Decision, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"product": "pg_orders_insert_v1", "purpose": "order_processing", **kw}
    return product_writes.decision_write(actor=actor, decision_id=decision.decision_id, **args)


# --- reads -------------------------------------------------------------------------------------


def test_read_returns_only_exposed_fields_and_traces_no_records(demo: Any) -> None:
    _, actor = demo
    decision = _decision(actor)
    result = _read(actor, decision, query={"email": "ada@example.com"})
    assert result["records"] == [
        {"customer_id": 1, "name": "Ada Lovelace", "email": "ada@example.com", "tier": "gold"}
    ]
    assert result["summary"] == {"rows": 1, "fields": ["customer_id", "name", "email", "tier"]}
    assert result["data_ref"].startswith("dref_")
    event = _events(decision)[-1]
    assert event.event_id == result["event_id"] and event.type == "read"
    assert event.payload == {
        "product": "pg_customers_v1",
        "version": 1,
        "product_hash": DataProduct.objects.get(pk="pg_customers_v1").hash,
        "purpose": "customer_support",
        "query": {"email": "ada@example.com"},
        "result_mode": "single",
        "data_ref": result["data_ref"],
        "summary": result["summary"],
        "records_digest": crypto.keyed_digest(result["records"]),
    }
    # the not-exposed column never leaves the database
    assert "VIP since 2019" not in str(result) and "internal_notes" not in str(result)
    assert "VIP" not in str(event.payload)


def test_read_with_two_matches_and_allow_multiple_false_is_conflict(demo: Any) -> None:
    _, actor = demo
    decision = _decision(actor)
    before = decision.event_count
    with pytest.raises(Conflict) as exc:
        _read(actor, decision, query={"tier": "standard"})
    assert "query matched 2 records; pass allow_multiple" in str(exc.value)
    decision.refresh_from_db()
    assert decision.event_count == before
    result = _read(actor, decision, query={"tier": "standard"}, allow_multiple=True)
    assert [r["customer_id"] for r in result["records"]] == [2, 3]
    alias = _read(actor, decision, query={"tier": "standard"}, result_mode="multiple")
    assert alias["records"] == result["records"]


def test_read_is_capped_at_max_rows(demo: Any) -> None:
    _, actor = demo
    product = _next_version(actor, "pg_customers_v1", max_rows=2)
    decision = _decision(actor)
    result = _read(actor, decision, product=product, allow_multiple=True)
    assert [r["customer_id"] for r in result["records"]] == [1, 2]
    assert result["summary"] == {
        "rows": 2,
        "fields": ["customer_id", "name", "email", "tier"],
        "truncated": True,
    }


def test_read_with_unknown_field_names_it_and_lists_allowed_fields(demo: Any) -> None:
    _, actor = demo
    decision = _decision(actor)
    with pytest.raises(InvalidArgument) as exc:
        _read(actor, decision, query={"internal_notes": "x"})
    assert str(exc.value) == (
        "[invalid_argument] unknown query field 'internal_notes' for pg_customers_v1; "
        "allowed fields: customer_id, name, email, tier"
    )
    assert exc.value.details["allowed"] == ["customer_id", "name", "email", "tier"]
    decision.refresh_from_db()
    assert decision.event_count == 1


def test_read_with_purpose_not_allowed_is_refused(demo: Any) -> None:
    _, actor = demo
    decision = _decision(actor)
    with pytest.raises(PurposeNotAllowed) as exc:
        _read(actor, decision, purpose="marketing")
    assert "allowed purposes: customer_support, order_processing" in str(exc.value)
    decision.refresh_from_db()
    assert decision.event_count == 1


def test_read_type_error_names_the_field(demo: Any) -> None:
    _, actor = demo
    decision = _decision(actor)
    with pytest.raises(InvalidArgument) as exc:
        _read(actor, decision, query={"customer_id": "abc"})
    assert exc.value.field == "customer_id"
    assert str(exc.value).startswith("[invalid_argument] field customer_id must be an integer")


def test_reads_are_allowed_while_needs_approval(demo: Any) -> None:
    _, actor = demo
    decision = _decision(actor, "propose")
    decision_services.note_approval_requested(decision=decision, approval_id="appr_x")
    assert _read(actor, decision, query={"customer_id": 2})["records"][0]["name"] == "Grace Hopper"


def test_read_on_closed_decision_is_invalid_state(demo: Any) -> None:
    _, actor = demo
    decision = _decision(actor)
    decision_services.decision_close(actor=actor, decision_id=decision.decision_id, action="abort")
    with pytest.raises(InvalidState):
        _read(actor, decision, query={"customer_id": 1})


# --- writes: every mutation form ---------------------------------------------------------------


def test_insert_records_and_data_forms_with_return_created(demo: Any) -> None:
    _, actor = demo
    decision = _decision(actor)
    result = _insert(
        actor,
        decision,
        mutation={
            "records": [{"customer_id": 1, "amount": 10.5}, {"customer_id": 2, "amount": "7", "note": "n"}]
        },
        return_created=True,
    )
    assert result["status"] == "executed" and result["operation"] == "insert" and result["affected_rows"] == 2
    created = result["created_records"]
    assert [(r["customer_id"], r["amount"], r["status"], r["note"]) for r in created] == [
        (1, 10.5, "pending", None),
        (2, 7.0, "pending", "n"),
    ]
    single = _insert(actor, decision, mutation={"data": {"customer_id": 3, "amount": 1}})
    assert single["affected_rows"] == 1 and "created_records" not in single
    amounts = [(r[1], r[2]) for r in _rows("orders")]
    assert amounts == [
        (1, Decimal("120.50")),
        (2, Decimal("35.00")),
        (1, Decimal("10.50")),
        (2, Decimal("7.00")),
        (3, Decimal("1.00")),
    ]
    event = _events(decision)[-1]
    assert event.type == "write"
    assert event.payload["operation"] == "insert" and event.payload["affected_rows"] == 1
    assert event.payload["mutation"] == {"form": "data", "records": 1, "fields": ["amount", "customer_id"]}


def test_update_with_object_keys_and_with_record_array(demo: Any) -> None:
    _, actor = demo
    decision = _decision(actor)
    first = product_writes.decision_write(
        actor=actor,
        decision_id=decision.decision_id,
        product="pg_orders_update_v1",
        purpose="order_processing",
        keys={"order_id": 1},
        mutation={"fields": {"status": "shipped"}},
    )
    assert first["affected_rows"] == 1
    second = product_writes.decision_write(
        actor=actor,
        decision_id=decision.decision_id,
        product="pg_orders_update_v1",
        purpose="order_processing",
        operation="update",
        keys=["order_id"],
        mutation={
            "records": [{"order_id": 1, "note": "a"}, {"order_id": 2, "status": "cancelled", "note": "b"}]
        },
    )
    assert second["affected_rows"] == 2
    assert [(r[0], r[3], r[4]) for r in _rows("orders")] == [(1, "shipped", "a"), (2, "cancelled", "b")]
    assert _events(decision)[-1].payload["keys"] == ["order_id"]


def _delete_product() -> None:
    product_definitions.product_create(
        actor=SYSTEM,
        product_id="pg_orders_delete_v1",
        definition={
            "operation": "delete",
            "table": "orders",
            "fields": [{"name": "order_id", "column": "id", "type": "integer", "primary_key": True}],
            "allowed_purposes": ["order_processing"],
        },
    )
    product_definitions.product_publish(actor=SYSTEM, product_id="pg_orders_delete_v1")


def test_delete_with_object_keys_and_with_record_array(demo: Any) -> None:
    agent, actor = demo
    _delete_product()
    product_definitions.product_grant(actor=SYSTEM, product_id="pg_orders_delete_v1", agent_id=agent.agent_id)
    decision = _decision(actor)
    _insert(actor, decision, mutation={"records": [{"customer_id": 3, "amount": 1}]})
    args = {
        "actor": actor,
        "decision_id": decision.decision_id,
        "product": "pg_orders_delete_v1",
        "purpose": "order_processing",
    }
    assert product_writes.decision_write(**args, keys={"order_id": 1}, mutation={})["affected_rows"] == 1
    result = product_writes.decision_write(
        **args, keys=["order_id"], mutation={"records": [{"order_id": 2}, {"order_id": 3}]}
    )
    assert result["affected_rows"] == 2 and result["operation"] == "delete"
    assert _rows("orders") == []


@pytest.mark.parametrize(
    ("mutation", "field", "text"),
    [
        ({"data": {"customer_id": 1}}, "amount", "required field amount is missing"),
        (
            {"data": {"customer_id": 1, "amount": 2, "order_id": 9}},
            "order_id",
            "field order_id of pg_orders_insert_v1 is not writable",
        ),
        (
            {"data": {"customer_id": 1, "amount": 2, "secret_col": 1}},
            "mutation.data",
            "unknown field 'secret_col'",
        ),
        (
            {"data": {"customer_id": "one", "amount": 2}},
            "customer_id",
            "field customer_id must be an integer",
        ),
        ({"data": {"customer_id": 1, "amount": "lots"}}, "amount", "field amount must be a number"),
        ({"data": {"customer_id": 1, "amount": 2, "status": None}}, "status", "field status cannot be null"),
        ({"fields": {"status": "x"}}, "mutation.fields", "mutation.fields is not a insert form"),
    ],
)
def test_invalid_insert_is_refused_naming_the_field_and_writes_nothing(
    demo: Any, mutation: dict[str, Any], field: str, text: str
) -> None:
    _, actor = demo
    decision = _decision(actor)
    before = _rows("orders")
    with pytest.raises(InvalidArgument) as exc:
        _insert(actor, decision, mutation=mutation)
    assert exc.value.field == field and text in str(exc.value)
    assert _rows("orders") == before
    decision.refresh_from_db()
    assert decision.event_count == 1


def test_update_needs_every_key_and_only_key_fields(demo: Any) -> None:
    _, actor = demo
    decision = _decision(actor)
    args = {
        "actor": actor,
        "decision_id": decision.decision_id,
        "product": "pg_orders_update_v1",
        "purpose": "order_processing",
    }
    with pytest.raises(InvalidArgument) as exc:
        product_writes.decision_write(
            **args, keys={"status": "pending"}, mutation={"fields": {"status": "x"}}
        )
    assert "unknown key field 'status'" in str(exc.value) and "allowed fields: order_id" in str(exc.value)
    with pytest.raises(InvalidArgument) as exc:
        product_writes.decision_write(**args, keys=None, mutation={"fields": {"status": "x"}})
    assert exc.value.field == "keys"
    with pytest.raises(InvalidArgument) as exc:
        product_writes.decision_write(
            **args, operation="delete", keys={"order_id": 1}, mutation={"fields": {"status": "x"}}
        )
    assert exc.value.field == "operation"
    assert [r[3] for r in _rows("orders")] == ["pending", "pending"]


def test_write_with_purpose_not_allowed_and_ungranted_product(demo: Any, make_agent: Any) -> None:
    _, actor = demo
    decision = _decision(actor)
    with pytest.raises(PurposeNotAllowed):
        _insert(
            actor, decision, purpose="customer_support", mutation={"data": {"customer_id": 1, "amount": 1}}
        )
    _delete_product()  # published but not granted to this agent
    with pytest.raises(NotFound):
        product_writes.decision_write(
            actor=actor,
            decision_id=decision.decision_id,
            product="pg_orders_delete_v1",
            purpose="order_processing",
            keys={"order_id": 1},
            mutation={},
        )
    assert len(_rows("orders")) == 2


def test_grant_without_the_operation_is_permission_denied(demo: Any) -> None:
    agent, actor = demo
    product_definitions.product_grant(
        actor=SYSTEM, product_id="pg_orders_insert_v1", agent_id=agent.agent_id, permissions=["read"]
    )
    with pytest.raises(PermissionDenied):
        _insert(actor, _decision(actor), mutation={"data": {"customer_id": 1, "amount": 1}})


def test_products_are_isolated_between_agents(demo: Any, make_agent: Any) -> None:
    _, actor = demo
    other, _ = make_agent("other-agent")
    other_actor = Actor.for_agent(other)
    from products import selectors

    assert selectors.products_for_agent(other_actor) == []
    with pytest.raises(NotFound):
        selectors.product_for_agent(other_actor, "pg_customers_v1")
    mine = _decision(actor)
    theirs = _decision(other_actor)
    # another agent's decision is not found, even for a product the caller holds
    with pytest.raises(NotFound):
        _read(actor, theirs, query={"customer_id": 1})
    with pytest.raises(NotFound):
        _read(other_actor, mine, query={"customer_id": 1})
    assert Decision.objects.get(pk=theirs.pk).event_count == 1


# --- gates (docs/contract/states.md) ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["propose", "approve", "override"])
def test_modes_needing_a_grant_block_writes_until_approved(demo: Any, mode: str) -> None:
    _, actor = demo
    decision = _decision(actor, mode)
    with pytest.raises(ApprovalRequired):
        _insert(actor, decision, mutation={"data": {"customer_id": 1, "amount": 1}})
    decision_services.note_approval_requested(
        decision=Decision.objects.get(pk=decision.pk), approval_id="appr_1"
    )
    with pytest.raises(InvalidState) as exc:
        _insert(actor, decision, mutation={"data": {"customer_id": 1, "amount": 1}})
    assert "needs_approval" in str(exc.value)
    assert len(_rows("orders")) == 2
    locked = Decision.objects.get(pk=decision.pk)
    decision_services.note_approval_resolved(decision=locked, outcome="approved", seq=locked.event_count)
    assert _insert(actor, decision, mutation={"data": {"customer_id": 1, "amount": 1}})["affected_rows"] == 1
    assert len(_rows("orders")) == 3


def test_autonomous_requires_exception_blocks_until_approval_then_allows(demo: Any) -> None:
    _, actor = demo
    decision = _decision(actor, "autonomous")
    _policy_outcome(actor, decision, "requires_exception")
    with pytest.raises(ApprovalRequired):
        _insert(actor, decision, mutation={"data": {"customer_id": 1, "amount": 1}})
    assert len(_rows("orders")) == 2
    _grant(decision)
    assert _insert(actor, decision, mutation={"data": {"customer_id": 1, "amount": 1}})["affected_rows"] == 1


def test_deny_blocks_writes_in_autonomous_mode(demo: Any) -> None:
    _, actor = demo
    decision = _decision(actor, "autonomous")
    locked = Decision.objects.get(pk=decision.pk)
    decision_services.note_policy_outcome(decision=locked, outcome="deny", seq=1, exception_route_id=None)
    with pytest.raises(PolicyDenied):
        _insert(actor, decision, mutation={"data": {"customer_id": 1, "amount": 1}})
    assert len(_rows("orders")) == 2


def test_product_requires_approval_blocks_autonomous_writes_until_granted(demo: Any) -> None:
    _, actor = demo
    product = _next_version(actor, "pg_orders_insert_v1", requires_approval=True)
    decision = _decision(actor, "autonomous")
    with pytest.raises(ApprovalRequired) as exc:
        _insert(actor, decision, product=product, mutation={"data": {"customer_id": 1, "amount": 1}})
    assert "pg_orders_insert_v2 requires a granted approval" in str(exc.value)
    _grant(decision)
    result = _insert(actor, decision, product=product, mutation={"data": {"customer_id": 1, "amount": 1}})
    assert result["affected_rows"] == 1


def _next_version(actor: Actor, product_id: str, **changes: Any) -> str:
    """Publish ``product_id``'s next version with ``changes`` and grant it: a published product is
    frozen (the database refuses to change it), so a change is always a new version."""
    definition = product_definitions.product_definition(DataProduct.objects.get(pk=product_id))
    del definition["product_id"], definition["version"]
    new_id = product_id.removesuffix("_v1") + "_v2"
    product_definitions.product_create(actor=SYSTEM, product_id=new_id, definition={**definition, **changes})
    product_definitions.product_publish(actor=SYSTEM, product_id=new_id)
    product_definitions.product_grant(actor=SYSTEM, product_id=new_id, agent_id=actor.id)
    return new_id


def _attach_policy(actor: Actor, product_id: str, rules: list[dict[str, Any]]) -> str:
    policy_authoring.policy_create(
        actor=SYSTEM,
        policy_id="order_cap_v1",
        definition={"name": "Order cap", "rules": rules, "default_outcome": "allow"},
    )
    policy_authoring.policy_publish(actor=SYSTEM, policy_id="order_cap_v1")
    return _next_version(actor, product_id, policies=["order_cap_v1"])


def test_product_attached_deny_blocks_the_write_and_the_evaluation_is_traced(demo: Any) -> None:
    _, actor = demo
    product = _attach_policy(
        actor,
        "pg_orders_insert_v1",
        [{"name": "cap", "when": "inputs.records[0].amount > 100", "outcome": "deny", "message": "too big"}],
    )
    decision = _decision(actor)
    with pytest.raises(PolicyDenied):
        _insert(actor, decision, product=product, mutation={"data": {"customer_id": 1, "amount": 500}})
    assert len(_rows("orders")) == 2
    events = _events(decision)
    assert [e.type for e in events] == ["created", "evaluate"]
    assert events[1].payload["outcome"] == "deny" and events[1].payload["source"] == f"product:{product}"
    assert events[1].payload["inputs"]["records"] == [{"customer_id": 1, "amount": 500}]
    # the deny gates the rest of the decision, also for a small amount
    with pytest.raises(PolicyDenied):
        _insert(actor, decision, product=product, mutation={"data": {"customer_id": 1, "amount": 5}})
    assert len(_rows("orders")) == 2


def test_product_attached_allow_lets_the_write_through(demo: Any) -> None:
    _, actor = demo
    product = _attach_policy(
        actor,
        "pg_orders_insert_v1",
        [{"name": "cap", "when": "inputs.records[0].amount > 100", "outcome": "deny", "message": "too big"}],
    )
    decision = _decision(actor)
    assert (
        _insert(actor, decision, product=product, mutation={"data": {"customer_id": 1, "amount": 5}})[
            "affected_rows"
        ]
        == 1
    )
    assert [e.type for e in _events(decision)] == ["created", "evaluate", "write"]


def test_product_attached_deny_blocks_a_read(demo: Any) -> None:
    _, actor = demo
    product = _attach_policy(
        actor,
        "pg_customers_v1",
        [
            {
                "name": "no_gold",
                "when": 'has(inputs.query.tier) && inputs.query.tier == "gold"',
                "outcome": "deny",
                "message": "no",
            }
        ],
    )
    decision = _decision(actor)
    with pytest.raises(PolicyDenied):
        _read(actor, decision, product=product, query={"tier": "gold"})
    assert [e.type for e in _events(decision)] == ["created", "evaluate"]
    assert (
        _read(actor, _decision(actor), product=product, query={"customer_id": 2})["records"][0]["customer_id"]
        == 2
    )


# --- idempotency -------------------------------------------------------------------------------


def test_same_idempotency_key_returns_first_result_and_writes_once(demo: Any) -> None:
    _, actor = demo
    decision = _decision(actor)
    mutation = {"data": {"customer_id": 1, "amount": 3}}
    first = _insert(actor, decision, mutation=mutation, idempotency_key="k1", return_created=True)
    again = _insert(actor, decision, mutation=mutation, idempotency_key="k1", return_created=True)
    assert again == first
    assert len(_rows("orders")) == 3
    assert [e.type for e in _events(decision)] == ["created", "write"]
    assert WriteResult.objects.filter(decision=decision).count() == 1
    with pytest.raises(Conflict):
        _insert(actor, decision, mutation={"data": {"customer_id": 2, "amount": 3}}, idempotency_key="k1")
    assert len(_rows("orders")) == 3


# --- SQL injection ---------------------------------------------------------------------------


INJECTIONS = [
    "1; DROP TABLE customers; --",
    "' OR '1'='1",
    'x" ; DELETE FROM orders; --',
    "ada@example.com' --",
    "\\'; SELECT pg_sleep(5); --",
]


_PAYLOADS = st.one_of(
    st.sampled_from(INJECTIONS),
    st.text(alphabet=st.sampled_from(list("'\";-=()*/ \\%_aoORDEL1x")), min_size=1, max_size=40),
)
_HYPOTHESIS = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_HYPOTHESIS
@given(payload=_PAYLOADS)
def test_injection_in_query_values_matches_nothing_and_changes_nothing(demo: Any, payload: str) -> None:
    _, actor = demo
    decision = _decision(actor)
    before = (_rows("customers"), _rows("orders"))
    result = _read(actor, decision, query={"email": payload, "name": payload}, allow_multiple=True)
    assert result["records"] == []
    assert (_rows("customers"), _rows("orders")) == before


@_HYPOTHESIS
@given(payload=_PAYLOADS)
def test_injection_in_field_names_and_keys_is_refused_without_leaking(demo: Any, payload: str) -> None:
    assume(not payload.strip().lstrip("-").isdigit())  # "1" is a valid order_id
    _, actor = demo
    decision = _decision(actor)
    before = (_rows("customers"), _rows("orders"))
    update = {
        "actor": actor,
        "decision_id": decision.decision_id,
        "product": "pg_orders_update_v1",
        "purpose": "order_processing",
    }
    for call in (
        lambda: _read(actor, decision, query={payload: 1}),
        lambda: _insert(actor, decision, mutation={"data": {payload: 1, "customer_id": 1, "amount": 1}}),
        lambda: product_writes.decision_write(
            **update, keys={"order_id": payload}, mutation={"fields": {"status": "x"}}
        ),
        lambda: product_writes.decision_write(
            **update, keys={payload: 1}, mutation={"fields": {"status": "x"}}
        ),
        lambda: product_writes.decision_write(
            **update, keys=[payload], mutation={"records": [{payload: 1, "status": "x"}]}
        ),
    ):
        with pytest.raises(InvalidArgument) as exc:
            call()
        # the refusal never reveals source table or column names
        message = exc.value.message
        for product_id in ("pg_customers_v1", "pg_orders_insert_v1", "pg_orders_update_v1"):
            message = message.replace(product_id, "")
        message = message.replace(repr(payload[:64]), "").replace(payload[:64], "")
        for source_name in (" orders", "customers", "internal_notes", '"id"'):
            assert source_name not in message
    assert (_rows("customers"), _rows("orders")) == before
    # a value that looks like SQL is stored verbatim, not executed
    product_writes.decision_write(**update, keys={"order_id": 1}, mutation={"fields": {"note": payload}})
    after = _rows("orders")
    assert after[0][4] == payload and after[1] == before[1][1]
    assert _rows("customers") == before[0]


# --- admin -------------------------------------------------------------------------------------


def test_data_source_dsn_is_encrypted_and_never_shown(db: Any) -> None:
    source = product_sources.data_source_save(
        actor=SYSTEM, source_id="warehouse", dsn="postgresql://bob:hunter2-secret@db.example.com:5432/shop"
    )
    stored = DataSource.objects.get(pk="warehouse")
    assert "hunter2" not in stored.dsn_display and "hunter2" not in stored.dsn_encrypted
    assert "db.example.com" in stored.dsn_display and "bob" in stored.dsn_display
    from products.serializers import data_source_out
    from tracemem_core import crypto

    assert crypto.decrypt(stored.dsn_encrypted) == "postgresql://bob:hunter2-secret@db.example.com:5432/shop"
    assert "hunter2" not in str(data_source_out(source))
    with pytest.raises(InvalidArgument) as exc:
        product_sources.data_source_save(actor=SYSTEM, source_id="bad", dsn="postgresql://u:s3cret@[bad")
    assert "s3cret" not in str(exc.value)


@pytest.mark.parametrize(
    ("dsn", "display"),
    [
        # Options that read files or redirect the connection are refused (tests/approvals/test_outbound_destinations.py).
        (
            "postgresql://u:pw@h:5432/db?channel_binding=require&sslmode=require&connect_timeout=3"
            "&application_name=tm",
            "host=h port=5432 dbname=db user=u sslmode=require channel_binding=require connect_timeout=3 "
            "application_name=tm",
        ),
        (
            "host=h user=u password='p w' dbname=d sslrootcert=system",
            "host=h dbname=d user=u sslrootcert=system",
        ),
    ],
)
def test_data_source_display_shows_only_allow_listed_dsn_parts(db: Any, dsn: str, display: str) -> None:
    source = product_sources.data_source_save(actor=SYSTEM, source_id="ext", dsn=dsn)
    assert source.dsn_display == display
    assert DataSource.objects.get(pk="ext").dsn_display == display


def test_published_product_is_frozen_and_hash_covers_definition(demo: Any) -> None:
    product = DataProduct.objects.get(pk="pg_customers_v1")
    assert product.status == "published" and product.version == 1
    assert product.hash == product_definitions.product_hash(product) and len(product.hash) == 64
    with pytest.raises(InvalidState):
        product_definitions.product_update(
            actor=SYSTEM, product_id="pg_customers_v1", changes={"max_rows": 5}
        )
    assert DataProduct.objects.get(pk="pg_customers_v1").max_rows == 50


def test_admin_services_refuse_non_staff(demo: Any) -> None:
    _, actor = demo
    with pytest.raises(PermissionDenied):
        product_definitions.product_grant(actor=actor, product_id="pg_customers_v1", agent_id=actor.id)


def test_seed_is_idempotent(demo: Any) -> None:
    agent, _ = demo
    product_demo.products_seed_demo(actor=SYSTEM, agent=agent)
    assert len(_rows("customers")) == 3 and len(_rows("orders")) == 2
    assert DataProduct.objects.filter(status="published").count() == 3


def test_product_attached_requires_exception_blocks_until_approved_then_allows(demo: Any) -> None:
    _, actor = demo
    product = _attach_policy(
        actor,
        "pg_orders_insert_v1",
        [
            {
                "name": "big",
                "when": "inputs.records[0].amount > 100",
                "outcome": "requires_exception",
                "message": "ask",
            }
        ],
    )
    decision = _decision(actor, "autonomous")
    mutation = {"data": {"customer_id": 1, "amount": 500}}
    with pytest.raises(ApprovalRequired):
        _insert(actor, decision, product=product, mutation=mutation)
    assert len(_rows("orders")) == 2
    assert [e.type for e in _events(decision)] == ["created", "evaluate"]
    _grant(decision)
    result = _insert(actor, decision, product=product, mutation=mutation)
    assert result["affected_rows"] == 1 and len(_rows("orders")) == 3
    write = _events(decision)[-1]
    assert write.type == "write"
    assert write.payload["policies"] == [{"policy_id": "order_cap_v1", "outcome": "exception_granted"}]
    # the approval covered exactly those inputs: a different large order asks again
    with pytest.raises(ApprovalRequired):
        _insert(actor, decision, product=product, mutation={"data": {"customer_id": 2, "amount": 900}})
    assert len(_rows("orders")) == 3


def test_granted_exception_does_not_cover_a_different_write_that_redacts_alike(demo: Any) -> None:
    _, actor = demo
    product = _attach_policy(
        actor,
        "pg_orders_insert_v1",
        [
            {
                "name": "evil",
                "when": 'inputs.records[0].note.endsWith("evil")',
                "outcome": "deny",
                "message": "no",
            },
            {
                "name": "long",
                "when": "size(inputs.records[0].note) > 1000",
                "outcome": "requires_exception",
                "message": "ask",
            },
        ],
    )
    decision = _decision(actor, "autonomous")
    # Both notes redact to the same 1000 characters plus "…[truncated 5 chars]".
    good = {"data": {"customer_id": 1, "amount": 1, "note": "x" * 1001 + "good"}}
    evil = {"data": {"customer_id": 1, "amount": 1, "note": "x" * 1001 + "evil"}}
    with pytest.raises(ApprovalRequired):
        _insert(actor, decision, product=product, mutation=good)
    first = _events(decision)[-1]
    assert first.payload["outcome"] == "requires_exception"
    assert first.payload["inputs_digest"] != ""
    _grant(decision)
    before = _rows("orders")
    with pytest.raises(PolicyDenied):
        _insert(actor, decision, product=product, mutation=evil)
    assert _rows("orders") == before
    last = _events(decision)[-1]
    assert last.type == "evaluate"
    assert (last.payload["outcome"], last.payload["rationale"]["rule"]) == ("deny", "evil")
    assert last.payload["inputs"] == first.payload["inputs"]  # same redacted inputs...
    assert last.payload["inputs_digest"] != first.payload["inputs_digest"]  # ...different writes


def test_evaluate_event_inputs_digest_is_keyed_and_covers_the_unredacted_inputs(demo: Any) -> None:
    _, actor = demo
    product = _attach_policy(
        actor, "pg_orders_insert_v1", [{"name": "never", "when": "false", "outcome": "deny", "message": "no"}]
    )
    decision = _decision(actor, "autonomous")
    _insert(
        actor,
        decision,
        product=product,
        mutation={"data": {"customer_id": 1, "amount": 1, "note": "ghp_" + "a" * 30}},
    )
    event = _events(decision)[1]
    sent = {
        "purpose": "order_processing",
        "operation": "insert",
        "decision": decision.decision_id,
        "records": [{"customer_id": 1, "amount": 1, "note": "ghp_" + "a" * 30}],
    }
    assert event.payload["inputs"]["records"] == [{"customer_id": 1, "amount": 1, "note": "[redacted]"}]
    assert event.payload["inputs_digest"] == crypto.keyed_digest(sent)
    # keyed: not the plain SHA-256 anyone could recompute from a guess
    assert event.payload["inputs_digest"] != hashlib.sha256(canonical_json(sent)).hexdigest()


def test_apply_config_sections_create_publish_and_grant(demo: Any, tmp_path: Any) -> None:
    agent, _ = demo
    from django.core.management import call_command

    config = tmp_path / "governance.yaml"
    config.write_text(
        f"""
data_sources:
  - source_id: warehouse
    dsn: postgresql://etl:very-secret-pw@warehouse.internal/shop
products:
  - product_id: pg_tiers_v1
    operation: read
    table: customers
    fields:
      - {{name: customer_id, column: id, type: integer, primary_key: true}}
      - {{name: tier, type: string}}
    allowed_purposes: [analytics]
    publish: true
grants:
  - agent: {agent.name}
    products: [pg_tiers_v1]
"""
    )
    from io import StringIO

    dry = StringIO()
    call_command("apply_config", str(config), "--dry-run", stdout=dry)
    assert "would create data source warehouse" in dry.getvalue()
    assert not DataProduct.objects.filter(pk="pg_tiers_v1").exists()
    out = StringIO()
    call_command("apply_config", str(config), stdout=out)
    assert "very-secret-pw" not in out.getvalue()
    product = DataProduct.objects.get(pk="pg_tiers_v1")
    assert product.status == "published" and product.grants.get().agent_id == agent.agent_id
    again = StringIO()
    call_command("apply_config", str(config), stdout=again)
    assert "product pg_tiers_v1 unchanged" in again.getvalue()
    assert DataProduct.objects.get(pk="pg_tiers_v1").hash == product.hash


def test_decision_evaluate_inputs_ref_re_reads_a_read_events_records(demo: Any) -> None:
    _, actor = demo
    policy_authoring.policy_create(
        actor=SYSTEM,
        policy_id="gold_only_v1",
        definition={
            "name": "Gold only",
            "rules": [
                {
                    "name": "gold",
                    "when": 'inputs.records[0].tier == "gold"',
                    "outcome": "allow",
                    "message": "ok",
                }
            ],
            "default_outcome": "deny",
        },
    )
    policy_authoring.policy_publish(actor=SYSTEM, policy_id="gold_only_v1")
    decision = _decision(actor)
    read = _read(actor, decision, query={"customer_id": 1})
    policy_authoring.policy_grant(actor=SYSTEM, policy_id="gold_only_v1", agent_id=actor.id)
    result = policy_evaluation.decision_evaluate(
        actor=actor, decision_id=decision.decision_id, policy_id="gold_only_v1", inputs_ref=read["event_id"]
    )
    assert result["outcome"] == "allow"
    read_event, evaluate_event = _events(decision)[1:]
    assert read_event.payload["records_digest"] == crypto.keyed_digest(read["records"])
    assert "records" not in read_event.payload
    # the evaluate event names the read, the row count and the digest; never a record value
    assert "inputs" not in evaluate_event.payload
    assert evaluate_event.payload["inputs_ref"] == read["event_id"]
    assert evaluate_event.payload["rows"] == 1
    assert evaluate_event.payload["records_digest"] == read_event.payload["records_digest"]
    stored = json.dumps(evaluate_event.payload)
    for value in ("Ada Lovelace", "ada@example.com", '"tier"'):
        assert value not in stored


def _inputs_ref_setup(actor: Actor) -> tuple[Decision, dict[str, Any]]:
    policy_authoring.policy_create(
        actor=SYSTEM, policy_id="any_v1", definition={"name": "Any", "rules": [], "default_outcome": "allow"}
    )
    policy_authoring.policy_publish(actor=SYSTEM, policy_id="any_v1")
    policy_authoring.policy_grant(actor=SYSTEM, policy_id="any_v1", agent_id=actor.id)
    decision = _decision(actor)
    read = _read(actor, decision, query={"tier": "standard"}, allow_multiple=True)
    return decision, read


def test_inputs_ref_is_refused_once_the_product_grant_is_revoked(demo: Any) -> None:
    agent, actor = demo
    decision, read = _inputs_ref_setup(actor)
    product_definitions.product_revoke(actor=SYSTEM, product_id="pg_customers_v1", agent_id=agent.agent_id)
    with pytest.raises(NotFound) as exc:
        policy_evaluation.decision_evaluate(
            actor=actor, decision_id=decision.decision_id, policy_id="any_v1", inputs_ref=read["event_id"]
        )
    assert "pg_customers_v1" in str(exc.value) and "not granted" in str(exc.value)
    assert [e.type for e in _events(decision)] == ["created", "read"]


def test_inputs_ref_is_conflict_when_the_data_changed_since_the_read(demo: Any) -> None:
    _, actor = demo
    decision, read = _inputs_ref_setup(actor)
    with as_products_role() as cursor:
        cursor.execute("UPDATE customers SET name = 'Changed' WHERE id = 2")
    with pytest.raises(Conflict) as exc:
        policy_evaluation.decision_evaluate(
            actor=actor, decision_id=decision.decision_id, policy_id="any_v1", inputs_ref=read["event_id"]
        )
    assert exc.value.message == (
        f"the data changed since read event {read['event_id']}; read again (decision_read) and pass the new "
        "event_id as inputs_ref"
    )
    assert [e.type for e in _events(decision)] == ["created", "read"]


def test_override_grant_lifts_an_earlier_deny(demo: Any) -> None:
    _, actor = demo
    decision = _decision(actor, "override")
    _policy_outcome(actor, decision, "deny")
    with pytest.raises(PolicyDenied):
        _insert(actor, decision, mutation={"data": {"customer_id": 1, "amount": 1}})
    _grant(decision)
    assert _insert(actor, decision, mutation={"data": {"customer_id": 1, "amount": 1}})["affected_rows"] == 1


TYPED_FIELDS = [
    {"name": "thing_id", "column": "id", "type": "integer", "primary_key": True, "nullable": False},
    {
        "name": "label",
        "column": "label",
        "type": "string",
        "writable": True,
        "required": True,
        "nullable": False,
    },
    {"name": "price", "column": "price", "type": "number", "writable": True},
    {"name": "active", "column": "active", "type": "boolean", "writable": True},
    {"name": "due", "column": "due", "type": "date", "writable": True},
    {"name": "seen_at", "column": "seen_at", "type": "datetime", "writable": True},
    {"name": "attrs", "column": "attrs", "type": "json", "writable": True},
    {"name": "ref", "column": "ref", "type": "uuid", "writable": True},
]


@pytest.fixture
def typed(demo: Any) -> tuple[Actor, Decision]:
    agent, actor = demo
    owner_sql(
        "DROP TABLE IF EXISTS tracemem_data.typed_things",
        "CREATE TABLE tracemem_data.typed_things (id SERIAL PRIMARY KEY, label TEXT NOT NULL, price NUMERIC(10,2), "
        "active BOOLEAN, due DATE, seen_at TIMESTAMPTZ, attrs JSONB, ref UUID)",
    )
    for product_id, operation in (("typed_insert_v1", "insert"), ("typed_read_v1", "read")):
        product_definitions.product_create(
            actor=SYSTEM,
            product_id=product_id,
            definition={
                "operation": operation,
                "table": "tracemem_data.typed_things",
                "fields": TYPED_FIELDS,
                "allowed_purposes": ["testing"],
            },
        )
        product_definitions.product_publish(actor=SYSTEM, product_id=product_id)
        product_definitions.product_grant(actor=SYSTEM, product_id=product_id, agent_id=agent.agent_id)
    return actor, _decision(actor)


@pytest.mark.parametrize("source", ["builtin", "external"])
def test_a_json_value_nested_beyond_the_limit_in_the_business_table_reads_as_a_marker(
    typed: Any, source: str
) -> None:
    # Rows written by other applications can hold jsonb nested thousands deep; parsing it with
    # Python's json raised RecursionError (a 500). It is read as the redaction's depth marker.
    from tests.conftest import owner_dsn

    actor, decision = typed
    depth = 3000
    owner_sql(
        "INSERT INTO tracemem_data.typed_things (label, attrs) VALUES ('deep', %s::jsonb), ('flat', %s::jsonb)",
        params=["[" * depth + "]" * depth, json.dumps({"ok": [[1]]})],
    )
    product = "typed_read_v1"
    if source == "external":
        product_sources.data_source_save(actor=SYSTEM, source_id="replica", dsn=owner_dsn())
        product = "typed_ext_read_v1"
        product_definitions.product_create(
            actor=SYSTEM,
            product_id=product,
            definition={
                "operation": "read",
                "source": "replica",
                "table": "tracemem_data.typed_things",
                "fields": TYPED_FIELDS,
                "allowed_purposes": ["testing"],
            },
        )
        product_definitions.product_publish(actor=SYSTEM, product_id=product)
        product_definitions.product_grant(actor=SYSTEM, product_id=product, agent_id=actor.id)
    read = product_reads.decision_read(
        actor=actor,
        decision_id=decision.decision_id,
        product=product,
        purpose="testing",
        query={"active": None},
        allow_multiple=True,
    )
    attrs = {r["label"]: r["attrs"] for r in read["records"]}
    assert attrs == {"deep": "[max depth]", "flat": {"ok": [[1]]}}


def test_every_field_type_round_trips(typed: Any) -> None:
    actor, decision = typed
    record = {
        "label": "widget",
        "price": "12.50",
        "active": True,
        "due": "2026-12-01",
        "seen_at": "2026-11-23T10:00:00+01:00",
        "attrs": {"color": "red", "sizes": [1, 2]},
        "ref": "12345678-1234-5678-1234-567812345678",
    }
    created = product_writes.decision_write(
        actor=actor,
        decision_id=decision.decision_id,
        product="typed_insert_v1",
        purpose="testing",
        mutation={"records": [record]},
        return_created=True,
    )["created_records"][0]
    expected = {
        "thing_id": created["thing_id"],
        "label": "widget",
        "price": 12.5,
        "active": True,
        "due": "2026-12-01",
        "seen_at": "2026-11-23T09:00:00Z",
        "attrs": {"color": "red", "sizes": [1, 2]},
        "ref": "12345678-1234-5678-1234-567812345678",
    }
    assert created == expected
    read = product_reads.decision_read(
        actor=actor,
        decision_id=decision.decision_id,
        product="typed_read_v1",
        purpose="testing",
        query={"ref": record["ref"], "active": True, "due": "2026-12-01"},
    )
    assert read["records"] == [expected]
    from decisions.integrity import decision_problems

    decision.refresh_from_db()
    assert decision_problems(decision) == []


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("price", "NaN", "a finite number"),
        ("price", [1], "a number"),
        ("active", "yes", "a boolean"),
        ("due", "2026-13-01", "an ISO-8601 date"),
        ("seen_at", "tomorrow", "an ISO-8601 datetime"),
        ("ref", "not-a-uuid", "a UUID string"),
        ("label", 5, "a string"),
    ],
)
def test_type_errors_name_the_field_and_write_nothing(
    typed: Any, field: str, value: Any, expected: str
) -> None:
    actor, decision = typed
    with pytest.raises(InvalidArgument) as exc:
        product_writes.decision_write(
            actor=actor,
            decision_id=decision.decision_id,
            product="typed_insert_v1",
            purpose="testing",
            mutation={"data": {"label": "x", field: value}},
        )
    assert exc.value.field == field and f"field {field} must be {expected}" in str(exc.value)
    with as_products_role() as cursor:
        cursor.execute("SELECT COUNT(*) FROM typed_things")
        assert cursor.fetchone()[0] == 0


def test_django_admin_source_form_keeps_the_dsn_write_only(db: Any) -> None:
    from django.contrib.auth import get_user_model
    from django.test import Client

    admin_user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(admin_user)
    response = client.post(
        "/admin/products/datasource/add/",
        {
            "source_id": "crm",
            "name": "CRM",
            "kind": "postgresql",
            "dsn": "postgresql://crm:topsecret-77@crm.internal/crm",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    stored = DataSource.objects.get(pk="crm")
    assert "topsecret-77" not in stored.dsn_display and stored.dsn_encrypted
    page = client.get("/admin/products/datasource/crm/change/").content.decode()
    assert "topsecret-77" not in page and stored.dsn_encrypted not in page and "crm.internal" in page
    # saving without a DSN keeps the stored one
    client.post(
        "/admin/products/datasource/crm/change/",
        {"source_id": "crm", "name": "CRM 2", "kind": "postgresql", "dsn": ""},
    )
    after = DataSource.objects.get(pk="crm")
    assert after.name == "CRM 2" and after.dsn_encrypted == stored.dsn_encrypted
    assert client.get("/admin/products/dataproduct/").status_code == 200


def test_statement_timeout_stops_a_slow_source_without_leaking(demo: Any, monkeypatch: Any) -> None:
    agent, actor = demo
    from products import engine

    monkeypatch.setattr(engine, "STATEMENT_TIMEOUT_MS", 200)
    owner_sql("CREATE OR REPLACE VIEW tracemem_data.slow_view AS SELECT 1 AS id, pg_sleep(3)::text AS nap")
    product_definitions.product_create(
        actor=SYSTEM,
        product_id="slow_v1",
        definition={
            "operation": "read",
            "table": "slow_view",
            "fields": [{"name": "id", "type": "integer", "primary_key": True}],
            "allowed_purposes": ["testing"],
        },
    )
    product_definitions.product_publish(actor=SYSTEM, product_id="slow_v1")
    product_definitions.product_grant(actor=SYSTEM, product_id="slow_v1", agent_id=agent.agent_id)
    decision = _decision(actor)
    with pytest.raises(InvalidState) as exc:
        product_reads.decision_read(
            actor=actor, decision_id=decision.decision_id, product="slow_v1", purpose="testing"
        )
    assert "statement timeout" in str(exc.value) and "slow_view" not in str(exc.value)
    decision.refresh_from_db()
    assert decision.event_count == 1


def test_constraint_violation_is_conflict_without_database_text(demo: Any) -> None:
    _, actor = demo
    decision = _decision(actor)
    with pytest.raises(Conflict) as exc:
        _insert(
            actor,
            decision,
            mutation={"records": [{"customer_id": 1, "amount": 1}, {"customer_id": 999, "amount": 1}]},
        )
    assert "violates a constraint" in str(exc.value) and "orders_customer_id" not in str(exc.value)
    assert len(_rows("orders")) == 2  # the first record of the call was rolled back too
    decision.refresh_from_db()
    assert decision.event_count == 1
    # the decision's transaction is still usable after the refused statement
    assert _insert(actor, decision, mutation={"data": {"customer_id": 3, "amount": 2}})["affected_rows"] == 1


def test_published_product_is_refused_by_the_database_itself(demo: Any) -> None:
    from django.db import DatabaseError, transaction

    before = product_definitions.product_definition(DataProduct.objects.get(pk="pg_orders_insert_v1"))
    for change in ({"name": "Renamed"}, {"max_rows": 1}, {"policies": ["x_v1"]}, {"status": "draft"}):
        with pytest.raises(DatabaseError, match="published and frozen"), transaction.atomic():
            DataProduct.objects.filter(pk="pg_orders_insert_v1").update(**change)
    with pytest.raises(DatabaseError, match="cannot be deleted"), transaction.atomic():
        DataProduct.objects.filter(pk="pg_orders_insert_v1").delete()
    after = DataProduct.objects.get(pk="pg_orders_insert_v1")
    assert (after.status, product_definitions.product_definition(after)) == ("published", before)
    # a draft is still editable (that is how products are authored)
    product_definitions.product_create(
        actor=SYSTEM, product_id="pg_orders_insert_v2", definition=_ORDERS_INSERT_DEFINITION
    )
    DataProduct.objects.filter(pk="pg_orders_insert_v2").update(name="Draft rename")
    assert DataProduct.objects.get(pk="pg_orders_insert_v2").name == "Draft rename"


_ORDERS_INSERT_DEFINITION: dict[str, Any] = {
    k: val for k, val in product_demo.DEMO_PRODUCTS[1].items() if k != "product_id"
}


def _admin_form(**overrides: Any) -> dict[str, Any]:
    import json as _json

    definition = {**_ORDERS_INSERT_DEFINITION, **overrides}
    return {
        "product_id": "pg_orders_insert_v2",
        "name": definition["name"],
        "description": definition["description"],
        "operation": definition["operation"],
        "source": "builtin",
        "source_table": definition["table"],
        "fields": _json.dumps(definition["fields"]),
        "key_fields": _json.dumps(definition.get("key_fields", [])),
        "allowed_purposes": _json.dumps(definition["allowed_purposes"]),
        "max_rows": str(definition["max_rows"]),
        "result_modes": "[]",
        "policies": "[]",
        "example_queries": "[]",
        "grants-TOTAL_FORMS": "0",
        "grants-INITIAL_FORMS": "0",
    }


def test_django_admin_edits_products_only_through_the_services(demo: Any) -> None:
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw"))
    added = client.post("/admin/products/dataproduct/add/", _admin_form())
    assert added.status_code == 302, added.context["adminform"].form.errors
    draft = DataProduct.objects.get(pk="pg_orders_insert_v2")
    assert (draft.status, draft.version, draft.hash) == ("draft", 2, product_definitions.product_hash(draft))
    assert draft.key_fields == ["order_id"]  # the service's default: the primary-key fields

    # an invalid definition is a form error and changes nothing
    bad = client.post(
        "/admin/products/dataproduct/pg_orders_insert_v2/change/", _admin_form(key_fields=["nope"])
    )
    assert bad.status_code == 200 and "key field nope is not one of the fields" in bad.content.decode()
    assert DataProduct.objects.get(pk="pg_orders_insert_v2").hash == draft.hash

    changed = client.post("/admin/products/dataproduct/pg_orders_insert_v2/change/", _admin_form(max_rows=5))
    assert changed.status_code == 302
    draft = DataProduct.objects.get(pk="pg_orders_insert_v2")
    assert (draft.max_rows, draft.hash) == (5, product_definitions.product_hash(draft))

    published = client.post(
        "/admin/products/dataproduct/",
        {"action": "publish_products", "_selected_action": ["pg_orders_insert_v2"]},
    )
    assert published.status_code == 302
    product = DataProduct.objects.get(pk="pg_orders_insert_v2")
    assert (product.status, product.hash) == ("published", draft.hash)

    # published: read-only, not deletable, a POST changes nothing
    client.post("/admin/products/dataproduct/pg_orders_insert_v2/change/", _admin_form(max_rows=7, name="X"))
    assert product_definitions.product_definition(DataProduct.objects.get(pk="pg_orders_insert_v2")) == (
        product_definitions.product_definition(product)
    )
    assert client.get("/admin/products/dataproduct/pg_orders_insert_v2/delete/").status_code == 403
    assert (
        client.post("/admin/products/dataproduct/pg_orders_insert_v2/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert DataProduct.objects.filter(pk="pg_orders_insert_v2").exists()


def test_insert_of_more_records_than_max_rows_is_refused_and_writes_nothing(demo: Any) -> None:
    _, actor = demo
    decision = _decision(actor)
    before = _rows("orders")
    with pytest.raises(InvalidArgument) as exc:
        _insert(actor, decision, mutation={"records": [{"customer_id": 1, "amount": 1}] * 21})
    assert exc.value.message == "mutation has 21 records; pg_orders_insert_v1 takes at most 20 per call"
    assert exc.value.details["field"] == "mutation.records"
    assert _rows("orders") == before
    assert [e.type for e in _events(decision)] == ["created"]


def test_update_changing_more_rows_than_max_rows_is_conflict_and_rolled_back(demo: Any) -> None:
    _, actor = demo
    # both demo orders are 'pending': addressing by status matches two rows, one more than allowed
    product = _next_version(actor, "pg_orders_update_v1", max_rows=1, key_fields=["status"])
    decision = _decision(actor)
    before = _rows("orders")
    with pytest.raises(Conflict) as exc:
        product_writes.decision_write(
            actor=actor,
            decision_id=decision.decision_id,
            product=product,
            purpose="order_processing",
            keys={"status": "pending"},
            mutation={"fields": {"note": "z"}},
        )
    assert exc.value.message == (
        "the write would change more than 1 records; pg_orders_update_v2 allows at most 1 per call"
    )
    assert _rows("orders") == before
    assert [e.type for e in _events(decision)] == ["created"]


def test_decision_page_timeline_names_the_product_and_row_count_of_each_read_and_write(demo: Any) -> None:
    """Issue 18 (audit): the readable timeline line of a read and of a write says which product and
    how many rows, from the events the services really record."""
    import html

    from django.contrib.auth import get_user_model
    from django.test import Client

    _, actor = demo
    decision = _decision(actor)
    read = _read(actor, decision, query={}, allow_multiple=True)
    _insert(
        actor,
        decision,
        mutation={"records": [{"customer_id": 1, "amount": 1}, {"customer_id": 2, "amount": 2}]},
    )
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root", password="x"))
    body = client.get(f"/decisions/{decision.decision_id}/").content.decode()
    lines = [html.unescape(c.split("</p>", 1)[0]) for c in body.split('<p class="event-line">')[1:]]
    rows = len(read["records"])
    assert rows > 1
    assert f"Read pg_customers_v1, {rows} rows for customer_support" in lines, lines
    assert "Wrote pg_orders_insert_v1 (insert), 2 rows affected" in lines, lines
