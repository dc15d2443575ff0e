"""Connections between a person, an OAuth client and an agent: bind at consent, revoke, resolve.

The consent page calls :func:`connection_bind`; the OAuth MCP door calls :func:`agent_for_token` on
every request; the settings page and the admin call :func:`connection_revoke`. Each change is in the
admin audit log.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application, RefreshToken

from agents.models import Agent
from agents.services.registry import agent_create
from audit.services import audit_record
from oauth.conf import SCOPE
from oauth.models import OAuthConnection
from tracemem_core.actor import Actor
from tracemem_core.errors import InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from tracemem_core.permissions import has_perm, require_oauth_connect

NEW_AGENT = "new"
MANAGE = "oauth.manage_oauth_connections"


def client_name(application: Application) -> str:
    return application.name or application.client_id


def default_agent_name(*, application: Application, user: User) -> str:
    """``<client> (<username>)``, unique among agents (``… 2``, ``… 3`` when taken)."""
    base = f"{client_name(application)[:60]} ({user.get_username()[:30]})"
    name, n = base, 1
    while Agent.objects.filter(name=name).exists():
        n += 1
        name = f"{base} {n}"
    return name


def _snapshot(connection: OAuthConnection) -> dict[str, Any]:
    return {
        "user": connection.user.get_username(),
        "client_id": connection.application.client_id,
        "client_name": connection.client_name,
        "agent_id": connection.agent_id,
        "scope": connection.scope,
        "revoked": connection.revoked_at is not None,
    }


def _delete_tokens(*, user: Any, application: Application) -> int:
    refresh = RefreshToken.objects.filter(user=user, application=application)
    access = AccessToken.objects.filter(user=user, application=application)
    count = access.count()
    refresh.delete()
    access.delete()
    return count


@transaction.atomic
def connection_bind(*, actor: Actor, application: Application, agent_choice: str) -> OAuthConnection:
    """Bind the acting person × ``application`` to an agent they own: ``agent_choice`` is an
    ``agent_id`` of theirs or ``"new"`` (an agent named after the client and the person).

    Changing the agent of an existing connection ends the tokens issued under the old one."""
    require_oauth_connect(actor)
    user = actor.user
    if user is None:
        raise PermissionDenied("only a signed-in person can connect an OAuth client to an agent")
    if agent_choice == NEW_AGENT:
        agent = agent_create(
            actor=Actor.system(f"oauth consent by {user.get_username()}"),
            name=default_agent_name(application=application, user=user),
            owner=user,
            description=f"Acts for {user.get_username()} through the OAuth client {client_name(application)}.",
        )
    else:
        found = Agent.objects.filter(agent_id=agent_choice, owner=user).first()
        if found is None:
            raise InvalidArgument(
                "agent must be one of your own agents or 'new'; pick one from the list", field="agent"
            )
        if found.disabled:
            raise InvalidArgument(
                f"agent {found.name!r} is disabled; pick another or a new one", field="agent"
            )
        agent = found
    now = timezone.now()
    connection = (
        OAuthConnection.objects.select_for_update().filter(user=user, application=application).first()
    )
    before = _snapshot(connection) if connection is not None else None
    if connection is None:
        connection = OAuthConnection.objects.create(
            user=user, application=application, agent=agent, scope=SCOPE, updated_at=now
        )
    else:
        if connection.agent_id != agent.agent_id or connection.revoked_at is not None:
            _delete_tokens(user=user, application=application)
        connection.agent = agent
        connection.revoked_at = None
        connection.updated_at = now
        connection.save(update_fields=["agent", "revoked_at", "updated_at"])
    audit_record(
        actor=actor,
        action="oauth.connect",
        object_type="oauth_connection",
        object_id=str(connection.pk),
        before=before,
        after=_snapshot(connection),
    )
    return connection


def _may_manage(actor: Actor, connection: OAuthConnection) -> bool:
    return (
        actor.kind == "user" and actor.user is not None and actor.user.pk == connection.user_id
    ) or has_perm(actor, MANAGE)


@transaction.atomic
def connection_revoke(*, actor: Actor, connection_id: int) -> OAuthConnection:
    """Revoke a connection (its person's own, or anyone's with ``oauth.manage_oauth_connections``):
    its access and refresh tokens are deleted, so the client is refused on its next request."""
    connection = (
        OAuthConnection.objects.select_for_update()
        .select_related("user", "application", "agent")
        .filter(pk=connection_id)
        .first()
    )
    if connection is None or not _may_manage(actor, connection):
        raise NotFound(f"no OAuth connection {connection_id} of yours")
    before = _snapshot(connection)
    _delete_tokens(user=connection.user, application=connection.application)
    if connection.revoked_at is None:
        connection.revoked_at = timezone.now()
        connection.save(update_fields=["revoked_at"])
    audit_record(
        actor=actor,
        action="oauth.revoke",
        object_type="oauth_connection",
        object_id=str(connection.pk),
        before=before,
        after=_snapshot(connection),
    )
    return connection


def agent_for_token(token: AccessToken) -> Agent:
    """The agent an access token acts as: its person × client connection's, if still active."""
    connection = (
        OAuthConnection.objects.select_related("agent", "user")
        .filter(user_id=token.user_id, application_id=token.application_id, revoked_at__isnull=True)
        .first()
    )
    if connection is None:
        raise Unauthenticated(
            "this OAuth connection was revoked or never consented to; connect the client again",
            details={"reason": "revoked"},
        )
    if not connection.user.is_active:
        raise Unauthenticated(
            "the person who connected this client is deactivated", details={"reason": "revoked"}
        )
    if connection.agent.disabled:
        raise Unauthenticated(
            f"agent {connection.agent.name!r} is disabled", details={"reason": "agent_disabled"}
        )
    return connection.agent
