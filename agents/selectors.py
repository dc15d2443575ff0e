"""Reads of agents, keys and tokens."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django_otp.plugins.otp_totp.models import TOTPDevice

from agents.models import Agent, AgentKey, PersonalToken
from tracemem_site.actor import Actor
from tracemem_site.errors import NotFound, PermissionDenied


def user_by_username(username: str) -> User:
    try:
        return get_user_model().objects.get(username=username)
    except get_user_model().DoesNotExist:
        raise NotFound(f"no user named {username!r}") from None


def agent_by_id(agent_id: str) -> Agent:
    try:
        return Agent.objects.get(pk=agent_id)
    except Agent.DoesNotExist:
        raise NotFound(f"no agent {agent_id}") from None


def agent_keys(agent: Agent) -> QuerySet[AgentKey]:
    return AgentKey.objects.filter(agent=agent)


def agent_key_by_id(agent: Agent, key_id: str) -> AgentKey:
    raw = key_id.removeprefix("key_")
    if not raw.isdigit():
        raise NotFound(f"no key {key_id} for agent {agent.agent_id}")
    try:
        return AgentKey.objects.get(agent=agent, pk=int(raw))
    except AgentKey.DoesNotExist:
        raise NotFound(f"no key {key_id} for agent {agent.agent_id}") from None


def capabilities(agent: Agent) -> dict[str, object]:
    """What this agent may do: the ``capabilities_get`` result (SPEC §3, the connectivity doctor).

    Data product and policy permissions are listed by the apps that own them; until those grants
    exist the lists are empty.
    """
    from policies.selectors import granted_policies
    from products.selectors import agent_data_products
    from tracemem_site.version import PROTOCOL_VERSIONS, SERVER_NAME, SERVER_VERSION

    return {
        "agent_id": agent.agent_id,
        "name": agent.name,
        "permissions": {"data_products": agent_data_products(agent), "policies": granted_policies(agent)},
        "server": {"name": SERVER_NAME, "version": SERVER_VERSION, "protocol_versions": PROTOCOL_VERSIONS},
    }


def require_staff(actor: Actor) -> None:
    """The admin API and admin reads are for staff users (and the system) only."""
    if actor.kind == "system":
        return
    user = actor.user
    if actor.kind != "user" or user is None or not getattr(user, "is_staff", False):
        raise PermissionDenied("only staff users may manage agents and keys; ask an admin")


def agents_for_admin(actor: Actor) -> QuerySet[Agent]:
    require_staff(actor)
    return Agent.objects.select_related("owner").prefetch_related("keys").order_by("name")


def agent_for_admin(actor: Actor, agent_id: str) -> Agent:
    require_staff(actor)
    return agent_by_id(agent_id)


def confirmed_device(user: User) -> TOTPDevice | None:
    """The person's TOTP device once two-factor sign-in is on (agents/services_twofactor.py)."""
    return TOTPDevice.objects.filter(user=user, confirmed=True).first()


# --- personal access tokens --------------------------------------------------------------------


def is_token_admin(actor: Actor) -> bool:
    """Who may see and revoke anyone's personal tokens: superusers (and the system)."""
    return actor.kind == "system" or (
        actor.kind == "user" and actor.user is not None and actor.user.is_active and actor.user.is_superuser
    )


def may_manage_tokens_of(actor: Actor, user_id: int) -> bool:
    if is_token_admin(actor):
        return True
    return actor.kind == "user" and actor.user is not None and actor.user.pk == user_id


def personal_tokens(
    actor: Actor, *, username: str | None = None, everyone: bool = False
) -> QuerySet[PersonalToken]:
    """The actor's own tokens, newest first; an admin may ask for one person's or everyone's."""
    qs = PersonalToken.objects.select_related("user").order_by("-created_at", "-pk")
    if (username is not None or everyone) and not is_token_admin(actor):
        raise PermissionDenied("only admins may list other people's tokens; leave out user and all")
    if everyone:
        return qs
    if username is not None:
        return qs.filter(user=user_by_username(username))
    if actor.kind != "user" or actor.user is None:
        return qs.none()
    return qs.filter(user=actor.user)


def personal_token_by_id(actor: Actor, token_id: str) -> PersonalToken:
    """A token its owner (or an admin) may manage; anyone else gets ``not_found``, as for a token
    that does not exist, so token ids reveal nothing."""
    raw = token_id.removeprefix("pat_")
    token = (
        PersonalToken.objects.select_related("user").filter(pk=int(raw)).first()
        if raw.isdigit() and len(raw) < 19
        else None
    )
    if token is None or not may_manage_tokens_of(actor, token.user_id):
        raise NotFound(f"no token {token_id}")
    return token
