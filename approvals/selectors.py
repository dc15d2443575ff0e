"""Reads of approvals, with the reviewer's visibility applied."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import Count, Prefetch, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from agents.selectors import confirmed_device
from approvals.models import (
    Approval,
    ApprovalRoute,
    ApprovalState,
    Delivery,
    DeliveryStatus,
    SlackIntegration,
    Vote,
    WebhookEndpoint,
)
from decisions.models import Decision
from tracemem_core.actor import Actor
from tracemem_core.errors import InvalidArgument, NotFound
from tracemem_core.permissions import has_perm, require_reader, user_is_superuser

Destination = TypeVar("Destination", WebhookEndpoint, SlackIntegration)


def vote_refusal(user: User, approval: Approval) -> str | None:
    """Why ``user`` may not vote on ``approval``, or None when they may (docs/contract/approvals.md).

    Decided by the rules frozen when the approval was requested, never by the route's current
    ones: superusers, or members of the group the route had then; never the agent's owner (then,
    or now) unless the route allowed it then. Editing a route or an agent can only take a vote
    away from someone, never give one.
    """
    if not user.is_active:
        return "Your account is inactive."
    group = approval.approver_group
    in_group = group is not None and user.groups.filter(pk=group.pk).exists()
    if not (user_is_superuser(user) or in_group):
        who = f"members of the group {group.name!r}" if group is not None else "superusers"
        return (
            f"Only {who} may vote on approval {approval.approval_id} (route {approval.route.route_id}, "
            "rules as requested); ask an admin to add you to the group."
        )
    owners = {approval.agent_owner_id, approval.decision.agent.owner_id} - {None}
    if user.pk in owners and not approval.allow_agent_owner:
        return "You own the agent that asked, so another reviewer must decide this request."
    return None


def approvals_visible_to(actor: Actor) -> QuerySet[Approval]:
    """Holders of ``approvals.view_approval`` (superusers included) see every approval; other
    reviewers those whose eligible group, frozen at request time, is one of theirs."""
    qs = Approval.objects.select_related("decision", "decision__agent", "route", "approver_group")
    if has_perm(actor, "approvals.view_approval"):
        return qs
    user = actor.user
    if actor.kind != "user" or user is None or not user.is_active:
        return qs.none()
    return qs.filter(Q(approver_group__in=user.groups.all()))


def frozen_rules(approval: Approval) -> dict[str, Any]:
    """The rules an approval is decided by, as they were when it was requested (never the route's
    current ones): recorded in its ``approval_requested`` event and shown by every door."""
    owner = approval.agent_owner
    return {
        "approver_group": approval.approver_group.name if approval.approver_group else None,
        "required_approvals": approval.required_approvals,
        "require_rationale": approval.require_rationale,
        "allow_agent_owner": approval.allow_agent_owner,
        "expires_in_seconds": approval.lifetime_seconds,
        "agent_owner": {"id": f"user_{owner.pk}", "name": owner.get_username()} if owner else None,
    }


def approval_list(actor: Actor, *, status: str | None = None, limit: int = 100) -> list[Approval]:
    qs = approvals_visible_to(actor)
    if status is not None:
        if status not in ApprovalState.values:
            raise InvalidArgument(
                f"status must be one of {', '.join(ApprovalState.values)}; got {status!r}", field="status"
            )
        qs = qs.filter(_status_as_reported(status, timezone.now()))
    return list(qs.order_by("-requested_at")[: max(1, min(limit, 500))])


def _status_as_reported(status: str, now: datetime) -> Q:
    """Approvals whose *reported* status is ``status`` (:func:`approval_as_reported`): one pending
    past its deadline is expired already, before the tick has written it."""
    if status == ApprovalState.PENDING:
        return Q(status=status, expires_at__gt=now)
    if status == ApprovalState.EXPIRED:
        return Q(status=status) | Q(status=ApprovalState.PENDING, expires_at__lte=now)
    return Q(status=status)


def approval_get(actor: Actor, approval_id: str) -> Approval:
    try:
        return approvals_visible_to(actor).get(pk=approval_id)
    except Approval.DoesNotExist:
        raise NotFound(f"approval {approval_id} was not found") from None


def deliveries_of(approval: Approval) -> list[Delivery]:
    return list(Delivery.objects.filter(approval=approval).order_by("created_at"))


def latest_approval_of(decision_id: str) -> Approval | None:
    """The pending approval of a decision, else its most recent one (for ``decision_get``)."""
    qs = Approval.objects.filter(decision_id=decision_id)
    return qs.filter(status=ApprovalState.PENDING).first() or qs.order_by("-requested_at").first()


def route_definition(route: ApprovalRoute) -> dict[str, Any]:
    """A route as its definition reads (the fields ``route_create`` takes): what the admin API
    returns, the base a PATCH applies to, and the audit log's snapshot. Channels name destinations,
    never secrets (those live on integrations)."""
    return {
        "route_id": route.route_id,
        "name": route.name,
        "channels": route.channels,
        "approver_group": route.approver_group.name if route.approver_group else None,
        "required_approvals": route.required_approvals,
        "require_rationale": route.require_rationale,
        "expires_in_seconds": route.expires_in_seconds,
        "allow_agent_owner": route.allow_agent_owner,
        "default": route.is_default,
    }


def routes_naming(channel: str, key: str) -> dict[str, list[str]]:
    """Which routes name each destination: ``{name: [route_id, ...]}`` for channels of type
    ``channel`` whose ``key`` (``endpoint``, ``integration``) names it."""
    named: dict[str, list[str]] = {}
    for route_id, channels in ApprovalRoute.objects.order_by("route_id").values_list("route_id", "channels"):
        for entry in channels if isinstance(channels, list) else []:
            if isinstance(entry, dict) and entry.get("type") == channel and isinstance(entry.get(key), str):
                users = named.setdefault(entry[key], [])
                if route_id not in users:
                    users.append(route_id)
    return named


def destinations_all(actor: Actor, model: type[Destination], area: str) -> list[Destination]:
    """Webhook endpoints or Slack integrations, for readers of ``area`` (no secret leaves here:
    the serializers say only whether each is set)."""
    require_reader(actor, area)
    return list(model.objects.order_by("name"))


def destination_by_name(
    actor: Actor, model: type[Destination], area: str, name: str, label: str
) -> Destination:
    require_reader(actor, area)
    found = model.objects.filter(name=name).first()
    if found is None:
        raise NotFound(f"{label} {name} was not found")
    return found


def route_by_id(route_id: str) -> ApprovalRoute:
    try:
        return ApprovalRoute.objects.get(route_id=route_id)
    except ApprovalRoute.DoesNotExist:
        raise NotFound(f"approval route {route_id} was not found") from None


def routes_all(actor: Actor) -> list[ApprovalRoute]:
    ensure_route_reader(actor)
    return list(ApprovalRoute.objects.select_related("approver_group").order_by("route_id"))


def ensure_route_reader(actor: Actor) -> None:
    """Routes name email addresses and Slack channels: readers need a routes permission."""
    require_reader(actor, "routes")


EXPIRY_CHANNEL = "expiry"


def pending_approval_overdue(decision: Decision, now: datetime) -> bool:
    """Whether the decision's pending approval is past its deadline (registered with decisions)."""
    return Approval.objects.filter(
        pk=decision.pending_approval_id, status=ApprovalState.PENDING, expires_at__lte=now
    ).exists()


