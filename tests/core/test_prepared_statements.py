"""Our own plain hot statements run as server-side-bound prepared statements on PostgreSQL (issue 17,
docs/performance.md section 19); the ORM's statements stay client-side bound and unprepared.

Seen from the server: ``pg_prepared_statements`` lists what the request's connection has prepared.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import IntegrityError, NotSupportedError, connection, transaction
from django.test.utils import CaptureQueriesContext

from decisions import selectors as decision_selectors
from decisions import services as decision_services
from decisions.models import Decision, EventType, TraceEvent
from policies import selectors as policy_selectors
from policies.services import authoring as policy_authoring
from tests.conftest import AgentClient, owner_sql, role_names
from tests.fault_helpers import terminate_backend
from tests.policies.test_doors import CODE_POLICY
from tracemem_core.actor import Actor
from tracemem_core.postgresql import prepared_cursor

ROOT = Path(__file__).resolve().parents[2]
SYSTEM = Actor.system("test")


def _numbered(sql: str) -> str:
    """The statement as psycopg sends it to the server: ``%s`` → ``$1``, ``$2``, …"""
    n = itertools.count(1)
    return re.sub(r"%s", lambda _: f"${next(n)}", sql)


# Every plain statement of the hot path: an agent's decision read and locked, the decision's row
# with its created event, one event, a trace page, the lock with the evaluation's grant and version.
HOT_STATEMENTS = {
    "read": _numbered(decision_selectors._READ_SQL),
    "lock": _numbered(decision_selectors._LOCK_SQL),
    "create": _numbered(decision_services._INSERT_CREATED_SQL),
    "insert event": _numbered(decision_services._INSERT_SQL + decision_services._INSERT_ROW),
    "trace page": _numbered(decision_selectors._TRACE_JSON_SQL),
    "lock with evaluation target": _numbered(policy_selectors.EVALUATION_JOIN.sql),
}


def _prepared() -> dict[str, str]:
    """The connection's protocol-level prepared statements: statement text → name."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement, name FROM pg_prepared_statements WHERE NOT from_sql")
        return dict(cursor.fetchall())


def _agent_with_policy(make_agent: Any) -> tuple[Any, AgentClient]:
    agent, key = make_agent()
    policy_authoring.policy_create(actor=SYSTEM, policy_id="prep_v1", definition=CODE_POLICY)
    policy_authoring.policy_grant(actor=SYSTEM, policy_id="prep_v1", agent_id=agent.agent_id)
    policy_authoring.policy_publish(actor=SYSTEM, policy_id="prep_v1")
    return agent, AgentClient(key)


def _hot_requests(api: AgentClient) -> dict[str, Any]:
    """create, append, evaluate, get, read the trace: what each answered."""
    created = api.post("/api/v1/decisions", {"intent": "code.refactor.execute", "automation_mode": "propose"})
    assert created.status_code == 201, created.content
    did = created.json()["decision_id"]
    appended = api.post(f"/api/v1/decisions/{did}/context", {"context": {"step": 1, "note": "ünïcode"}})
    assert appended.status_code == 201, appended.content
    evaluated = api.post(
        f"/api/v1/decisions/{did}/evaluate", {"policy_id": "prep_v1", "inputs": {"change_type": "refactor"}}
    )
    assert evaluated.status_code == 200, evaluated.content
    got = api.get(f"/api/v1/decisions/{did}")
    assert got.status_code == 200, got.content
    trace = api.get(f"/api/v1/decisions/{did}/trace")
    assert trace.status_code == 200, trace.content
    return {"decision_id": did, "evaluated": evaluated.json(), "trace": trace.json()}


