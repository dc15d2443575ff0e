"""A connection: one person let one OAuth client act as one of their agents (issue 15)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from oauth2_provider.models import Application


class OAuthConnection(models.Model):
    """Who connected which client, and which agent it acts as. Tokens issued to ``application`` for
    ``user`` authenticate as ``agent``; revoking the connection deletes them (refused on the next
    request)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oauth_connections"
    )
    application = models.ForeignKey(
        Application, on_delete=models.CASCADE, related_name="tracemem_connections"
    )
    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="oauth_connections")
    scope = models.CharField(max_length=200, default="mcp")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-updated_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "application"], name="oauth_connection_one_per_person_client"
            )
        ]
        permissions = [("manage_oauth_connections", "Can see and revoke every person's OAuth connections")]

    def __str__(self) -> str:
        return f"{self.client_name} → {self.agent.name} ({self.user})"

    @property
    def client_name(self) -> str:
        return self.application.name or self.application.client_id

    @property
    def active(self) -> bool:
        return self.revoked_at is None
