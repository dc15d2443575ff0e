"""Signed email links: a reviewer votes from the link without logging in (docs/contract/approvals.md)."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth.models import User
from django.core import signing
from django.db import transaction
from django.utils import timezone

from approvals import conf
from approvals.models import (
    Approval,
    EmailLink,
)
from approvals.services.requests import approval_vote
from tracemem_core.actor import Actor
from tracemem_core.errors import (
    PermissionDenied,
)

EMAIL_LINK_SALT = "tracemem.approvals.email-link"
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
