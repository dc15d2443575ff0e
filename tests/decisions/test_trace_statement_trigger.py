"""The chain trigger checks a whole INSERT at once (issue 17, migration decisions 0009): per decision
among the statement's new events it locks the decision once, checks the events ordered by seq
continue its chain (seq = event_count + 1, prev_hash = trace_head, then each seq + 1 and prev_hash =
the previous event's hash; nothing after a close or record), and moves the head ONCE — a batch of 100
contexts is one UPDATE of the decision's row, not 100. The app role (the suite's connection) cannot
get around it: every refusal below is its own INSERT, as an attacker holding its credentials would send."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction

from decisions import services
from decisions.models import Decision, TraceEvent
from tests.conftest import AgentClient
from tracemem_core.actor import Actor
from tracemem_verify.chain import GENESIS_HASH, verify_chain

COLUMNS = 'event_id, decision_id, seq, type, "timestamp", actor, payload, prev_hash, hash'
ROW = "(%s, %s, %s, %s, now(), '{}'::jsonb, %s::jsonb, %s, %s)"
ABORT = {"action": "abort", "status": "aborted"}


class _RolledBack(Exception):
    """Raised to roll a savepoint back: a decision closed by hand has no receipt, and the deferred
    receipt check would refuse the test's transaction at its end."""


def _decision_updates() -> int:
    """UPDATEs of decisions_decision rows so far in this transaction (the test's own)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT n_tup_upd FROM pg_stat_xact_user_tables WHERE relname = 'decisions_decision'")
        return int(cursor.fetchone()[0])


def _open(actor: Actor, contexts: int = 0) -> Decision:
    decision = services.decision_create(
        actor=actor, intent="code.refactor.execute", automation_mode="autonomous"
    )
    for n in range(contexts):
        services.decision_add_context(actor=actor, decision_id=decision.decision_id, context={"n": n})
    decision.refresh_from_db()
    return decision


def _rows(
    decision: Decision, count: int, *, start: int | None = None, head: str | None = None
) -> list[dict[str, Any]]:
    """``count`` context events continuing ``decision``'s chain (hashes made up: the trigger checks
    links, verify_traces checks content)."""
    seq = decision.event_count if start is None else start - 1
    prev = head or decision.trace_head or GENESIS_HASH
    rows = []
    for _ in range(count):
        seq += 1
        row = {
            "decision_id": decision.decision_id,
            "seq": seq,
            "type": "context",
            "payload": {},
            "prev_hash": prev,
        }
        row["hash"] = prev = f"{decision.decision_id}-{seq}".ljust(64, "h")[:64]
        rows.append(row)
    return rows


def _insert(rows: list[dict[str, Any]]) -> None:
    """One multi-row INSERT of ``rows``, in a savepoint (a refusal leaves the test's transaction usable)."""
    params: list[Any] = []
    for i, r in enumerate(rows):
        params += [f"EVT_T{i}_{r['decision_id'][-8:]}_{r['seq']}", r["decision_id"], r["seq"], r["type"]]
        params += [json.dumps(r["payload"]), r["prev_hash"], r["hash"]]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO decisions_traceevent ({COLUMNS}) VALUES " + ", ".join([ROW] * len(rows)), params
        )


def _state(decision: Decision) -> tuple[Any, ...]:
    d = Decision.objects.get(pk=decision.pk)
    return d.status, d.event_count, d.trace_head, d.closed_at, TraceEvent.objects.filter(decision=d).count()


# --- one head update per statement ---------------------------------------------------------------


@pytest.mark.django_db
def test_a_batch_of_a_hundred_updates_the_decision_row_once(api: AgentClient) -> None:
    decision_id = api.post(
        "/api/v1/decisions", {"intent": "code.refactor.execute", "automation_mode": "autonomous"}
    ).json()["decision_id"]
    before = _decision_updates()
    answer = api.post(
        f"/api/v1/decisions/{decision_id}/context", {"contexts": [{"n": n} for n in range(100)]}
    )
    assert answer.status_code == 201, answer.content
    assert _decision_updates() - before == 1
    events = list(TraceEvent.objects.filter(decision_id=decision_id).order_by("seq"))
    decision = Decision.objects.get(pk=decision_id)
    assert (decision.event_count, decision.trace_head) == (101, events[-1].hash)
    from decisions.selectors import event_as_dict

    assert verify_chain(decision_id, [event_as_dict(e) for e in events]) is None


@pytest.mark.django_db
def test_a_multi_row_insert_moves_the_head_once_to_its_last_event(agent_actor: Actor) -> None:
    decision = _open(agent_actor, 1)
    rows = _rows(decision, 5)
    before = _decision_updates()
    _insert(rows)
    assert _decision_updates() - before == 1
    assert _state(decision) == ("open", 7, rows[-1]["hash"], None, 7)