def pending_approval_expires_at(decision: Decision) -> datetime | None:
    """When the decision's pending approval expires, if it has one (registered with decisions)."""
    if decision.pending_approval_id is None:
        return None
    return (
        Approval.objects.filter(pk=decision.pending_approval_id, status=ApprovalState.PENDING)
        .values_list("expires_at", flat=True)
        .first()
    )


def approval_as_reported(approval: Approval) -> Approval:
    """The approval as it stands *now*: past its deadline it is ``expired`` at ``expires_at``,
    exactly as the expiry will write it, even before anything has been written."""
    if not approval.is_overdue(timezone.now()):
        return approval
    reported = copy.copy(approval)
    reported.status = ApprovalState.EXPIRED
    reported.resolved_at = approval.expires_at
    reported.resolution_channel = EXPIRY_CHANNEL
    return reported


def second_factor_required_by_policy(user: User) -> bool:
    """``TRACEMEM_REQUIRE_2FA_FOR_APPROVERS`` is on and this person may approve somewhere
    (a superuser, or a member of some route's approver group)."""
    if not getattr(settings, "TRACEMEM_REQUIRE_2FA_FOR_APPROVERS", False) or not user.is_active:
        return False
    return user_is_superuser(user) or ApprovalRoute.objects.filter(approver_group__user=user).exists()


def second_factor_required(user: User) -> bool:
    """Whether this person signs in with a TOTP code and votes only from a session verified by one:
    they turned two-factor sign-in on, or it is required of them (approval links by email and Slack
    buttons then refuse their votes; they confirm in the browser)."""
    return confirmed_device(user) is not None or second_factor_required_by_policy(user)


def operations_state() -> dict[str, Any]:
    """What an operator watches (``/metrics``): approvals pending and how long the oldest has
    waited, and the outbox backlog (notifications not yet sent) per channel."""
    from django.db.models import Count, Min

    now = timezone.now()
    pending = Approval.objects.filter(status=ApprovalState.PENDING).aggregate(
        n=Count("pk"), oldest=Min("requested_at")
    )
    backlog = {
        row["channel"]: (row["n"], (now - row["oldest"]).total_seconds())
        for row in Delivery.objects.filter(status=DeliveryStatus.PENDING)
        .values("channel")
        .annotate(n=Count("pk"), oldest=Min("created_at"))
    }
    return {
        "approvals_pending": pending["n"],
        "oldest_pending_seconds": (now - pending["oldest"]).total_seconds() if pending["oldest"] else 0.0,
        "outbox": backlog,
    }


