"""Each trace event's JSON text, a column PostgreSQL generates when the event is inserted (migration
0008, issue 17): byte for byte the text a trace read wrote per event before, never written by
anyone, and filled in for the events a database already holds when it migrates."""

from __future__ import annotations

import importlib
import json
from typing import Any

import psycopg
import pytest
from django.db import DatabaseError, connection, transaction

from decisions import selectors, services
from decisions.models import Decision
from tests.conftest import owner_dsn
from tests.decisions.test_trace_raw import TRICKY, _decision
from tracemem_core.actor import Actor

MIGRATION = importlib.import_module("decisions.migrations.0008_traceevent_event_json")

# What a trace read's query wrote for each event before the column (main at 85d1554,
# decisions.selectors._TRACE_JSON_SQL), kept here as the column's specification.
PER_READ_JSON = """
       '{"decision_id":' || to_json(decision_id)::text
       || ',"event_id":' || to_json(event_id)::text
       || ',"seq":' || seq::text
       || ',"type":' || to_json(type)::text
       || ',"timestamp":"' || to_char("timestamp" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
       || '","actor":' || actor::text
       || ',"payload":' || payload::text
       || ',"prev_hash":' || to_json(prev_hash)::text
       || ',"hash":' || to_json(hash)::text
       || '}'
"""
COMPARE_SQL = (
    f"SELECT seq, event_json, {PER_READ_JSON} FROM decisions_traceevent WHERE decision_id = %s ORDER BY seq"
)


def _column_and_expression(cursor: Any, decision_id: str) -> list[tuple[int, str, str]]:
    cursor.execute(COMPARE_SQL, [decision_id])
    return list(cursor.fetchall())


@pytest.mark.django_db
def test_the_column_is_the_text_each_read_wrote_before(agent_actor: Actor) -> None:
    decision = _decision(agent_actor)
    services.decision_close(actor=agent_actor, decision_id=decision.decision_id, action="commit")
    with connection.cursor() as cursor:
        rows = _column_and_expression(cursor, decision.decision_id)
    assert [seq for seq, _, _ in rows] == list(range(1, 2 * len(TRICKY) + 3))
    for seq, stored, per_read in rows:
        assert stored == per_read, seq
    # The events as the model path gives them, in the same order of keys.
    expected = [selectors.event_as_dict(e) for e in selectors.decision_events(decision)]
    parsed = [json.loads(stored) for _, stored, _ in rows]
    assert parsed == json.loads(json.dumps(expected))
    assert [list(event) for event in parsed] == [list(event) for event in expected]


@pytest.mark.django_db
def test_the_column_cannot_be_written(agent_actor: Actor) -> None:
    decision = services.decision_create(actor=agent_actor, intent="a.b.c", automation_mode="autonomous")
    head = Decision.objects.get(pk=decision.pk)
    insert = (
        "INSERT INTO decisions_traceevent (event_id, decision_id, seq, type, timestamp, actor, payload, "
        "prev_hash, hash, event_json) VALUES ('evt_forged', %s, 2, 'context', now(), '{}', '{}', %s, %s, %s)"
    )
    forged = '{"decision_id":"elsewhere"}'
    with pytest.raises(DatabaseError, match='cannot insert a non-DEFAULT value into column "event_json"'):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(insert, [decision.decision_id, head.trace_head, "f" * 64, forged])


@pytest.mark.django_db(transaction=True)
def test_migrating_fills_the_column_for_the_events_already_stored(agent_actor: Actor) -> None:
    """The migration's own statements, backwards then forwards, on a table holding events (as the
    owner, in a transaction rolled back after)."""
    decision = _decision(agent_actor)
    statements = MIGRATION.Migration.operations[0]
    with psycopg.connect(owner_dsn()) as conn, conn.cursor() as cursor:
        cursor.execute("SET lock_timeout = '10s'")
        before = _column_and_expression(cursor, decision.decision_id)
        for statement in statements.backwards["postgresql"]:
            cursor.execute(statement)
        cursor.execute(
            "SELECT count(*) FROM information_schema.columns "
            "WHERE table_name = 'decisions_traceevent' AND column_name = 'event_json'"
        )
        assert cursor.fetchone() == (0,)
        for statement in statements.forwards["postgresql"]:
            cursor.execute(statement)
        after = _column_and_expression(cursor, decision.decision_id)
        conn.rollback()
    assert len(after) == decision.event_count
    assert after == before
    assert all(stored == per_read for _, stored, per_read in after)
