"""Reads of agents, keys and tokens."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django_otp.plugins.otp_totp.models import TOTPDevice

from agents.models import Agent, AgentKey, PersonalToken
from policies.selectors import granted_policies
from products.selectors import agent_data_products
from tracemem_core.actor import Actor
from tracemem_core.errors import InvalidArgument, NotFound
from tracemem_core.permissions import (
    has_perm,
    is_superuser,
    may_read,
    require_perm,
    require_reader,
    require_superuser,
)
from tracemem_core.version import MODERN_PROTOCOL_VERSIONS, PROTOCOL_VERSIONS, SERVER_NAME, SERVER_VERSION


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


def unused_name(taken: Iterable[str], stem: str) -> str:
    """The name proposed for a new key or token (issue 18): ``default`` while none is called that,
    then ``<stem>-N`` (N one more than the number of names taken, counting up past names in use)."""
    names = set(taken)
    if "default" not in names:
        return "default"
    n = len(names) + 1
    while f"{stem}-{n}" in names:
        n += 1
    return f"{stem}-{n}"


def proposed_key_name(agent: Agent) -> str:
    """A name for the agent's next key that none of its keys has (``default``, then ``key-N``)."""
    return unused_name(AgentKey.objects.filter(agent=agent).values_list("name", flat=True), "key")


def proposed_token_name(user: User) -> str:
    """A name for the person's next personal token that none of theirs has (``default``, then ``token-N``)."""
    return unused_name(PersonalToken.objects.filter(user=user).values_list("name", flat=True), "token")


def agent_key_by_id(agent: Agent, key_id: str) -> AgentKey:
    raw = key_id.removeprefix("key_")
    if not (raw.isascii() and raw.isdigit()):
        raise NotFound(f"no key {key_id} for agent {agent.agent_id}")
    try:
        return AgentKey.objects.get(agent=agent, pk=int(raw))
    except AgentKey.DoesNotExist:
        raise NotFound(f"no key {key_id} for agent {agent.agent_id}") from None


def capabilities(agent: Agent) -> dict[str, object]:
    """What this agent may do: the ``capabilities_get`` result (docs/contract/tools.md, the connectivity doctor).

    Data product and policy permissions are listed by the apps that own them; until those grants
    exist the lists are empty.
    """
    products, policies = agent_data_products(agent), granted_policies(agent)
    return {
        "agent_id": agent.agent_id,
        "name": agent.name,
        "permissions": {"data_products": products, "policies": policies},
        "workflow": workflow(products, policies),
        "server": {
            "name": SERVER_NAME,
            "version": SERVER_VERSION,
            "protocol_versions": [*MODERN_PROTOCOL_VERSIONS, *PROTOCOL_VERSIONS],
        },
    }


def workflow(products: list[dict[str, Any]], policies: list[dict[str, Any]]) -> list[dict[str, str]]:
    """What this agent may do next, in the order of the protocol (the MCP server's instructions and
    the ``governed_change`` prompt say the same): only the data and policy steps it holds grants for."""
    granted = {p for product in products for p in product.get("permissions", [])}
    steps = [
        ("decision_create", "before you act: open a decision with your intent and automation_mode"),
        ("decision_add_context", "as the work goes on: what you know and why you act"),
    ]
    if "read" in granted:
        steps.append(
            ("decision_read", "read business data through the products listed above, with a purpose")
        )
    if policies:
        steps.append(
            ("decision_evaluate", "before acting: evaluate the policies listed above on your inputs")
        )
    steps += [
        ("decision_request_approval", "when a policy answers requires_exception or your mode needs a human"),
        (
            "decision_wait",
            "right after requesting approval: returns when a human answers; call again on timed_out",
        ),
    ]
    if granted & {"insert", "update", "delete"}:
        steps.append(
            ("decision_write", "once allowed or approved: change data through the products listed above")
        )
    steps.append(
        ("decision_close", 'action="commit" when done, action="abort" to give up (after deny or rejection)')
    )
    return [{"tool": tool, "when": when} for tool, when in steps]


