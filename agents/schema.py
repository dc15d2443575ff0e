"""OpenAPI descriptions of our authentication schemes (loaded by AgentsConfig.ready)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class AgentKeyScheme(OpenApiAuthenticationExtension):
    target_class = "agents.auth.AgentKeyAuthentication"
    name = "agentKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "Agent key: 'Agent tmem_…' or 'Bearer tmem_…'",
        }


class PersonalTokenScheme(OpenApiAuthenticationExtension):
    target_class = "agents.auth.PersonalTokenAuthentication"
    name = "personalToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "header", "name": "Authorization", "description": "'Token tmpat_…'"}


class WebhookCredentialScheme(OpenApiAuthenticationExtension):
    target_class = "approvals.auth.WebhookCredentialAuthentication"
    name = "webhookCredential"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "Webhook credential 'Bearer tmwh_…'"}


class SessionScheme(OpenApiAuthenticationExtension):
    """A signed-in session (``ActorSessionAuthentication`` is DRF's session check plus the Actor)."""

    target_class = "agents.auth.ActorSessionAuthentication"
    name = "cookieAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "cookie", "name": settings.SESSION_COOKIE_NAME}
