"""Every row of docs/contract/states.md's state table, legal and illegal, through the service layer.

A refused change must leave no event and no state change behind.
"""

from __future__ import annotations

from typing import Any

import pytest

from decisions import services
from decisions.models import Decision, DecisionStatus, TraceEvent
from tracemem_core.actor import Actor
from tracemem_core.errors import ApprovalRequired, InvalidState, PolicyDenied

pytestmark = pytest.mark.django_db


def _decision(actor: Actor, mode: str = "autonomous") -> Decision:
    return services.decision_create(actor=actor, intent="code.refactor.execute", automation_mode=mode)


def _force(decision: Decision, **fields: Any) -> Decision:
    Decision.objects.filter(pk=decision.pk).update(**fields)
    decision.refresh_from_db()
    return decision


def _snapshot(decision: Decision) -> tuple[Any, ...]:
    decision.refresh_from_db()
    return (
        decision.status,
        decision.event_count,
        decision.trace_head,
        TraceEvent.objects.filter(decision=decision).count(),
    )


def _grant(decision: Decision, seq: int | None = None) -> None:
    with_locked = Decision.objects.get(pk=decision.pk)
    services.note_approval_requested(decision=with_locked, approval_id="appr_test")
    services.note_approval_resolved(
        decision=with_locked, outcome="approved", seq=seq or with_locked.event_count + 1
    )
    decision.refresh_from_db()


def test_create_starts_open_with_a_created_event(agent_actor: Actor) -> None:
    decision = _decision(agent_actor)
    assert decision.status == DecisionStatus.OPEN
    events = list(TraceEvent.objects.filter(decision=decision))
    assert [e.type for e in events] == ["created"]
    assert events[0].seq == 1 and events[0].prev_hash == "0" * 64


def test_open_to_needs_approval_on_request(agent_actor: Actor) -> None:
    decision = _decision(agent_actor)
    services.note_approval_requested(decision=decision, approval_id="appr_x")
    decision.refresh_from_db()
    assert decision.status == DecisionStatus.NEEDS_APPROVAL
    assert decision.approval_status == "pending"


def test_approved_to_needs_approval_on_second_request(agent_actor: Actor) -> None:
    decision = _decision(agent_actor)
    _grant(decision)
    assert decision.status == DecisionStatus.APPROVED
    services.note_approval_requested(decision=decision, approval_id="appr_y")
    decision.refresh_from_db()
    assert decision.status == DecisionStatus.NEEDS_APPROVAL


@pytest.mark.parametrize("status", ["needs_approval", "rejected", "committed", "aborted"])
def test_request_approval_refused_outside_open_and_approved(agent_actor: Actor, status: str) -> None:
    decision = _decision(agent_actor)
    if status in ("committed", "aborted"):  # the database closes a decision only with its close event
        action = "commit" if status == "committed" else "abort"
        decision = services.decision_close(actor=agent_actor, decision_id=decision.decision_id, action=action)
    else:
        decision = _force(decision, status=status)
    with pytest.raises(InvalidState):
        services.note_approval_requested(decision=decision, approval_id="appr_z")
    decision.refresh_from_db()
    assert decision.status == status


def test_needs_approval_to_approved_when_granted(agent_actor: Actor) -> None:
    decision = _decision(agent_actor, "propose")
    _grant(decision)
    assert decision.status == DecisionStatus.APPROVED
    assert decision.approval_status == "approved"
    assert decision.pending_approval_id is None


@pytest.mark.parametrize("outcome", ["rejected", "expired"])
def test_needs_approval_to_rejected_when_rejected_or_expired(agent_actor: Actor, outcome: str) -> None:
    decision = _decision(agent_actor)
    services.note_approval_requested(decision=decision, approval_id="appr_r")
    services.note_approval_resolved(decision=decision, outcome=outcome, seq=decision.event_count + 1)
    decision.refresh_from_db()
    assert decision.status == DecisionStatus.REJECTED
    assert decision.approval_status == outcome


@pytest.mark.parametrize("start", ["open", "approved"])
def test_commit_from_open_or_approved(agent_actor: Actor, start: str) -> None:
    decision = _decision(agent_actor)
    if start == "approved":
        _grant(decision)
    closed = services.decision_close(
        actor=agent_actor, decision_id=decision.decision_id, action="commit", reason="done"
    )
    assert closed.status == DecisionStatus.COMMITTED
    assert closed.closed_at is not None
    last = TraceEvent.objects.filter(decision=decision).order_by("-seq").first()
    assert last is not None and last.type == "close" and last.payload["action"] == "commit"
    assert last.payload["reason"] == "done"


@pytest.mark.parametrize("start", ["open", "needs_approval", "approved", "rejected"])
def test_abort_from_any_non_terminal_state(agent_actor: Actor, start: str) -> None:
    decision = _force(_decision(agent_actor), status=start)
    closed = services.decision_close(actor=agent_actor, decision_id=decision.decision_id, action="abort")
    assert closed.status == DecisionStatus.ABORTED


