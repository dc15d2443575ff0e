"""Reads behind the review queue and the approval page (the reviewer web UI).

The approvals app owns the approval rules and visibility (``approvals.selectors.approvals_visible_to``,
``approvals.services.vote_refusal``); these are read-only views of its rows shaped for the pages,
plus ``vote_block_reason`` which asks the same eligibility rule as ``approval_vote`` so a reviewer
who may not vote is told why *before* pressing a button (the service still decides).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from approvals.models import Approval, ApprovalRoute, ApprovalState, Delivery, Vote
from approvals.selectors import approvals_visible_to, ensure_route_reader
from approvals.services import vote_refusal
from tracemem_core.actor import Actor
from tracemem_core.errors import NotFound


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
