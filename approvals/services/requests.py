"""Approvals: requesting one, voting on it, expiring it, cancelling it (docs/contract/tools.md, docs/contract/states.md, docs/contract/approvals.md).

Every door (MCP, REST, the review UI, the email link page, Slack, the webhook reply and the Celery
beat) resolves approvals through :func:`approval_vote` / :func:`approvals_expire_due`, so the rules
(eligibility, quorum, veto, rationale, one vote per person, finality) live only here.

Lock order is always decision, then approval, so a request racing a vote cannot deadlock.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from approvals import conf, selectors
from approvals.models import (
    Approval,
    ApprovalRoute,
    ApprovalState,
    Channel,
    Delivery,
    DeliveryStatus,
    Vote,
    VoteChoice,
)
from approvals.selectors import (
    approvals_visible_to,
    frozen_rules,
    second_factor_required,
    vote_refusal,
)
from approvals.services.outbox import queue_delivery, queue_slack_update
from approvals.services.routes import route_for
from decisions.models import AutomationMode, Decision, DecisionStatus, EventType
from decisions.services import (
    decision_lock,
    note_approval_cancelled,
    note_approval_requested,
    note_approval_resolved,
    trace_append,
)
from tracemem_core import metrics, telemetry
from tracemem_core import validation as v
from tracemem_core.actor import Actor
from tracemem_core.errors import (
    Conflict,
    InvalidArgument,
    InvalidState,
    NotFound,
    PermissionDenied,
)
from tracemem_core.ids import new_id
from tracemem_core.redaction import redact
from tracemem_core.timefmt import iso_z

logger = logging.getLogger(__name__)

MIN_EXPIRY_SECONDS = 60
VOTE_CHANNELS = ("web", "api", "email", "slack", "webhook")
# Channels that prove no second factor: people who must use one confirm in the browser instead.
# (Browser sessions are verified by SecondFactorMiddleware; personal tokens and webhook credentials
# are machine credentials created by a signed-in person or an admin, not guessable passwords.)
BROWSER_ONLY_REFUSED = ("email", "slack")
EXPIRY_CHANNEL = selectors.EXPIRY_CHANNEL
# Whoever notices an overdue approval first (the beat's tick or any call on its decision), the
# trace records the same event by the same system actor.
EXPIRY_ACTOR = Actor.system("approvals-expiry")


@transaction.atomic
def decision_request_approval(
    *,
    actor: Actor,
    decision_id: Any,
    title: Any = None,
    message: Any = None,
    approval_route_id: Any = None,
    require_rationale: Any = None,
    expires_in_seconds: Any = None,
) -> Approval:
    """Ask humans to approve a decision: record the request, move the decision to ``needs_approval``
    and queue one delivery per channel of the route, all in one transaction (docs/contract/tools.md, docs/contract/approvals.md).

    The agent may tighten the route (require a rationale, expire sooner) but never loosen it.
    Delivery runs after commit; a broker outage leaves the outbox rows for the periodic re-dispatch.
    """
    clean_title = v.optional_string(title, "title", max_length=300)
    clean_message = v.optional_string(message, "message", max_length=100_000)
    route_arg = v.optional_string(approval_route_id, "approval_route_id", max_length=100)
    wants_rationale = v.optional_bool(require_rationale, "require_rationale")
    expires = v.optional_seconds(expires_in_seconds, "expires_in_seconds")
    decision = decision_lock(actor=actor, decision_id=decision_id)
    if (
        decision.status == DecisionStatus.NEEDS_APPROVAL
        or Approval.objects.filter(decision=decision, status=ApprovalState.PENDING).exists()
    ):
        raise Conflict(
            f"decision {decision.decision_id} already has a pending approval ({decision.pending_approval_id}); "
            "call decision_wait until it is resolved",
            details={"pending_approval_id": decision.pending_approval_id},
        )
    if decision.status not in (DecisionStatus.OPEN, DecisionStatus.APPROVED):
        raise InvalidState(
            f"decision {decision.decision_id} is {decision.status}: approval can be requested only while it is "
            "open or approved"
        )
    route = route_for(approval_route_id=route_arg, decision=decision)
    lifetime = route.expires_in_seconds
    if expires is not None:
        if not MIN_EXPIRY_SECONDS <= expires <= route.expires_in_seconds:
            raise InvalidArgument(
                f"expires_in_seconds must be between {MIN_EXPIRY_SECONDS} and {route.expires_in_seconds} "
                f"(route {route.route_id}'s limit); got {expires}",
                field="expires_in_seconds",
            )
        lifetime = expires
    # override mode lifts denies with a granted approval, so its approvers must always explain why.
    rationale_needed = (
        route.require_rationale
        or bool(wants_rationale)
        or decision.automation_mode == AutomationMode.OVERRIDE
    )
    now = timezone.now()
    approval = Approval.objects.create(
        decision=decision,
        route=route,
        title=redact(clean_title or f"Approval requested: {decision.intent}", field="title"),
        message=redact(clean_message or "", field="message"),
        # The rules are frozen here: later edits of the route or the agent never reach this approval.
        require_rationale=rationale_needed,
        required_approvals=route.required_approvals,
        approver_group=route.approver_group,
        allow_agent_owner=route.allow_agent_owner,
        agent_owner=decision.agent.owner,
        lifetime_seconds=lifetime,
        requested_at=now,
        expires_at=now + timedelta(seconds=lifetime),
    )
    deliveries = [
        Delivery.objects.create(
            delivery_id=new_id("msg_"),
            approval=approval,
            channel=entry["type"],
            target=entry,
            next_attempt_at=now,
        )
        for entry in route_channels(route)
    ]
    trace_append(
        decision=decision,
        type=EventType.APPROVAL_REQUESTED,
        actor=actor,
        payload={
            "approval_id": approval.approval_id,
            "route_id": route.route_id,
            "title": approval.title,
            "message": approval.message,
            "required_approvals": approval.required_approvals,
            "require_rationale": approval.require_rationale,
            "expires_at": iso_z(approval.expires_at),
            "channels": [d.channel for d in deliveries],
            "rules": frozen_rules(approval),
        },
    )
    note_approval_requested(decision=decision, approval_id=approval.approval_id)
    telemetry.annotate(approval_id=approval.approval_id)
    route_label = route.route_id
    metrics.on_commit(lambda: metrics.APPROVALS_REQUESTED.labels(route_label).inc())
    for delivery in deliveries:
        transaction.on_commit(functools.partial(queue_delivery, delivery.delivery_id))
    return approval


def route_channels(route: ApprovalRoute) -> list[dict[str, Any]]:
    """The route's channel entries that name a known channel type (unknown ones are ignored)."""
    entries = route.channels if isinstance(route.channels, list) else []
    return [e for e in entries if isinstance(e, dict) and e.get("type") in Channel.values]


