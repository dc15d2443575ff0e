"""Authentication of the OAuth MCP door: a bearer access token, audience-bound to the OAuth MCP URL,
with the ``mcp`` scope, from a connection that is still active. The principal is the agent the
person bound the client to at consent, so every tool runs exactly as it does on the key door."""

from __future__ import annotations

from typing import Any

from oauth2_provider.contrib.rest_framework import OAuth2ProtectedResourceAuthentication
from oauth2_provider.models import AccessToken
from rest_framework.request import Request

from agents.auth import DomainAuthenticationFailed
from oauth import conf, services
from tracemem_core.actor import Actor
from tracemem_core.errors import PermissionDenied, Unauthenticated


class InsufficientScope(PermissionDenied):
    """A valid token without the ``mcp`` scope (RFC 6750 §3.1: 403 with ``insufficient_scope``)."""


def challenge(error: dict[str, str] | None = None) -> str:
    """The ``WWW-Authenticate`` value of the OAuth door (RFC 6750 + RFC 9728 §5.1)."""
    params = {
        "realm": "tracemem",
        **(error or {}),
        "resource_metadata": conf.resource_metadata_url(),
        "scope": conf.SCOPE,
    }
    quoted = ", ".join(f'{k}="{str(v).replace(chr(92), "").replace(chr(34), "")}"' for k, v in params.items())
    return f"Bearer {quoted}"


class OAuthAgentAuthentication(OAuth2ProtectedResourceAuthentication):
    www_authenticate_realm = "tracemem"

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            raise DomainAuthenticationFailed(
                Unauthenticated(
                    "this endpoint takes an OAuth access token: connect through the authorization server "
                    "named in the resource metadata",
                    details={"reason": "missing"},
                )
            )
        if header.split(" ", 1)[0].lower() != "bearer":
            raise DomainAuthenticationFailed(
                Unauthenticated(
                    "send the access token as 'Authorization: Bearer <token>'",
                    details={"reason": "malformed"},
                )
            )
        result = super().authenticate(request)
        if result is None:
            error = getattr(request, "oauth2_error", None) or {}
            description = error.get("error_description") or "the access token is unknown, expired or revoked"
            raise DomainAuthenticationFailed(
                Unauthenticated(str(description), details={"reason": "invalid_token"})
            )
        _, token = result
        if not isinstance(token, AccessToken):
            raise DomainAuthenticationFailed(
                Unauthenticated(
                    "the access token is unknown, expired or revoked", details={"reason": "invalid_token"}
                )
            )
        # Audience (RFC 8707): the token must name this resource exactly; DOT lets resource-less
        # tokens through, this door does not.
        if conf.mcp_url() not in (token.resource or []):
            raise DomainAuthenticationFailed(
                Unauthenticated(
                    f"the access token was not issued for {conf.mcp_url()}",
                    details={"reason": "invalid_token"},
                )
            )
        if conf.SCOPE not in token.scope.split():
            raise InsufficientScope(
                f"the access token lacks the scope {conf.SCOPE!r}; authorize again asking for it",
                details={"reason": "insufficient_scope", "scope": conf.SCOPE},
            )
        try:
            agent = services.agent_for_token(token)
        except Unauthenticated as exc:
            raise DomainAuthenticationFailed(exc) from None
        # The Actor goes on the request once, as for agent keys (agents.auth).
        return agent, Actor.for_agent(agent)

    def authenticate_header(self, request: Request) -> str:
        return challenge({"error": "invalid_token"} if request.META.get("HTTP_AUTHORIZATION") else None)
