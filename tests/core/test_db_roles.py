"""Least-privilege database roles (issue 11, docs/contract/interfaces.md): the server runs as an app role that owns
nothing, and the protections of the trace hold against that role even when it is driven by hand
with ``psql`` — the finding "the server's own role can rewrite history"."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection

from decisions import services
from decisions.models import Decision, TraceEvent
from tests.conftest import OWNER_USER, owner_dsn, owner_sql, psql_as_app, role_names
from tracemem_core.actor import Actor

APPEND_ONLY = ("decisions_traceevent", "decisions_receipt", "decisions_decisionrecord", "audit_auditentry")
PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")


def _privileges(role: str, table: str) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p FROM unnest(%s::text[]) AS p WHERE has_table_privilege(%s, %s, p)",
            [list(PRIVILEGES), role, table],
        )
        return {row[0] for row in cursor.fetchall()}


def _owner_rows(sql: str, params: Any = None) -> list[Any]:
    with psycopg.connect(owner_dsn(), autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def _drop_roles(*names: str) -> None:
    with psycopg.connect(owner_dsn(), autocommit=True) as conn:
        for name in names:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone():
                conn.execute(psycopg.sql.SQL("DROP OWNED BY {}").format(psycopg.sql.Identifier(name)))
                conn.execute(psycopg.sql.SQL("DROP ROLE {}").format(psycopg.sql.Identifier(name)))


@pytest.mark.django_db
def test_the_suite_runs_as_the_app_role_which_owns_nothing() -> None:
    app_role, _ = role_names()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_user, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user"
        )
        assert cursor.fetchone() == (app_role, False, False, False)
        cursor.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user) AND n.nspname NOT LIKE 'pg_temp%%'"
        )
        assert cursor.fetchone() == (0,)
        cursor.execute("SELECT has_schema_privilege(current_user, 'public', 'CREATE')")
        assert cursor.fetchone() == (False,)


@pytest.mark.django_db
def test_app_role_has_only_select_and_insert_on_append_only_tables() -> None:
    app_role, _ = role_names()
    for table in APPEND_ONLY:
        assert _privileges(app_role, table) == {"SELECT", "INSERT"}, table
    for table in connection.introspection.django_table_names(only_existing=True):
        granted = _privileges(app_role, table)
        assert not granted & {"TRUNCATE", "REFERENCES", "TRIGGER"}, table
        assert "SELECT" in granted, table


@pytest.mark.django_db
def test_products_role_reaches_only_the_business_schema() -> None:
    _, products_role = role_names()
    for table in connection.introspection.django_table_names(only_existing=True):
        assert _privileges(products_role, table) == set(), table
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT has_schema_privilege(%s, 'tracemem_data', 'USAGE'), "
            "has_schema_privilege(%s, 'tracemem_data', 'CREATE')",
            [products_role, products_role],
        )
        assert cursor.fetchone() == (True, False)


@pytest.mark.django_db
def test_db_roles_dry_run_prints_the_sql_and_changes_nothing(capsys: Any) -> None:
    app_role, _ = role_names()
    fresh_app, fresh_products = f"{app_role}_dry", f"{app_role}_dryp"
    call_command("db_roles", app_user=fresh_app, products_user=fresh_products, dry_run=True)
    out = capsys.readouterr().out
    assert f'CREATE ROLE "{fresh_app}" LOGIN' in out
    assert f'CREATE ROLE "{fresh_products}" NOLOGIN' in out
    assert (
        'GRANT SELECT, INSERT ON "audit_auditentry", "decisions_decisionrecord", "decisions_receipt", '
        f'"decisions_traceevent", "receiptlog_checkpoint", "receiptlog_logleaf" TO "{fresh_app}"' in out
    )
    assert f'GRANT USAGE ON SCHEMA "tracemem_data" TO "{fresh_products}"' in out
    assert "TRUNCATE" not in out.replace("REVOKE ALL", "")
    assert (
        _owner_rows("SELECT rolname FROM pg_roles WHERE rolname IN (%s, %s)", [fresh_app, fresh_products])
        == []
    )


@pytest.mark.django_db
def test_db_roles_creates_missing_roles_and_is_idempotent(capsys: Any) -> None:
    app_role, _ = role_names()
    fresh_app, fresh_products = f"{app_role}_new", f"{app_role}_newp"
    _drop_roles(fresh_app, fresh_products)
    try:
        for _ in range(2):
            call_command("db_roles", app_user=fresh_app, products_user=fresh_products)
        assert _owner_rows(
            "SELECT rolname, rolcanlogin, rolsuper, rolinherit FROM pg_roles WHERE rolname IN (%s, %s) ORDER BY rolname",
            [fresh_app, fresh_products],
        ) == [(fresh_app, True, False, False), (fresh_products, False, False, True)]
        for table in APPEND_ONLY:
            assert _privileges(fresh_app, table) == {"SELECT", "INSERT"}
        assert _privileges(fresh_app, "auth_user") == {"SELECT", "INSERT", "UPDATE", "DELETE"}
        assert _privileges(fresh_products, "auth_user") == set()
        # The app role may become the products role (SET ROLE) but does not inherit its privileges.
        assert _owner_rows(
            "SELECT pg_has_role(%s, %s, 'MEMBER'), pg_has_role(%s, %s, 'USAGE')",
            [fresh_app, fresh_products, fresh_app, fresh_products],
        ) == [(True, False)]
    finally:
        _drop_roles(fresh_app, fresh_products)


@pytest.mark.django_db
def test_db_roles_refuses_to_make_the_owner_or_a_superuser_the_app_role() -> None:
    with pytest.raises(CommandError, match=f"{OWNER_USER} is the owner"):
        call_command("db_roles", app_user=OWNER_USER)
    superuser = f"{role_names()[0]}_super"
    _drop_roles(superuser)
    with psycopg.connect(owner_dsn(), autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE ROLE {} SUPERUSER").format(psycopg.sql.Identifier(superuser)))
    try:
        with pytest.raises(
            CommandError, match=f"{superuser} is a superuser, which bypasses every protection"
        ):
            call_command("db_roles", app_user=superuser)
    finally:
        _drop_roles(superuser)


# --- the app role, driven by hand ---------------------------------------------------------------


def _closed_decision(make_agent: Any, action: str = "abort") -> Decision:
    agent, _ = make_agent("psql-agent")
    actor = Actor.for_agent(agent)
    decision = services.decision_create(
        actor=actor, intent="code.refactor.execute", automation_mode="autonomous"
    )
    services.decision_add_context(actor=actor, decision_id=decision.decision_id, context={"step": 1})
    return services.decision_close(actor=actor, decision_id=decision.decision_id, action=action)


def _snapshot() -> list[Any]:
    return _owner_rows(
        "SELECT d.decision_id, d.status, d.event_count, d.trace_head, d.closed_at, "
        "(SELECT json_agg(json_build_array(e.event_id, e.seq, e.payload, e.hash) ORDER BY e.seq) "
        "   FROM decisions_traceevent e WHERE e.decision_id = d.decision_id), "
        "(SELECT r.receipt_data::text || r.signature FROM decisions_receipt r WHERE r.decision_id = d.decision_id) "
        "FROM decisions_decision d ORDER BY d.decision_id"
    )


ATTACKS = {
    "update event": ("UPDATE decisions_traceevent SET payload = '{}'::jsonb", "permission denied"),
    "delete event": ("DELETE FROM decisions_traceevent", "permission denied"),
    "truncate events": ("TRUNCATE decisions_traceevent", "permission denied"),
    "disable trigger": ("ALTER TABLE decisions_traceevent DISABLE TRIGGER ALL", "must be owner"),
    "disable user triggers": ("ALTER TABLE decisions_traceevent DISABLE TRIGGER USER", "must be owner"),
    "replica mode": (
        "SET session_replication_role = replica; DELETE FROM decisions_traceevent",
        'permission denied to set parameter "session_replication_role"',
    ),
    "pgtrigger ignore": (
        "SET pgtrigger.ignore = '{pgtrigger_append_only_6e29b,pgtrigger_no_truncate_f25db,"
        "decisions_traceevent:pgtrigger_append_only_6e29b}'; UPDATE decisions_traceevent SET payload = '{}'::jsonb",
        "permission denied",
    ),
    "update receipt": ("UPDATE decisions_receipt SET signature = 'forged'", "permission denied"),
    "delete receipt": ("DELETE FROM decisions_receipt", "permission denied"),
    "truncate receipts": ("TRUNCATE decisions_receipt", "permission denied"),
    "drop trigger": (
        "DROP TRIGGER decisions_traceevent_append_only ON decisions_traceevent",
        "must be owner",
    ),
    "replace trigger function": (
        "CREATE OR REPLACE FUNCTION tracemem_refuse_change() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RETURN NEW; END $$",
        "permission denied for schema public",
    ),
    "shadow function": (
        "CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE sql AS $$ SELECT now() $$",
        "permission denied for schema public",
    ),
    "reopen closed decision": ("UPDATE decisions_decision SET status = 'committed'", "is closed"),
    "delete decision": ("DELETE FROM decisions_decision", "cannot be deleted"),
    "become superuser": ("ALTER ROLE CURRENT_USER SUPERUSER", "must be superuser"),
    "become the owner": (f'SET ROLE "{OWNER_USER}"', "permission denied to set role"),
    "run a program": ("COPY (SELECT 1) TO PROGRAM 'id'", "pg_execute_server_program"),
    "write a server file": ("COPY decisions_traceevent TO '/tmp/trace.csv'", "pg_write_server_files"),
    "read a server file": (
        "SELECT pg_read_file('/etc/passwd')",
        "permission denied for function pg_read_file",
    ),
    "import a file as a large object": (
        "SELECT lo_import('/etc/passwd')",
        "permission denied for function lo_import",
    ),
    "rewind a sequence": ("SELECT setval('auth_user_id_seq', 1)", "permission denied for sequence"),
    "load an extension": ("CREATE EXTENSION dblink", "permission denied to create extension"),
    "read password hashes of roles": (
        "SELECT rolpassword FROM pg_authid",
        "permission denied for table pg_authid",
    ),
    "products role reads TraceMem's tables": (
        'SET ROLE "{products_role}"; SELECT count(*) FROM public.auth_user',
        "permission denied for table auth_user",
    ),
    # A temporary table named like a TraceMem table would come first on the search path.
    "shadow a table": (
        "CREATE TEMP TABLE decisions_decision (decision_id text, status text, event_count int, trace_head text)",
        "permission denied to create temporary tables",
    ),
}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("attack", list(ATTACKS))
def test_app_role_cannot_rewrite_history_with_psql(make_agent: Any, attack: str) -> None:
    _closed_decision(make_agent)
    before = _snapshot()
    sql, refusal = ATTACKS[attack]
    result = psql_as_app(sql.replace("{products_role}", role_names()[1]))
    assert result.returncode != 0, result.stdout
    assert refusal in result.stderr
    assert _snapshot() == before


@pytest.mark.django_db(transaction=True)
def test_app_role_cannot_append_to_a_closed_trace_or_rewind_an_open_one(make_agent: Any) -> None:
    closed = _closed_decision(make_agent)
    agent = closed.agent
    open_decision = services.decision_create(
        actor=Actor.for_agent(agent), intent="code.refactor.execute", automation_mode="autonomous"
    )
    services.decision_add_context(
        actor=Actor.for_agent(agent), decision_id=open_decision.decision_id, context={"step": 1}
    )
    open_decision.refresh_from_db()
    first = TraceEvent.objects.get(decision=open_decision, seq=1)
    before = _snapshot()
    refused = {
        "append after close": (
            "INSERT INTO decisions_traceevent (event_id, decision_id, seq, type, timestamp, actor, payload, prev_hash, hash) "
            f"VALUES ('EVT_FORGED', '{closed.decision_id}', {closed.event_count + 1}, 'context', now(), '{{}}', '{{}}', "
            f"'{closed.trace_head}', 'x')",
            "is closed",
        ),
        "rewind the head": (
            f"UPDATE decisions_decision SET event_count = 1, trace_head = '{first.hash}' "
            f"WHERE decision_id = '{open_decision.decision_id}'",
            "only move forward",
        ),
        "skip a seq": (
            "INSERT INTO decisions_traceevent (event_id, decision_id, seq, type, timestamp, actor, payload, prev_hash, hash) "
            f"VALUES ('EVT_FORGED', '{open_decision.decision_id}', 4, 'context', now(), '{{}}', '{{}}', "
            f"'{open_decision.trace_head}', 'x')",
            "seq 4",
        ),
        "close without a close event": (
            f"UPDATE decisions_decision SET status = 'committed', closed_at = now() "
            f"WHERE decision_id = '{open_decision.decision_id}'",
            "close event",
        ),
        "insert a closed decision": (
            "INSERT INTO decisions_decision (decision_id, agent_id, intent, automation_mode, actor, metadata, status, "
            "created_at, event_count, trace_head) VALUES ('TMEM_FORGED', "
            f"'{agent.agent_id}', 'a.b', 'autonomous', 'x', '{{}}', 'committed', now(), 3, 'x')",
            "must start open",
        ),
        "close without a receipt": (
            "BEGIN; INSERT INTO decisions_traceevent (event_id, decision_id, seq, type, timestamp, actor, payload, "
            f"prev_hash, hash) VALUES ('EVT_FORGED', '{open_decision.decision_id}', 3, 'close', now(), '{{}}', '{{}}', "
            f"'{open_decision.trace_head}', 'x'); COMMIT",
            "close event",
        ),
        "close without a receipt (valid close event)": (
            "BEGIN; INSERT INTO decisions_traceevent (event_id, decision_id, seq, type, timestamp, actor, payload, "
            f"prev_hash, hash) VALUES ('EVT_FORGED', '{open_decision.decision_id}', 3, 'close', now(), '{{}}', "
            """'{"action": "commit", "status": "committed"}', """
            f"'{open_decision.trace_head}', 'x'); COMMIT",
            "without its receipt",
        ),
    }
    for name, (sql, refusal) in refused.items():
        result = psql_as_app(sql)
        assert result.returncode != 0 and refusal in result.stderr, (name, result.stderr)
    assert _snapshot() == before


@pytest.mark.django_db(transaction=True)
def test_the_triggers_refuse_even_the_owner_and_ignore_pgtrigger_ignore(make_agent: Any) -> None:
    """The owner has every privilege, so only the triggers stand in its way; pgtrigger's session
    switch (which let any session skip the old triggers) no longer means anything."""
    _closed_decision(make_agent)
    before = _snapshot()
    bypass = (
        "SET pgtrigger.ignore = '{pgtrigger_append_only_6e29b,pgtrigger_no_truncate_f25db,"
        "decisions_traceevent:pgtrigger_append_only_6e29b}'"
    )
    for sql, refusal in (
        (
            "UPDATE decisions_traceevent SET payload = '{}'::jsonb",
            "decisions_traceevent is append-only: UPDATE",
        ),
        ("DELETE FROM decisions_traceevent", "decisions_traceevent is append-only: DELETE"),
        ("TRUNCATE decisions_traceevent CASCADE", "is append-only: TRUNCATE"),
        ("UPDATE decisions_receipt SET signature = 'forged'", "decisions_receipt is append-only: UPDATE"),
        ("UPDATE decisions_decision SET status = 'committed'", "is closed (aborted): its row is frozen"),
    ):
        with psycopg.connect(owner_dsn(), autocommit=True) as conn:
            conn.execute(bypass)
            with pytest.raises(psycopg.Error, match=re.escape(refusal)):
                conn.execute(sql)
    assert _snapshot() == before


PGTRIGGER_IGNORE = (
    "SET pgtrigger.ignore = '{pgtrigger_frozen_version_content_0140c,pgtrigger_frozen_version_delete_7f482,"
    "pgtrigger_frozen_product_content_8d4dd,pgtrigger_frozen_product_delete_503aa}'; "
)


def _published_policy_and_product() -> list[Any]:
    from policies.services import authoring as policy_authoring
    from products.services import definitions as product_definitions

    system = Actor.system("test")
    policy_authoring.policy_create(
        actor=system,
        policy_id="cap_v1",
        definition={"name": "Cap", "rules": [{"name": "ok", "when": "true", "outcome": "deny"}]},
    )
    policy_authoring.policy_publish(actor=system, policy_id="cap_v1")
    product_definitions.product_create(
        actor=system,
        product_id="crm_customers_v1",
        definition={
            "operation": "read",
            "table": "customers",
            "fields": [{"name": "id", "column": "id", "type": "integer", "primary_key": True}],
            "allowed_purposes": ["support"],
        },
    )
    product_definitions.product_publish(actor=system, product_id="crm_customers_v1")
    return _frozen_rows()


def _frozen_rows() -> list[Any]:
    return _owner_rows(
        "SELECT row_to_json(v)::text FROM policies_policyversion v UNION ALL "
        "SELECT row_to_json(p)::text FROM products_dataproduct p ORDER BY 1"
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("sql", "refusal"),
    [
        ("UPDATE policies_policyversion SET rules = '[]'", "is frozen: published versions cannot change"),
        ("UPDATE policies_policyversion SET status = 'draft'", "is frozen: published versions cannot change"),
        ("UPDATE policies_policyversion SET published_by = 'someone else'", "is frozen"),
        ("DELETE FROM policies_policyversion", "is frozen: it cannot be deleted"),
        ("UPDATE products_dataproduct SET source_table = 'auth_user'", "is published and frozen"),
        ("UPDATE products_dataproduct SET status = 'draft'", "is published and frozen"),
        ("DELETE FROM products_dataproduct", "is published and frozen: it cannot be deleted"),
    ],
)
def test_published_policy_and_product_versions_stay_frozen_whatever_the_session_says(
    sql: str, refusal: str
) -> None:
    """Agents rely on a published version's hash; the app role cannot change one, not even with
    pgtrigger's session switch that used to make the old triggers step aside."""
    before = _published_policy_and_product()
    for bypass in ("", PGTRIGGER_IGNORE):
        result = psql_as_app(bypass + sql)
        assert result.returncode != 0 and refusal in result.stderr, (bypass, result.stderr)
        with psycopg.connect(owner_dsn(), autocommit=True) as conn:
            conn.execute(bypass or "SELECT 1")
            with pytest.raises(psycopg.Error, match=re.escape(refusal)):
                conn.execute(sql)
    assert _frozen_rows() == before


