"""Reads of OAuth connections, with the actor's visibility applied."""

from __future__ import annotations

from django.db.models import QuerySet

from agents.models import Agent
from oauth.models import OAuthConnection
from tracemem_core.actor import Actor
from tracemem_core.permissions import may_read


def connections_visible(actor: Actor, *, everyone: bool = False) -> QuerySet[OAuthConnection]:
    """The actor's own connections; with ``everyone`` and the right to read them, every person's."""
    rows = OAuthConnection.objects.select_related("user", "application", "agent").order_by("-updated_at")
    if everyone and may_read(actor, "oauth_connections"):
        return rows
    if actor.kind != "user" or actor.user is None:
        return rows.none()
    return rows.filter(user=actor.user)


def agents_owned(actor: Actor) -> QuerySet[Agent]:
    if actor.kind != "user" or actor.user is None:
        return Agent.objects.none()
    return Agent.objects.filter(owner=actor.user, disabled=False).order_by("name")


def connection_for(actor: Actor, application_id: int) -> OAuthConnection | None:
    if actor.kind != "user" or actor.user is None:
        return None
    return OAuthConnection.objects.filter(user=actor.user, application_id=application_id).first()
