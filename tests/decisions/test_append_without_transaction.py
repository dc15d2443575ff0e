"""``decision_add_context`` on PostgreSQL without BEGIN/COMMIT (issue 17, docs/performance.md §29):
the decision is read without a lock (with its row version, ``xmin``), the events are built and
hashed, and ONE statement inserts them only if the row is still the one read (compare-and-swap),
committing by itself. When the row changed in between (another append, a close) the statement
inserts nothing and the call takes the locked path of before; what it answers is what it answered
before, and the chain stays gapless and valid.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from agents.models import Agent
from decisions import services as decision_services
from decisions.integrity import decision_problems
from decisions.models import Decision, TraceEvent
from tests.conftest import AgentClient, owner_dsn, owner_sql
from tests.fault_helpers import once_after, terminate_backend, wait_for
from tracemem_core.actor import Actor

pytestmark = pytest.mark.django_db(transaction=True)

TRANSACTION_WORDS = ("BEGIN", "COMMIT", "ROLLBACK")


def ours(queries: Any) -> list[str]:
    """The call's statements on decisions and its transaction control, in order."""
    return [
        q["sql"] for q in queries if "decisions_" in q["sql"] or q["sql"].strip().upper() in TRANSACTION_WORDS
    ]


def open_decision(api: AgentClient, mode: str = "autonomous") -> str:
    created = api.post("/api/v1/decisions", {"intent": "code.refactor.execute", "automation_mode": mode})
    assert created.status_code == 201, created.content
    return str(created.json()["decision_id"])


def seqs(did: str) -> list[int]:
    return list(TraceEvent.objects.filter(decision_id=did).order_by("seq").values_list("seq", flat=True))


def seq_of(response: Any) -> int:
    return int(TraceEvent.objects.get(event_id=response.json()["event_id"]).seq)


def assert_chain_valid(did: str, count: int) -> None:
    decision = Decision.objects.get(pk=did)
    assert seqs(did) == list(range(1, count + 1))
    assert decision.event_count == count
    assert decision_problems(decision) == []


@pytest.fixture
def between_read_and_insert(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[], None]], None]:
    """Run something once, after the call read the decision and before its insert (while the
    events are hashed: ``_chained``), in a thread of its own with its own connection, as another
    request would."""
    return once_after(monkeypatch, decision_services, "_chained")


def test_an_append_over_rest_is_two_statements_without_begin_or_commit(make_agent: Any) -> None:
    _, key = make_agent()
    api = AgentClient(key)
    did = open_decision(api)
    with CaptureQueriesContext(connection) as queries:
        response = api.post(f"/api/v1/decisions/{did}/context", {"context": {"step": 1}, "summary": "s"})
    assert response.status_code == 201, response.content
    statements = ours(queries)
    assert len(statements) == 2, statements
    read, insert = statements
    assert read.startswith("SELECT") and "FOR UPDATE" not in read
    assert insert.startswith("WITH") and "INSERT INTO decisions_traceevent" in insert
    assert seq_of(response) == 2
    assert_chain_valid(did, 2)
    assert TraceEvent.objects.get(decision_id=did, seq=2).payload == {"context": {"step": 1}, "summary": "s"}


def test_a_batch_over_rest_is_two_statements_without_begin_or_commit(make_agent: Any) -> None:
    _, key = make_agent()
    api = AgentClient(key)
    did = open_decision(api)
    with CaptureQueriesContext(connection) as queries:
        response = api.post(f"/api/v1/decisions/{did}/context", {"contexts": [{"n": n} for n in range(5)]})
    assert response.status_code == 201, response.content
    statements = ours(queries)
    assert len(statements) == 2, statements
    assert statements[1].startswith("WITH") and "INSERT INTO decisions_traceevent" in statements[1]
    assert [e["seq"] for e in response.json()["events"]] == [2, 3, 4, 5, 6]
    assert_chain_valid(did, 6)
    payloads = (
        TraceEvent.objects.filter(decision_id=did, seq__gt=1)
        .order_by("seq")
        .values_list("payload", flat=True)
    )
    assert list(payloads) == [{"context": {"n": n}} for n in range(5)]


