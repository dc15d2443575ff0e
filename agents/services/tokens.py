"""Personal API tokens: a signed-in person's own credential for the REST API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from agents import keys
from agents.models import PersonalToken
from agents.selectors import proposed_token_name
from agents.services.registry import _parse_authorization, _token_audit, _touch, _validate_name
from audit.services import audit_record
from tracemem_core import validation as v
from tracemem_core.actor import Actor
from tracemem_core.errors import PermissionDenied, Unauthenticated
from tracemem_core.permissions import require_superuser


@dataclass(frozen=True)
class IssuedToken:
    token: PersonalToken
    secret: str


@transaction.atomic
def personal_token_create(
    *, actor: Actor, user: User, name: str | None = None, expires_at: datetime | None = None
) -> IssuedToken:
    """Create a personal access token for ``user``: themselves, or anyone when a superuser (or the
    system). A token acts as its user, so minting one for somebody else is impersonation.

    ``expires_at`` (optional, in the future) ends it by itself; the secret is returned once and only
    its hash is stored. Without a ``name`` it gets one none of the user's tokens has
    (``proposed_token_name``).
    """
    if actor.kind == "agent":
        raise PermissionDenied("agents cannot create personal access tokens")
    if actor.kind == "user" and (actor.user is None or actor.user.pk != user.pk):
        require_superuser(actor, "create a personal access token for another user")
    expires_at = v.future_instant(expires_at, "expires_at")
    secret = keys.generate(keys.PERSONAL_TOKEN_PREFIX)
    token = PersonalToken.objects.create(
        user=user,
        name=_validate_name(proposed_token_name(user) if name is None else name),
        prefix=keys.lookup_prefix(secret, keys.PERSONAL_TOKEN_PREFIX),
        token_hash=keys.digest(secret),
        expires_at=expires_at,
    )
    audit_record(
        actor=actor,
        action="personal_token.create",
        object_type="personal_token",
        object_id=token.token_id,
        after=_token_audit(token),
    )
    return IssuedToken(token=token, secret=secret)


@transaction.atomic
def personal_token_revoke(*, actor: Actor, token: PersonalToken) -> PersonalToken:
    """Revoke a personal token (its owner's, or anyone's when a superuser); it is refused from the
    next request on. Revoking a revoked token changes nothing (its first revocation time is kept)."""
    if actor.kind == "agent" or (
        actor.kind == "user" and (actor.user is None or actor.user.pk != token.user_id)
    ):
        require_superuser(actor, "revoke another user's personal access token")
    before = _token_audit(token)
    PersonalToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    token.refresh_from_db()
    audit_record(
        actor=actor,
        action="personal_token.revoke",
        object_type="personal_token",
        object_id=token.token_id,
        before=before,
        after=_token_audit(token),
    )
    return token


def personal_token_authenticate(*, authorization: str | None) -> User:
    secret = _parse_authorization(authorization, ("token",))
    if not keys.is_well_formed(secret, keys.PERSONAL_TOKEN_PREFIX):
        raise Unauthenticated(
            "the token is malformed: expected tmpat_ followed by 40 letters and digits",
            details={"reason": "malformed"},
        )
    prefix = keys.lookup_prefix(secret, keys.PERSONAL_TOKEN_PREFIX)
    candidates = PersonalToken.objects.select_related("user").filter(prefix=prefix)
    token = next((c for c in candidates if keys.matches(secret, c.token_hash)), None)
    if token is None:
        raise Unauthenticated("the token is not known to this server", details={"reason": "unknown"})
    state = token.state()
    if state == "revoked":
        raise Unauthenticated("the token has been revoked", details={"reason": "revoked"})
    if state == "expired":
        raise Unauthenticated(
            "the token has expired; create a new one on your settings page", details={"reason": "expired"}
        )
    if not token.user.is_active:
        raise Unauthenticated("the token's user is inactive", details={"reason": "user_inactive"})
    _touch(PersonalToken, token.pk, token.last_used_at)
    return token.user