# --- who may vote --------------------------------------------------------------------------


def _ensure_may_vote(user: User, approval: Approval) -> None:
    refusal = vote_refusal(user, approval)
    if refusal is not None:
        raise PermissionDenied(refusal)


# --- voting and resolution ----------------------------------------------------------------------


def _voter(user: User) -> dict[str, Any]:
    return {"id": f"user_{user.pk}", "name": user.get_username()}


@transaction.atomic
def approval_vote(
    *,
    actor: Actor,
    approval_id: Any,
    decision: Any,
    rationale: Any = None,
    channel: str = "api",
) -> Approval:
    """Record one reviewer's vote; grant at quorum, reject on any eligible reject (docs/contract/approvals.md).

    ``decision`` is ``approve`` or ``reject``. Each person votes once per approval whatever the
    channel; a resolved approval is final. The approval row is locked, so a concurrent approve and
    reject produce exactly one outcome.
    """
    if actor.kind != "user" or actor.user is None:
        raise PermissionDenied("only a signed-in reviewer can vote on an approval")
    user = actor.user
    clean_id = v.string(approval_id, "approval_id", max_length=40)
    choice = v.choice(decision, "decision", VoteChoice.values)
    clean_rationale = v.optional_string(rationale, "rationale", max_length=10_000)
    if channel not in VOTE_CHANNELS:
        raise InvalidArgument(f"channel must be one of {', '.join(VOTE_CHANNELS)}", field="channel")
    # An approval this person cannot see does not exist for them: not_found, never a refusal
    # naming its route.
    decision_id = (
        approvals_visible_to(actor).filter(pk=clean_id).values_list("decision_id", flat=True).first()
    )
    if decision_id is None:
        raise NotFound(f"approval {clean_id} was not found")
    locked_decision = decision_lock(actor=Actor.system(), decision_id=decision_id, settle=False)
    approval = (
        Approval.objects.select_for_update(of=("self",))
        .select_related("route", "approver_group")
        .get(pk=clean_id)
    )
    approval.decision = locked_decision
    if approval.status != ApprovalState.PENDING:
        raise InvalidState(f"approval {clean_id} is already {approval.status}; a resolved approval is final")
    if locked_decision.is_terminal:
        # A closed trace never changes (docs/contract/states.md): its receipt pins the last event.
        raise InvalidState(
            f"decision {locked_decision.decision_id} is already {locked_decision.status}; approval {clean_id} "
            "can no longer be voted on"
        )
    if approval.is_overdue(timezone.now()):
        raise InvalidState(f"approval {clean_id} has expired; the agent must request a new approval")
    _ensure_may_vote(user, approval)
    if channel in BROWSER_ONLY_REFUSED and second_factor_required(user):
        raise PermissionDenied(
            f"you sign in to TraceMem with two-factor authentication, so an {channel} "
            f"{'link' if channel == 'email' else 'button'} cannot vote for you; sign in and confirm in the "
            f"browser: {conf.review_url(approval)}"
        )
    if approval.require_rationale and not (clean_rationale or "").strip():
        raise InvalidArgument(
            "this approval requires a rationale: say why you approve or reject", field="rationale"
        )
    existing = Vote.objects.filter(approval=approval, user=user).first()
    if existing is not None:
        raise Conflict(
            f"you already voted {existing.choice} on approval {clean_id} (via {existing.channel}); "
            "one vote per person",
        )
    stored_rationale = redact(clean_rationale or "", field="rationale")
    try:
        with transaction.atomic():
            Vote.objects.create(
                approval=approval, user=user, choice=choice, rationale=stored_rationale, channel=channel
            )
    except IntegrityError:
        raise Conflict(f"you already voted on approval {clean_id}; one vote per person") from None
    trace_append(
        decision=locked_decision,
        type=EventType.APPROVAL_VOTE,
        actor=actor,
        payload={
            "approval_id": clean_id,
            "vote": choice,
            "voter": _voter(user),
            "channel": channel,
            "rationale": stored_rationale,
        },
    )
    metrics.on_commit(lambda: metrics.APPROVAL_VOTES.labels(choice, channel).inc())
    votes = list(approval.votes.select_related("user").order_by("created_at"))
    if choice == VoteChoice.REJECT:
        _resolve(approval, locked_decision, ApprovalState.REJECTED, votes, channel, actor)
    elif sum(1 for vote in votes if vote.choice == VoteChoice.APPROVE) >= approval.required_approvals:
        _resolve(approval, locked_decision, ApprovalState.APPROVED, votes, channel, actor)
    return approval


