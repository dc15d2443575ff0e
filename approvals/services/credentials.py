"""Webhook credentials (``tmwh_…``): created and revoked by admins, authenticated on webhook replies;
and the reviewer an integration speaks for.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from agents import keys
from approvals.models import (
    WebhookCredential,
)
from approvals.services.integrations import _audit_integration, _integration_audit
from tracemem_core import validation as v
from tracemem_core.actor import Actor
from tracemem_core.errors import (
    PermissionDenied,
    Unauthenticated,
)
from tracemem_core.permissions import require_perm, require_superuser

WEBHOOK_CREDENTIAL_PREFIX = "tmwh_"
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