@pytest.mark.django_db
def test_the_hot_statements_are_prepared_once_and_reused_and_nothing_else_is(make_agent: Any) -> None:
    _, api = _agent_with_policy(make_agent)
    first = _hot_requests(api)
    prepared = _prepared()
    # Exactly ours: every hot statement, and none of the ORM's (they stay client-side bound).
    assert set(prepared) == set(HOT_STATEMENTS.values()), sorted(prepared)
    second = _hot_requests(api)
    assert _prepared() == prepared  # the same statements under the same names: reused, not prepared again
    assert [e["type"] for e in first["trace"]["events"]] == ["created", "context", "evaluate"]
    assert [e["type"] for e in second["trace"]["events"]] == ["created", "context", "evaluate"]
    assert first["evaluated"]["outcome"] == second["evaluated"]["outcome"] == "requires_exception"


@pytest.mark.django_db
def test_prepared_statements_pass_through_djangos_cursor_wrappers(make_agent: Any) -> None:
    agent, api = _agent_with_policy(make_agent)
    did = api.post(
        "/api/v1/decisions", {"intent": "code.refactor.execute", "automation_mode": "propose"}
    ).json()["decision_id"]
    seen: list[str] = []

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record), CaptureQueriesContext(connection) as queries:
        assert api.post(f"/api/v1/decisions/{did}/context", {"context": {"a": 1}}).status_code == 201
    insert_one = decision_services._INSERT_SQL + decision_services._INSERT_ROW
    assert decision_selectors._LOCK_SQL in seen and insert_one in seen  # execute wrappers (outage.py's too)
    logged = [q["sql"] for q in queries]
    assert any(sql.startswith(decision_selectors._LOCK_SQL.split(" WHERE ")[0]) for sql in logged), logged
    assert any(sql.startswith(decision_services._INSERT_SQL) for sql in logged), logged
    # A database error is still Django's: the same decision inserted twice is an IntegrityError.
    twin = Decision(
        decision_id=did, agent=agent, intent="code.refactor.execute", automation_mode="propose", actor="x"
    )
    (created,) = decision_services._chained(twin, EventType.CREATED, Actor.for_agent(agent), [{}], None)
    before = Decision.objects.count()
    with pytest.raises(IntegrityError) as raised, transaction.atomic():
        decision_services._insert_decision(twin, created)
    assert type(raised.value.__cause__).__name__ == "UniqueViolation"
    assert Decision.objects.count() == before
    # psycopg drops the session's prepared statements on a rollback (a savepoint's too); the next
    # call prepares what it runs again.
    assert HOT_STATEMENTS["create"] not in _prepared()
    assert api.post(f"/api/v1/decisions/{did}/context", {"context": {"a": 2}}).status_code == 201
    assert HOT_STATEMENTS["lock"] in _prepared() and HOT_STATEMENTS["insert event"] in _prepared()