def test_an_append_racing_another_falls_back_to_the_lock_and_records_both(
    make_agent: Any, between_read_and_insert: Any
) -> None:
    agent, key = make_agent()
    api = AgentClient(key)
    did = open_decision(api)
    racing: list[TraceEvent] = []
    between_read_and_insert(
        lambda: racing.append(
            decision_services.decision_add_context(
                actor=Actor.for_agent(agent), decision_id=did, context={"racing": True}
            )
        )
    )
    with CaptureQueriesContext(connection) as queries:
        response = api.post(f"/api/v1/decisions/{did}/context", {"context": {"mine": True}})
    assert response.status_code == 201, response.content
    assert racing[0].seq == 2 and seq_of(response) == 3
    # the compare-and-swap inserted nothing; the locked path of before did, in its transaction
    tail = [sql.split(" ")[0] for sql in ours(queries)][-5:]
    assert tail == ["WITH", "BEGIN", "SELECT", "INSERT", "COMMIT"], ours(queries)
    assert_chain_valid(did, 3)
    assert TraceEvent.objects.get(decision_id=did, seq=3).payload == {"context": {"mine": True}}


def test_a_batch_racing_an_append_falls_back_and_records_both(
    make_agent: Any, between_read_and_insert: Any
) -> None:
    agent, key = make_agent()
    api = AgentClient(key)
    did = open_decision(api)
    between_read_and_insert(
        lambda: decision_services.decision_add_context(
            actor=Actor.for_agent(agent), decision_id=did, context={"racing": True}
        )
    )
    response = api.post(f"/api/v1/decisions/{did}/context", {"contexts": [{"n": 1}, {"n": 2}]})
    assert response.status_code == 201, response.content
    assert [e["seq"] for e in response.json()["events"]] == [3, 4]
    assert_chain_valid(did, 4)


def test_a_decision_closed_before_the_insert_refuses_as_before_and_appends_nothing(
    make_agent: Any, between_read_and_insert: Any
) -> None:
    agent, key = make_agent()
    api = AgentClient(key)
    did = open_decision(api)
    between_read_and_insert(
        lambda: decision_services.decision_close(
            actor=Actor.for_agent(agent), decision_id=did, action="abort"
        )
    )
    response = api.post(f"/api/v1/decisions/{did}/context", {"context": {"late": True}})
    assert response.status_code == 409, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_state"
    assert error["message"] == (
        f"decision {did} is aborted: a closed decision cannot take more context; create a new decision"
    )
    assert seqs(did) == [1, 2]  # created, close: nothing after the close
    later = api.post(f"/api/v1/decisions/{did}/context", {"context": {"later": True}})
    assert (later.status_code, later.json()["error"]["message"]) == (409, error["message"])


def test_a_change_committed_while_the_insert_waits_for_the_row_makes_it_insert_nothing(
    make_agent: Any, between_read_and_insert: Any
) -> None:
    """READ COMMITTED re-checks the statement's WHERE on the newest version of the row once the lock
    it waited for is released: the row's xmin changed, so the statement inserts nothing, and the call
    appends under the lock after the other's event."""
    agent, key = make_agent()
    api = AgentClient(key)
    did = open_decision(api)
    appended = threading.Event()
    waited: list[bool] = []

    def holder() -> None:  # another request's transaction: lock, append, then commit only once we wait
        try:
            from django.db import transaction

            with transaction.atomic():
                decision_services.decision_add_context(
                    actor=Actor.for_agent(Agent.objects.get(pk=agent.pk)),
                    decision_id=did,
                    context={"held": True},
                )
                appended.set()
                with psycopg.connect(owner_dsn(), autocommit=True) as watcher:

                    def cas_waits() -> bool:
                        row = watcher.execute(
                            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                            "AND query LIKE %s",
                            ["WITH unchanged AS%"],
                        ).fetchone()
                        return bool(row and row[0])

                    wait_for(cas_waits, 10, "the compare-and-swap to wait for the decision's row")
                    waited.append(True)
        finally:
            appended.set()
            connections.close_all()

    thread = threading.Thread(target=holder)

    def start_holder() -> None:
        thread.start()
        assert appended.wait(10)

    between_read_and_insert(start_holder)
    with CaptureQueriesContext(connection) as queries:
        response = api.post(f"/api/v1/decisions/{did}/context", {"context": {"mine": True}})
    thread.join(10)
    assert waited == [True]
    assert response.status_code == 201, response.content
    assert seq_of(response) == 3
    assert [sql.split(" ")[0] for sql in ours(queries)][-5:] == [
        "WITH",
        "BEGIN",
        "SELECT",
        "INSERT",
        "COMMIT",
    ]
    assert_chain_valid(did, 3)
    assert TraceEvent.objects.get(decision_id=did, seq=2).payload == {"context": {"held": True}}


def test_a_decision_awaiting_approval_takes_the_locked_path(make_agent: Any) -> None:
    """The lock's settlers (an approval past its deadline) run only under the lock."""
    agent, key = make_agent()
    api = AgentClient(key)
    did = open_decision(api, mode="propose")
    Decision.objects.filter(pk=did).update(status="needs_approval", approval_status="pending")
    with CaptureQueriesContext(connection) as queries:
        response = api.post(f"/api/v1/decisions/{did}/context", {"context": {"n": 1}})
    assert response.status_code == 201, response.content
    assert "BEGIN" in [sql.strip().upper() for sql in ours(queries)]
    assert_chain_valid(did, 2)


