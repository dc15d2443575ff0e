"""DRF authentication for webhook receivers answering with ``POST /api/v1/approvals/{id}/resolve``."""

from __future__ import annotations

from typing import Any

from rest_framework import authentication
from rest_framework.request import Request

from agents.auth import DomainAuthenticationFailed
from approvals.services import credentials as approval_credentials
from tracemem_core.actor import Actor
from tracemem_core.errors import Unauthenticated


class WebhookCredentialAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        try:
            user = approval_credentials.webhook_credential_authenticate(
                authorization=request.META.get("HTTP_AUTHORIZATION")
            )
        except Unauthenticated as exc:
            raise DomainAuthenticationFailed(exc) from None
        return user, Actor.for_user(user)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="tracemem-webhooks"'
