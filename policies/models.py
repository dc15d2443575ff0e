"""Policies (docs/contract/policies.md): a policy has integer versions; a version is a draft, then published
(frozen, hashed), then retired. Who may evaluate a policy is a grant.

Immutability of published versions is enforced three times: by the services (they never
update a non-draft), by Django admin (read-only), and by PostgreSQL itself (a trigger refuses
any UPDATE that changes a frozen version's content, and any DELETE of a frozen version).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from agents.models import Agent


class VersionStatus(models.TextChoices):
    DRAFT = "draft"
    PUBLISHED = "published"
    RETIRED = "retired"


class Outcome(models.TextChoices):
    ALLOW = "allow"
    DENY = "deny"
    REQUIRES_EXCEPTION = "requires_exception"


class Policy(models.Model):
    policy_id = models.CharField(primary_key=True, max_length=100)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["policy_id"]
        permissions = [
            ("define_policies", "Can create policies, edit and test their drafts"),
            ("publish_policies", "Can publish and retire policies"),
            ("grant_policies", "Can grant policies to agents and revoke them"),
        ]
        verbose_name_plural = "policies"

    def __str__(self) -> str:
        return self.policy_id


class PolicyVersion(models.Model):
    policy = models.ForeignKey(Policy, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=VersionStatus.choices, default=VersionStatus.DRAFT)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    inputs_schema = models.JSONField(null=True, blank=True)
    rules = models.JSONField(default=list)
    default_outcome = models.CharField(max_length=30, choices=Outcome.choices, default=Outcome.DENY)
    exception_route_id = models.CharField(max_length=100, null=True, blank=True)
    hash = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)
    published_at = models.DateTimeField(null=True, blank=True)
    published_by = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["policy_id", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "version"], name="policy_version_unique"),
            # Editing always targets the one open draft of a policy.
            models.UniqueConstraint(
                fields=["policy"], condition=models.Q(status="draft"), name="policy_one_draft"
            ),
        ]
        # Once a version leaves draft the database refuses to change or delete it, whatever the
        # session says: a plain trigger (migration policies 0003, docs/security.md).

    def __str__(self) -> str:
        return f"{self.policy_id} v{self.version} ({self.status})"

    @property
    def is_frozen(self) -> bool:
        return self.status != VersionStatus.DRAFT

    def content(self) -> dict[str, Any]:
        """What a version's hash covers (its canonical JSON): identity, schema and rules."""
        return {
            "policy_id": self.policy_id,
            "version": self.version,
            "name": self.name,
            "description": self.description,
            "inputs_schema": self.inputs_schema,
            "rules": self.rules,
            "default_outcome": self.default_outcome,
            "exception_route_id": self.exception_route_id,
        }


class PolicyGrant(models.Model):
    policy = models.ForeignKey(Policy, on_delete=models.CASCADE, related_name="grants")
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="policy_grants")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["policy", "agent"], name="policy_grant_unique")]

    def __str__(self) -> str:
        return f"{self.agent_id} → {self.policy_id}"
