"""A wall around TraceMem's own tables (issue 11, finding 1: "staff → superuser through a data
product"). Built-in data products reach business data only — checked when a product is defined,
published and run, and enforced by PostgreSQL through the products role."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client

from agents.models import PersonalToken
from agents.services import tokens as agent_tokens
from decisions import services as decision_services
from decisions.models import TraceEvent
from products import demo as product_demo
from products import engine
from products.demo import demo_tables_create
from products.models import DataProduct, ProductStatus
from products.services import definitions as product_definitions
from products.services import reads as product_reads
from products.services import sources as product_sources
from products.services import writes as product_writes
from tests.conftest import AgentClient, owner_sql, role_names
from tests.perm_helpers import make_staff
from tracemem_core.actor import Actor

pytestmark = pytest.mark.django_db
SYSTEM = Actor.system("test")

SUPERUSER_PRODUCT = {
    "product_id": "users_admin_v1",
    "operation": "update",
    "table": "auth_user",
    "fields": [
        {"name": "id", "type": "integer", "primary_key": True},
        {"name": "is_superuser", "type": "boolean", "writable": True},
    ],
    "allowed_purposes": ["ops"],
}
SESSIONS_PRODUCT = {
    "product_id": "sessions_v1",
    "operation": "read",
    "table": "django_session",
    "fields": [
        {"name": "session_key", "type": "string", "primary_key": True},
        {"name": "session_data", "type": "string"},
    ],
    "allowed_purposes": ["ops"],
}
TOKENS_PRODUCT = {
    "product_id": "tokens_v1",
    "operation": "read",
    "table": "agents_personaltoken",
    "fields": [
        {"name": "id", "type": "integer", "primary_key": True},
        {"name": "token_hash", "type": "string"},
    ],
    "allowed_purposes": ["ops"],
}


@pytest.fixture
def staff() -> tuple[Any, dict[str, str]]:
    """A staff user who is not a superuser but may define, publish and grant products."""
    user = make_staff("ops", *PRODUCT_PERMS)
    token = agent_tokens.personal_token_create(actor=SYSTEM, user=user).secret
    return user, {"HTTP_AUTHORIZATION": f"Token {token}"}


PRODUCT_PERMS = ("products.define_products", "products.publish_products", "products.grant_products")


def _post(auth: dict[str, str], path: str, body: Any = None) -> Any:
    return Client().post(path, body or {}, content_type="application/json", **auth)


@pytest.mark.parametrize(
    ("definition", "table"),
    [
        (SUPERUSER_PRODUCT, "auth_user"),
        (SUPERUSER_PRODUCT, "public.auth_user"),
        (SESSIONS_PRODUCT, "django_session"),
        (TOKENS_PRODUCT, "agents_personaltoken"),
        (TOKENS_PRODUCT, "decisions_traceevent"),
        (SESSIONS_PRODUCT, "pg_catalog.pg_authid"),
    ],
)
def test_staff_cannot_define_a_builtin_product_over_tracemem_tables(
    staff: Any, definition: dict[str, Any], table: str
) -> None:
    _, auth = staff
    response = _post(auth, "/api/v1/admin/products", {**definition, "table": table})
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_argument" and error["details"] == {"field": "table"}
    assert "built-in products reach" in error["message"]
    assert not DataProduct.objects.filter(pk=definition["product_id"]).exists()


def test_staff_cannot_move_a_draft_onto_a_tracemem_table(staff: Any) -> None:
    _, auth = staff
    demo_tables_create(reset=True)
    draft = {
        **SUPERUSER_PRODUCT,
        "table": "customers",
        "fields": [
            {"name": "id", "type": "integer", "primary_key": True},
            {"name": "tier", "type": "string", "writable": True},
        ],
    }
    assert _post(auth, "/api/v1/admin/products", draft).status_code == 201
    response = Client().patch(
        "/api/v1/admin/products/users_admin_v1",
        {"table": "auth_user"},
        content_type="application/json",
        **auth,
    )
    assert response.status_code == 400 and response.json()["error"]["details"] == {"field": "table"}
    assert DataProduct.objects.get(pk="users_admin_v1").source_table == "customers"


def _saved_before_the_rule(definition: dict[str, Any], status: str = ProductStatus.DRAFT) -> DataProduct:
    """A product row written before the wall existed (an upgrade): straight into the table."""
    product = DataProduct(
        product_id=definition["product_id"],
        name=definition["product_id"],
        operation=definition["operation"],
        source=product_sources.data_source_builtin(),
        source_table=definition["table"],
        fields=[
            {
                "nullable": True,
                "required": False,
                "writable": False,
                "primary_key": False,
                "column": f["name"],
                **f,
            }
            for f in definition["fields"]
        ],
        key_fields=[f["name"] for f in definition["fields"] if f.get("primary_key")],
        allowed_purposes=definition["allowed_purposes"],
        result_modes=["single", "multiple"],
    )
    product.hash = product_definitions.product_hash(product)
    product.save(force_insert=True)
    if status == ProductStatus.PUBLISHED:
        DataProduct.objects.filter(pk=product.pk).update(status=status)
    return product


def test_a_draft_saved_before_the_rule_cannot_be_published(staff: Any) -> None:
    _, auth = staff
    _saved_before_the_rule(SUPERUSER_PRODUCT)
    response = _post(auth, "/api/v1/admin/products/users_admin_v1/publish")
    assert response.status_code == 409, response.content
    assert response.json()["error"]["code"] == "invalid_state"
    assert "auth_user is one of TraceMem's own tables" in response.json()["error"]["message"]
    assert DataProduct.objects.get(pk="users_admin_v1").status == ProductStatus.DRAFT


def test_staff_cannot_make_themselves_superuser_through_a_product(staff: Any, make_agent: Any) -> None:
    """The finding, end to end: the product exists (saved before the rule), is granted through the
    admin API, and the agent writes ``is_superuser=true`` in an autonomous decision."""
    user, auth = staff
    agent, key = make_agent("escalation-agent")
    _saved_before_the_rule(SUPERUSER_PRODUCT, ProductStatus.PUBLISHED)
    granted = _post(auth, "/api/v1/admin/products/users_admin_v1/grants", {"agent_id": agent.agent_id})
    assert granted.status_code == 201, granted.content
    api = AgentClient(key)
    did = api.post(
        "/api/v1/decisions", {"intent": "ops.user.promote", "automation_mode": "autonomous"}
    ).json()["decision_id"]
    response = api.post(
        f"/api/v1/decisions/{did}/write",
        {
            "product": "users_admin_v1",
            "purpose": "ops",
            "keys": {"id": user.pk},
            "mutation": {"fields": {"is_superuser": True}},
        },
    )
    assert response.status_code == 409, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_state" and "auth_user" not in error["message"]
    user.refresh_from_db()
    assert user.is_superuser is False
    assert not TraceEvent.objects.filter(decision_id=did, type="write").exists()


@pytest.mark.parametrize("definition", [SESSIONS_PRODUCT, TOKENS_PRODUCT], ids=["sessions", "tokens"])
def test_read_products_over_sessions_and_tokens_do_not_run(
    definition: dict[str, Any], staff: Any, make_agent: Any
) -> None:
    user, _ = staff
    superuser = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(superuser)  # a session key worth stealing
    agent_tokens.personal_token_create(actor=SYSTEM, user=superuser)
    assert Session.objects.exists() and PersonalToken.objects.exists()
    agent, key = make_agent("reader")
    _saved_before_the_rule(definition, ProductStatus.PUBLISHED)
    product_definitions.product_grant(
        actor=SYSTEM, product_id=definition["product_id"], agent_id=agent.agent_id
    )
    api = AgentClient(key)
    did = api.post(
        "/api/v1/decisions", {"intent": "ops.session.read", "automation_mode": "autonomous"}
    ).json()["decision_id"]
    response = api.post(
        f"/api/v1/decisions/{did}/read",
        {"product": definition["product_id"], "purpose": "ops", "allow_multiple": True},
    )
    assert response.status_code == 409 and response.json()["error"]["code"] == "invalid_state"
    assert "records" not in response.json()
    assert not TraceEvent.objects.filter(decision_id=did, type="read").exists()


def test_the_database_refuses_the_products_role_even_when_the_app_check_is_bypassed(
    staff: Any, make_agent: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth: with the application's check switched off, PostgreSQL itself refuses
    the products role every table outside the business schema."""
    user, _ = staff
    agent, _ = make_agent("bypass-agent")
    monkeypatch.setattr(engine, "builtin_table_refusal", lambda table: None)
    monkeypatch.setattr(product_definitions, "builtin_table_refusal", lambda table: None)
    product_definitions.product_create(
        actor=SYSTEM,
        product_id="users_admin_v1",
        definition={**SUPERUSER_PRODUCT, "table": "public.auth_user"},
    )
    product_definitions.product_publish(actor=SYSTEM, product_id="users_admin_v1")
    product_definitions.product_grant(actor=SYSTEM, product_id="users_admin_v1", agent_id=agent.agent_id)
    actor = Actor.for_agent(agent)
    decision = decision_services.decision_create(
        actor=actor, intent="ops.user.promote", automation_mode="autonomous"
    )
    from tracemem_core.errors import InvalidState

    with pytest.raises(InvalidState, match="the data source refused the statement"):
        product_writes.decision_write(
            actor=actor,
            decision_id=decision.decision_id,
            product="users_admin_v1",
            purpose="ops",
            keys={"id": user.pk},
            mutation={"fields": {"is_superuser": True}},
        )
    user.refresh_from_db()
    assert user.is_superuser is False
    # the decision's transaction (and the app role) is intact after the refusal
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        assert cursor.fetchone() == (role_names()[0],)
    decision.refresh_from_db()
    assert decision.event_count == 1


