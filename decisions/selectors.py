"""Reads of decisions and traces, with the actor's visibility applied.

An agent sees only its own decisions; anything else is ``not_found`` (never a 403 that would
confirm the decision exists). Users see decisions when they are staff or hold the
``decisions.view_decision`` permission (reviewers, auditors).
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from decisions.models import Decision, TraceEvent
from tracemem_site.actor import Actor
from tracemem_site.errors import NotFound
from tracemem_site.ids import DECISION_PREFIX, has_format
from tracemem_site.timefmt import iso_z
from tracemem_verify.chain import ChainBreak, verify_chain


def decisions_visible_to(actor: Actor, queryset: QuerySet[Decision] | None = None) -> QuerySet[Decision]:
    qs = queryset if queryset is not None else Decision.objects.all()
    if actor.kind == "system":
        return qs
    if actor.kind == "agent" and actor.agent is not None:
        return qs.filter(agent_id=actor.agent.agent_id)
    user = actor.user
    if actor.kind == "user" and user is not None and user.is_active:
        if user.is_staff or user.has_perm("decisions.view_decision"):
            return qs
    return qs.none()


def decision_for(actor: Actor, decision_id: str, queryset: QuerySet[Decision] | None = None) -> Decision:
    if not has_format(decision_id, DECISION_PREFIX):
        # Not an id this server could have issued (also keeps NULs and odd bytes away from the database).
        raise NotFound(
            f"decision {decision_id[:60]!r} was not found; decision ids look like TMEM_ + 26 characters"
        )
    try:
        return decisions_visible_to(actor, queryset).get(pk=decision_id)
    except Decision.DoesNotExist:
        raise NotFound(
            f"decision {decision_id} was not found; check the id returned by decision_create"
        ) from None


def decision_events(decision: Decision) -> QuerySet[TraceEvent]:
    return TraceEvent.objects.filter(decision=decision).order_by("seq")


def event_as_dict(event: TraceEvent) -> dict[str, Any]:
    """An event exactly as ``decision_trace`` returns it (and as its hash covers)."""
    return {
        "decision_id": event.decision_id,
        "event_id": event.event_id,
        "seq": event.seq,
        "type": event.type,
        "timestamp": iso_z(event.timestamp),
        "actor": event.actor,
        "payload": event.payload,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def trace_verify(decision: Decision) -> ChainBreak | None:
    """Recompute one decision's chain from the stored events; also checks the decision's head."""
    events = [event_as_dict(e) for e in TraceEvent.objects.filter(decision=decision).order_by("seq")]
    broken = verify_chain(decision.decision_id, events)
    if broken is not None:
        return broken
    if len(events) != decision.event_count or (events and events[-1]["hash"] != decision.trace_head):
        return ChainBreak(
            decision.decision_id, len(events), "decision's event_count/trace_head disagree with its events"
        )
    return None