@dataclass(frozen=True)
class QueueFilters:
    agent: str = ""
    route: str = ""
    intent_prefix: str = ""
    mine: bool = False  # only approvals this reviewer can still vote on


def pending_count(actor: Actor) -> int:
    return (
        approvals_visible_to(actor)
        .filter(status=ApprovalState.PENDING, expires_at__gt=timezone.now())
        .count()
    )


def review_queue(actor: Actor, filters: QueueFilters) -> list[Approval]:
    """Pending, unexpired approvals, oldest first (the longest-waiting request is on top)."""
    qs = (
        approvals_visible_to(actor)
        .filter(status=ApprovalState.PENDING, expires_at__gt=timezone.now())
        .select_related("decision", "decision__agent", "route")
        .annotate(
            approve_votes=Count("votes", filter=Q(votes__choice="approve")),
            reject_votes=Count("votes", filter=Q(votes__choice="reject")),
        )
        .order_by("requested_at")
    )
    if filters.agent:
        qs = qs.filter(decision__agent_id=filters.agent)
    if filters.route:
        qs = qs.filter(route__route_id=filters.route)
    if filters.intent_prefix:
        qs = qs.filter(decision__intent__startswith=filters.intent_prefix)
    rows: list[Approval] = list(qs[:500])
    if filters.mine:
        rows = [a for a in rows if vote_block_reason(actor, a) is None]
    return rows


def approval_for(actor: Actor, approval_id: str) -> Approval:
    try:
        return (
            approvals_visible_to(actor)
            .select_related("decision", "decision__agent", "route", "approver_group", "agent_owner")
            .get(pk=approval_id)
        )
    except Approval.DoesNotExist:
        raise NotFound(f"approval {approval_id} was not found") from None


def approval_votes(approval: Approval) -> QuerySet[Vote]:
    return Vote.objects.filter(approval=approval).select_related("user").order_by("created_at")


def approval_deliveries(approval: Approval) -> QuerySet[Delivery]:
    return Delivery.objects.filter(approval=approval).order_by("created_at")


def vote_block_reason(actor: Actor, approval: Approval) -> str | None:
    """Why this reviewer may not vote on this approval, or None when they may."""
    user = actor.user
    if actor.kind != "user" or user is None:
        return "Only signed-in people can vote."
    if approval.status != ApprovalState.PENDING:
        return f"This approval is already {approval.status}."
    if approval.decision.is_terminal:
        return f"The decision is already {approval.decision.status}; this approval can no longer be voted on."
    if approval.expires_at <= timezone.now():
        return "This approval has expired; the agent must request a new one."
    refusal = vote_refusal(user, approval)
    if refusal is not None:
        return refusal
    if Vote.objects.filter(approval=approval, user_id=user.pk).exists():
        return "You have already voted on this approval."
    return None


def vote_tally(approval: Approval) -> dict[str, Any]:
    votes = list(approval_votes(approval))
    return {
        "approve": sum(1 for v in votes if v.choice == "approve"),
        "reject": sum(1 for v in votes if v.choice == "reject"),
        "required": approval.required_approvals,
    }


def routes_overview(actor: Actor) -> QuerySet[ApprovalRoute]:
    """Every route with its pending-approval count, for readers of routes: channels name email addresses
    and Slack channels, which reviewers have no need to see."""
    ensure_route_reader(actor)
    return (
        ApprovalRoute.objects.select_related("approver_group")
        .annotate(pending=Count("approvals", filter=Q(approvals__status=ApprovalState.PENDING)))
        .order_by("route_id")
    )


def route_ids() -> list[str]:
    return list(ApprovalRoute.objects.order_by("route_id").values_list("route_id", flat=True))


RESOLVED_STATES = (
    ApprovalState.APPROVED,
    ApprovalState.REJECTED,
    ApprovalState.EXPIRED,
    ApprovalState.CANCELLED,
)


@dataclass(frozen=True)
class ResolvedFilters:
    outcome: str = ""  # one of RESOLVED_STATES, or any
    route: str = ""
    agent: str = ""
    reviewer: str = ""  # username of someone who voted
    since: datetime | None = None  # resolved at or after
    until: datetime | None = None  # resolved before


def _with_votes_and_deliveries(qs: QuerySet[Approval]) -> QuerySet[Approval]:
    return qs.prefetch_related(
        Prefetch("votes", queryset=Vote.objects.select_related("user").order_by("created_at")),
        Prefetch("deliveries", queryset=Delivery.objects.order_by("created_at")),
    )


