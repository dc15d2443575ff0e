"""``decision_create`` on PostgreSQL is one statement (issue 17): the decision's row and its
``created`` event in one INSERT, run in autocommit when no transaction is open (no BEGIN, no COMMIT).
What it did before still holds: the database's triggers check the event and advance the decision,
nothing is left behind when any part fails, and the ``open`` count is counted once, after the commit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from decisions.models import Decision, TraceEvent
from decisions.selectors import event_as_dict
from decisions.services import decision_create
from tests.conftest import owner_sql
from tracemem_core import metrics
from tracemem_core.actor import Actor
from tracemem_verify.chain import verify_chain

pytestmark = pytest.mark.django_db(transaction=True)


def opened() -> float:
    return metrics.DECISIONS.labels("open")._value.get()


def post_create(key: str, intent: str) -> Any:
    return Client().post(
        "/api/v1/decisions",
        json.dumps({"intent": intent, "automation_mode": "autonomous", "metadata": {"n": 1}}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Agent {key}",
    )


def test_a_create_over_rest_is_one_statement_committed_by_itself(make_agent: Any) -> None:
    agent, key = make_agent()
    before = opened()
    with CaptureQueriesContext(connection) as queries:
        response = post_create(key, "deploy.service.api")
    assert response.status_code == 201, response.content
    ours = [
        q["sql"]
        for q in queries
        if "decisions_" in q["sql"] or q["sql"].strip().upper() in ("BEGIN", "COMMIT", "ROLLBACK")
    ]
    assert len(ours) == 1, ours
    assert "INSERT INTO decisions_decision" in ours[0] and "INSERT INTO decisions_traceevent" in ours[0]
    assert opened() == before + 1  # counted once, after the statement committed
    did = response.json()["decision_id"]
    row = Decision.objects.get(pk=did)
    event = TraceEvent.objects.get(decision=row)
    # the chain trigger saw the row inserted by the same statement and advanced it
    assert (row.event_count, row.trace_head, row.status) == (1, event.hash, "open")
    assert (event.seq, event.type, event.payload["metadata"]) == (1, "created", {"n": 1})
    assert verify_chain(did, [event_as_dict(event)]) is None


@pytest.fixture
def failing_event_insert() -> Iterator[None]:
    """A trigger that refuses the ``created`` event of intent ``fail.on.event``: the event's half of
    the create fails after the decision's row went in."""
    owner_sql(
        "CREATE FUNCTION test_refuse_event() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "RAISE EXCEPTION 'test: refused'; END $$",
        "CREATE TRIGGER test_refuse_event BEFORE INSERT ON decisions_traceevent FOR EACH ROW "
        "WHEN (NEW.payload->>'intent' = 'fail.on.event') EXECUTE FUNCTION test_refuse_event()",
    )
    try:
        yield
    finally:
        connection.close()  # no lock of ours in the way of the DROP
        owner_sql(
            "DROP TRIGGER test_refuse_event ON decisions_traceevent", "DROP FUNCTION test_refuse_event()"
        )


def test_a_failed_event_insert_leaves_no_decision_and_counts_nothing(
    make_agent: Any, failing_event_insert: None
) -> None:
    agent, _ = make_agent()
    before = opened()
    with pytest.raises(DatabaseError, match="test: refused"):
        decision_create(actor=Actor.for_agent(agent), intent="fail.on.event", automation_mode="autonomous")
    assert not Decision.objects.filter(intent="fail.on.event").exists()
    assert opened() == before
    # the connection is usable at once (no transaction left open) and the next create succeeds
    made = decision_create(
        actor=Actor.for_agent(agent), intent="fine.after.all", automation_mode="autonomous"
    )
    assert Decision.objects.get(pk=made.pk).event_count == 1
    assert opened() == before + 1


def test_inside_a_callers_transaction_it_commits_and_counts_with_it(make_agent: Any) -> None:
    agent, _ = make_agent()
    before = opened()
    with pytest.raises(RuntimeError), transaction.atomic():
        decision_create(actor=Actor.for_agent(agent), intent="rolled.back.here", automation_mode="autonomous")
        assert opened() == before  # not yet: the caller has not committed
        raise RuntimeError
    assert not Decision.objects.filter(intent="rolled.back.here").exists()
    assert opened() == before
    with transaction.atomic():
        decision_create(actor=Actor.for_agent(agent), intent="kept.with.caller", automation_mode="autonomous")
        assert opened() == before
    assert opened() == before + 1 and Decision.objects.filter(intent="kept.with.caller").exists()


@pytest.fixture
def cut_during_create() -> Iterator[None]:
    """A trigger that cuts the inserting session's own connection in the middle of the create's
    statement (intent ``cut.during.create``): the statement never commits, and the client cannot know."""
    owner_sql(
        "CREATE FUNCTION test_cut_self() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$ BEGIN "
        "PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(5); RETURN NEW; END $$",
        "CREATE TRIGGER test_cut_self BEFORE INSERT ON decisions_traceevent FOR EACH ROW "
        "WHEN (NEW.payload->>'intent' = 'cut.during.create') EXECUTE FUNCTION test_cut_self()",
    )
    try:
        yield
    finally:
        connection.close()
        owner_sql("DROP TRIGGER test_cut_self ON decisions_traceevent", "DROP FUNCTION test_cut_self()")


def test_a_connection_lost_during_the_statement_says_applied_unknown(
    make_agent: Any, cut_during_create: None
) -> None:
    """The statement is its own commit: a connection lost during it is lost while committing, as a
    transaction's COMMIT would be (tracemem_core/outage.py), never "not applied"."""
    _, key = make_agent()
    response = post_create(key, "cut.during.create")
    assert response.status_code == 503, response.content
    error = response.json()["error"]
    assert error["details"]["applied"] == "unknown" and "may or may not" in error["message"]
    connection.close()  # the test shares the request's (cut) connection
    assert not Decision.objects.filter(intent="cut.during.create").exists()


def test_a_connection_lost_after_the_statement_says_applied(
    make_agent: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from decisions import api as decisions_api
    from tests.fault_helpers import terminate_backend

    _, key = make_agent()
    original = decisions_api.created_out

    def cut_then_render(decision: Any) -> Any:  # the statement has committed; reading back fails
        terminate_backend(connection.connection.info.backend_pid)
        Decision.objects.filter(pk=decision.pk).exists()  # the door's next use of the connection
        return original(decision)

    monkeypatch.setattr(decisions_api, "created_out", cut_then_render)
    response = post_create(key, "cut.after.create")
    assert response.status_code == 503, response.content
    error = response.json()["error"]
    assert error["details"]["applied"] is True and "do not repeat" in error["message"]
    connection.close()
    assert Decision.objects.filter(intent="cut.after.create").count() == 1
