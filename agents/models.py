from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.utils import timezone

from tracemem_core.ids import AGENT_PREFIX, new_id


def _new_agent_id() -> str:
    return new_id(AGENT_PREFIX)


class Agent(models.Model):
    agent_id = models.CharField(primary_key=True, max_length=40, default=_new_agent_id, editable=False)
    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_agents",
    )
    disabled = models.BooleanField(default=False, help_text="A disabled agent's keys all stop working.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]
        # Checked by tracemem_core.permissions (docs/security.md); superusers hold them all.
        permissions = [
            ("manage_agents", "Can create, edit and disable agents"),
            ("manage_agent_keys", "Can issue, rotate and revoke the keys of any agent"),
            ("manage_own_agent_keys", "Can issue, rotate and revoke the keys of agents they own"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.agent_id})"

    # DRF treats request.user as a principal; an authenticated agent is one.
    @property
    def is_authenticated(self) -> bool:
        return True


class KeyState(models.TextChoices):
    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"


class CredentialState:
    """``state()`` of a credential that can be revoked and can expire (agent keys, personal tokens)."""

    revoked_at: datetime | None
    expires_at: datetime | None

    def state(self, now: datetime | None = None) -> KeyState:
        current = now or timezone.now()
        if self.revoked_at is not None:
            return KeyState.REVOKED
        if self.expires_at is not None and self.expires_at <= current:
            return KeyState.EXPIRED
        return KeyState.ACTIVE


class AgentKey(CredentialState, models.Model):
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="keys")
    name = models.CharField(max_length=100, default="default")
    prefix = models.CharField(max_length=20, db_index=True, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    rotated_from = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"

    @property
    def key_id(self) -> str:
        return f"key_{self.pk}"


class PersonalToken(CredentialState, models.Model):
    """A human's token for the admin/reviewer API (``Authorization: Token tmpat_…``)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="personal_tokens"
    )
    name = models.CharField(max_length=100, default="default")
    prefix = models.CharField(max_length=20, db_index=True, editable=False)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @property
    def token_id(self) -> str:
        return f"tok_{self.pk}"
