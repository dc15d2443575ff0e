"""Audit 3 of the append and the evaluation without a lock (docs/performance.md §29): the compare-and-swap
against the locked path under contention, lock-only holders of the decision's row, the batch form of the
statement waiting for the row, the MCP door, and the outage answer of a statement PostgreSQL cancelled.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from agents.models import Agent
from decisions import services as decision_services
from decisions.integrity import decision_problems
from decisions.models import Decision, TraceEvent
from policies.services import authoring as policy_authoring
from policies.services import evaluation
from tests.conftest import AgentClient, owner_dsn
from tests.decisions.test_append_without_transaction import (
    assert_chain_valid,
    open_decision,
    ours,
    seq_of,
    seqs,
)
from tests.fault_helpers import once_after, wait_for
from tests.mcp_helpers import mcp_post
from tests.policies.test_doors import CODE_POLICY
from tracemem_core.actor import Actor
from tracemem_core.errors import InvalidState

pytestmark = pytest.mark.django_db(transaction=True)

SYSTEM = Actor.system("test")
PID = "code_change_policy_v1"
ALLOWING = {**CODE_POLICY, "default_outcome": "allow"}


def _cas_waits(watcher: psycopg.Connection[Any]) -> bool:
    row = watcher.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
        ["WITH unchanged AS%"],
    ).fetchone()
    return bool(row and row[0])


@pytest.fixture
def between_read_and_insert(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[], None]], None]:
    return once_after(monkeypatch, decision_services, "_chained")


def _holder(
    did: str, lock: str, held: threading.Event, release: Callable[[psycopg.Connection[Any]], None]
) -> Any:
    """Another session that takes ``lock`` on the decision's row (no update), waits for ``release``,
    then rolls back."""

    def run() -> None:
        with psycopg.connect(owner_dsn()) as conn:
            conn.execute(f"SELECT 1 FROM decisions_decision WHERE decision_id = %s {lock}", [did])
            held.set()
            with psycopg.connect(owner_dsn(), autocommit=True) as watcher:
                release(watcher)
            conn.rollback()

    return threading.Thread(target=run)


def test_a_row_frozen_between_read_and_insert_does_not_make_the_append_fall_back(
    make_agent: Any, between_read_and_insert: Any
) -> None:
    """VACUUM FREEZE keeps the raw xmin (PostgreSQL >= 9.4 freezes with a flag): no spurious fallback."""
    _, key = make_agent()
    api = AgentClient(key)
    did = open_decision(api)

    def freeze() -> None:
        with psycopg.connect(owner_dsn(), autocommit=True) as conn:
            conn.execute("VACUUM (FREEZE) decisions_decision")

    between_read_and_insert(freeze)
    with CaptureQueriesContext(connection) as queries:
        response = api.post(f"/api/v1/decisions/{did}/context", {"context": {"mine": True}})
    assert response.status_code == 201, response.content
    assert [sql.split(" ")[0] for sql in ours(queries)] == ["SELECT", "WITH"], ours(queries)
    assert_chain_valid(did, 2)


def test_an_evaluation_with_a_key_share_holder_falls_back_and_records_once(
    make_agent: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SKIP LOCKED: a foreign-key check's FOR KEY SHARE (another table's insert naming the decision)
    makes the evaluation's compare-and-swap skip; the locked path waits for it, then records once."""
    from policies import engine

    agent, key = make_agent()
    policy_authoring.policy_create(actor=SYSTEM, policy_id=PID, definition=ALLOWING)
    policy_authoring.policy_publish(actor=SYSTEM, policy_id=PID)
    policy_authoring.policy_grant(actor=SYSTEM, policy_id=PID, agent_id=agent.agent_id)
    api = AgentClient(key)
    did = open_decision(api)
    held = threading.Event()

    def release(watcher: psycopg.Connection[Any]) -> None:
        def lock_waits() -> bool:
            row = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
                ["%FOR UPDATE%"],
            ).fetchone()
            return bool(row and row[0])

        wait_for(lock_waits, 10, "the locked path to wait")

    thread = _holder(did, "FOR KEY SHARE", held, release)
    original = engine.evaluate
    pending = [True]

    def evaluate_then(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if pending and not connection.in_atomic_block:
            pending.pop()
            thread.start()
            assert held.wait(10)
        return result

    monkeypatch.setattr(engine, "evaluate", evaluate_then)
    with CaptureQueriesContext(connection) as queries:
        response = api.post(
            f"/api/v1/decisions/{did}/evaluate", {"policy_id": PID, "inputs": {"change_type": "docs"}}
        )
    thread.join(10)
    assert response.status_code == 200, response.content
    assert "BEGIN" in [q.split(" ")[0] for q in ours(queries)]
    assert seq_of(response) == 2
    assert_chain_valid(did, 2)


# --- a lock alone does not change the row's xmin ------------------------------------------------


@pytest.mark.parametrize("lock", ["FOR KEY SHARE", "FOR SHARE", "FOR UPDATE", "FOR NO KEY UPDATE"])
def test_an_append_that_waited_for_a_lock_only_holder_inserts_without_falling_back(
    make_agent: Any, between_read_and_insert: Any, lock: str
) -> None:
    """A foreign-key check (FOR KEY SHARE) or any lock taken and released without an update sets the
    row's xmax, not its xmin: the compare-and-swap waits, then inserts (no fallback, no BEGIN)."""
    _, key = make_agent()
    api = AgentClient(key)
    did = open_decision(api)
    held = threading.Event()
    waited: list[bool] = []

    def release(watcher: psycopg.Connection[Any]) -> None:
        wait_for(lambda: _cas_waits(watcher), 10, "the compare-and-swap to wait for the row")
        waited.append(True)

    thread = _holder(did, lock, held, release)

    def start() -> None:
        thread.start()
        assert held.wait(10)

    between_read_and_insert(start)
    with CaptureQueriesContext(connection) as queries:
        response = api.post(f"/api/v1/decisions/{did}/context", {"context": {"mine": True}})
    thread.join(10)
    assert waited == [True]
    assert response.status_code == 201, response.content
    assert [sql.split(" ")[0] for sql in ours(queries)] == ["SELECT", "WITH"], ours(queries)
    assert_chain_valid(did, 2)


def test_a_row_locked_and_released_between_read_and_insert_does_not_make_the_append_fall_back(
    make_agent: Any, between_read_and_insert: Any
) -> None:
    """The locked path refusing (a rolled-back transaction that held FOR UPDATE) leaves xmin alone."""
    agent, key = make_agent()
    api = AgentClient(key)
    did = open_decision(api)

    def lock_and_refuse() -> None:
        try:
            with transaction.atomic():
                decision_services.decision_lock(actor=Actor.for_agent(agent), decision_id=did)
                raise InvalidState("refused under the lock")
        except InvalidState:
            pass

    between_read_and_insert(lock_and_refuse)
    with CaptureQueriesContext(connection) as queries:
        response = api.post(f"/api/v1/decisions/{did}/context", {"context": {"mine": True}})
    assert response.status_code == 201, response.content
    assert [sql.split(" ")[0] for sql in ours(queries)] == ["SELECT", "WITH"], ours(queries)
    assert_chain_valid(did, 2)


def test_a_batch_waiting_for_the_row_inserts_nothing_when_it_changed(
    make_agent: Any, between_read_and_insert: Any
) -> None:
    """The batch's form (``WHERE EXISTS (SELECT FROM unchanged)``) re-checks xmin after its wait too."""
    agent, key = make_agent()
    api = AgentClient(key)
    did = open_decision(api)
    appended = threading.Event()
    waited: list[bool] = []

    def holder() -> None:
        try:
            with transaction.atomic():
                decision_services.decision_add_context(
                    actor=Actor.for_agent(Agent.objects.get(pk=agent.pk)),
                    decision_id=did,
                    context={"held": 1},
                )
                appended.set()
                with psycopg.connect(owner_dsn(), autocommit=True) as watcher:
                    wait_for(lambda: _cas_waits(watcher), 10, "the batch's compare-and-swap to wait")
                    waited.append(True)
        finally:
            appended.set()
            connections.close_all()

    thread = threading.Thread(target=holder)

    def start() -> None:
        thread.start()
        assert appended.wait(10)

    between_read_and_insert(start)
    with CaptureQueriesContext(connection) as queries:
        response = api.post(f"/api/v1/decisions/{did}/context", {"contexts": [{"n": 1}, {"n": 2}]})
    thread.join(10)
    assert waited == [True]
    assert response.status_code == 201, response.content
    assert [e["seq"] for e in response.json()["events"]] == [3, 4]
    assert [sql.split(" ")[0] for sql in ours(queries)][-5:] == [
        "WITH",
        "BEGIN",
        "SELECT",
        "INSERT",
        "COMMIT",
    ]
    assert_chain_valid(did, 4)


# --- the MCP door takes the same path -------------------------------------------------------------


def test_the_mcp_door_appends_in_two_statements(make_agent: Any) -> None:
    _, key = make_agent()
    did = open_decision(AgentClient(key))
    with CaptureQueriesContext(connection) as queries:
        response = mcp_post(key, "decision_add_context", {"decision_id": did, "context": {"n": 1}})
    assert response.status_code == 200, response.content
    assert [sql.split(" ")[0] for sql in ours(queries)] == ["SELECT", "WITH"], ours(queries)
    assert_chain_valid(did, 2)


# --- the outage answer of a statement the server cancelled ------------------------------------------


def test_a_compare_and_swap_cancelled_while_waiting_says_not_applied(
    make_agent: Any, between_read_and_insert: Any
) -> None:
    """A statement PostgreSQL cancelled (statement_timeout, lock_timeout, pg_cancel_backend) answered
    with an error: it did not commit. The locked path says ``applied: false`` for the same cancel during
    its lock's wait; the compare-and-swap says ``"unknown"`` (outage.committing_statement marks every
    OperationalError as lost while committing)."""
    _, key = make_agent()
    api = AgentClient(key)
    did = open_decision(api)
    held = threading.Event()

    def release(watcher: psycopg.Connection[Any]) -> None:
        wait_for(lambda: _cas_waits(watcher), 10, "the compare-and-swap to wait for the row")
        watcher.execute(
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE %s",
            ["WITH unchanged AS%"],
        )

    thread = _holder(did, "FOR UPDATE", held, release)

    def start() -> None:
        thread.start()
        assert held.wait(10)

    between_read_and_insert(start)
    response = api.post(f"/api/v1/decisions/{did}/context", {"context": {"mine": True}})
    thread.join(10)
    assert response.status_code == 503, response.content
    connection.close()
    assert seqs(did) == [1]  # nothing was applied ...
    assert response.json()["error"]["details"]["applied"] is False  # ... and the answer should say so


def test_the_locked_path_cancelled_while_waiting_says_not_applied(make_agent: Any) -> None:
    """The same cancel against the locked path (a caller's transaction open: no compare-and-swap)."""
    agent, _ = make_agent()
    did = decision_services.decision_create(
        actor=Actor.for_agent(agent), intent="code.refactor.execute", automation_mode="autonomous"
    ).decision_id
    held = threading.Event()

    def release(watcher: psycopg.Connection[Any]) -> None:
        def lock_waits() -> bool:
            row = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
                ["%FOR UPDATE%"],
            ).fetchone()
            return bool(row and row[0])

        wait_for(lock_waits, 10, "the lock to wait")
        watcher.execute(
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE %s",
            ["%FOR UPDATE%"],
        )

    thread = _holder(did, "FOR UPDATE", held, release)
    thread.start()
    assert held.wait(10)
    from tracemem_core import outage

    with outage.tracking_commits():
        try:
            with transaction.atomic():
                decision_services.decision_add_context(
                    actor=Actor.for_agent(agent), decision_id=did, context={"n": 1}
                )
        except Exception as exc:  # the cancel
            answer = outage.database_outage(exc)
        else:
            answer = None
    thread.join(10)
    assert answer is not None and answer.details["applied"] is False


