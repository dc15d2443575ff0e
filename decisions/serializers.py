"""Result objects of the envelope tools: one shape, returned by the MCP tool and its REST twin."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from approvals.serializers import delivery_for_decision
from decisions.models import Decision, TraceEvent
from decisions.selectors import (
    TraceDictPage,
    TraceJSONPage,
    TracePage,
    WaitOutcome,
    decision_as_reported,
    event_as_dict,
)
from decisions.services import approval_required
from tracemem_core.rawjson import RawJSON
from tracemem_core.timefmt import iso_z


def decision_out(decision: Decision) -> dict[str, Any]:
    decision = decision_as_reported(decision)  # an approval past its deadline is expired already
    return {
        "decision_id": decision.decision_id,
        "intent": decision.intent,
        "status": decision.status,
        "automation_mode": decision.automation_mode,
        "actor": decision.actor,
        "instance": decision.instance,
        "agent_id": decision.agent_id,
        "created_at": iso_z(decision.created_at),
        "closed_at": iso_z(decision.closed_at),
        "approval_required": approval_required(decision),
        "approval_status": decision.approval_status,
        "pending_approval_id": decision.pending_approval_id,
        "event_count": decision.event_count,
        "trace_head": decision.trace_head,
        "delivery": _approval_delivery(decision),
    }


def wait_out(outcome: WaitOutcome) -> dict[str, Any]:
    """``decision_wait``: the ``decision_get`` object plus whether the wait ran out (docs/contract/interfaces.md)."""
    return {**decision_out(outcome.decision), "timed_out": outcome.timed_out}


def _approval_delivery(decision: Decision) -> dict[str, Any] | None:
    """Notification status of the pending (else latest) approval; None if none was requested."""
    if decision.approval_status is None:
        return None
    return delivery_for_decision(decision.decision_id)


def trace_out(
    decision: Decision, events: Iterable[TraceEvent], next_after_seq: int | None = None
) -> dict[str, Any]:
    """``decision_trace``: the decision, one page of its events, and where the next page starts."""
    return {
        **decision_out(decision),
        "events": [event_as_dict(e) for e in events],
        "next_after_seq": next_after_seq,
    }


def trace_page_out(decision: Decision, page: TracePage | TraceDictPage | TraceJSONPage) -> dict[str, Any]:
    """``decision_trace``'s result; from a :class:`TraceJSONPage` its events are :class:`RawJSON`
    (the REST renderer writes them as they are)."""
    if isinstance(page, TraceJSONPage):
        return {
            **decision_out(decision),
            "events": RawJSON(page.events_json),
            "next_after_seq": page.next_after_seq,
        }
    if isinstance(page, TraceDictPage):
        return {**decision_out(decision), "events": page.events, "next_after_seq": page.next_after_seq}
    return trace_out(decision, page.events, page.next_after_seq)


def created_out(decision: Decision) -> dict[str, Any]:
    return {
        "decision_id": decision.decision_id,
        "status": decision.status,
        "created_at": iso_z(decision.created_at),
    }


def event_ref_out(event: TraceEvent) -> dict[str, Any]:
    return {"event_id": event.event_id, "timestamp": iso_z(event.timestamp)}


def events_ref_out(events: Iterable[TraceEvent]) -> dict[str, Any]:
    """A batch ``decision_add_context`` (``contexts``): each recorded event, in order."""
    return {
        "events": [{"event_id": e.event_id, "seq": e.seq, "timestamp": iso_z(e.timestamp)} for e in events]
    }


def closed_out(decision: Decision) -> dict[str, Any]:
    return {
        "decision_id": decision.decision_id,
        "status": decision.status,
        "closed_at": iso_z(decision.closed_at),
        "trace_head": decision.trace_head,
    }
