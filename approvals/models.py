"""Approval routes, integrations, approvals, votes, the delivery outbox and webhook credentials (docs/contract/approvals.md)."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.utils import timezone

from decisions.models import Decision
from tracemem_core.crypto import EncryptedTextField
from tracemem_core.ids import APPROVAL_PREFIX, new_id


def _new_approval_id() -> str:
    return new_id(APPROVAL_PREFIX)


class Channel(models.TextChoices):
    EMAIL = "email"
    SLACK = "slack"
    WEBHOOK = "webhook"


class SlackIntegration(models.Model):
    """A Slack app: the bot token posts messages, the signing secret verifies button presses.

    Both secrets are write-only: the admin form never renders them back and no API returns them.
    """

    name = models.SlugField(max_length=64, unique=True)
    bot_token = EncryptedTextField(help_text="xoxb-… (write-only, encrypted at rest)")
    signing_secret = EncryptedTextField(help_text="write-only, encrypted at rest")
    api_base_url = models.URLField(default="https://slack.com/api/", help_text="override for tests/proxies")

    class Meta:
        permissions = [
            (
                "manage_integrations",
                "Can manage Slack integrations, webhook endpoints and webhook credentials",
            )
        ]

    def __str__(self) -> str:
        return f"slack:{self.name}"


class WebhookEndpoint(models.Model):
    """A receiver of signed approval requests (Standard Webhooks)."""

    name = models.SlugField(max_length=64, unique=True)
    url = models.URLField(max_length=1000)
    signing_secret = EncryptedTextField(help_text="whsec_… base64 secret (write-only, encrypted at rest)")

    def __str__(self) -> str:
        return f"webhook:{self.name}"


class ApprovalRoute(models.Model):
    """Who is asked, how, and what counts as a decision.

    ``channels`` is a list such as ``[{"type": "email", "to": ["ops@example.com"]},
    {"type": "slack", "integration": "main", "channel": "C0123"}, {"type": "webhook",
    "endpoint": "ops_hook"}]``; email without ``to`` goes to every eligible approver with an address.
    """

    route_id = models.CharField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    channels = models.JSONField(default=list, blank=True)
    approver_group = models.ForeignKey(Group, null=True, blank=True, on_delete=models.SET_NULL)
    required_approvals = models.PositiveIntegerField(default=1)
    require_rationale = models.BooleanField(default=False)
    expires_in_seconds = models.PositiveIntegerField(default=86400)
    allow_agent_owner = models.BooleanField(default=False)
    is_default = models.BooleanField(
        default=False, help_text="used when neither the agent nor a policy names a route"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["route_id"]
        permissions = [("manage_routes", "Can create and edit approval routes")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(required_approvals__gte=1), name="route_quorum_positive"
            ),
            models.UniqueConstraint(
                fields=["is_default"], condition=models.Q(is_default=True), name="route_one_default"
            ),
        ]

    def __str__(self) -> str:
        return self.route_id


class ApprovalState(models.TextChoices):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    # The decision closed (aborted) while this approval was pending; nobody can vote on it any more.
    CANCELLED = "cancelled"


class Approval(models.Model):
    approval_id = models.CharField(primary_key=True, max_length=40, default=_new_approval_id, editable=False)
    decision = models.ForeignKey(Decision, on_delete=models.PROTECT, related_name="approvals")
    route = models.ForeignKey(ApprovalRoute, on_delete=models.PROTECT, related_name="approvals")
    title = models.CharField(max_length=300)
    message = models.TextField(blank=True)
    # The route's rules and the agent's owner, frozen when the approval is requested: voting, the
    # review pages and every channel read these, so editing the route or the agent afterwards
    # never changes who may decide a pending request or how (docs/security.md).
    require_rationale = models.BooleanField(default=False)
    required_approvals = models.PositiveIntegerField(default=1)
    approver_group = models.ForeignKey(
        Group,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="the route's group at request time; none means superusers only",
    )
    allow_agent_owner = models.BooleanField(default=False)
    agent_owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="who owned the requesting agent at request time",
    )
    lifetime_seconds = models.PositiveIntegerField(
        default=86400, help_text="how long the request was given (the route's expiry, or less)"
    )
    status = models.CharField(max_length=20, choices=ApprovalState.choices, default=ApprovalState.PENDING)
    requested_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution_channel = models.CharField(max_length=20, blank=True)

    class Meta:
        ordering = ["-requested_at"]
        constraints = [
            # The database itself keeps "at most one pending approval per decision" true.
            models.UniqueConstraint(
                fields=["decision"], condition=models.Q(status="pending"), name="approval_one_pending"
            )
        ]
        indexes = [models.Index(fields=["status", "expires_at"])]

    def __str__(self) -> str:
        return f"{self.approval_id} ({self.status})"

    def is_overdue(self, now: datetime) -> bool:
        """Pending past its deadline: expired (fail closed) whether or not anything wrote it yet."""
        return self.status == ApprovalState.PENDING and self.expires_at <= now


class VoteChoice(models.TextChoices):
    APPROVE = "approve"
    REJECT = "reject"


class Vote(models.Model):
    approval = models.ForeignKey(Approval, on_delete=models.PROTECT, related_name="votes")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="approval_votes"
    )
    choice = models.CharField(max_length=10, choices=VoteChoice.choices)
    rationale = models.TextField(blank=True)
    channel = models.CharField(max_length=20)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at"]
        constraints = [models.UniqueConstraint(fields=["approval", "user"], name="vote_one_per_person")]

    def __str__(self) -> str:
        return f"{self.user} {self.choice} {self.approval_id}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    # Never sent (or never retried) because its approval was cancelled or its decision closed.
    CANCELLED = "cancelled"


class Delivery(models.Model):
    """One outbox row per channel of an approval request; its primary key is the webhook id."""

    delivery_id = models.CharField(primary_key=True, max_length=40, editable=False)
    approval = models.ForeignKey(Approval, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=20, choices=Channel.choices)
    target = models.JSONField(default=dict, help_text="the route's channel entry (no secrets)")
    status = models.CharField(max_length=20, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now, db_index=True)
    last_error = models.TextField(blank=True)
    attempt_log = models.JSONField(default=list, blank=True)
    external_ref = models.JSONField(default=dict, blank=True, help_text="e.g. Slack channel and ts")
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"]),
            # Lists by status, newest first (the dashboard's delivery failures, /review/deliveries/).
            models.Index(fields=["status", "-created_at"], name="delivery_status_created"),
        ]

    def __str__(self) -> str:
        return f"{self.delivery_id} {self.channel} ({self.status})"


class EmailLink(models.Model):
    """One signed link sent to one reviewer; ``used_at`` makes it single-use."""

    nonce = models.CharField(max_length=64, unique=True)
    approval = models.ForeignKey(Approval, on_delete=models.CASCADE, related_name="email_links")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"email link for {self.user} on {self.approval_id}"


class WebhookCredential(models.Model):
    """Lets a webhook receiver answer with ``POST /api/v1/approvals/{id}/resolve``.

    It acts as its ``user`` (who must be an eligible approver); only the SHA-256 is stored.
    """

    name = models.CharField(max_length=100)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    prefix = models.CharField(max_length=20, db_index=True, editable=False)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"