def _resolution_payload(approval: Approval, outcome: str, votes: list[Vote], channel: str) -> dict[str, Any]:
    return {
        "approval_id": approval.approval_id,
        "outcome": outcome,
        "channel": channel,
        "votes": [
            {
                **_voter(vote.user),
                "vote": vote.choice,
                "channel": vote.channel,
                "rationale": vote.rationale,
            }
            for vote in votes
        ],
        "approvers": [_voter(vote.user) for vote in votes if vote.choice == VoteChoice.APPROVE],
        "rejected_by": [_voter(vote.user) for vote in votes if vote.choice == VoteChoice.REJECT],
    }


def _resolve(
    approval: Approval,
    decision: Decision,
    outcome: str,
    votes: list[Vote],
    channel: str,
    actor: Actor,
    *,
    resolved_at: datetime | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    now = resolved_at or timezone.now()
    event = trace_append(
        decision=decision,
        type=EventType.APPROVAL_RESOLVED,
        actor=actor,
        payload={**_resolution_payload(approval, outcome, votes, channel), **(extra or {})},
    )
    # The conditional UPDATE is a second guard: only a pending approval ever changes.
    changed = Approval.objects.filter(pk=approval.pk, status=ApprovalState.PENDING).update(
        status=outcome, resolved_at=now, resolution_channel=channel
    )
    if changed != 1:
        raise InvalidState(f"approval {approval.approval_id} was resolved concurrently; it is final")
    approval.status, approval.resolved_at, approval.resolution_channel = outcome, now, channel
    _count_resolution(approval, outcome, now)
    note_approval_resolved(decision=decision, outcome=outcome, seq=event.seq)
    _schedule_slack_update(approval)


def _count_resolution(approval: Approval, outcome: str, resolved_at: datetime) -> None:
    seconds = max(0.0, (resolved_at - approval.requested_at).total_seconds())

    def count() -> None:
        metrics.APPROVALS_RESOLVED.labels(outcome).inc()
        metrics.APPROVAL_SECONDS.labels(outcome).observe(seconds)

    metrics.on_commit(count)


def _schedule_slack_update(approval: Approval) -> None:
    if approval.deliveries.filter(channel=Channel.SLACK).exists():
        approval_id = approval.approval_id
        transaction.on_commit(lambda: queue_slack_update(approval_id))


def approvals_expire_due(*, actor: Actor) -> int:
    """Reject (fail closed) every pending approval past its ``expires_at``; returns how many.

    Each approval is expired in its own transaction, and one that cannot be (whatever the reason)
    is logged with its id and skipped: one bad row must not stop the beat for everyone else.
    """
    count = 0
    due = Approval.objects.filter(status=ApprovalState.PENDING, expires_at__lte=timezone.now())
    for approval_id in list(due.order_by("expires_at").values_list("approval_id", flat=True)[:500]):
        try:
            if approval_expire(actor=actor, approval_id=approval_id):
                count += 1
        except Exception:
            logger.exception("could not expire approval %s; skipping it until the next tick", approval_id)
    return count


@transaction.atomic
def approval_expire(*, actor: Actor, approval_id: str) -> bool:
    """Expire one approval if it is still pending and due; the decision becomes ``rejected``.

    ``actor`` is who asked (the beat); the event is always by ``EXPIRY_ACTOR``, whoever writes it.
    """
    decision_id = Approval.objects.filter(pk=approval_id).values_list("decision_id", flat=True).first()
    if decision_id is None:
        return False
    decision = decision_lock(actor=Actor.system(), decision_id=decision_id, settle=False)
    approval = Approval.objects.select_for_update().get(pk=approval_id)
    if not approval.is_overdue(timezone.now()):
        return False
    if decision.is_terminal:
        # Left pending by a version that did not cancel approvals on close. The closed trace must
        # not change, so the row is settled as cancelled without an event.
        logger.warning(
            "approval %s was still pending on %s decision %s; cancelling it",
            approval_id,
            decision.status,
            decision.decision_id,
        )
        _cancel_rows(approval, resolved_at=timezone.now())
        return False
    _expire_locked(approval, decision)
    return True


def approval_settle_overdue(*, decision: Decision) -> None:
    """Expire the decision's pending approval if its deadline has passed (a lock settler).

    Registered with ``decisions.services.register_lock_settler``: every call that locks a decision
    awaiting approval first writes the expiry ``decision_get`` already reports, so the agent's next
    call (abort, commit, another request) is answered as for the rejected decision it was told of.
    """
    approval = (
        Approval.objects.select_for_update()
        .filter(decision_id=decision.pk, status=ApprovalState.PENDING)
        .first()
    )
    if approval is not None and approval.is_overdue(timezone.now()):
        _expire_locked(approval, decision)


def _expire_locked(approval: Approval, decision: Decision) -> None:
    """The one way an approval expires: outcome ``expired`` at its deadline, by the expiry actor."""
    votes = list(approval.votes.select_related("user").order_by("created_at"))
    _resolve(
        approval,
        decision,
        ApprovalState.EXPIRED,
        votes,
        EXPIRY_CHANNEL,
        EXPIRY_ACTOR,
        resolved_at=approval.expires_at,
        extra={"expired_at": iso_z(approval.expires_at)},
    )


CLOSE_CHANNEL = "close"


def approval_cancel_on_close(*, decision: Decision, actor: Actor, new_status: str) -> None:
    """Cancel the decision's pending approval because the decision is closing (a close participant).

    Registered with ``decisions.services.register_close_participant`` in ``ApprovalsConfig.ready``
    and called by ``decision_close`` inside its transaction, with the decision locked and not yet
    terminal, so the ``approval_resolved`` event (outcome ``cancelled``) precedes the ``close`` event
    and the approval, its unsent deliveries and the decision change together or not at all.
    """
    approval = (
        Approval.objects.select_for_update()
        .filter(decision_id=decision.pk, status=ApprovalState.PENDING)
        .first()
    )
    if approval is None:
        return
    now = timezone.now()
    votes = list(approval.votes.select_related("user").order_by("created_at"))
    payload = _resolution_payload(approval, ApprovalState.CANCELLED, votes, CLOSE_CHANNEL)
    payload["reason"] = f"decision {new_status}"
    trace_append(decision=decision, type=EventType.APPROVAL_RESOLVED, actor=actor, payload=payload)
    _cancel_rows(approval, resolved_at=now)
    note_approval_cancelled(decision=decision, approval_id=approval.approval_id)
    _schedule_slack_update(approval)


def _cancel_rows(approval: Approval, *, resolved_at: datetime) -> None:
    changed = Approval.objects.filter(pk=approval.pk, status=ApprovalState.PENDING).update(
        status=ApprovalState.CANCELLED, resolved_at=resolved_at, resolution_channel=CLOSE_CHANNEL
    )
    if changed != 1:
        raise InvalidState(f"approval {approval.approval_id} was resolved concurrently; it is final")
    approval.status, approval.resolved_at, approval.resolution_channel = (
        ApprovalState.CANCELLED,
        resolved_at,
        CLOSE_CHANNEL,
    )
    _count_resolution(approval, str(ApprovalState.CANCELLED), resolved_at)
    # Unsent notifications are dropped: nobody can act on a cancelled request. A delivery a worker
    # is sending right now is settled by _record_attempt, which never reopens a cancelled row.
    Delivery.objects.filter(approval=approval, status=DeliveryStatus.PENDING).update(
        status=DeliveryStatus.CANCELLED
    )