# --- contention: appends, batches, evaluations and a close on one decision -------------------------


def test_sixteen_threads_appending_evaluating_and_one_closing_lose_and_duplicate_nothing(
    make_agent: Any,
) -> None:
    agent, _ = make_agent()
    policy_authoring.policy_create(actor=SYSTEM, policy_id=PID, definition=ALLOWING)
    policy_authoring.policy_publish(actor=SYSTEM, policy_id=PID)
    policy_authoring.policy_grant(actor=SYSTEM, policy_id=PID, agent_id=agent.agent_id)
    did = decision_services.decision_create(
        actor=Actor.for_agent(agent), intent="code.refactor.execute", automation_mode="autonomous"
    ).decision_id
    start = threading.Barrier(16)
    recorded: list[str] = []
    refused: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        try:
            actor = Actor.for_agent(Agent.objects.get(pk=agent.pk))
            start.wait()
            for j in range(6):
                marker = f"{i}-{j}"
                try:
                    if i == 0 and j == 3:
                        decision_services.decision_close(actor=actor, decision_id=did, action="abort")
                        continue
                    kind = (i + j) % 4
                    if kind == 0:
                        decision_services.decision_add_context(
                            actor=actor, decision_id=did, context={"m": marker}
                        )
                    elif kind == 1:
                        decision_services.decision_add_contexts(
                            actor=actor, decision_id=did, contexts=[{"m": marker}, {"m": marker + "b"}]
                        )
                    else:  # an allow (compare-and-swap) or a requires_exception (noted under the lock)
                        change = "docs" if kind == 2 else "refactor"
                        evaluation.decision_evaluate(
                            actor=actor,
                            decision_id=did,
                            policy_id=PID,
                            inputs={"change_type": change, "m": marker},
                        )
                except InvalidState:
                    with lock:
                        refused.append(marker)
                    continue
                with lock:
                    recorded.append(marker)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    events = list(TraceEvent.objects.filter(decision_id=did).order_by("seq"))
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[-1].type == "close"  # nothing after the close
    markers: list[str] = []
    for e in events:
        if e.type == "context":
            markers.append(e.payload["context"]["m"])
        elif e.type == "evaluate":
            markers.append(e.payload["inputs"]["m"])
    assert len(markers) == len(set(markers))  # nothing twice
    singles = {m[:-1] for m in markers if m.endswith("b")}
    for m in singles:
        assert m in markers  # a batch whole or not at all
    assert {m for m in markers if not m.endswith("b")} == set(recorded)  # every success, no refusal
    assert not set(refused) & set(markers)
    assert refused  # some calls came after the close
    decision = Decision.objects.get(pk=did)
    assert decision.status == "aborted" and decision.event_count == len(events)
    assert decision_problems(decision) == []
    call_command("verify_traces", decision=did)


