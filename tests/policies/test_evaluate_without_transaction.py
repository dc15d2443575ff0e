"""``decision_evaluate`` on PostgreSQL without BEGIN/COMMIT (issue 17, docs/performance.md §29): the
decision, the grant and the latest published version read without a lock in one statement, the
evaluation, then ONE statement that inserts the event only if the decision's row is unchanged, the
grant still there and the version still the latest published. Anything else — the row changed, the
grant revoked, another version published, an outcome that must be noted on the decision — takes the
locked path of before, whose answers are unchanged.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from agents.models import Agent
from decisions import services as decision_services
from decisions.integrity import decision_problems
from decisions.models import Decision, TraceEvent
from policies import engine
from policies.services import authoring as policy_authoring
from policies.services import evaluation
from tests.conftest import AgentClient, owner_sql
from tests.fault_helpers import once_after
from tests.policies.test_doors import CODE_POLICY
from tracemem_core import metrics
from tracemem_core.actor import Actor

pytestmark = pytest.mark.django_db(transaction=True)

SYSTEM = Actor.system("test")
PID = "code_change_policy_v1"
# CODE_POLICY with the default outcome allow: no rule matches docs changes, so they are allowed
ALLOWING = {**CODE_POLICY, "default_outcome": "allow"}
ALLOW = {"change_type": "docs"}
EXCEPTION = {"change_type": "refactor"}  # requires_exception, noted on the decision


def ours(queries: Any) -> list[str]:
    return [
        q["sql"]
        for q in queries
        if "decisions_" in q["sql"]
        or "policies_" in q["sql"]
        or q["sql"].strip().upper() in ("BEGIN", "COMMIT", "ROLLBACK")
    ]


def setup(make_agent: Any) -> tuple[Any, AgentClient, str]:
    agent, key = make_agent()
    policy_authoring.policy_create(actor=SYSTEM, policy_id=PID, definition=ALLOWING)
    policy_authoring.policy_publish(actor=SYSTEM, policy_id=PID)
    policy_authoring.policy_grant(actor=SYSTEM, policy_id=PID, agent_id=agent.agent_id)
    did = decision_services.decision_create(
        actor=Actor.for_agent(agent), intent="code.refactor.execute", automation_mode="autonomous"
    ).decision_id
    return agent, AgentClient(key), did


def evaluate(api: AgentClient, did: str, inputs: dict[str, Any], policy_id: str = PID) -> Any:
    return api.post(f"/api/v1/decisions/{did}/evaluate", {"policy_id": policy_id, "inputs": inputs})


def evaluations(outcome: str) -> float:
    return metrics.POLICY_EVALUATIONS.labels(outcome)._value.get()


@pytest.fixture
def between_read_and_insert(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[], None]], None]:
    """Run something once while the call evaluates (after its read, before its insert), in a
    thread of its own with its own connection, as another request would."""
    return once_after(monkeypatch, engine, "evaluate")


def test_an_allowed_evaluation_over_rest_is_two_statements_without_begin_or_commit(make_agent: Any) -> None:
    _, api, did = setup(make_agent)
    before = evaluations("allow")
    with CaptureQueriesContext(connection) as queries:
        response = evaluate(api, did, ALLOW)
    assert response.status_code == 200, response.content
    statements = ours(queries)
    assert len(statements) == 2, statements
    read, insert = statements
    assert read.startswith("SELECT") and "FOR UPDATE" not in read and "policies_policygrant" in read
    assert insert.startswith("WITH") and "INSERT INTO decisions_traceevent" in insert
    assert "policies_policygrant" in insert  # the grant is checked again by the insert itself
    body = response.json()
    assert body["outcome"] == "allow" and body["allowed"] is True
    event = TraceEvent.objects.get(event_id=body["event_id"])
    assert (event.seq, event.type, event.payload["outcome"]) == (2, "evaluate", "allow")
    assert evaluations("allow") == before + 1  # counted once, after the insert committed
    decision = Decision.objects.get(pk=did)
    assert decision.event_count == 2 and decision_problems(decision) == []


def test_an_outcome_noted_on_the_decision_takes_the_locked_path(make_agent: Any) -> None:
    _, api, did = setup(make_agent)
    before = evaluations("requires_exception")
    with CaptureQueriesContext(connection) as queries:
        response = evaluate(api, did, EXCEPTION)
    assert response.status_code == 200, response.content
    kinds = [sql.split(" ")[0] for sql in ours(queries)]
    assert kinds[-5:] == ["BEGIN", "SELECT", "INSERT", "UPDATE", "COMMIT"], ours(queries)
    assert "WITH" not in kinds  # nothing was tried without the lock
    decision = Decision.objects.get(pk=did)
    assert decision.last_exception_seq == 2 and decision.event_count == 2
    assert evaluations("requires_exception") == before + 1  # once, though evaluated twice


def test_an_evaluation_racing_an_append_falls_back_and_records_both(
    make_agent: Any, between_read_and_insert: Any
) -> None:
    agent, api, did = setup(make_agent)
    between_read_and_insert(
        lambda: decision_services.decision_add_context(
            actor=Actor.for_agent(agent), decision_id=did, context={"racing": True}
        )
    )
    before = evaluations("allow")
    response = evaluate(api, did, ALLOW)
    assert response.status_code == 200, response.content
    event = TraceEvent.objects.get(event_id=response.json()["event_id"])
    assert event.seq == 3
    assert evaluations("allow") == before + 1
    decision = Decision.objects.get(pk=did)
    assert decision.event_count == 3 and decision_problems(decision) == []


def test_a_grant_revoked_before_the_insert_is_refused_as_before(
    make_agent: Any, between_read_and_insert: Any
) -> None:
    agent, api, did = setup(make_agent)
    between_read_and_insert(
        lambda: policy_authoring.policy_grant_revoke(actor=SYSTEM, policy_id=PID, agent_id=agent.agent_id)
    )
    response = evaluate(api, did, ALLOW)
    assert response.status_code == 403, response.content
    error = response.json()["error"]
    assert error["code"] == "permission_denied"
    assert error["message"].startswith(f"policy {PID} is not granted to agent {agent.name}")
    assert TraceEvent.objects.filter(decision_id=did).count() == 1
    later = evaluate(api, did, ALLOW)  # what a later call says, too
    assert (later.status_code, later.json()["error"]["message"]) == (403, error["message"])


def test_a_version_published_before_the_insert_is_the_one_evaluated(
    make_agent: Any, between_read_and_insert: Any
) -> None:
    _, api, did = setup(make_agent)
    changed = {**ALLOWING, "rules": [{**CODE_POLICY["rules"][0], "when": 'inputs.change_type == "x"'}]}

    def publish_v2() -> None:
        policy_authoring.policy_draft_save(actor=SYSTEM, policy_id=PID, definition=changed)
        policy_authoring.policy_publish(actor=SYSTEM, policy_id=PID)

    between_read_and_insert(publish_v2)
    response = evaluate(api, did, ALLOW)
    assert response.status_code == 200, response.content
    assert response.json()["policy_version"] == 2
    assert TraceEvent.objects.filter(decision_id=did, type="evaluate").get().payload["policy_version"] == 2


def test_a_decision_closed_before_the_insert_refuses_as_before(
    make_agent: Any, between_read_and_insert: Any
) -> None:
    agent, api, did = setup(make_agent)
    between_read_and_insert(
        lambda: decision_services.decision_close(
            actor=Actor.for_agent(agent), decision_id=did, action="abort"
        )
    )
    response = evaluate(api, did, ALLOW)
    assert response.status_code == 409, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_state"
    assert error["message"] == (
        f"decision {did} is aborted: a closed decision cannot be evaluated; create a new decision"
    )
    assert list(
        TraceEvent.objects.filter(decision_id=did).values_list("type", flat=True).order_by("seq")
    ) == [
        "created",
        "close",
    ]
    later = evaluate(api, did, ALLOW)
    assert (later.status_code, later.json()["error"]["message"]) == (409, error["message"])


def test_refusals_are_the_same_without_the_lock(make_agent: Any) -> None:
    agent, api, did = setup(make_agent)
    status_and_code = []
    for policy_id, target in (("nope_v1", did), (PID, "TMEM_" + "0" * 26)):
        response = evaluate(api, target, ALLOW, policy_id)
        status_and_code.append((response.status_code, response.json()["error"]["code"]))
    assert status_and_code == [(403, "permission_denied"), (404, "not_found")]
    other, _ = make_agent()
    foreign = decision_services.decision_create(
        actor=Actor.for_agent(other), intent="code.refactor.execute", automation_mode="autonomous"
    ).decision_id
    response = evaluate(api, foreign, ALLOW, "nope_v1")  # not found before any word about the policy
    assert response.status_code == 404 and response.json()["error"]["message"] == (
        f"decision {foreign} was not found; check the id returned by decision_create"
    )
    policy_authoring.policy_retire(actor=SYSTEM, policy_id=PID)
    response = evaluate(api, did, ALLOW)
    assert response.status_code == 404
    assert response.json()["error"]["message"] == (
        f"policy {PID} has no published version; an admin must publish it first"
    )
    assert TraceEvent.objects.filter(decision_id=did).count() == 1


@pytest.fixture
def cut_during_insert() -> Iterator[None]:
    owner_sql(
        "CREATE FUNCTION test_cut_self() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$ BEGIN "
        "PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(5); RETURN NEW; END $$",
        "CREATE TRIGGER test_cut_self BEFORE INSERT ON decisions_traceevent FOR EACH ROW "
        "WHEN (NEW.payload->'inputs'->>'cut' = 'here') EXECUTE FUNCTION test_cut_self()",
    )
    try:
        yield
    finally:
        connection.close()
        owner_sql("DROP TRIGGER test_cut_self ON decisions_traceevent", "DROP FUNCTION test_cut_self()")


def test_a_connection_lost_during_the_insert_says_applied_unknown(
    make_agent: Any, cut_during_insert: None
) -> None:
    _, api, did = setup(make_agent)
    before = evaluations("allow")
    response = evaluate(api, did, {**ALLOW, "cut": "here"})
    assert response.status_code == 503, response.content
    assert response.json()["error"]["details"]["applied"] == "unknown"
    connection.close()
    assert TraceEvent.objects.filter(decision_id=did).count() == 1
    assert evaluations("allow") == before


def test_sixteen_threads_evaluating_and_appending_without_the_lock_keep_the_chain_gapless(
    make_agent: Any,
) -> None:
    """As tests/policies/test_evaluation_target.py's sixteen threads, with outcomes that need no note
    on the decision: every call tries the compare-and-swap first, and those that lose the race
    append under the lock."""
    agent, _, did = setup(make_agent)
    errors: list[BaseException] = []
    start = threading.Barrier(16)

    def work(i: int) -> None:
        try:
            actor = Actor.for_agent(Agent.objects.get(pk=agent.pk))
            start.wait()
            for j in range(3):
                if i % 2:
                    evaluation.decision_evaluate(
                        actor=actor, decision_id=did, policy_id=PID, inputs={**ALLOW, "n": i, "j": j}
                    )
                else:
                    decision_services.decision_add_context(
                        actor=actor, decision_id=did, context={"n": i, "j": j}
                    )
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
    assert [e.seq for e in events] == list(range(1, 50))
    assert sorted(e.type for e in events[1:]) == ["context"] * 24 + ["evaluate"] * 24
    assert sorted(
        json.dumps(e.payload["inputs"], sort_keys=True) for e in events if e.type == "evaluate"
    ) == sorted(
        json.dumps({**ALLOW, "n": i, "j": j}, sort_keys=True) for i in range(1, 16, 2) for j in range(3)
    )
    decision = Decision.objects.get(pk=did)
    assert decision.event_count == 49 and decision.trace_head == events[-1].hash
    assert decision_problems(decision) == []
    call_command("verify_traces", decision=did)