def may_manage_keys(actor: Actor, agent: Agent) -> bool:
    """``agents.manage_agent_keys`` covers every agent; ``agents.manage_own_agent_keys`` only the
    agents the person owns (docs/security.md)."""
    if has_perm(actor, "agents.manage_agent_keys"):
        return True
    user = actor.user
    return (
        has_perm(actor, "agents.manage_own_agent_keys")
        and user is not None
        and agent.owner_id is not None
        and agent.owner_id == user.pk
    )


def require_key_admin(actor: Actor, agent: Agent) -> None:
    if not may_manage_keys(actor, agent):
        require_perm(actor, "agents.manage_agent_keys")  # refuses, naming the permission


def agents_for_admin(actor: Actor) -> QuerySet[Agent]:
    """Every agent for readers of agents; only their own for holders of ``manage_own_agent_keys``."""
    qs = Agent.objects.select_related("owner").prefetch_related("keys").order_by("name")
    if may_read(actor, "agents"):
        return qs
    if has_perm(actor, "agents.manage_own_agent_keys") and actor.user is not None:
        return qs.filter(owner=actor.user)
    require_reader(actor, "agents")
    return qs.none()


def agent_for_admin(actor: Actor, agent_id: str) -> Agent:
    try:
        return agents_for_admin(actor).get(pk=agent_id)
    except Agent.DoesNotExist:
        raise NotFound(f"no agent {agent_id}") from None


def confirmed_device(user: User) -> TOTPDevice | None:
    """The person's TOTP device once two-factor sign-in is on (agents/services/twofactor.py)."""
    return TOTPDevice.objects.filter(user=user, confirmed=True).first()


# --- personal access tokens --------------------------------------------------------------------


def may_manage_tokens_of(actor: Actor, user_id: int) -> bool:
    """A person manages their own tokens; superusers (and the system) anyone's."""
    if is_superuser(actor):
        return True
    return actor.kind == "user" and actor.user is not None and actor.user.pk == user_id


def personal_tokens(
    actor: Actor, *, username: str | None = None, everyone: bool = False
) -> QuerySet[PersonalToken]:
    """The actor's own tokens, newest first; an admin may ask for one person's or everyone's."""
    qs = PersonalToken.objects.select_related("user").order_by("-created_at", "-pk")
    if username is not None or everyone:
        require_superuser(actor, "list other people's tokens; leave out user and all")
    if everyone:
        return qs
    if username is not None:
        return qs.filter(user=user_by_username(username))
    if actor.kind != "user" or actor.user is None:
        return qs.none()
    return qs.filter(user=actor.user)


# ASCII digits only (str.isdigit() also takes "²", which int() refuses), no leading zero, and small
# enough for a bigint primary key.
TOKEN_ID_RE = re.compile(r"tok_([1-9][0-9]{0,17})", re.ASCII)


def personal_token_by_id(actor: Actor, token_id: str) -> PersonalToken:
    """A token its owner (or an admin) may manage; anyone else gets ``not_found``, as for a token
    that does not exist, so token ids reveal nothing."""
    match = TOKEN_ID_RE.fullmatch(token_id) if isinstance(token_id, str) else None
    if match is None:
        raise InvalidArgument(
            f"token_id {str(token_id)[:40]!r} is not a token id: expected tok_ followed by a number, as GET "
            "/api/v1/tokens shows (e.g. tok_12)",
            field="token_id",
        )
    token = PersonalToken.objects.select_related("user").filter(pk=int(match.group(1))).first()
    if token is None or not may_manage_tokens_of(actor, token.user_id):
        raise NotFound(f"no token {token_id}")
    return token


def agents_overview(actor: Actor) -> QuerySet[Agent]:
    """The agents this person may see, with their owners, by name (agents, owners and keys are
    admin data: see ``agents_for_admin``)."""
    return agents_for_admin(actor)
