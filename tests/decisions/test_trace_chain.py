"""The hash chain (docs/contract/states.md): recomputable from decision_trace alone, protected by PostgreSQL itself
(the app role the suite runs as may only SELECT and INSERT events; tests/core/test_db_roles.py drives it
by hand), and a break made behind the app's back by the PostgreSQL superuser is reported by
``verify_traces`` with the decision and the seq."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, connections, transaction

from agents.models import Agent
from decisions import services
from decisions.models import Decision, TraceEvent
from tests.conftest import AgentClient, superuser_sql
from tracemem_core.actor import Actor
from tracemem_verify.chain import GENESIS_HASH, event_hash, verify_chain


def _decision_with_context(actor: Actor, n: int = 3) -> Decision:
    decision = services.decision_create(
        actor=actor, intent="code.refactor.execute", automation_mode="autonomous", metadata={"a": 1}
    )
    for i in range(n):
        services.decision_add_context(actor=actor, decision_id=decision.decision_id, context={"step": i})
    return decision


@pytest.mark.django_db
def test_chain_recomputed_from_decision_trace_output_matches(api: AgentClient, agent_actor: Actor) -> None:
    decision = _decision_with_context(agent_actor, 2)
    services.decision_close(actor=agent_actor, decision_id=decision.decision_id, action="commit")
    trace = api.get(f"/api/v1/decisions/{decision.decision_id}/trace").json()
    events = trace["events"]
    assert [e["seq"] for e in events] == [1, 2, 3, 4]
    assert [e["type"] for e in events] == ["created", "context", "context", "close"]
    assert events[0]["prev_hash"] == GENESIS_HASH
    for previous, event in zip(events, events[1:], strict=False):
        assert event["prev_hash"] == previous["hash"]
    assert all(event_hash(e) == e["hash"] for e in events)
    assert verify_chain(decision.decision_id, events) is None
    assert trace["trace_head"] == events[-1]["hash"]
    assert trace["event_count"] == 4


@pytest.mark.django_db
def test_chain_recomputation_notices_a_changed_payload(api: AgentClient, agent_actor: Actor) -> None:
    decision = _decision_with_context(agent_actor, 2)
    events = api.get(f"/api/v1/decisions/{decision.decision_id}/trace").json()["events"]
    events[1]["payload"]["context"]["step"] = 99
    broken = verify_chain(decision.decision_id, events)
    assert broken is not None and broken.seq == 2
    assert broken.reason == "hash does not match the event's content"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE decisions_traceevent SET payload = '{}'::jsonb",
        "DELETE FROM decisions_traceevent",
    ],
    ids=["update", "delete"],
)
def test_postgresql_refuses_to_change_trace_events(agent_actor: Actor, sql: str) -> None:
    decision = _decision_with_context(agent_actor, 1)
    before = [(e.event_id, e.payload, e.hash) for e in TraceEvent.objects.filter(decision=decision)]
    with pytest.raises(DatabaseError, match="permission denied for table decisions_traceevent"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql)
    after = [(e.event_id, e.payload, e.hash) for e in TraceEvent.objects.filter(decision=decision)]
    assert after == before and len(after) == 2


# TRUNCATE needs committed rows: inside the test's own transaction PostgreSQL would refuse it for
# pending FK checks before the privilege check ever ran, and the test would prove nothing.
@pytest.mark.django_db(transaction=True)
def test_postgresql_refuses_to_truncate_trace_events(make_agent: Any) -> None:
    agent, _ = make_agent("truncate-agent")
    decision = _decision_with_context(Actor.for_agent(agent), 1)
    with pytest.raises(DatabaseError, match="permission denied for table decisions_traceevent"):
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE decisions_traceevent")
    assert TraceEvent.objects.filter(decision=decision).count() == 2


@pytest.mark.django_db
def test_orm_delete_of_an_event_is_refused(agent_actor: Actor) -> None:
    decision = _decision_with_context(agent_actor, 0)
    with pytest.raises(DatabaseError), transaction.atomic():
        TraceEvent.objects.filter(decision=decision).delete()
    assert TraceEvent.objects.filter(decision=decision).count() == 1


@pytest.mark.django_db
def test_verify_traces_accepts_intact_traces(agent_actor: Actor, capsys: Any) -> None:
    _decision_with_context(agent_actor, 2)
    _decision_with_context(agent_actor, 1)
    call_command("verify_traces")
    assert "OK: 2 decisions verified" in capsys.readouterr().out


@pytest.mark.django_db(transaction=True)
def test_verify_traces_reports_a_corrupted_event_with_decision_and_seq(
    agent_actor: Actor, capsys: Any
) -> None:
    intact = _decision_with_context(agent_actor, 3)
    tampered = _decision_with_context(agent_actor, 3)
    superuser_sql(
        'UPDATE decisions_traceevent SET payload = \'{"context": {"step": "forged"}}\' '
        "WHERE decision_id = %s AND seq = 3",
        params=[tampered.decision_id],
    )
    with pytest.raises(CommandError, match="1 of 2 decisions fail verification"):
        call_command("verify_traces")
    err = capsys.readouterr().err
    assert f"decision {tampered.decision_id}: broken at seq 3" in err
    assert intact.decision_id not in err
    # --decision narrows to one trace: the intact one passes, the tampered one fails.
    call_command("verify_traces", "--decision", intact.decision_id)
    with pytest.raises(CommandError):
        call_command("verify_traces", "--decision", tampered.decision_id)


@pytest.mark.django_db(transaction=True)
def test_verify_traces_exits_non_zero_from_the_command_line(agent_actor: Actor) -> None:
    tampered = _decision_with_context(agent_actor, 1)
    superuser_sql(
        "UPDATE decisions_traceevent SET prev_hash = %s WHERE decision_id = %s AND seq = 1",
        params=["1" * 64, tampered.decision_id],
    )
    from django.core.management import ManagementUtility

    with pytest.raises(SystemExit) as exit_info:
        ManagementUtility(["manage.py", "verify_traces"]).execute()
    assert exit_info.value.code != 0


@pytest.mark.django_db(transaction=True)
def test_twenty_threads_appending_context_keep_the_chain_gapless(make_agent: Any) -> None:
    agent, _ = make_agent("concurrent-agent")
    actor = Actor.for_agent(agent)
    decision = services.decision_create(actor=actor, intent="load.test.append", automation_mode="autonomous")
    errors: list[BaseException] = []
    start = threading.Barrier(20)

    def append(i: int) -> None:
        try:
            thread_actor = Actor.for_agent(Agent.objects.get(pk=agent.pk))
            start.wait()
            services.decision_add_context(
                actor=thread_actor, decision_id=decision.decision_id, context={"thread": i}
            )
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=append, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    events = list(TraceEvent.objects.filter(decision=decision).order_by("seq"))
    assert [e.seq for e in events] == list(range(1, 22))
    assert sorted(e.payload["context"]["thread"] for e in events[1:]) == list(range(20))
    decision.refresh_from_db()
    assert decision.event_count == 21 and decision.trace_head == events[-1].hash
    from decisions.integrity import decision_problems

    assert decision_problems(decision) == []
