"""MCP door plumbing shared by every app's ``<app>/mcp.py`` toolset.

A tool method authenticates nothing itself (the MCP view's DRF authentication already did);
it turns the request into an Actor, calls ONE service and returns the same result object as
its REST twin. A ``DomainError`` raised by the service reaches the agent as an ``isError``
result whose text is ``str(exc)`` = ``"[code] message"``.
"""

from __future__ import annotations

from typing import Any

from agents.models import Agent
from tracemem_core.actor import Actor
from tracemem_core.errors import Unauthenticated


def mcp_actor(request: Any) -> Actor:
    principal = getattr(request, "user", None)
    if isinstance(principal, Agent):
        return Actor.for_agent(principal)
    raise Unauthenticated("MCP tools need an agent key: send 'Authorization: Agent <key>' or 'Bearer <key>'")
