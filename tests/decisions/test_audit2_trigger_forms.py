"""Audit 2 of the statement-level chain trigger (decisions 0009): INSERT forms other than a plain
VALUES list, sent by the app role (the suite's connection) as an attacker holding its credentials
would. Guards: each passes on main; a trigger that missed the form would let a broken chain in."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from django.db import DatabaseError, connection, transaction

from tests.decisions.test_trace_statement_trigger import _open, _rows, _state
from tracemem_core.actor import Actor

pytestmark = pytest.mark.django_db
COLUMNS = 'event_id, decision_id, seq, type, "timestamp", actor, payload, prev_hash, hash'


def _refused(sql: str, params: list[Any]) -> None:
    with pytest.raises(DatabaseError, match="does not continue the trace"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params)


def test_merge_is_checked(agent_actor: Actor) -> None:
    decision = _open(agent_actor, 1)
    before = _state(decision)
    _refused(
        f"MERGE INTO decisions_traceevent t USING (SELECT 'EVT_MERGE' AS id) s ON t.event_id = s.id "
        f"WHEN NOT MATCHED THEN INSERT ({COLUMNS}) "
        "VALUES ('EVT_MERGE', %s, 99, 'context', now(), '{}', '{}', repeat('x', 64), repeat('y', 64))",
        [decision.decision_id],
    )
    assert _state(decision) == before


def test_copy_is_checked(agent_actor: Actor) -> None:
    decision = _open(agent_actor, 1)
    before = _state(decision)
    line = "\t".join(
        [
            "EVT_COPY",
            decision.decision_id,
            "99",
            "context",
            "2026-01-01T00:00:00Z",
            "{}",
            "{}",
            "x" * 64,
            "y" * 64,
        ]
    )
    with pytest.raises(psycopg.Error, match="does not continue the trace"):  # psycopg's own cursor
        with transaction.atomic(), connection.cursor() as cursor:
            with cursor.cursor.copy(f"COPY decisions_traceevent ({COLUMNS}) FROM STDIN") as copy:
                copy.write(line + "\n")
    assert _state(decision) == before


def test_two_inserts_in_one_statement_are_checked_together(agent_actor: Actor) -> None:
    decision = _open(agent_actor, 1)
    before = _state(decision)
    first, second = _rows(decision, 2)
    sql = (
        f"WITH a AS (INSERT INTO decisions_traceevent ({COLUMNS}) "
        "VALUES ('EVT_A', %s, %s, 'context', now(), '{}', '{}', %s, %s) RETURNING 1) "
        f"INSERT INTO decisions_traceevent ({COLUMNS}) "
        "VALUES ('EVT_B', %s, %s, 'context', now(), '{}', '{}', %s, %s)"
    )
    a = [decision.decision_id, first["seq"], first["prev_hash"], first["hash"]]
    _refused(sql, a + [decision.decision_id, second["seq"], "z" * 64, second["hash"]])  # second link broken
    assert _state(decision) == before
    with connection.cursor() as cursor:
        cursor.execute(sql, a + [decision.decision_id, second["seq"], second["prev_hash"], second["hash"]])
    assert _state(decision) == ("open", before[1] + 2, second["hash"], None, before[4] + 2)


def test_an_insert_and_an_update_of_the_head_in_one_statement_are_refused(agent_actor: Actor) -> None:
    """The decision's update trigger (a volatile function) sees the event the same statement inserted;
    the chain trigger, run at the end of the statement, then finds the head already past it."""
    decision = _open(agent_actor, 1)
    before = _state(decision)
    _refused(
        f"WITH ins AS (INSERT INTO decisions_traceevent ({COLUMNS}) "
        "VALUES ('EVT_C', %s, %s, 'context', now(), '{}', '{}', repeat('x', 64), repeat('z', 64)) "
        "RETURNING seq, hash) "
        "UPDATE decisions_decision d SET event_count = ins.seq, trace_head = ins.hash FROM ins "
        "WHERE d.decision_id = %s",
        [decision.decision_id, before[1] + 1, decision.decision_id],
    )
    assert _state(decision) == before