def resolved_approvals(actor: Actor, filters: ResolvedFilters, *, limit: int = 200) -> list[Approval]:
    """Approvals that are no longer waiting (approved, rejected, expired, cancelled), newest
    resolution first, with their votes: the review queue's history, under the queue's visibility.

    Statuses are as reported (:func:`approval_as_reported`): one past its deadline is expired
    at ``expires_at`` before the tick has written it.
    """
    now = timezone.now()
    qs = approvals_visible_to(actor).filter(
        ~Q(status=ApprovalState.PENDING) | Q(status=ApprovalState.PENDING, expires_at__lte=now)
    )
    if filters.outcome:
        if filters.outcome not in RESOLVED_STATES:
            raise InvalidArgument(
                f"outcome must be one of {', '.join(RESOLVED_STATES)}; got {filters.outcome!r}",
                field="outcome",
            )
        qs = qs.filter(_status_as_reported(filters.outcome, now))
    if filters.route:
        qs = qs.filter(route__route_id=filters.route)
    if filters.agent:
        qs = qs.filter(decision__agent_id=filters.agent)
    if filters.reviewer:
        qs = qs.filter(pk__in=Vote.objects.filter(user__username=filters.reviewer).values("approval_id"))
    qs = qs.annotate(resolved=Coalesce("resolved_at", "expires_at"))
    if filters.since is not None:
        qs = qs.filter(resolved__gte=filters.since)
    if filters.until is not None:
        qs = qs.filter(resolved__lt=filters.until)
    qs = _with_votes_and_deliveries(qs.order_by("-resolved", "-requested_at"))
    return [approval_as_reported(a) for a in qs[: max(1, min(limit, 500))]]


def approvals_of_decision(actor: Actor, decision_id: str) -> list[Approval]:
    """Every approval of one decision this actor may see, newest first, with votes and deliveries
    (the decision page's approvals card). Someone who may read the decision but not its
    approvals gets none."""
    qs = approvals_visible_to(actor).filter(decision_id=decision_id).order_by("-requested_at")
    return [approval_as_reported(a) for a in _with_votes_and_deliveries(qs)]


def approval_outcomes_since(actor: Actor, since: datetime) -> dict[str, int]:
    """How many visible approvals were approved and rejected since ``since`` (the dashboard)."""
    counts = dict.fromkeys((ApprovalState.APPROVED.value, ApprovalState.REJECTED.value), 0)
    rows = (
        approvals_visible_to(actor)
        .filter(status__in=list(counts), resolved_at__gte=since)
        .values("status")
        .annotate(n=Count("pk"))
    )
    for row in rows:
        counts[row["status"]] = row["n"]
    return counts


def votable_count(actor: Actor) -> int:
    """Pending approvals this reviewer can still vote on (the queue's "only ones I can vote on")."""
    return len(review_queue(actor, QueueFilters(mine=True)))


@dataclass(frozen=True)
class DeliveryFilters:
    status: str = ""  # one of DeliveryStatus, or any
    since: datetime | None = None  # requested at or after


def deliveries_visible_to(actor: Actor, filters: DeliveryFilters) -> QuerySet[Delivery]:
    """Deliveries of the approvals this actor may see (:func:`approvals_visible_to`), newest first
    (``/review/deliveries/`` and the dashboard's delivery failures; index ``delivery_status_created``)."""
    qs = Delivery.objects.filter(approval__in=approvals_visible_to(actor).values("pk"))
    if filters.status:
        if filters.status not in DeliveryStatus.values:
            raise InvalidArgument(
                f"status must be one of {', '.join(DeliveryStatus.values)}; got {filters.status!r}",
                field="status",
            )
        qs = qs.filter(status=filters.status)
    if filters.since is not None:
        qs = qs.filter(created_at__gte=filters.since)
    return qs.order_by("-created_at")


def delivery_list(actor: Actor, filters: DeliveryFilters, *, limit: int = 200) -> list[Delivery]:
    qs = deliveries_visible_to(actor, filters).select_related(
        "approval", "approval__route", "approval__decision"
    )
    return list(qs[: max(1, min(limit, 500))])


def failed_delivery_count(actor: Actor, since: datetime) -> int:
    """Deliveries that gave up (``failed``) since ``since``: the same rows as
    ``/review/deliveries/?status=failed&since=<day>``."""
    return deliveries_visible_to(actor, DeliveryFilters(status=DeliveryStatus.FAILED, since=since)).count()


def webhook_endpoints_missing(names: list[str]) -> list[str]:
    """Which of ``names`` no webhook endpoint has, in their order (the receipt log's witnesses)."""
    found = set(WebhookEndpoint.objects.filter(name__in=names).values_list("name", flat=True))
    return [name for name in names if name not in found]