@pytest.mark.django_db(transaction=True)
def test_tables_named_like_tracemems_on_the_search_path_do_not_fool_the_triggers(make_agent: Any) -> None:
    """The trigger functions name TraceMem's tables without a schema; a session that may create a
    temporary table (the owner here; the app role may not) puts one of the same name first on its
    search path. The functions pin their own search path, so the triggers still read the real rows."""
    closed = _closed_decision(make_agent)
    open_decision = services.decision_create(
        actor=Actor.for_agent(closed.agent), intent="code.refactor.execute", automation_mode="autonomous"
    )
    before = _snapshot()
    shadows = (
        "CREATE TEMP TABLE decisions_decision (decision_id text, status text, event_count int, trace_head text); "
        f"INSERT INTO decisions_decision VALUES ('{closed.decision_id}', 'open', {closed.event_count}, "
        f"'{closed.trace_head}'), ('{open_decision.decision_id}', 'committed', 1, '{open_decision.trace_head}'); "
        "CREATE TEMP TABLE decisions_receipt (decision_id text); "
        f"INSERT INTO decisions_receipt VALUES ('{open_decision.decision_id}')"
    )
    event = (
        "INSERT INTO decisions_traceevent (event_id, decision_id, seq, type, timestamp, actor, payload, prev_hash, hash) "
        "VALUES ('EVT_FORGED', '{decision}', {seq}, '{type}', now(), '{{}}', '{payload}', '{prev}', 'x')"
    )
    attacks = {
        "append after close": (
            event.format(
                decision=closed.decision_id,
                seq=closed.event_count + 1,
                type="context",
                payload="{}",
                prev=closed.trace_head,
            ),
            "is closed",
        ),
        "forge a receipt for an open decision": (
            "INSERT INTO public.decisions_receipt (decision_id, receipt_data, signature, key_id, algorithm, signed_at) "
            f'VALUES (\'{open_decision.decision_id}\', \'{{"decision_id": "{open_decision.decision_id}", '
            f'"status": "committed", "event_count": 1, "trace_head": "{open_decision.trace_head}"}}\', '
            "'forged', 'k', 'ed25519', now())",
            "must sign its closed row",
        ),
        "close without a receipt": (
            event.format(
                decision=open_decision.decision_id,
                seq=2,
                type="close",
                payload='{"action": "commit", "status": "committed"}',
                prev=open_decision.trace_head,
            ),
            "without its receipt",
        ),
    }
    for name, (sql, refusal) in attacks.items():
        with psycopg.connect(owner_dsn()) as conn:
            conn.execute(shadows)
            with pytest.raises(psycopg.Error, match=re.escape(refusal)):
                conn.execute(sql)
                conn.commit()
        assert _snapshot() == before, name


