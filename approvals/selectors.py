"""Reads of approvals, with the reviewer's visibility applied."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import Q, QuerySet

from agents.selectors import confirmed_device
from approvals.models import Approval, ApprovalRoute, ApprovalState, Delivery, EmailLink
from tracemem_site.actor import Actor
from tracemem_site.errors import InvalidArgument, NotFound, PermissionDenied


def approvals_visible_to(actor: Actor) -> QuerySet[Approval]:
    """Superusers and staff see every approval; other reviewers those of their routes' groups."""
    qs = Approval.objects.select_related("decision", "decision__agent", "route")
    if actor.kind == "system":
        return qs
    user = actor.user
    if actor.kind != "user" or user is None or not user.is_active:
        return qs.none()
    if user.is_superuser or user.is_staff:
        return qs
    return qs.filter(Q(route__approver_group__in=user.groups.all()))


def approval_list(actor: Actor, *, status: str | None = None, limit: int = 100) -> list[Approval]:
    qs = approvals_visible_to(actor)
    if status is not None:
        if status not in ApprovalState.values:
            raise InvalidArgument(
                f"status must be one of {', '.join(ApprovalState.values)}; got {status!r}", field="status"
            )
        qs = qs.filter(status=status)
    return list(qs.order_by("-requested_at")[: max(1, min(limit, 500))])


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


def route_by_id(route_id: str) -> ApprovalRoute:
    try:
        return ApprovalRoute.objects.get(route_id=route_id)
    except ApprovalRoute.DoesNotExist:
        raise NotFound(f"approval route {route_id} was not found") from None


def email_link_for_token(token: str) -> EmailLink:
    # Verification (signature, age, single use) lives with the service that spends the link.
    from approvals.services import email_link_open

    return email_link_open(token=token)


def routes_all(actor: Actor) -> list[ApprovalRoute]:
    ensure_route_admin(actor)
    return list(ApprovalRoute.objects.select_related("approver_group").order_by("route_id"))


def ensure_route_admin(actor: Actor) -> None:
    user = actor.user
    if actor.kind == "system":
        return
    if actor.kind != "user" or user is None or not user.is_staff:
        raise PermissionDenied("only staff can manage approval routes")


def second_factor_required_by_policy(user: User) -> bool:
    """``TRACEMEM_REQUIRE_2FA_FOR_APPROVERS`` is on and this person may approve somewhere
    (a superuser, or a member of some route's approver group)."""
    if not getattr(settings, "TRACEMEM_REQUIRE_2FA_FOR_APPROVERS", False) or not user.is_active:
        return False
    return user.is_superuser or ApprovalRoute.objects.filter(approver_group__user=user).exists()


def second_factor_required(user: User) -> bool:
    """Whether this person signs in with a TOTP code and votes only from a session verified by one:
    they turned two-factor sign-in on, or it is required of them (approval links by email and Slack
    buttons then refuse their votes; they confirm in the browser)."""
    return confirmed_device(user) is not None or second_factor_required_by_policy(user)
