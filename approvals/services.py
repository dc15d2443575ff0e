"""Approvals: requesting one, voting on it, expiring it, and the delivery outbox (SPEC §3, §5, §9).

Every door (MCP, REST, the review UI, the email link page, Slack, the webhook reply and the Celery
beat) resolves approvals through :func:`approval_vote` / :func:`approvals_expire_due`, so the rules
(eligibility, quorum, veto, rationale, one vote per person, finality) live only here.

Lock order is always decision, then approval, so a request racing a vote cannot deadlock.
"""

from __future__ import annotations

import functools
import logging
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core import signing
from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from django.db import connection as db_connection
from django.utils import timezone
from standardwebhooks import Webhook

from agents import keys
from approvals import channels as senders
from approvals import conf, selectors
from approvals.destinations import FAILING, destination_key, gate
from approvals.models import (
    Approval,
    ApprovalRoute,
    ApprovalState,
    Channel,
    Delivery,
    DeliveryStatus,
    EmailLink,
    SlackIntegration,
    Vote,
    VoteChoice,
    WebhookCredential,
    WebhookEndpoint,
)
from approvals.selectors import (
    approvals_visible_to,
    frozen_rules,
    route_definition,
    second_factor_required,
    vote_refusal,
)
from audit.services import audit_record
from decisions.models import AutomationMode, Decision, DecisionStatus, EventType
from decisions.services import (
    decision_lock,
    note_approval_cancelled,
    note_approval_requested,
    note_approval_resolved,
    trace_append,
)
from tracemem_core import metrics, outbound
from tracemem_core import validation as v
from tracemem_core.actor import Actor
from tracemem_core.errors import (
    Conflict,
    InvalidArgument,
    InvalidState,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from tracemem_core.ids import SLUG_RE, new_id
from tracemem_core.permissions import is_superuser, require_perm, require_superuser
from tracemem_core.redaction import redact
from tracemem_core.timefmt import iso_z

logger = logging.getLogger(__name__)

WEBHOOK_CREDENTIAL_PREFIX = "tmwh_"
EMAIL_LINK_SALT = "tracemem.approvals.email-link"
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


# --- requesting ------------------------------------------------------------------------------


def route_for(*, approval_route_id: str | None, decision: Decision) -> ApprovalRoute:
    """The argument, else the decision's latest exception route, else the default route (SPEC §3)."""
    wanted = approval_route_id or decision.exception_route_id or conf.default_route_id() or None
    if wanted:
        route = ApprovalRoute.objects.filter(route_id=wanted).first()
        if route is None:
            field = "approval_route_id" if approval_route_id else "exception_route_id"
            raise InvalidArgument(
                f"approval route {wanted!r} does not exist; ask an admin to create it or pass another "
                "approval_route_id",
                field=field,
            )
        return route
    route = ApprovalRoute.objects.filter(is_default=True).first()
    if route is None:
        raise InvalidArgument(
            "no approval route given and no default route is configured; pass approval_route_id or ask an admin "
            "to mark a route as default",
            field="approval_route_id",
        )
    return route


def _optional_bool(value: Any, field: str) -> bool | None:
    if value is None:
        return None
    if not isinstance(value, bool):
        raise InvalidArgument(f"{field} must be true or false", field=field)
    return value


def _optional_int(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{field} must be an integer number of seconds", field=field)
    return value


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
    and queue one delivery per channel of the route, all in one transaction (SPEC §3, §9).

    The agent may tighten the route (require a rationale, expire sooner) but never loosen it.
    Delivery runs after commit; a broker outage leaves the outbox rows for the periodic re-dispatch.
    """
    clean_title = v.optional_string(title, "title", max_length=300)
    clean_message = v.optional_string(message, "message", max_length=100_000)
    route_arg = v.optional_string(approval_route_id, "approval_route_id", max_length=100)
    wants_rationale = _optional_bool(require_rationale, "require_rationale")
    expires = _optional_int(expires_in_seconds, "expires_in_seconds")
    decision = decision_lock(actor=actor, decision_id=decision_id)
    if (
        decision.status == DecisionStatus.NEEDS_APPROVAL
        or Approval.objects.filter(decision=decision, status=ApprovalState.PENDING).exists()
    ):
        raise Conflict(
            f"decision {decision.decision_id} already has a pending approval ({decision.pending_approval_id}); "
            "poll decision_get until it is resolved",
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
    for delivery in deliveries:
        transaction.on_commit(functools.partial(_publish, delivery.delivery_id))
    return approval


def route_channels(route: ApprovalRoute) -> list[dict[str, Any]]:
    """The route's channel entries that name a known channel type (unknown ones are ignored)."""
    entries = route.channels if isinstance(route.channels, list) else []
    return [e for e in entries if isinstance(e, dict) and e.get("type") in Channel.values]


def _publish(delivery_id: str, countdown: float | None = None) -> bool:
    # Imported late: the Celery door imports this module.
    from approvals.tasks import publish_delivery

    return publish_delivery(delivery_id, countdown=countdown)


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
    """Record one reviewer's vote; grant at quorum, reject on any eligible reject (SPEC §9).

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
        # A closed trace never changes (SPEC §5): its receipt pins the last event.
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
            f"browser: {senders.review_url(approval)}"
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
    note_approval_resolved(decision=decision, outcome=outcome, seq=event.seq)
    _schedule_slack_update(approval)


def _schedule_slack_update(approval: Approval) -> None:
    if approval.deliveries.filter(channel=Channel.SLACK).exists():
        approval_id = approval.approval_id
        transaction.on_commit(lambda: _publish_slack_update(approval_id))


def _publish_slack_update(approval_id: str) -> None:
    from approvals.tasks import publish_slack_update

    publish_slack_update(approval_id)


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
    # Unsent notifications are dropped: nobody can act on a cancelled request. A delivery a worker
    # is sending right now is settled by _record_attempt, which never reopens a cancelled row.
    Delivery.objects.filter(approval=approval, status=DeliveryStatus.PENDING).update(
        status=DeliveryStatus.CANCELLED
    )


# --- email links ------------------------------------------------------------------------------


def email_link_issue(*, approval: Approval, user: User) -> str:
    """A signed token naming one reviewer and one approval; reused across delivery retries."""
    link = EmailLink.objects.filter(approval=approval, user=user, used_at__isnull=True).first()
    if link is None:
        link = EmailLink.objects.create(approval=approval, user=user, nonce=secrets.token_urlsafe(24))
    return signing.dumps({"n": link.nonce}, salt=EMAIL_LINK_SALT)


def email_link_open(*, token: str) -> EmailLink:
    """The link a token names, if its signature, age and single use all check out."""
    try:
        data = signing.loads(token, salt=EMAIL_LINK_SALT, max_age=conf.email_link_max_age())
    except signing.SignatureExpired:
        raise PermissionDenied("this approval link has expired; open the request in the review UI") from None
    except signing.BadSignature:
        raise PermissionDenied(
            "this approval link is not valid; use the link from the email as sent"
        ) from None
    nonce = data.get("n") if isinstance(data, dict) else None
    link = (
        EmailLink.objects.select_related("approval", "approval__decision", "approval__route", "user")
        .filter(nonce=nonce)
        .first()
    )
    if link is None:
        raise PermissionDenied("this approval link is not valid; use the link from the email as sent")
    if link.used_at is not None:
        raise PermissionDenied("this approval link was already used; each link works once")
    return link


@transaction.atomic
def approval_vote_by_email_link(*, token: str, decision: Any, rationale: Any = None) -> Approval:
    """Vote as the reviewer an email link was sent to; the link is spent in the same transaction."""
    link = email_link_open(token=token)
    spent = EmailLink.objects.filter(pk=link.pk, used_at__isnull=True).update(used_at=timezone.now())
    if spent != 1:
        raise PermissionDenied("this approval link was already used; each link works once")
    return approval_vote(
        actor=Actor.for_user(link.user),
        approval_id=link.approval_id,
        decision=decision,
        rationale=rationale,
        channel="email",
    )


# --- the outbox -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttemptResult:
    status: str
    retry_in_ms: int | None = None
    locked: bool = False  # not attempted: another transaction holds the row
    deferred: bool = False  # not attempted: its destination had no slot for it


# A delivery another worker holds (its row locked), or whose destination has no free slot, is looked
# at again this soon: never dropped.
BUSY_RETRY_MS = 250
# ... but a row held this many times running (~5 s) is left to the beat's re-dispatch (it is still
# pending and due), so a row locked for good costs a few queries a tick, not four a second forever.
LOCKED_RETRIES = 20
# A destination still busy at the next look doubles the wait, up to this: a long queue for a slow
# receiver is looked at a few times a second in all, not four times a second per notification.
BUSY_RETRY_MAX_MS = 4000


def busy_retry_ms(looks: int) -> int:
    """How long a delivery deferred for a busy destination waits, after ``looks`` looks in a row."""
    return min(BUSY_RETRY_MS * 2 ** min(looks, 8), BUSY_RETRY_MAX_MS)


# How long an attempt waits for a busy destination before it is deferred.
DESTINATION_WAIT_SECONDS = 0.3


def _claim(delivery_id: str) -> tuple[Delivery | None, bool]:
    """Take a due, pending delivery for one attempt: ``(delivery, False)``; ``(None, True)`` when
    another transaction holds its row right now (look again soon); ``(None, False)`` when there is
    nothing to do (done, not due yet, or in flight under another worker's lease)."""
    with transaction.atomic():
        # Only the delivery row is locked (OF self): the joined approval, decision, agent and route
        # rows are merely read, so a concurrent insert holding FOR KEY SHARE on them (an agent's
        # next decision, a vote) neither blocks nor skips the claim.
        delivery = (
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("approval", "approval__decision", "approval__decision__agent", "approval__route")
            .filter(pk=delivery_id)
            .first()
        )
        now = timezone.now()
        if delivery is None:
            busy = Delivery.objects.filter(pk=delivery_id, status=DeliveryStatus.PENDING).exists()
            return None, busy
        # A little slack: a countdown retry may arrive a hair before its next_attempt_at.
        if delivery.status != DeliveryStatus.PENDING:
            return None, False
        if delivery.next_attempt_at > now + timedelta(milliseconds=200):
            return None, False
        approval = delivery.approval
        if approval.status == ApprovalState.CANCELLED or approval.decision.is_terminal:
            # Nobody can act on this request any more: never send it, never retry it.
            delivery.status = DeliveryStatus.CANCELLED
            delivery.save(update_fields=["status"])
            return None, False
        delivery.attempts += 1
        delivery.next_attempt_at = now + timedelta(milliseconds=conf.lease_ms())
        delivery.save(update_fields=["attempts", "next_attempt_at"])
        return delivery, False


def _defer(delivery_id: str, delay_ms: int, reason: str) -> AttemptResult | None:
    """Not now, and not counted as an attempt: due again after ``delay_ms`` (the task re-queues
    itself for then; the beat's re-dispatch is the safety net if that publish is lost).

    None when the row is not due (another message for it deferred it already, or a worker holds it
    under its lease): whoever moved it comes back for it, so this message ends here instead of
    starting a second chain of re-queued messages next to the first."""
    moved = Delivery.objects.filter(
        pk=delivery_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=timezone.now()
    ).update(next_attempt_at=timezone.now() + timedelta(milliseconds=delay_ms))
    if not moved:
        return None
    metrics.incr("tracemem_delivery_deferred_total", reason=reason)
    logger.info("delivery %s deferred %d ms (%s)", delivery_id, delay_ms, reason)
    return AttemptResult(DeliveryStatus.PENDING, retry_in_ms=delay_ms, deferred=True)


def delivery_attempt(*, actor: Actor, delivery_id: str, looks: int = 0) -> AttemptResult | None:
    """Try to deliver one outbox row once (the Celery task's body). Idempotent per delivery id.

    Network calls happen outside any transaction; the outcome is recorded afterwards. Returns None
    when there was nothing to do (already delivered, failed, not yet due, or in another worker's
    hands); a result with ``retry_in_ms`` when the task should look again then (the row was locked
    by another transaction, or its destination is busy or failing: ``approvals.destinations``).
    ``looks``: how many times running this delivery was looked at without an attempt.
    """
    row = (
        Delivery.objects.filter(pk=delivery_id, status=DeliveryStatus.PENDING)
        .values("channel", "target")
        .first()
    )
    if row is None:
        return None
    key = destination_key(row["channel"], row["target"] or {})
    if not gate.enter(key, slots=conf.destination_slots(), wait_seconds=DESTINATION_WAIT_SECONDS):
        failing = gate.health(key) == FAILING
        # A failing destination is tried again when its own backoff would; a busy one very soon.
        delay = max(1000, conf.backoff_base_ms()) if failing else busy_retry_ms(looks)
        return _defer(delivery_id, delay, "destination failing" if failing else "destination busy")
    outcome: bool | None = None
    error: str | None = None
    ref: dict[str, Any] = {}
    try:
        delivery, busy = _claim(delivery_id)
        if delivery is None:
            if busy:
                metrics.incr("tracemem_delivery_deferred_total", reason="row locked")
                logger.info("delivery %s is locked by another transaction; looking again soon", delivery_id)
                return AttemptResult(DeliveryStatus.PENDING, retry_in_ms=BUSY_RETRY_MS, locked=True)
            return None
        try:
            ref = senders.send(delivery) or {}
        except senders.DeliveryError as exc:
            error = str(exc)
        except Exception as exc:  # any sender bug must still end in a visible, retried delivery
            logger.exception("delivery %s crashed", delivery_id)
            error = f"internal error while delivering ({type(exc).__name__})"
        outcome = error is None
    finally:
        gate.leave(key, ok=outcome)
    return _record_outcome(actor=actor, delivery_id=delivery_id, error=error, ref=ref)


def _record_outcome(
    *, actor: Actor, delivery_id: str, error: str | None, ref: dict[str, Any]
) -> AttemptResult:
    """Record what the receiver answered, riding out a database blip: an outcome lost here would
    make the re-dispatcher send a delivered notification again once the lease ends. Retries for
    half the lease at most, so it never races that re-dispatch."""
    deadline = time.monotonic() + conf.lease_ms() / 2000
    while True:
        try:
            return _record_attempt(actor=actor, delivery_id=delivery_id, error=error, ref=ref)
        except (OperationalError, InterfaceError) as exc:
            if time.monotonic() >= deadline:
                raise
            logger.warning("recording the outcome of delivery %s failed (%s); retrying", delivery_id, exc)
            db_connection.close()  # a cut connection is not reused; the next query reconnects
            time.sleep(0.2)


@transaction.atomic
def _record_attempt(
    *, actor: Actor, delivery_id: str, error: str | None, ref: dict[str, Any]
) -> AttemptResult:
    delivery = Delivery.objects.select_related("approval").get(pk=delivery_id)
    decision = decision_lock(actor=Actor.system(), decision_id=delivery.approval.decision_id, settle=False)
    delivery = Delivery.objects.select_for_update().get(pk=delivery_id)
    now = timezone.now()
    entry: dict[str, Any] = {"attempt": delivery.attempts, "at": iso_z(now), "error": error}
    result: AttemptResult
    if delivery.status != DeliveryStatus.PENDING or decision.is_terminal:
        return _record_late_attempt(delivery=delivery, error=error, ref=ref, entry=entry, now=now)
    if error is None:
        delivery.status = DeliveryStatus.DELIVERED
        delivery.delivered_at = now
        delivery.last_error = ""
        delivery.external_ref = {**delivery.external_ref, **ref}
        result = AttemptResult(DeliveryStatus.DELIVERED)
    elif delivery.attempts >= conf.max_attempts():
        delivery.status = DeliveryStatus.FAILED
        delivery.last_error = error[:2000]
        result = AttemptResult(DeliveryStatus.FAILED)
    else:
        delay = min(conf.backoff_base_ms() * 2 ** (delivery.attempts - 1), conf.backoff_cap_ms())
        delivery.next_attempt_at = now + timedelta(milliseconds=delay)
        delivery.last_error = error[:2000]
        entry["retry_in_ms"] = delay
        result = AttemptResult(DeliveryStatus.PENDING, retry_in_ms=delay)
    delivery.attempt_log = [*delivery.attempt_log, entry][-50:]
    delivery.save()
    if result.status != DeliveryStatus.PENDING:
        trace_append(
            decision=decision,
            type=EventType.DELIVERY,
            actor=actor,
            payload={
                "delivery_id": delivery.delivery_id,
                "approval_id": delivery.approval_id,
                "channel": delivery.channel,
                "status": delivery.status,
                "attempts": delivery.attempts,
                "error": delivery.last_error or None,
            },
        )
    return result


def _record_late_attempt(
    *, delivery: Delivery, error: str | None, ref: dict[str, Any], entry: dict[str, Any], now: datetime
) -> AttemptResult:
    """The outcome of an attempt that was in flight when its approval was cancelled or its decision
    closed: kept on the Delivery row only. The trace is not touched, because a closed trace never
    changes (SPEC §5) and the receipt issued at close pins its last event; nothing is retried."""
    if error is None:
        # It did reach the receiver: say so truthfully, even though nobody can act on it now.
        delivery.status = DeliveryStatus.DELIVERED
        delivery.delivered_at = now
        delivery.last_error = ""
        delivery.external_ref = {**delivery.external_ref, **ref}
    else:
        delivery.status = DeliveryStatus.CANCELLED
        delivery.last_error = error[:2000]
    entry["late"] = True
    delivery.attempt_log = [*delivery.attempt_log, entry][-50:]
    delivery.save()
    return AttemptResult(delivery.status)


def deliveries_redispatch_due(*, actor: Actor, limit: int = 500) -> int:
    """Queue every pending delivery whose time has come (lost publishes, dead workers, retries);
    returns how many were queued (none while the broker is down: the next tick tries again)."""
    due = Delivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=timezone.now())
    ids = list(due.order_by("next_attempt_at").values_list("delivery_id", flat=True)[:limit])
    return sum(_publish(delivery_id) for delivery_id in ids)


def slack_messages_update(*, actor: Actor, approval_id: str) -> int:
    """Replace the buttons of every delivered Slack message of a resolved approval with its outcome."""
    approval = Approval.objects.filter(pk=approval_id).first()
    if approval is None or approval.status == ApprovalState.PENDING:
        return 0
    updated = 0
    for delivery in approval.deliveries.filter(channel=Channel.SLACK, status=DeliveryStatus.DELIVERED):
        try:
            senders.slack_update(delivery, approval)
            updated += 1
        except senders.DeliveryError as exc:
            logger.warning("could not update Slack message of %s: %s", delivery.delivery_id, exc)
    return updated


# --- webhook credentials ----------------------------------------------------------------------


@transaction.atomic
def webhook_credential_create(
    *, actor: Actor, user: User, name: str = "webhook"
) -> tuple[WebhookCredential, str]:
    """Issue a credential a webhook receiver uses to resolve approvals as ``user``; shown once.

    The credential votes as ``user``: only a superuser may issue one for somebody else.
    """
    require_perm(actor, "approvals.manage_integrations")
    if actor.kind == "user" and (actor.user is None or actor.user.pk != user.pk):
        require_superuser(actor, "issue a webhook credential that votes as another user")
    secret = keys.generate(WEBHOOK_CREDENTIAL_PREFIX)
    credential = WebhookCredential.objects.create(
        name=v.string(name, "name", max_length=100),
        user=user,
        prefix=keys.lookup_prefix(secret, WEBHOOK_CREDENTIAL_PREFIX),
        token_hash=keys.digest(secret),
    )
    _audit_integration(actor, "create", credential, None, _integration_audit(credential))
    return credential, secret


@transaction.atomic
def webhook_credential_revoke(*, actor: Actor, credential_id: int) -> WebhookCredential:
    """Revoke a webhook credential; its receiver is refused from the next request on."""
    require_perm(actor, "approvals.manage_integrations")
    credential = WebhookCredential.objects.select_for_update().select_related("user").get(pk=credential_id)
    before = _integration_audit(credential)
    if credential.revoked_at is None:
        credential.revoked_at = timezone.now()
        credential.save(update_fields=["revoked_at"])
    _audit_integration(actor, "revoke", credential, before, _integration_audit(credential))
    return credential


# --- integrations (Slack apps, webhook endpoints and credentials): secrets are write-only -------

Integration = SlackIntegration | WebhookEndpoint
_INTEGRATION_TYPES: dict[type, str] = {
    SlackIntegration: "slack_integration",
    WebhookEndpoint: "webhook_endpoint",
    WebhookCredential: "webhook_credential",
}


def _integration_audit(item: Integration | WebhookCredential) -> dict[str, Any]:
    if isinstance(item, SlackIntegration):
        return {"name": item.name, "api_base_url": outbound.public_url(item.api_base_url)}
    if isinstance(item, WebhookEndpoint):
        return {"name": item.name, "url": outbound.public_url(item.url)}
    return {
        "name": item.name,
        "user": item.user.get_username(),
        "prefix": item.prefix,
        "revoked_at": iso_z(item.revoked_at),
    }


def _audit_integration(
    actor: Actor, verb: str, item: Integration | WebhookCredential, before: Any, after: Any
) -> None:
    kind = _INTEGRATION_TYPES[type(item)]
    object_id = f"cred_{item.pk}" if isinstance(item, WebhookCredential) else item.name
    audit_record(
        actor=actor,
        action=f"{kind}.{verb}",
        object_type=kind,
        object_id=object_id,
        before=before,
        after=after,
    )


# --- outbound destinations: webhook endpoints and Slack integrations (issue 13) ----------------
# One path for every door (admin API, apply_config, Django admin): validated here, the URL through
# the outbound rule (tracemem_core.outbound), saved, audited with secrets by name only.

MANAGE_INTEGRATIONS = "approvals.manage_integrations"
DESTINATION_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class DestinationKind:
    model: type[WebhookEndpoint] | type[SlackIntegration]
    channel: str  # the route channel type that names it
    channel_key: str  # the key of that channel entry holding its name
    label: str
    url_field: str
    url_what: str
    fields: tuple[str, ...]  # settable besides the name, in this order
    required: tuple[str, ...]  # on creation
    secrets: tuple[str, ...]  # write-only
    defaults: tuple[tuple[str, str], ...]
    api_path: str
    read_area: str  # tracemem_core.permissions.READERS
    # Besides MANAGE_INTEGRATIONS, changes need a superuser when this says why (completes "only an
    # active superuser may ...").
    superuser_only: str | None = None


WEBHOOK_ENDPOINT = DestinationKind(
    model=WebhookEndpoint,
    channel="webhook",
    channel_key="endpoint",
    label="webhook endpoint",
    url_field="url",
    url_what="webhook url",
    fields=("url", "signing_secret"),
    required=("url", "signing_secret"),
    secrets=("signing_secret",),
    defaults=(),
    api_path="/api/v1/admin/webhook-endpoints",
    read_area="webhook_endpoints",
)
SLACK_INTEGRATION = DestinationKind(
    model=SlackIntegration,
    channel="slack",
    channel_key="integration",
    label="Slack integration",
    url_field="api_base_url",
    url_what="slack api_base_url",
    fields=("api_base_url", "bot_token", "signing_secret"),
    required=("bot_token", "signing_secret"),
    secrets=("bot_token", "signing_secret"),
    defaults=(("api_base_url", "https://slack.com/api/"),),
    api_path="/api/v1/admin/integrations",
    read_area="slack_integrations",
    # Its signing secret and API (users.info) decide which reviewer a button press votes as: setting
    # them is impersonation, like a webhook credential for somebody else.
    superuser_only=(
        "create, change or delete a Slack integration: its signing secret and API decide which reviewer "
        "a Slack button press votes as"
    ),
)
DESTINATION_KINDS = {kind.channel: kind for kind in (WEBHOOK_ENDPOINT, SLACK_INTEGRATION)}


def _require_destination_admin(actor: Actor, kind: DestinationKind) -> None:
    require_perm(actor, MANAGE_INTEGRATIONS)
    if kind.superuser_only is not None:
        require_superuser(actor, kind.superuser_only)


def _check_signing_secret(kind: DestinationKind, secret: str) -> None:
    if kind is not WEBHOOK_ENDPOINT:
        return
    try:
        Webhook(secret)  # decodes the base64 after whsec_
        valid = secret.startswith("whsec_")
    except Exception:
        valid = False
    if not valid:
        raise InvalidArgument(
            "signing_secret must be a Standard Webhooks secret: whsec_ followed by base64 (e.g. "
            "whsec_ + base64 of 24 random bytes)",
            field="signing_secret",
        )


def clean_destination(kind: DestinationKind, data: Any, *, creating: bool) -> dict[str, str]:
    """The validated fields (not the name) of a webhook endpoint or Slack integration, with the URL
    checked against the outbound rule; on an update only the fields given (a secret left out is
    kept). Errors name the field and never repeat a secret."""
    data = v.json_object(data, "body")
    unknown = sorted(set(data) - set(kind.fields))
    if unknown:
        raise InvalidArgument(
            f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(kind.fields)}", field=unknown[0]
        )
    fields = dict(kind.defaults) if creating else {}
    for name in kind.fields:
        if data.get(name) is not None:
            fields[name] = v.string(data[name], name, max_length=1000 if name == kind.url_field else 500)
        elif creating and name in kind.required:
            raise InvalidArgument(f"{name} is required to create a {kind.label}", field=name)
    if data.get(kind.url_field) is not None:  # the default (Slack's own API) needs no check
        outbound.check_url(fields[kind.url_field], what=kind.url_what, field=kind.url_field)
    if "signing_secret" in fields:
        _check_signing_secret(kind, fields["signing_secret"])
    return fields


def _destination_name(kind: DestinationKind, name: Any) -> str:
    clean = v.string(name, "name", max_length=64)
    if not DESTINATION_NAME_RE.match(clean):
        raise InvalidArgument(
            f"name must be 1-64 letters, digits, - or _ (routes name the {kind.label} by it); got {clean!r}",
            field="name",
        )
    return clean


@transaction.atomic
def destination_create(*, actor: Actor, kind: DestinationKind, data: Any) -> Integration:
    """Create a webhook endpoint or Slack integration (``conflict`` if the name is taken)."""
    _require_destination_admin(actor, kind)
    body = v.json_object(data, "body")
    name = _destination_name(kind, body.get("name"))
    fields = clean_destination(kind, {k: val for k, val in body.items() if k != "name"}, creating=True)
    if kind.model.objects.filter(name=name).exists():
        raise Conflict(f"{kind.label} {name} already exists; PATCH {kind.api_path}/{name} to change it")
    item = kind.model(name=name, **fields)
    try:
        with transaction.atomic():
            item.save()
    except IntegrityError:
        raise Conflict(
            f"{kind.label} {name} already exists; PATCH {kind.api_path}/{name} to change it"
        ) from None
    after = {
        **_integration_audit(item),
        "write_only_changed": [s for s in sorted(kind.secrets) if s in fields],
    }
    _audit_integration(actor, "create", item, None, after)
    return item


@transaction.atomic
def destination_update(
    *, actor: Actor, kind: DestinationKind, name: str, data: Any
) -> tuple[Integration, bool]:
    """Change the given fields of a webhook endpoint or Slack integration; ``(item, changed)``.

    The name never changes (routes refer to it); a secret equal to the stored one changes nothing."""
    _require_destination_admin(actor, kind)
    item = kind.model.objects.select_for_update().filter(name=name).first()
    if item is None:
        raise NotFound(f"{kind.label} {name} was not found")
    body = dict(v.json_object(data, "body"))
    if body.pop("name", name) != name:
        raise InvalidArgument(
            f"name cannot change (routes refer to it); create a new {kind.label} instead", field="name"
        )
    fields = clean_destination(kind, body, creating=False)
    changed = [f for f, value in fields.items() if getattr(item, f) != value]
    if not changed:
        return item, False
    before = _integration_audit(item)
    for field in changed:
        setattr(item, field, fields[field])
    item.save()
    after = _integration_audit(item)
    secrets_changed = sorted(f for f in changed if f in kind.secrets)
    if secrets_changed:
        after["write_only_changed"] = secrets_changed
    _audit_integration(actor, "update", item, before, after)
    return item, True


@transaction.atomic
def destination_delete(*, actor: Actor, kind: DestinationKind, name: str) -> None:
    """Delete a webhook endpoint or Slack integration no route names (``invalid_state`` otherwise)."""
    _require_destination_admin(actor, kind)
    item = kind.model.objects.select_for_update().filter(name=name).first()
    if item is None:
        raise NotFound(f"{kind.label} {name} was not found")
    users = selectors.routes_naming(kind.channel, kind.channel_key).get(name, [])
    if users:
        plural = "s" if len(users) > 1 else ""
        raise InvalidState(
            f"{kind.label} {name} is used by route{plural} {', '.join(users)}; remove it from those routes first"
        )
    _audit_integration(actor, "delete", item, _integration_audit(item), None)
    item.delete()


def _apply_destinations(
    kind: DestinationKind, section: str, *, actor: Actor, items: Any, dry_run: bool
) -> list[str]:
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise InvalidArgument(f"{section} must be a list of objects", field=section)
    lines: list[str] = []
    prefix = "[dry-run] would " if dry_run else ""
    for item in items:
        name = _destination_name(kind, item.get("name"))
        if kind.model.objects.filter(name=name).exists():
            _, changed = destination_update(actor=actor, kind=kind, name=name, data=item)
            lines.append(
                f"{prefix}update {kind.label} {name}" if changed else f"{kind.label} {name} unchanged"
            )
        else:
            destination_create(actor=actor, kind=kind, data=item)
            lines.append(f"{prefix}create {kind.label} {name}")
    return lines


def apply_webhook_endpoints(*, actor: Actor, items: Any, dry_run: bool) -> list[str]:
    """``apply_config`` section ``webhook_endpoints``: [{name, url, signing_secret?}] (a secret left
    out keeps the stored one); idempotent. Never prints a secret."""
    return _apply_destinations(
        WEBHOOK_ENDPOINT, "webhook_endpoints", actor=actor, items=items, dry_run=dry_run
    )


def apply_slack_integrations(*, actor: Actor, items: Any, dry_run: bool) -> list[str]:
    """``apply_config`` section ``slack_integrations``: [{name, bot_token?, signing_secret?,
    api_base_url?}]; idempotent. Never prints a secret."""
    return _apply_destinations(
        SLACK_INTEGRATION, "slack_integrations", actor=actor, items=items, dry_run=dry_run
    )


def route_destinations_check(channels: list[dict[str, Any]], *, lock: bool = False) -> None:
    """Every webhook channel names an existing endpoint, every Slack channel that names an
    integration names an existing one (``lock``: and keep them so until the route is saved)."""
    for index, entry in enumerate(channels):
        kind = DESTINATION_KINDS.get(entry.get("type", ""))
        if kind is None:
            continue
        name = entry.get(kind.channel_key)
        if name is None and kind is SLACK_INTEGRATION:
            continue  # the first Slack integration
        if not isinstance(name, str) or not name:
            raise InvalidArgument(
                f"channels[{index}] ({kind.channel}) needs {kind.channel_key}: the name of a {kind.label}",
                field="channels",
            )
        found = kind.model.objects.filter(name=name)
        if (found.select_for_update() if lock else found).first() is None:
            existing = (
                ", ".join(kind.model.objects.order_by("name").values_list("name", flat=True)) or "none yet"
            )
            raise InvalidArgument(
                f"channels[{index}] names {kind.label} {name!r}, which does not exist; create it first "
                f"(POST {kind.api_path}) or name an existing one ({existing})",
                field="channels",
            )


def webhook_credential_authenticate(*, authorization: str | None) -> User:
    """``Authorization: Bearer tmwh_…`` (or ``Token``/``Webhook``) → the credential's user."""
    parts = (authorization or "").split()
    if len(parts) != 2 or parts[0].lower() not in ("bearer", "token", "webhook"):
        raise Unauthenticated(
            "send 'Authorization: Bearer tmwh_…' with a webhook credential", details={"reason": "missing"}
        )
    secret = parts[1]
    if not keys.is_well_formed(secret, WEBHOOK_CREDENTIAL_PREFIX):
        raise Unauthenticated(
            "the webhook credential is malformed: expected tmwh_ followed by 40 letters and digits",
            details={"reason": "malformed"},
        )
    prefix = keys.lookup_prefix(secret, WEBHOOK_CREDENTIAL_PREFIX)
    candidates = WebhookCredential.objects.select_related("user").filter(prefix=prefix)
    credential = next((c for c in candidates if keys.matches(secret, c.token_hash)), None)
    if credential is None:
        raise Unauthenticated(
            "the webhook credential is not known to this server", details={"reason": "unknown"}
        )
    if credential.revoked_at is not None:
        raise Unauthenticated("the webhook credential has been revoked", details={"reason": "revoked"})
    if not credential.user.is_active:
        raise Unauthenticated(
            "the webhook credential's user is inactive", details={"reason": "user_inactive"}
        )
    WebhookCredential.objects.filter(pk=credential.pk).update(last_used_at=timezone.now())
    return credential.user


def user_for_email(email: str) -> User:
    """The one active user with this email (Slack reviewers are matched by email)."""
    users = list(get_user_model().objects.filter(email__iexact=email, is_active=True)[:2])
    if len(users) != 1:
        raise PermissionDenied(
            "your Slack email does not match exactly one TraceMem reviewer; ask an admin to set your email"
        )
    return users[0]


# --- routes as configuration (apply_config, seed_demo) ------------------------------------------

_ROUTE_FIELDS = (
    "name",
    "channels",
    "approver_group",
    "required_approvals",
    "require_rationale",
    "expires_in_seconds",
    "allow_agent_owner",
    "default",
)


def clean_route(item: Any) -> tuple[str, dict[str, Any]]:
    item = v.json_object(item, "routes[]")
    unknown = sorted(set(item) - {"route_id", *_ROUTE_FIELDS})
    if unknown:
        raise InvalidArgument(
            f"unknown route field(s) {', '.join(unknown)}; allowed: route_id, {', '.join(_ROUTE_FIELDS)}",
            field="routes[]",
        )
    route_id = v.string(item.get("route_id"), "route_id", max_length=100)
    if not SLUG_RE.match(route_id):
        raise InvalidArgument(
            f"route_id must be a lowercase slug like route_finance; got {route_id!r}", field="route_id"
        )
    channels = item.get("channels", [])
    if not isinstance(channels, list) or any(
        not isinstance(c, dict) or c.get("type") not in Channel.values for c in channels
    ):
        raise InvalidArgument(
            "channels must be a list of objects whose type is email, slack or webhook", field="channels"
        )
    route_destinations_check(channels)
    fields: dict[str, Any] = {
        "name": v.optional_string(item.get("name"), "name") or route_id,
        "channels": channels,
    }
    for name, default in (("required_approvals", 1), ("expires_in_seconds", 86400)):
        value = _optional_int(item.get(name), name)
        value = default if value is None else value
        if value < 1:
            raise InvalidArgument(f"{name} must be at least 1", field=name)
        fields[name] = value
    for name in ("require_rationale", "allow_agent_owner"):
        fields[name] = bool(_optional_bool(item.get(name), name))
    fields["is_default"] = bool(_optional_bool(item.get("default"), "default"))
    fields["approver_group"] = v.optional_string(item.get("approver_group"), "approver_group", max_length=150)
    return route_id, fields


OWNER_VOTE_RULE = (
    "let agent owners vote on their own agents' requests (allow_agent_owner), or change who decides "
    "(approver_group, required_approvals) on a route that lets them"
)


def route_rules_check(*, actor: Actor, route_id: str, fields: dict[str, Any]) -> None:
    """Refuse a non-superuser a route that lets agent owners vote on their own agents' requests,
    unless it already did with the same group and quorum (``fields`` as :func:`clean_route` gives).

    An agent names its route (``approval_route_id``), so a route manager who owns an agent could
    otherwise create or re-point such a route and approve their own agent's next request. Taking the
    owners' vote away, and any other change, stay with ``approvals.manage_routes``.
    """
    if not fields.get("allow_agent_owner") or is_superuser(actor):
        return
    route = ApprovalRoute.objects.select_related("approver_group").filter(route_id=route_id).first()
    if route is not None and route.allow_agent_owner:
        group = route.approver_group.name if route.approver_group is not None else None
        if (group, route.required_approvals) == (
            fields.get("approver_group"),
            fields.get("required_approvals"),
        ):
            return
    require_superuser(actor, OWNER_VOTE_RULE)


@transaction.atomic
def route_upsert(*, actor: Actor, route_id: str, fields: dict[str, Any]) -> tuple[ApprovalRoute, bool]:
    """Create or update a route from clean fields; ``approver_group`` is a group name (created if new).

    Returns ``(route, changed)``. Marking a route default unmarks the previous default.
    """
    from django.contrib.auth.models import Group

    require_perm(actor, "approvals.manage_routes")
    route_rules_check(actor=actor, route_id=route_id, fields=fields)
    values = dict(fields)
    group_name = values.pop("approver_group", None)
    values["approver_group"] = Group.objects.get_or_create(name=group_name)[0] if group_name else None
    route_destinations_check(values["channels"], lock=True)
    route = ApprovalRoute.objects.select_for_update().filter(route_id=route_id).first()
    if route is not None and all(getattr(route, k) == val for k, val in values.items()):
        return route, False
    before = route_definition(route) if route is not None else None
    if values.get("is_default"):
        for previous in (
            ApprovalRoute.objects.select_for_update().filter(is_default=True).exclude(route_id=route_id)
        ):
            unmarked = route_definition(previous)
            previous.is_default = False
            previous.save(update_fields=["is_default", "updated_at"])
            _audit_route(actor, "route.update", unmarked, route_definition(previous))
    route, _ = ApprovalRoute.objects.update_or_create(route_id=route_id, defaults=values)
    _audit_route(actor, "route.create" if before is None else "route.update", before, route_definition(route))
    return route, True


@transaction.atomic
def route_delete(*, actor: Actor, route_id: str) -> None:
    """Delete a route no approval used (approvals keep their route: ``invalid_state`` otherwise)."""
    require_perm(actor, "approvals.manage_routes")
    route = ApprovalRoute.objects.select_for_update().filter(route_id=route_id).first()
    if route is None:
        raise NotFound(f"approval route {route_id} was not found")
    if route.approvals.exists():
        raise InvalidState(f"route {route_id} has approvals; it cannot be deleted (they refer to it)")
    before = route_definition(route)
    route.delete()
    audit_record(actor=actor, action="route.delete", object_type="route", object_id=route_id, before=before)


def _audit_route(actor: Actor, action: str, before: dict[str, Any] | None, after: dict[str, Any]) -> None:
    audit_record(
        actor=actor,
        action=action,
        object_type="route",
        object_id=after["route_id"],
        before=before,
        after=after,
    )


def apply_routes(*, actor: Actor, items: Any, dry_run: bool) -> list[str]:
    """The ``routes`` section of ``manage.py apply_config``; idempotent (an equal route changes nothing)."""
    if not isinstance(items, list):
        raise InvalidArgument("routes must be a list of route definitions", field="routes")
    lines: list[str] = []
    prefix = "[dry-run] would " if dry_run else ""
    for item in items:
        route_id, fields = clean_route(item)
        exists = ApprovalRoute.objects.filter(route_id=route_id).exists()
        route, changed = route_upsert(actor=actor, route_id=route_id, fields=fields)
        if not exists:
            lines.append(f"{prefix}create route {route_id}")
        elif changed:
            lines.append(f"{prefix}update route {route_id}")
        else:
            lines.append(f"route {route_id} unchanged")
    return lines


DEMO_ROUTES: list[dict[str, Any]] = [
    {
        "route_id": "route_default",
        "name": "Default (admins by email)",
        "channels": [{"type": "email", "to": ["admin"]}],
        "default": True,
    },
    {
        "route_id": "route_finance",
        "name": "Finance: two approvers with a rationale",
        "channels": [{"type": "email"}],
        "approver_group": "finance-approvers",
        "required_approvals": 2,
        "require_rationale": True,
        "expires_in_seconds": 4 * 3600,
    },
]


def seed_demo_routes(*, actor: Actor) -> list[str]:
    """``seed_demo``: the default route (email to the admin) and a finance-style example."""
    return apply_routes(actor=actor, items=DEMO_ROUTES, dry_run=False)


def route_create(*, actor: Actor, data: Any) -> ApprovalRoute:
    """``POST /api/v1/admin/routes``: a new route (``conflict`` if the route_id exists)."""
    require_perm(actor, "approvals.manage_routes")
    route_id, fields = clean_route(data)
    if ApprovalRoute.objects.filter(route_id=route_id).exists():
        raise Conflict(f"route {route_id} already exists; PATCH /api/v1/admin/routes/{route_id} to change it")
    return route_upsert(actor=actor, route_id=route_id, fields=fields)[0]


def route_update(*, actor: Actor, route_id: str, data: Any) -> ApprovalRoute:
    """``PATCH /api/v1/admin/routes/{route_id}``: change the given fields, keep the others."""
    require_perm(actor, "approvals.manage_routes")
    route = ApprovalRoute.objects.filter(route_id=route_id).select_related("approver_group").first()
    if route is None:
        raise NotFound(f"approval route {route_id} was not found")
    current = route_definition(route)
    patch = v.json_object(data, "body")
    if "route_id" in patch and patch["route_id"] != route_id:
        raise InvalidArgument("route_id cannot change; create a new route instead", field="route_id")
    clean_id, fields = clean_route({**current, **patch})
    return route_upsert(actor=actor, route_id=clean_id, fields=fields)[0]