@pytest.mark.django_db
def test_every_trust_function_pins_its_search_path() -> None:
    """What the test above proves for three attacks, for every function behind a trust trigger."""
    functions = _owner_rows(
        "SELECT p.proname, p.proconfig FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid "
        "WHERE NOT t.tgisinternal GROUP BY p.proname, p.proconfig ORDER BY 1"
    )
    assert functions, "no trigger functions found"
    schema = _owner_rows("SELECT current_schema()")[0][0]
    for name, config in functions:
        assert config == [f"search_path=pg_catalog, {schema}, pg_temp"], name


@pytest.mark.django_db
def test_appending_an_event_is_one_insert_and_the_database_advances_the_head(agent_actor: Actor) -> None:
    """The chain trigger checks the link and moves the decision's head itself: no UPDATE round trip."""
    from django.test.utils import CaptureQueriesContext

    decision = services.decision_create(
        actor=agent_actor, intent="code.refactor.execute", automation_mode="autonomous"
    )
    with CaptureQueriesContext(connection) as queries:
        event = services.trace_append(
            decision=decision, type="context", actor=agent_actor, payload={"step": 1}
        )
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["INSERT"]
    stored = Decision.objects.get(pk=decision.pk)
    assert (
        (stored.event_count, stored.trace_head)
        == (2, event.hash)
        == (decision.event_count, decision.trace_head)
    )