def test_many_threads_appending_at_once_keep_the_chain_gapless(make_agent: Any) -> None:
    agent, _ = make_agent()
    did = decision_services.decision_create(
        actor=Actor.for_agent(agent), intent="code.refactor.execute", automation_mode="autonomous"
    ).decision_id
    errors: list[BaseException] = []
    start = threading.Barrier(12)

    def work(i: int) -> None:
        try:
            actor = Actor.for_agent(Agent.objects.get(pk=agent.pk))
            start.wait()
            for j in range(4):
                if (i + j) % 3:
                    decision_services.decision_add_context(
                        actor=actor, decision_id=did, context={"n": i, "j": j}
                    )
                else:
                    decision_services.decision_add_contexts(
                        actor=actor, decision_id=did, contexts=[{"n": i, "j": j}, {"n": i, "j": j, "b": 1}]
                    )
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    batches = sum(1 for i in range(12) for j in range(4) if not (i + j) % 3)
    assert_chain_valid(did, 1 + 48 + batches)
    call_command("verify_traces")


# --- outages: the statement commits by itself ---------------------------------------------------


@pytest.fixture
def cut_during_insert() -> Iterator[None]:
    """A trigger that cuts the inserting session's own connection during the insert of a context
    event carrying ``{"cut": "here"}``: the statement never commits, and the client cannot know."""
    owner_sql(
        "CREATE FUNCTION test_cut_self() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$ BEGIN "
        "PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(5); RETURN NEW; END $$",
        "CREATE TRIGGER test_cut_self BEFORE INSERT ON decisions_traceevent FOR EACH ROW "
        "WHEN (NEW.payload->'context'->>'cut' = 'here') EXECUTE FUNCTION test_cut_self()",
    )
    try:
        yield
    finally:
        connection.close()
        owner_sql("DROP TRIGGER test_cut_self ON decisions_traceevent", "DROP FUNCTION test_cut_self()")


def test_a_connection_lost_during_the_insert_says_applied_unknown(
    make_agent: Any, cut_during_insert: None
) -> None:
    _, key = make_agent()
    api = AgentClient(key)
    did = open_decision(api)
    response = api.post(f"/api/v1/decisions/{did}/context", {"context": {"cut": "here"}})
    assert response.status_code == 503, response.content
    error = response.json()["error"]
    assert error["details"]["applied"] == "unknown" and "may or may not" in error["message"]
    connection.close()
    assert seqs(did) == [1]


def test_a_connection_lost_during_the_read_says_not_applied(
    make_agent: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from decisions import selectors as decision_selectors

    _, key = make_agent()
    api = AgentClient(key)
    did = open_decision(api)
    original = decision_selectors.prepared_cursor

    def cut_then_continue() -> Any:
        terminate_backend(connection.connection.info.backend_pid)
        return original()

    monkeypatch.setattr(decision_selectors, "prepared_cursor", cut_then_continue)
    response = api.post(f"/api/v1/decisions/{did}/context", {"context": {"n": 1}})
    assert response.status_code == 503, response.content
    assert response.json()["error"]["details"]["applied"] is False
    monkeypatch.undo()
    connection.close()
    assert seqs(did) == [1]


def test_an_insert_that_found_the_row_changed_does_not_count_as_applied(
    make_agent: Any, between_read_and_insert: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compare-and-swap that inserted nothing committed nothing: a connection lost later, in the
    locked path, is still "not applied"."""
    agent, key = make_agent()
    api = AgentClient(key)
    did = open_decision(api)
    between_read_and_insert(
        lambda: decision_services.decision_add_context(
            actor=Actor.for_agent(agent), decision_id=did, context={"racing": True}
        )
    )
    armed = decision_services._chained

    def cut_under_the_lock(*args: Any, **kwargs: Any) -> Any:
        events = armed(*args, **kwargs)
        if connection.in_atomic_block:  # the locked path, after the compare-and-swap found no row
            terminate_backend(connection.connection.info.backend_pid)
        return events

    monkeypatch.setattr(decision_services, "_chained", cut_under_the_lock)
    response = api.post(f"/api/v1/decisions/{did}/context", {"context": {"mine": True}})
    assert response.status_code == 503, response.content
    assert response.json()["error"]["details"]["applied"] is False
    connection.close()
    assert seqs(did) == [1, 2]  # the racing append only