@pytest.mark.django_db(transaction=True)
def test_a_connection_cut_before_the_prepared_lock_is_503_and_nothing_is_applied(
    make_agent: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tracemem_core.postgresql.base import DatabaseWrapper

    _, api = _agent_with_policy(make_agent)
    did = api.post(
        "/api/v1/decisions", {"intent": "code.refactor.execute", "automation_mode": "propose"}
    ).json()["decision_id"]
    assert (
        api.post(f"/api/v1/decisions/{did}/context", {"context": {"a": 1}}).status_code == 201
    )  # prepared now
    original = DatabaseWrapper.prepared_cursor

    def cut_then_continue(self: Any) -> Any:
        terminate_backend(self.connection.info.backend_pid)
        return original(self)

    monkeypatch.setattr(DatabaseWrapper, "prepared_cursor", cut_then_continue)
    response = api.post(f"/api/v1/decisions/{did}/context", {"context": {"a": 2}})
    assert response.status_code == 503, response.content
    error = response.json()["error"]
    assert error["code"] == "unavailable" and error["details"]["applied"] is False
    monkeypatch.undo()
    assert TraceEvent.objects.filter(decision_id=did).count() == 2
    assert api.post(f"/api/v1/decisions/{did}/context", {"context": {"a": 3}}).status_code == 201
    assert list(TraceEvent.objects.filter(decision_id=did).values_list("seq", flat=True).order_by("seq")) == [
        1,
        2,
        3,
    ]


@pytest.fixture
def probe_table() -> Iterator[str]:
    """A table the app role may read, whose column type the owner changes behind its back."""
    app_role, _ = role_names()
    owner_sql(
        "CREATE TABLE prep_probe (x integer)",
        "INSERT INTO prep_probe VALUES (7)",
        f'GRANT SELECT ON prep_probe TO "{app_role}"',
    )
    try:
        yield "SELECT x FROM prep_probe WHERE x = %s"
    finally:
        connection.close()  # its prepared statements go with it
        owner_sql("DROP TABLE prep_probe")


@pytest.mark.django_db(transaction=True)
def test_a_prepared_statement_whose_result_type_changed_is_prepared_again(probe_table: str) -> None:
    def run() -> Any:
        with prepared_cursor() as cursor:
            cursor.execute(probe_table, [7])
            return cursor.fetchone()

    assert run() == (7,)
    assert _numbered(probe_table) in _prepared()
    # Another session (a migration, say) changes the column's type: PostgreSQL refuses the old
    # statement ("cached plan must not change result type") on every execution until it is dropped.
    owner_sql("ALTER TABLE prep_probe ALTER x TYPE bigint")
    assert run() == (7,)  # outside a transaction: dropped, prepared again and run, at once
    owner_sql("ALTER TABLE prep_probe ALTER x TYPE integer")
    with pytest.raises(NotSupportedError), transaction.atomic():
        run()  # inside one the transaction is lost; its rollback drops the statements
    assert run() == (7,)


@pytest.mark.django_db
def test_without_a_prepare_threshold_the_hot_statements_are_not_prepared(make_agent: Any) -> None:
    # What TRACEMEM_DB_PREPARE=0 (or DB_CONN_MAX_AGE=0) leaves on the connection: psycopg prepares nothing.
    _, api = _agent_with_policy(make_agent)
    connection.ensure_connection()
    raw: Any = connection.connection
    assert raw.prepare_threshold is not None  # the suite's default: on
    raw.prepare_threshold = None
    try:
        first = _hot_requests(api)
        assert _prepared() == {}
    finally:
        raw.prepare_threshold = connection.settings_dict["OPTIONS"]["prepare_threshold"]
    second = _hot_requests(api)
    assert set(_prepared()) == set(HOT_STATEMENTS.values())
    assert [e["type"] for e in first["trace"]["events"]] == [e["type"] for e in second["trace"]["events"]]


def _database_options(**env: str) -> dict[str, Any]:
    code = "import json; from django.conf import settings; print(json.dumps(settings.DATABASES['default']['OPTIONS']))"
    environ = {**os.environ, "DJANGO_SETTINGS_MODULE": "tracemem_site.settings", **env}
    out = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); " + code],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_tracemem_db_prepare_switches_prepared_statements_on_and_off() -> None:
    assert _database_options().get("prepare_threshold") is not None  # on by default
    assert _database_options(TRACEMEM_DB_PREPARE="1").get("prepare_threshold") is not None
    # pgbouncer in transaction mode (before 1.21, or without max_prepared_statements): off.
    assert _database_options(TRACEMEM_DB_PREPARE="0").get("prepare_threshold") is None
    # A new connection per request would prepare every statement for one use: off.
    assert _database_options(DB_CONN_MAX_AGE="0").get("prepare_threshold") is None


# A statement the server no longer has (a pooler's DISCARD ALL / server_reset_query, PgBouncer before
# 1.22 in transaction mode) is prepared again outside a transaction: it was a 500 on every read of
# that connection until it closed (found by review).
@pytest.mark.django_db(transaction=True)
def test_a_statement_lost_by_the_server_is_prepared_again(make_agent: Any) -> None:
    _, key = make_agent()
    api = AgentClient(key)
    did = api.post(
        "/api/v1/decisions", {"intent": "code.refactor.execute", "automation_mode": "propose"}
    ).json()["decision_id"]
    assert api.get(f"/api/v1/decisions/{did}").status_code == 200  # _READ_SQL prepared now
    # The server forgets the session's statements behind psycopg's back (a pooler's reset query).
    connection.connection.pgconn.exec_(b"DEALLOCATE ALL")
    responses = [api.get(f"/api/v1/decisions/{did}") for _ in range(2)]
    assert [r.status_code for r in responses] == [200, 200], [r.content[:300] for r in responses]