@pytest.mark.django_db
def test_rows_written_out_of_order_are_checked_in_seq_order(agent_actor: Actor) -> None:
    decision = _open(agent_actor)
    rows = _rows(decision, 3)
    _insert([rows[2], rows[0], rows[1]])
    assert _state(decision) == ("open", 4, rows[-1]["hash"], None, 4)


# --- refusals inside one multi-row insert ----------------------------------------------------------


@pytest.mark.django_db
def test_a_gap_in_seq_inside_one_insert_is_refused(agent_actor: Actor) -> None:
    decision = _open(agent_actor, 1)
    before = _state(decision)
    rows = _rows(decision, 2) + _rows(decision, 1, start=decision.event_count + 4)
    rows[2]["prev_hash"] = rows[1]["hash"]  # linked by hash, but seq jumps from 4 to 6
    with pytest.raises(DatabaseError, match="event seq 6 does not continue the trace"):
        _insert(rows)
    assert _state(decision) == before


@pytest.mark.django_db
def test_a_broken_prev_hash_in_the_middle_row_is_refused(agent_actor: Actor) -> None:
    decision = _open(agent_actor, 1)
    before = _state(decision)
    rows = _rows(decision, 3)
    rows[1]["prev_hash"] = "f" * 64
    with pytest.raises(DatabaseError, match="event seq 4 does not continue the trace"):
        _insert(rows)
    assert _state(decision) == before


@pytest.mark.django_db
def test_the_first_row_must_continue_the_stored_head(agent_actor: Actor) -> None:
    decision = _open(agent_actor, 1)
    before = _state(decision)
    with pytest.raises(DatabaseError, match="event seq 3 does not continue the trace"):
        _insert(_rows(decision, 2, head="e" * 64))
    with pytest.raises(DatabaseError, match="event seq 4 does not continue the trace"):
        _insert(_rows(decision, 2, start=4))
    assert _state(decision) == before


@pytest.mark.django_db
@pytest.mark.parametrize("closing", ["close", "record"])
def test_nothing_follows_a_close_or_record_in_the_same_insert(agent_actor: Actor, closing: str) -> None:
    decision = _open(agent_actor, 1)
    before = _state(decision)
    rows = _rows(decision, 3)
    rows[1]["type"], rows[1]["payload"] = closing, ABORT if closing == "close" else {}
    with pytest.raises(DatabaseError, match=f"decision {decision.decision_id} is closed"):
        _insert(rows)
    assert _state(decision) == before


@pytest.mark.django_db
def test_a_close_event_must_carry_a_matching_action_and_status(agent_actor: Actor) -> None:
    decision = _open(agent_actor, 1)
    before = _state(decision)
    rows = _rows(decision, 2)
    rows[1]["type"], rows[1]["payload"] = "close", {"action": "abort", "status": "committed"}
    with pytest.raises(DatabaseError, match="a close event carries action commit and status committed"):
        _insert(rows)
    assert _state(decision) == before


@pytest.mark.django_db
def test_a_closed_decision_takes_no_multi_row_insert(agent_actor: Actor) -> None:
    decision = _open(agent_actor, 1)
    services.decision_close(actor=agent_actor, decision_id=decision.decision_id, action="abort")
    decision.refresh_from_db()
    before = _state(decision)
    with pytest.raises(DatabaseError, match=f"decision {decision.decision_id} is closed \\(aborted\\)"):
        _insert(_rows(decision, 3))
    assert _state(decision) == before


@pytest.mark.django_db
def test_one_insert_for_two_decisions_chains_each_and_moves_each_head_once(agent_actor: Actor) -> None:
    first, second = _open(agent_actor, 2), _open(agent_actor)
    rows_first, rows_second = _rows(first, 3), _rows(second, 2)
    before = _decision_updates()
    _insert([rows_second[0], rows_first[0], rows_first[1], rows_second[1], rows_first[2]])
    assert _decision_updates() - before == 2
    assert _state(first) == ("open", 6, rows_first[-1]["hash"], None, 6)
    assert _state(second) == ("open", 3, rows_second[-1]["hash"], None, 3)


@pytest.mark.django_db
def test_one_insert_for_two_decisions_is_refused_whole_if_one_chain_breaks(agent_actor: Actor) -> None:
    first, second = _open(agent_actor, 2), _open(agent_actor)
    before = _state(first), _state(second)
    rows_first, rows_second = _rows(first, 2), _rows(second, 2)
    rows_second[1]["prev_hash"] = "0" * 64
    with pytest.raises(
        DatabaseError, match=f"event seq 3 does not continue the trace of decision {second.decision_id}"
    ):
        _insert(rows_first + rows_second)
    assert (_state(first), _state(second)) == before


