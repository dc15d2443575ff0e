"""DRF authentication classes: the doors authenticate, the services decide the rest."""

from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from agents.services import registry as agent_registry
from agents.services import tokens as agent_tokens
from tracemem_core.errors import DomainError, Unauthenticated


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
            return agent_registry.agent_key_authenticate(authorization=header)
        except Unauthenticated as exc:
            raise DomainAuthenticationFailed(exc) from None

    def authenticate_header(self, request: Request) -> str:
        return 'Agent realm="tracemem"'


class PersonalTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Token tmpat_…`` for the reviewer and admin API."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        header = request.META.get("HTTP_AUTHORIZATION")
        if not header or header.split(" ", 1)[0].lower() != "token":
            return None
        try:
            return agent_tokens.personal_token_authenticate(authorization=header), None
        except Unauthenticated as exc:
            raise DomainAuthenticationFailed(exc) from None

    def authenticate_header(self, request: Request) -> str:
        return 'Token realm="tracemem"'