@pytest.mark.django_db
def test_the_connection_keeps_no_client_bound_statement_text(make_agent: Any) -> None:
    """psycopg counts every statement towards preparing it, by its text, and kept the last hundred: a
    client-bound statement's text has its parameters written in (a batch of contexts: the whole batch)
    and is never prepared, so each batch stayed in memory on every pool thread's connection."""
    _, api = _agent_with_policy(make_agent)
    did = api.post(
        "/api/v1/decisions", {"intent": "code.refactor.execute", "automation_mode": "propose"}
    ).json()["decision_id"]
    for i in range(3):
        contexts = [{"note": f"batch-{i}-marker", "n": n} for n in range(20)]
        assert api.post(f"/api/v1/decisions/{did}/context", {"contexts": contexts}).status_code == 201
    counted = list(connection.connection._prepared._counts)  # pinned psycopg, as PreparedCursor
    assert not [q for q, _ in counted if b"-marker" in q], "a batch's text kept by the connection"
    # The server-side-bound ones are still counted and prepared as before.
    _hot_requests(api)
    assert set(_prepared()) == set(HOT_STATEMENTS.values())


# docs/performance.md §29: outside a transaction an append and an allowed evaluation are a read without
# a lock and one compare-and-swap insert, both prepared; a batch's insert is not (its text depends on
# its length).
UNLOCKED_STATEMENTS = {
    "read with version": _numbered(decision_selectors._READ_VERSIONED_SQL),
    "insert if unchanged": _numbered(
        decision_services._unchanged_insert_one_sql(decision_services.APPEND_UNCHANGED)
    ),
    "evaluation read with version": _numbered(policy_selectors.EVALUATION_JOIN.read_sql),
    "evaluation insert if unchanged": _numbered(
        decision_services._unchanged_insert_one_sql(policy_selectors.EVALUATION_UNCHANGED)
    ),
}


@pytest.mark.django_db(transaction=True)
def test_the_unlocked_statements_are_prepared_once_and_reused(make_agent: Any) -> None:
    agent, key = make_agent()
    allowing = {**CODE_POLICY, "default_outcome": "allow"}
    policy_authoring.policy_create(actor=SYSTEM, policy_id="prep_allow_v1", definition=allowing)
    policy_authoring.policy_grant(actor=SYSTEM, policy_id="prep_allow_v1", agent_id=agent.agent_id)
    policy_authoring.policy_publish(actor=SYSTEM, policy_id="prep_allow_v1")
    api = AgentClient(key)
    did = api.post(
        "/api/v1/decisions", {"intent": "code.refactor.execute", "automation_mode": "autonomous"}
    ).json()["decision_id"]

    def requests() -> None:
        assert api.post(f"/api/v1/decisions/{did}/context", {"context": {"a": 1}}).status_code == 201
        assert (
            api.post(f"/api/v1/decisions/{did}/context", {"contexts": [{"a": 1}, {"b": 2}]}).status_code
            == 201
        )
        evaluated = api.post(
            f"/api/v1/decisions/{did}/evaluate",
            {"policy_id": "prep_allow_v1", "inputs": {"change_type": "docs"}},
        )
        assert evaluated.status_code == 200 and evaluated.json()["outcome"] == "allow", evaluated.content

    requests()
    prepared = _prepared()
    assert set(UNLOCKED_STATEMENTS.values()) <= set(prepared), sorted(prepared)
    assert not [
        sql for sql in prepared if "VALUES" in sql and "unchanged" in sql
    ]  # the batch's: not prepared
    assert set(prepared) <= set(UNLOCKED_STATEMENTS.values()) | set(HOT_STATEMENTS.values()), sorted(prepared)
    requests()
    assert _prepared() == prepared  # the same statements under the same names: reused
    assert TraceEvent.objects.filter(decision_id=did).count() == 1 + 2 * 4