@pytest.mark.django_db
def test_an_event_of_no_decision_is_refused(agent_actor: Actor) -> None:
    decision = _open(agent_actor)
    rows = _rows(decision, 1)
    rows[0]["decision_id"] = "TMEM_NO_SUCH_DECISION"
    with pytest.raises(DatabaseError, match="names no decision|foreign key"):
        _insert(rows)


# --- one event, as before ------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_single_insert_moves_the_head_and_a_close_closes(agent_actor: Actor) -> None:
    decision = _open(agent_actor, 1)
    (one,) = _rows(decision, 1)
    before = _decision_updates()
    _insert([one])
    assert _decision_updates() - before == 1
    assert _state(decision) == ("open", 3, one["hash"], None, 3)
    decision.refresh_from_db()
    (close,) = _rows(decision, 1)
    close["type"], close["payload"] = "close", ABORT
    with pytest.raises(_RolledBack), transaction.atomic():
        _insert([close])
        closed = Decision.objects.get(pk=decision.pk)
        event = TraceEvent.objects.get(decision=decision, seq=4)
        assert (closed.status, closed.event_count, closed.trace_head, closed.closed_at) == (
            "aborted",
            4,
            close["hash"],
            event.timestamp,
        )
        with pytest.raises(DatabaseError, match="is closed \\(aborted\\): its trace takes no more events"):
            _insert(_rows(closed, 1))
        raise _RolledBack


@pytest.mark.django_db
def test_a_single_record_event_commits(agent_actor: Actor) -> None:
    decision = _open(agent_actor)
    (record,) = _rows(decision, 1)
    record["type"] = "record"
    with pytest.raises(_RolledBack), transaction.atomic():
        _insert([record])
        assert _state(decision)[:3] == ("committed", 2, record["hash"])
        raise _RolledBack


# --- the compare-and-swap statement form (WITH d AS (SELECT … FOR UPDATE) INSERT … SELECT … FROM d) -----


def _cas_insert(decision: Decision, expected_count: int, contexts: int) -> int:
    """Append ``contexts`` events only if the decision still has ``expected_count`` events: one statement,
    the lock in its WITH, the rows built from it. Returns the rows inserted."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "WITH d AS (SELECT decision_id, event_count, "
            "CASE WHEN event_count = 0 THEN %s ELSE trace_head END AS head FROM decisions_decision "
            "WHERE decision_id = %s AND event_count = %s FOR UPDATE), "
            "n AS (SELECT generate_series(1, %s) AS k), "
            "e AS (SELECT d.decision_id, d.event_count + n.k AS seq, d.head, "
            "lpad(d.decision_id || '-' || (d.event_count + n.k), 64, 'c') AS hash FROM d, n) "
            f"INSERT INTO decisions_traceevent ({COLUMNS}) "
            "SELECT 'EVT_CAS_' || e.seq, e.decision_id, e.seq, 'context', now(), '{}'::jsonb, '{}'::jsonb, "
            "COALESCE(lag(e.hash) OVER (ORDER BY e.seq), e.head), e.hash FROM e",
            [GENESIS_HASH, decision.decision_id, expected_count, contexts],
        )
        return cursor.rowcount


@pytest.mark.django_db
def test_a_compare_and_swap_insert_is_chained_and_moves_the_head_once(agent_actor: Actor) -> None:
    decision = _open(agent_actor, 1)
    before = _decision_updates()
    assert _cas_insert(decision, 2, 3) == 3
    assert _decision_updates() - before == 1
    head = TraceEvent.objects.get(decision=decision, seq=5).hash
    assert _state(decision) == ("open", 5, head, None, 5)


@pytest.mark.django_db
def test_a_compare_and_swap_that_misses_inserts_nothing_and_changes_nothing(agent_actor: Actor) -> None:
    decision = _open(agent_actor, 1)
    before, updates = _state(decision), _decision_updates()
    assert _cas_insert(decision, 1, 3) == 0  # stale: the decision has 2 events
    assert (_state(decision), _decision_updates() - updates) == (before, 0)


# --- the indexes an append maintains -------------------------------------------------------------


@pytest.mark.django_db
def test_events_are_found_by_decision_through_the_unique_seq_index_alone() -> None:
    """Every lookup by decision goes through (decision_id, seq); an index of decision_id alone (and its
    LIKE twin) would only cost each append two more index insertions (migration 0010)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'decisions_traceevent' ORDER BY indexname"
        )
        indexes = dict(cursor.fetchall())
    by_decision = [name for name, definition in indexes.items() if "(decision_id" in definition]
    assert by_decision == ["trace_event_seq_unique"], indexes
    assert "(decision_id, seq)" in indexes["trace_event_seq_unique"]
