"""Result objects of the admin agent/key operations, shared by every door that returns them."""

from __future__ import annotations

from typing import Any

from agents.models import Agent, AgentKey, PersonalToken
from agents.services.registry import IssuedKey
from agents.services.tokens import IssuedToken
from tracemem_core.timefmt import iso_z


def key_out(key: AgentKey) -> dict[str, Any]:
    """A key as admins see it: never the secret, only the public prefix."""
    return {
        "key_id": key.key_id,
        "name": key.name,
        "prefix": key.prefix,
        "state": str(key.state()),
        "created_at": iso_z(key.created_at),
        "expires_at": iso_z(key.expires_at),
        "revoked_at": iso_z(key.revoked_at),
        "last_used_at": iso_z(key.last_used_at),
        "rotated_from": f"key_{key.rotated_from_id}" if key.rotated_from_id else None,
    }


def agent_out(agent: Agent) -> dict[str, Any]:
    return {
        "agent_id": agent.agent_id,
        "name": agent.name,
        "description": agent.description,
        "owner": agent.owner.get_username() if agent.owner is not None else None,
        "disabled": agent.disabled,
        "created_at": iso_z(agent.created_at),
        "keys": [key_out(k) for k in agent.keys.all()],
    }


def issued_key_out(issued: IssuedKey) -> dict[str, Any]:
    """docs/contract/admin.md: ``{key_id, key (shown once), expires_at}`` plus the key's public fields."""
    return {
        "key_id": issued.key.key_id,
        "key": issued.secret,
        "expires_at": iso_z(issued.key.expires_at),
        "name": issued.key.name,
        "prefix": issued.key.prefix,
        "agent_id": issued.key.agent_id,
    }


def token_out(token: PersonalToken) -> dict[str, Any]:
    """A personal access token as its owner and admins see it: never the secret."""
    return {
        "token_id": token.token_id,
        "name": token.name,
        "prefix": token.prefix,
        "user": token.user.get_username(),
        "state": str(token.state()),
        "created_at": iso_z(token.created_at),
        "expires_at": iso_z(token.expires_at),
        "revoked_at": iso_z(token.revoked_at),
        "last_used_at": iso_z(token.last_used_at),
    }


def issued_token_out(issued: IssuedToken) -> dict[str, Any]:
    return {**token_out(issued.token), "token": issued.secret}
