"""Batch context (docs/contract/interfaces.md): ``decision_add_context {decision_id, contexts: [obj, ...≤100]}`` →
``{events: [{event_id, seq, timestamp}]}`` — one lock, one multi-row insert, each event chained as
if appended one by one; all or nothing; the same over MCP and REST (issue 17)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from decisions import services
from decisions.integrity import decision_problems
from decisions.models import Decision, TraceEvent
from tests.conftest import AgentClient
from tests.mcp_helpers import call_both, call_tool, error_code
from tracemem_core.actor import Actor
from tracemem_verify.chain import verify_chain


def _open(api: AgentClient) -> str:
    answer = api.post(
        "/api/v1/decisions", {"intent": "code.refactor.execute", "automation_mode": "autonomous"}
    )
    assert answer.status_code == 201, answer.content
    return answer.json()["decision_id"]


def _events(decision_id: str) -> list[dict[str, Any]]:
    from decisions.selectors import event_as_dict

    return [event_as_dict(e) for e in TraceEvent.objects.filter(decision_id=decision_id).order_by("seq")]


@pytest.mark.django_db
def test_batch_records_each_object_as_a_chained_context_event_in_order(api: AgentClient) -> None:
    decision_id = _open(api)
    contexts = [{"step": n, "note": "ünïcode ✓"} for n in range(3)] + [{"password": "hunter2", "ok": True}]
    answer = api.post(f"/api/v1/decisions/{decision_id}/context", {"contexts": contexts})
    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert list(body) == ["events"]
    assert [e["seq"] for e in body["events"]] == [2, 3, 4, 5]
    assert all(set(e) == {"event_id", "seq", "timestamp"} for e in body["events"])
    events = _events(decision_id)
    assert [e["event_id"] for e in events[1:]] == [e["event_id"] for e in body["events"]]
    assert [e["timestamp"] for e in events[1:]] == [e["timestamp"] for e in body["events"]]
    assert [e["type"] for e in events] == ["created"] + ["context"] * 4
    assert [e["payload"] for e in events[1:]] == [{"context": c} for c in contexts[:3]] + [
        {"context": {"password": "[redacted]", "ok": True}}
    ]
    assert verify_chain(decision_id, events) is None
    decision = Decision.objects.get(pk=decision_id)
    assert (decision.event_count, decision.trace_head) == (5, events[-1]["hash"])
    assert decision_problems(decision) == []


@pytest.mark.django_db
def test_batch_of_one_and_of_a_hundred(api: AgentClient) -> None:
    decision_id = _open(api)
    one = api.post(f"/api/v1/decisions/{decision_id}/context", {"contexts": [{"a": 1}]})
    assert [e["seq"] for e in one.json()["events"]] == [2]
    hundred = api.post(
        f"/api/v1/decisions/{decision_id}/context", {"contexts": [{"n": n} for n in range(100)]}
    )
    assert hundred.status_code == 201
    assert [e["seq"] for e in hundred.json()["events"]] == list(range(3, 103))
    assert verify_chain(decision_id, _events(decision_id)) is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"contexts": [{"n": n} for n in range(101)]}, "contexts", "1 to 100 objects, got 101"),
        ({"contexts": []}, "contexts", "1 to 100 objects, got 0"),
        ({"contexts": {"a": 1}}, "contexts", "must be an array"),
        ({"contexts": [{"a": 1}, "text"]}, "contexts[1]", "contexts[1] must be a JSON object"),
        ({"contexts": [{"a": 1}, {}]}, "contexts[1]", "contexts[1] must be a non-empty object"),
        ({"contexts": [{"a": 1}], "context": {"b": 2}}, "context", "not both"),
        ({"contexts": [{"a": 1}], "summary": "s"}, "summary", "not both"),
        ({"contexts": [{"a": "\u0000"}]}, "contexts[0].a", "NUL"),
    ],
)
def test_a_bad_batch_names_the_field_and_records_nothing(
    api: AgentClient, body: dict[str, Any], field: str, words: str
) -> None:
    decision_id = _open(api)
    answer = api.post(f"/api/v1/decisions/{decision_id}/context", body)
    assert answer.status_code == 400, answer.content
    error = answer.json()["error"]
    assert (error["code"], error["details"]["field"]) == ("invalid_argument", field)
    assert words in error["message"]
    assert Decision.objects.get(pk=decision_id).event_count == 1
    assert TraceEvent.objects.filter(decision_id=decision_id).count() == 1


@pytest.mark.django_db
def test_a_batch_on_a_closed_decision_is_invalid_state_and_records_nothing(api: AgentClient) -> None:
    decision_id = _open(api)
    assert api.post(f"/api/v1/decisions/{decision_id}/close", {"action": "abort"}).status_code == 200
    answer = api.post(f"/api/v1/decisions/{decision_id}/context", {"contexts": [{"a": 1}]})
    assert (answer.status_code, answer.json()["error"]["code"]) == (409, "invalid_state")
    assert TraceEvent.objects.filter(decision_id=decision_id).count() == 2


@pytest.mark.django_db
def test_a_batch_is_one_lock_one_insert(api: AgentClient, agent_actor: Actor) -> None:
    from django.test.utils import CaptureQueriesContext

    decision_id = _open(api)
    with CaptureQueriesContext(connection) as queries:
        events = services.decision_add_contexts(
            actor=agent_actor, decision_id=decision_id, contexts=[{"n": n} for n in range(50)]
        )
    statements = [q["sql"].split()[0].upper() for q in queries.captured_queries]
    assert [s for s in statements if s in ("SELECT", "INSERT", "UPDATE")] == ["SELECT", "INSERT"]
    assert len(events) == 50


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_and_single_appends_keep_one_gapless_chain(
    make_agent: Any,
) -> None:
    agent, key = make_agent("batcher")
    actor = Actor.for_agent(agent)
    decision_id = services.decision_create(
        actor=actor, intent="code.refactor.execute", automation_mode="autonomous"
    ).decision_id
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for round_ in range(5):
                if i % 2:
                    services.decision_add_contexts(
                        actor=actor,
                        decision_id=decision_id,
                        contexts=[{"t": i, "r": round_, "k": k} for k in range(7)],
                    )
                else:
                    services.decision_add_context(
                        actor=actor, decision_id=decision_id, context={"t": i, "r": round_}
                    )
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    events = _events(decision_id)
    assert [e["seq"] for e in events] == list(range(1, 1 + 1 + 3 * 5 * 7 + 3 * 5))
    assert verify_chain(decision_id, events) is None
    assert Decision.objects.get(pk=decision_id).event_count == len(events)


@pytest.mark.django_db(transaction=True)
def test_batch_context_is_the_same_over_mcp_and_rest(live_server: Any, make_agent: Any) -> None:
    _, key = make_agent("both-doors")
    results = {}
    for door in ("mcp", "rest"):
        is_error, created = call_tool(
            door, live_server, key, "decision_create", {"intent": "a.b.c", "automation_mode": "autonomous"}
        )
        assert not is_error, created
        did = created["decision_id"]
        is_error, added = call_tool(
            door,
            live_server,
            key,
            "decision_add_context",
            {"decision_id": did, "contexts": [{"a": 1}, {"b": 2}]},
        )
        assert not is_error, added
        results[door] = [(e["seq"], sorted(e)) for e in added["events"]]
        assert [e["payload"] for e in _events(did)[1:]] == [{"context": {"a": 1}}, {"context": {"b": 2}}]
    assert (
        results["mcp"]
        == results["rest"]
        == [(2, ["event_id", "seq", "timestamp"]), (3, ["event_id", "seq", "timestamp"])]
    )
    refusals = call_both(
        live_server, key, "decision_add_context", {"decision_id": did, "contexts": [{"a": 1}] * 101}
    )
    assert {door: error_code(value) for door, (_, value) in refusals.items()} == {
        "mcp": "invalid_argument",
        "rest": "invalid_argument",
    }
