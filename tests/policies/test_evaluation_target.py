"""decision_evaluate reads the grant and the latest published version in one plain statement, the
one that locks the decision (issue 17): it answers exactly what the two ORM reads answer, through
every state a policy goes through, and the evaluate door still refuses and evaluates as before."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection, transaction
from django.forms.models import model_to_dict
from django.test.utils import CaptureQueriesContext

from decisions import services as decision_services
from decisions.models import TraceEvent
from policies import selectors
from policies.services import authoring as policy_authoring
from tests.policies.test_doors import CODE_POLICY, open_decision
from tracemem_core.actor import Actor

SYSTEM = Actor.system("test")


def same_as_orm(agent: Any, policy_id: str) -> tuple[bool, Any]:
    granted, pv = selectors.evaluation_target(agent, policy_id)
    # decision_evaluate's own read: the same answer from the statement that locks the decision
    with transaction.atomic():
        decision, joined = decision_services.decision_lock_with(
            actor=Actor.for_agent(agent),
            decision_id=open_decision(agent),
            join=selectors.EVALUATION_JOIN,
            params=selectors.evaluation_join_params(policy_id),
        )
    assert joined is not None and decision.agent_id == agent.agent_id
    locked_granted, locked_pv = selectors.evaluation_target_of(joined)
    assert locked_granted is granted
    assert (locked_pv and model_to_dict(locked_pv)) == (pv and model_to_dict(pv))
    assert granted is selectors.agent_may_evaluate(agent, policy_id)
    expected = selectors.latest_published(policy_id)
    if expected is None:
        assert pv is None
    else:
        assert pv is not None and pv.pk == expected.pk
        assert model_to_dict(pv) == model_to_dict(expected)
        assert (pv.created_at, pv.updated_at, pv.published_at) == (
            expected.created_at,
            expected.updated_at,
            expected.published_at,
        )
        assert pv.content() == expected.content() and pv.hash == expected.hash
    return granted, pv


@pytest.mark.django_db
def test_evaluation_target_equals_the_orm_reads_in_every_state(make_agent: Any) -> None:
    agent, _ = make_agent()
    other, _ = make_agent()
    pid = "target_v1"
    assert same_as_orm(agent, pid) == (False, None)  # no such policy
    policy_authoring.policy_create(actor=SYSTEM, policy_id=pid, definition=CODE_POLICY)
    assert same_as_orm(agent, pid) == (False, None)  # a draft only
    policy_authoring.policy_grant(actor=SYSTEM, policy_id=pid, agent_id=agent.agent_id)
    assert same_as_orm(agent, pid) == (True, None)  # granted, nothing published
    v1 = policy_authoring.policy_publish(actor=SYSTEM, policy_id=pid)
    granted, pv = same_as_orm(agent, pid)
    assert granted and pv.version == v1.version == 1
    assert same_as_orm(other, pid)[0] is False  # another agent: not granted, the version still read
    changed = {**CODE_POLICY, "rules": [{**CODE_POLICY["rules"][0], "when": 'inputs.change_type == "x"'}]}
    policy_authoring.policy_draft_save(actor=SYSTEM, policy_id=pid, definition=changed)
    assert same_as_orm(agent, pid)[1].version == 1  # a newer draft is not published
    policy_authoring.policy_publish(actor=SYSTEM, policy_id=pid)
    granted, pv = same_as_orm(agent, pid)
    assert pv.version == 2 and pv.rules == changed["rules"]
    policy_authoring.policy_retire(actor=SYSTEM, policy_id=pid)
    assert same_as_orm(agent, pid) == (True, None)  # retired: nothing to evaluate
    policy_authoring.policy_grant_revoke(actor=SYSTEM, policy_id=pid, agent_id=agent.agent_id)
    assert same_as_orm(agent, pid) == (False, None)


@pytest.mark.django_db
def test_evaluate_door_refuses_and_evaluates_as_before(make_agent: Any, client: Any) -> None:
    agent, key = make_agent()
    did = open_decision(agent)
    auth = {"HTTP_AUTHORIZATION": f"Agent {key}"}

    def evaluate(policy_id: str) -> Any:
        body = {"policy_id": policy_id, "inputs": {"change_type": "refactor"}}
        response = client.post(
            f"/api/v1/decisions/{did}/evaluate", json.dumps(body), content_type="application/json", **auth
        )
        return response.status_code, response.json()

    status, body = evaluate("nope_v1")
    assert status == 403 and body["error"]["code"] == "permission_denied"  # not granted comes first
    assert body["error"]["message"].startswith(f"policy nope_v1 is not granted to agent {agent.name}")
    policy_authoring.policy_create(actor=SYSTEM, policy_id="door_v1", definition=CODE_POLICY)
    policy_authoring.policy_grant(actor=SYSTEM, policy_id="door_v1", agent_id=agent.agent_id)
    status, body = evaluate("door_v1")
    assert status == 404 and body["error"]["code"] == "not_found"  # granted, nothing published
    assert body["error"]["message"] == (
        "policy door_v1 has no published version; an admin must publish it first"
    )
    pv = policy_authoring.policy_publish(actor=SYSTEM, policy_id="door_v1")
    with CaptureQueriesContext(connection) as queries:
        status, body = evaluate("door_v1")
    assert status == 200, body
    # inside the test's transaction: no BEGIN/COMMIT; the lock (with the grant and the version) and
    # the event's insert, nothing else (a requires_exception outcome also notes it on the decision)
    ours = [q["sql"].split(" ")[0] for q in queries if "decisions_" in q["sql"] or "policies_" in q["sql"]]
    assert ours == ["SELECT", "INSERT", "UPDATE"], [q["sql"][:80] for q in queries]
    assert (body["policy_version"], body["policy_hash"], body["outcome"]) == (
        pv.version,
        pv.hash,
        "requires_exception",
    )
    assert body["approval_route_id"] == "route_eng"

    # a revoked grant is refused, and nothing is appended
    events = TraceEvent.objects.filter(decision_id=did).count()
    policy_authoring.policy_grant_revoke(actor=SYSTEM, policy_id="door_v1", agent_id=agent.agent_id)
    status, body = evaluate("door_v1")
    assert status == 403 and body["error"]["code"] == "permission_denied"
    assert TraceEvent.objects.filter(decision_id=did).count() == events
    # another agent's decision is not found, granted or not, before any word about the policy
    other, _ = make_agent()
    policy_authoring.policy_grant(actor=SYSTEM, policy_id="door_v1", agent_id=agent.agent_id)
    did = open_decision(other)
    status, body = evaluate("door_v1")
    assert status == 404 and body["error"]["message"] == (
        f"decision {did} was not found; check the id returned by decision_create"
    )


@pytest.mark.django_db(transaction=True)
def test_sixteen_threads_evaluating_and_appending_keep_the_chain_gapless(make_agent: Any) -> None:
    """The lock that reads the grant and the version still serialises a decision's writers: eight
    evaluations and eight appends at once, every one recorded, seq gapless, the chain intact."""
    import threading

    from django.db import connections

    from agents.models import Agent
    from decisions.integrity import decision_problems
    from decisions.models import Decision
    from policies.services import evaluation
    from tests.policies.test_doors import published

    agent, _ = make_agent("concurrent-evaluator")
    published(agent=agent)
    did = open_decision(agent)
    errors: list[BaseException] = []
    start = threading.Barrier(16)

    def work(i: int) -> None:
        try:
            actor = Actor.for_agent(Agent.objects.get(pk=agent.pk))
            start.wait()
            if i % 2:
                evaluation.decision_evaluate(
                    actor=actor,
                    decision_id=did,
                    policy_id="code_change_policy_v1",
                    inputs={"change_type": "refactor", "n": i},
                )
            else:
                decision_services.decision_add_context(actor=actor, decision_id=did, context={"n": i})
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
    assert [e.seq for e in events] == list(range(1, 18))
    assert sorted(e.type for e in events[1:]) == ["context"] * 8 + ["evaluate"] * 8
    decision = Decision.objects.get(pk=did)
    assert decision.event_count == 17 and decision.trace_head == events[-1].hash
    # requires_exception was noted each time: the last evaluate's seq is the gating fact
    assert decision.last_exception_seq == max(e.seq for e in events if e.type == "evaluate")
    assert decision_problems(decision) == []