def test_rollback_is_an_alias_of_abort(agent_actor: Actor) -> None:
    decision = _decision(agent_actor)
    closed = services.decision_close(actor=agent_actor, decision_id=decision.decision_id, action="rollback")
    assert closed.status == DecisionStatus.ABORTED


def test_commit_from_rejected_is_invalid_state_and_changes_nothing(agent_actor: Actor) -> None:
    decision = _force(_decision(agent_actor), status="rejected")
    before = _snapshot(decision)
    with pytest.raises(InvalidState) as err:
        services.decision_close(actor=agent_actor, decision_id=decision.decision_id, action="commit")
    assert "abort" in str(err.value)
    assert _snapshot(decision) == before


def test_commit_while_needs_approval_is_invalid_state(agent_actor: Actor) -> None:
    decision = _force(_decision(agent_actor), status="needs_approval")
    before = _snapshot(decision)
    with pytest.raises(InvalidState):
        services.decision_close(actor=agent_actor, decision_id=decision.decision_id, action="commit")
    assert _snapshot(decision) == before


@pytest.mark.parametrize("terminal", ["committed", "aborted"])
@pytest.mark.parametrize("change", ["commit", "abort", "context", "request_approval"])
def test_terminal_decisions_refuse_every_change(agent_actor: Actor, terminal: str, change: str) -> None:
    decision = _decision(agent_actor)
    services.decision_close(
        actor=agent_actor,
        decision_id=decision.decision_id,
        action="commit" if terminal == "committed" else "abort",
    )
    before = _snapshot(decision)
    with pytest.raises(InvalidState) as err:
        if change in ("commit", "abort"):
            services.decision_close(actor=agent_actor, decision_id=decision.decision_id, action=change)
        elif change == "context":
            services.decision_add_context(
                actor=agent_actor, decision_id=decision.decision_id, context={"a": 1}
            )
        else:
            services.note_approval_requested(
                decision=Decision.objects.get(pk=decision.pk), approval_id="appr_q"
            )
    assert err.value.code == "invalid_state"
    assert _snapshot(decision) == before


def test_propose_commit_requires_a_granted_approval(agent_actor: Actor) -> None:
    decision = _decision(agent_actor, "propose")
    before = _snapshot(decision)
    with pytest.raises(ApprovalRequired):
        services.decision_close(actor=agent_actor, decision_id=decision.decision_id, action="commit")
    assert _snapshot(decision) == before
    _grant(decision)
    assert (
        services.decision_close(actor=agent_actor, decision_id=decision.decision_id, action="commit").status
        == "committed"
    )


@pytest.mark.parametrize("mode", ["propose", "approve", "override"])
def test_modes_needing_approval_block_writes_until_granted(agent_actor: Actor, mode: str) -> None:
    decision = _decision(agent_actor, mode)
    with pytest.raises(ApprovalRequired):
        services.ensure_writable(decision)
    _grant(decision)
    services.ensure_writable(decision)


def test_autonomous_writes_until_requires_exception_then_after_grant(agent_actor: Actor) -> None:
    decision = _decision(agent_actor, "autonomous")
    services.ensure_writable(decision)
    services.note_policy_outcome(
        decision=decision, outcome="requires_exception", seq=2, exception_route_id=None
    )
    with pytest.raises(ApprovalRequired):
        services.ensure_writable(decision)
    _grant(decision, seq=3)
    services.ensure_writable(decision)


def test_needs_approval_blocks_writes(agent_actor: Actor) -> None:
    decision = _force(_decision(agent_actor), status="needs_approval")
    with pytest.raises(InvalidState):
        services.ensure_writable(decision)


@pytest.mark.parametrize("mode", ["autonomous", "propose", "approve"])
def test_deny_blocks_writes_for_the_rest_of_the_decision(agent_actor: Actor, mode: str) -> None:
    decision = _decision(agent_actor, mode)
    services.note_policy_outcome(decision=decision, outcome="deny", seq=2, exception_route_id=None)
    _grant(decision, seq=3)
    with pytest.raises(PolicyDenied):
        services.ensure_writable(decision)


def test_override_grant_lifts_an_earlier_deny_but_not_a_later_one(agent_actor: Actor) -> None:
    decision = _decision(agent_actor, "override")
    services.note_policy_outcome(decision=decision, outcome="deny", seq=2, exception_route_id=None)
    _grant(decision, seq=3)
    services.ensure_writable(decision)
    services.note_policy_outcome(decision=decision, outcome="deny", seq=4, exception_route_id=None)
    with pytest.raises(PolicyDenied):
        services.ensure_writable(decision)


def test_another_agents_decision_is_not_found(make_agent: Any) -> None:
    owner, _ = make_agent("owner")
    other, _ = make_agent("other")
    decision = _decision(Actor.for_agent(owner))
    with pytest.raises(Exception) as err:
        services.decision_add_context(
            actor=Actor.for_agent(other), decision_id=decision.decision_id, context={"a": 1}
        )
    assert getattr(err.value, "code", None) == "not_found"
    assert TraceEvent.objects.filter(decision=decision).count() == 1