def test_builtin_products_run_as_the_products_role_and_write_with_their_trace_event(
    make_agent: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app_role, products_role = role_names()
    demo_tables_create(reset=True)
    owner_sql(
        "CREATE OR REPLACE VIEW tracemem_data.whoami AS SELECT 1 AS id, current_user::text AS who",
        "GRANT SELECT ON tracemem_data.whoami TO " + products_role,
    )
    agent, _ = make_agent("whoami-agent")
    product_demo.products_seed_demo(actor=SYSTEM, agent=agent)
    product_definitions.product_create(
        actor=SYSTEM,
        product_id="whoami_v1",
        definition={
            "operation": "read",
            "table": "whoami",
            "fields": [
                {"name": "id", "type": "integer", "primary_key": True},
                {"name": "who", "type": "string"},
            ],
            "allowed_purposes": ["testing"],
        },
    )
    product_definitions.product_publish(actor=SYSTEM, product_id="whoami_v1")
    product_definitions.product_grant(actor=SYSTEM, product_id="whoami_v1", agent_id=agent.agent_id)
    actor = Actor.for_agent(agent)
    decision = decision_services.decision_create(
        actor=actor, intent="ops.role.check", automation_mode="autonomous"
    )
    read = product_reads.decision_read(
        actor=actor, decision_id=decision.decision_id, product="whoami_v1", purpose="testing"
    )
    assert read["records"] == [{"id": 1, "who": products_role}]
    written = product_writes.decision_write(
        actor=actor,
        decision_id=decision.decision_id,
        product="pg_orders_insert_v1",
        purpose="order_processing",
        mutation={"data": {"customer_id": 3, "amount": "9.99"}},
    )
    assert written["affected_rows"] == 1
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        assert cursor.fetchone() == (app_role,)
    assert TraceEvent.objects.get(event_id=written["event_id"]).type == "write"


def test_seed_demo_puts_customers_and_orders_in_the_business_schema() -> None:
    demo_tables_create(reset=True)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_name IN ('customers', 'orders') ORDER BY table_name"
        )
        visible = cursor.fetchall()
    # The app role sees the tables' names only through the products role's privileges: none of its own.
    assert visible == []
    assert owner_sql(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_name IN ('customers', 'orders') ORDER BY table_name"
    ) == [("tracemem_data", "customers"), ("tracemem_data", "orders")]


def test_seed_demo_without_the_owner_says_where_to_run_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run where only the app role is configured (a web container), seed_demo cannot create tables."""
    from django.conf import settings
    from django.core.management import CommandError, call_command

    app = {**settings.MIGRATION_DATABASE, "USER": role_names()[0], "PASSWORD": ""}
    monkeypatch.setattr(settings, "MIGRATION_DATABASE", app)
    with pytest.raises(CommandError, match="seed_demo creates its tables as the owner: run it where "):
        call_command("seed_demo")
