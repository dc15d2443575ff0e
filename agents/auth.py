"""DRF authentication classes: the doors authenticate, the services decide the rest.

Each class puts the caller's :class:`~tracemem_core.actor.Actor` on the request once, as DRF's
``request.auth``; the doors read it there (``tracemem_site.rest.actor_from_request``,
``tracemem_site.mcp.mcp_actor``) and nothing else asks what kind of principal ``request.user`` is.
"""

from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request

from agents.services import registry as agent_registry
from agents.services import tokens as agent_tokens
from tracemem_core.actor import Actor
from tracemem_core.errors import DomainError, Unauthenticated
from tracemem_site import throttling


class DomainAuthenticationFailed(exceptions.AuthenticationFailed):
    """Carries the domain error so the one exception handler renders its reason."""

    def __init__(self, error: DomainError) -> None:
        super().__init__(detail=error.message)
        self.domain_error = error


class AgentKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Agent <key>`` or ``Authorization: Bearer <key>``."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        header = request.META.get("HTTP_AUTHORIZATION")
        if header and header.split(" ", 1)[0].lower() == "token":
            if any(isinstance(a, PersonalTokenAuthentication) for a in request.authenticators):
                return None  # a human's token, for the authenticator that knows it
            # An agent-only endpoint: the service answers "malformed" (wrong scheme), not "missing".
        try:
            check = agent_registry.agent_key_authenticate(
                authorization=header, count_request=throttling.counts_at_authentication(request)
            )
        except Unauthenticated as exc:
            raise DomainAuthenticationFailed(exc) from None
        if check.counted is not None:
            throttling.keep_count(request, check.counted)
        return check.agent, Actor.for_agent(check.agent)

    def authenticate_header(self, request: Request) -> str:
        return 'Agent realm="tracemem"'


class PersonalTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Token tmpat_…`` for the reviewer and admin API."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        header = request.META.get("HTTP_AUTHORIZATION")
        if not header or header.split(" ", 1)[0].lower() != "token":
            return None
        try:
            user = agent_tokens.personal_token_authenticate(authorization=header)
        except Unauthenticated as exc:
            raise DomainAuthenticationFailed(exc) from None
        return user, Actor.for_user(user)

    def authenticate_header(self, request: Request) -> str:
        return 'Token realm="tracemem"'


class ActorSessionAuthentication(SessionAuthentication):
    """A logged-in session (CSRF-checked, as DRF's own), with the person's Actor on the request."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        found = super().authenticate(request)
        if found is None:
            return None
        return found[0], Actor.for_user(found[0])
