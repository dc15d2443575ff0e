"""Data sources, data products (docs/contract/data-products.md), grants, and the idempotency ledger of ``decision_write``."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from agents.models import Agent
from decisions.models import Decision

BUILTIN_SOURCE = "builtin"


class SourceKind(models.TextChoices):
    BUILTIN = "builtin"  # the app's own database, through Django's connection
    POSTGRESQL = "postgresql"  # an external PostgreSQL reached with psycopg 3


class DataSource(models.Model):
    """Where a product's table lives. The DSN is stored only encrypted (Fernet) and never shown again."""

    source_id = models.CharField(primary_key=True, max_length=64)
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=SourceKind.choices, default=SourceKind.POSTGRESQL)
    # The DSN with its password removed: what admins see afterwards.
    dsn_display = models.CharField(max_length=500, blank=True, default="")
    dsn_encrypted = models.TextField(blank=True, default="", editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["source_id"]
        permissions = [("manage_data_sources", "Can create and change data sources")]

    def __str__(self) -> str:
        return f"{self.source_id} ({self.kind})"


class Operation(models.TextChoices):
    READ = "read"
    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"


class ProductStatus(models.TextChoices):
    DRAFT = "draft"
    PUBLISHED = "published"


class DataProduct(models.Model):
    product_id = models.CharField(primary_key=True, max_length=64)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    version = models.PositiveIntegerField(default=1)
    hash = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=20, choices=ProductStatus.choices, default=ProductStatus.DRAFT)
    operation = models.CharField(max_length=10, choices=Operation.choices)
    source = models.ForeignKey(DataSource, on_delete=models.PROTECT, related_name="products")
    # "table" or "schema.table"; never shown to agents.
    source_table = models.CharField(max_length=200)
    # [{name, column, type, nullable, primary_key, writable, required}]
    fields = models.JSONField(default=list)
    key_fields = models.JSONField(default=list, blank=True)
    allowed_purposes = models.JSONField(default=list)
    max_rows = models.PositiveIntegerField(default=100)
    result_modes = models.JSONField(default=list, blank=True)
    policies = models.JSONField(default=list, blank=True)
    requires_approval = models.BooleanField(default=False)
    example_queries = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["product_id"]
        permissions = [
            ("define_products", "Can create and edit draft data products"),
            ("publish_products", "Can publish data products"),
            ("grant_products", "Can grant data products to agents and revoke them"),
        ]
        # Like policy versions: once published, the database refuses to change or delete the
        # product, whatever the session says (migration products 0005, docs/security.md).

    def __str__(self) -> str:
        return f"{self.product_id} ({self.operation}, {self.status})"


class ProductGrant(models.Model):
    product = models.ForeignKey(DataProduct, on_delete=models.CASCADE, related_name="grants")
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="product_grants")
    permissions = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["product_id", "agent_id"]
        constraints = [models.UniqueConstraint(fields=["product", "agent"], name="product_grant_unique")]

    def __str__(self) -> str:
        return f"{self.agent_id} → {self.product_id} {self.permissions}"


class WriteResult(models.Model):
    """The first result of a write with an ``idempotency_key``; a retry returns it unchanged.

    The key itself is not stored, only a keyed digest of it (HMAC-SHA256 under the server's
    secret): agents sometimes put identifiers or secrets in it.
    """

    decision = models.ForeignKey(Decision, on_delete=models.PROTECT, related_name="write_results")
    idempotency_digest = models.CharField(max_length=64)
    request_hash = models.CharField(max_length=64)
    result = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["decision", "idempotency_digest"], name="write_idempotency_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.decision_id} {self.idempotency_digest[:12]}…"
