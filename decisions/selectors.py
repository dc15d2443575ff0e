"""Reads of decisions and traces, with the actor's visibility applied.

An agent sees only its own decisions; anything else is ``not_found`` (never a 403 that would
confirm the decision exists). Users see decisions when they hold the ``decisions.view_decision``
permission (reviewers, auditors; superusers hold every permission).
"""

from __future__ import annotations

import copy
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from decisions.models import ApprovalStatus, Decision, DecisionStatus, TraceEvent
from tracemem_site import validation as v
from tracemem_site.actor import Actor
from tracemem_site.errors import InvalidArgument, NotFound
from tracemem_site.ids import DECISION_PREFIX, has_format
from tracemem_site.permissions import may_read
from tracemem_site.timefmt import iso_z
from tracemem_site.waits import Pending

# decision_trace pages (SPEC §12): without ``limit`` a page holds TRACE_PAGE_DEFAULT events, never more
# than TRACE_PAGE_MAX. Whole-chain readers (verifiers) walk pages of TRACE_PAGE_MAX.
TRACE_PAGE_DEFAULT = 500
TRACE_PAGE_MAX = 1000


def decisions_visible_to(actor: Actor, queryset: QuerySet[Decision] | None = None) -> QuerySet[Decision]:
    qs = queryset if queryset is not None else Decision.objects.all()
    if actor.kind == "system":
        return qs
    if actor.kind == "agent" and actor.agent is not None:
        return qs.filter(agent_id=actor.agent.agent_id)
    if actor.kind == "user" and may_read(actor, "decisions"):
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


def approval_outcome_fields(outcome: str, seq: int | None) -> dict[str, Any]:
    """What resolving the pending approval with ``outcome`` does to the decision row (SPEC §5):
    granted → approved (``seq`` is the grant's event); rejected or expired → rejected (fail closed).
    ``note_approval_resolved`` writes these; :func:`decision_as_reported` shows them early."""
    if outcome == ApprovalStatus.APPROVED:
        return {
            "status": DecisionStatus.APPROVED,
            "approval_status": outcome,
            "pending_approval_id": None,
            "last_grant_seq": seq,
        }
    if outcome in (ApprovalStatus.REJECTED, ApprovalStatus.EXPIRED):
        return {"status": DecisionStatus.REJECTED, "approval_status": outcome, "pending_approval_id": None}
    raise InvalidArgument(f"unknown approval outcome {outcome!r}", field="outcome")


# Whether a decision's pending approval is past its deadline. Decisions cannot import approvals
# (approvals imports decisions), so approvals registers its check here from AppConfig.ready().
OverdueCheck = Callable[[Decision, datetime], bool]
_overdue_checks: list[OverdueCheck] = []


def register_overdue_check(check: OverdueCheck) -> None:
    if check not in _overdue_checks:
        _overdue_checks.append(check)


def decision_as_reported(decision: Decision) -> Decision:
    """The decision as it stands *now*: once its pending approval's ``expires_at`` has passed, the
    approval is expired and the decision rejected (fail closed), exactly as the expiry will write
    it, even before the beat's tick (or the next call on the decision) has written anything."""
    if decision.status != DecisionStatus.NEEDS_APPROVAL:
        return decision
    now = timezone.now()
    if not any(check(decision, now) for check in _overdue_checks):
        return decision
    reported = copy.copy(decision)
    for name, value in approval_outcome_fields(ApprovalStatus.EXPIRED, None).items():
        setattr(reported, name, value)
    return reported


# When a decision's pending approval expires (decision_wait wakes then, to report the expiry on
# time). Approvals registers how to find it, like the overdue check above.
PendingDeadline = Callable[[Decision], datetime | None]
_pending_deadlines: list[PendingDeadline] = []


def register_pending_deadline(finder: PendingDeadline) -> None:
    if finder not in _pending_deadlines:
        _pending_deadlines.append(finder)


# --- decision_wait (SPEC §12) ----------------------------------------------------------------

WAIT_DEFAULT_SECONDS = 25
# Under the 60 s tool-call timeout common MCP clients use, with room for the answer to travel.
WAIT_MAX_SECONDS = 50


def wait_timeout(value: Any) -> float:
    """``timeout_seconds``: a number from 0 to 50 (default 25); REST sends it as text."""
    field = "timeout_seconds"
    if value is None or value == "":
        return float(WAIT_DEFAULT_SECONDS)
    if isinstance(value, str) and re.fullmatch(r"\s*[0-9]{1,6}(\.[0-9]{1,6})?\s*", value):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidArgument(
            f"{field} must be a number of seconds from 0 to {WAIT_MAX_SECONDS}; got {value!r}", field=field
        )
    if not 0 <= value <= WAIT_MAX_SECONDS:
        raise InvalidArgument(
            f"{field} must be a number of seconds from 0 to {WAIT_MAX_SECONDS}; got {value}: wait again "
            "after it returns with timed_out true",
            field=field,
        )
    return float(value)


@dataclass(frozen=True)
class WaitOutcome:
    decision: Decision  # as reported (an approval past its deadline is expired)
    timed_out: bool


def decision_wait_check(
    actor: Actor, decision_id: str, *, timeout_seconds: Any, deadline: float | None
) -> WaitOutcome | Pending:
    """One look for ``decision_wait``: the answer once nothing is pending on the decision (the
    approval was granted, rejected, expired or cancelled, or none was asked for), ``timed_out``
    once ``deadline`` (monotonic; ``None`` on the first look: now + ``timeout_seconds``) has
    passed, otherwise :class:`Pending` with when to look again by itself (the deadline, or the
    approval's expiry if sooner: an expiry is reported on time even before the tick writes it)."""
    timeout = wait_timeout(timeout_seconds)
    decision = decision_as_reported(decision_for(actor, decision_id))
    now = time.monotonic()
    if deadline is None:
        deadline = now + timeout
    if decision.approval_status != ApprovalStatus.PENDING:
        return WaitOutcome(decision, timed_out=False)
    if now >= deadline:
        return WaitOutcome(decision, timed_out=True)
    wake_at = deadline
    for finder in _pending_deadlines:
        expires_at = finder(decision)
        if expires_at is not None:
            # A hair after the deadline, so the look that wakes for it sees it passed.
            wake_at = min(wake_at, now + (expires_at - timezone.now()).total_seconds() + 0.005)
    return Pending(wake_at=max(wake_at, now), deadline=deadline)


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


@dataclass(frozen=True)
class TracePage:
    events: list[TraceEvent]
    next_after_seq: int | None  # pass it as after_seq for the next page; None on the last page


def trace_page(decision: Decision, *, after_seq: Any = None, limit: Any = None) -> TracePage:
    """Events with ``seq > after_seq``, at most ``limit``, up to the decision's head as read with it
    (an event appended meanwhile belongs to the next read, so a page never outruns ``trace_head``)."""
    after = v.bounded_int(after_seq, "after_seq", minimum=0, maximum=None, default=0)
    size = v.bounded_int(limit, "limit", minimum=1, maximum=TRACE_PAGE_MAX, default=TRACE_PAGE_DEFAULT)
    events = list(
        TraceEvent.objects.filter(decision=decision, seq__gt=after, seq__lte=decision.event_count).order_by(
            "seq"
        )[:size]
    )
    more = bool(events) and events[-1].seq < decision.event_count
    return TracePage(events=events, next_after_seq=events[-1].seq if more else None)