@pytest.mark.django_db(transaction=True)
def test_migrate_runs_as_the_owner_and_reapplies_the_grants() -> None:
    """The upgrade path: `manage.py migrate` with the app role in DATABASE_URL and the owner in
    MIGRATION_DATABASE_URL migrates as the owner, then puts the app role's grants back to exactly
    its share (a privilege added by hand disappears)."""
    app_role, products_role = role_names()
    owner_sql(f'GRANT TRUNCATE ON auth_user TO "{app_role}"')
    assert "TRUNCATE" in _privileges(app_role, "auth_user")
    db = connection.settings_dict
    owner = settings.MIGRATION_DATABASE
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=settings.BASE_DIR,
        env={
            **os.environ,
            "DATABASE_URL": f"postgres://{app_role}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "MIGRATION_DATABASE_URL": f"postgres://{owner['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "TRACEMEM_PRODUCTS_ROLE": products_role,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"Grants of {app_role} and {products_role} re-applied (db_roles)." in result.stdout
    assert _privileges(app_role, "auth_user") == {"SELECT", "INSERT", "UPDATE", "DELETE"}
    assert _privileges(app_role, "decisions_traceevent") == {"SELECT", "INSERT"}


@pytest.mark.django_db
def test_append_only_tables_are_declared_and_their_triggers_always_fire() -> None:
    """The registry that drives the grants and the triggers that refuse changes name the same
    tables, and no trust trigger can be skipped by ``session_replication_role``."""
    from tracemem_core import dbroles

    triggers = _owner_rows(
        "SELECT c.relname, t.tgname, t.tgenabled FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "WHERE NOT t.tgisinternal AND (t.tgname LIKE 'tracemem%%' OR t.tgname LIKE '%%append_only' "
        "OR t.tgname LIKE '%%no_truncate')"
    )
    assert {table for table, name, _ in triggers if name == f"{table}_append_only"} == set(
        dbroles.APPEND_ONLY_TABLES
    )
    assert {table for table, name, _ in triggers if name == f"{table}_no_truncate"} == set(
        dbroles.APPEND_ONLY_TABLES
    )
    assert [(table, name) for table, name, enabled in triggers if enabled != "A"] == []