def test_after_a_cancelled_compare_and_swap_the_connection_appends_again_without_the_lock(
    make_agent: Any, between_read_and_insert: Any
) -> None:
    """The cancelled statement was the connection's first compare-and-swap (prepared by that very
    execution): the connection is kept (it is usable) and its next append must still work, in two
    statements, with the prepared statement psycopg may or may not have recorded."""
    _, key = make_agent()
    api = AgentClient(key)
    did = open_decision(api)
    held = threading.Event()

    def release(watcher: psycopg.Connection[Any]) -> None:
        wait_for(lambda: _cas_waits(watcher), 10, "the compare-and-swap to wait for the row")
        watcher.execute(
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE %s",
            ["WITH unchanged AS%"],
        )

    thread = _holder(did, "FOR UPDATE", held, release)

    def start() -> None:
        thread.start()
        assert held.wait(10)

    between_read_and_insert(start)
    pid = connection.connection.info.backend_pid if connection.connection else None
    response = api.post(f"/api/v1/decisions/{did}/context", {"context": {"mine": True}})
    thread.join(10)
    assert response.status_code == 503, response.content
    assert connection.connection is not None and connection.connection.info.backend_pid == pid  # kept
    for n in range(3):
        with CaptureQueriesContext(connection) as queries:
            again = api.post(f"/api/v1/decisions/{did}/context", {"context": {"n": n}})
        assert again.status_code == 201, again.content
        assert [sql.split(" ")[0] for sql in ours(queries)] == ["SELECT", "WITH"], ours(queries)
    assert connection.connection.info.backend_pid == pid
    assert_chain_valid(did, 4)
