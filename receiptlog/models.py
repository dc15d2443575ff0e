"""The receipt log: one leaf per receipt in close order, signed checkpoints, witness deliveries.

An RFC 9162 Merkle tree over the receipts (docs/receipts.md, "Receipt log and checkpoints"). Leaves
and checkpoints are append-only, enforced by PostgreSQL (migration 0002); witness deliveries are an
outbox like approvals' deliveries.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from decisions.models import Receipt


class LogLeaf(models.Model):
    """Leaf ``leaf_index`` of the log: the receipt of one closed decision.

    ``leaf_hash`` = SHA-256(0x00 || RFC 8785 of the receipt's leaf fields). ``subtree_hashes`` holds
    the perfect subtrees this leaf completes, lowest level first, 32 bytes each: leaf ``k`` completes
    as many as ``k`` has trailing one bits (the node at level ``L``, index ``j`` lives in leaf
    ``(j + 1) * 2**L - 1``). So any proof reads a handful of rows, and nothing is ever rewritten.
    """

    leaf_index = models.BigIntegerField(primary_key=True)
    receipt = models.OneToOneField(
        Receipt, on_delete=models.PROTECT, related_name="log_leaf", db_column="decision_id"
    )
    leaf_hash = models.BinaryField(max_length=32)
    subtree_hashes = models.BinaryField(default=b"", blank=True)
    appended_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["leaf_index"]
        constraints = [
            models.CheckConstraint(condition=models.Q(leaf_index__gte=0), name="log_leaf_index_positive")
        ]

    def __str__(self) -> str:
        return f"leaf {self.leaf_index} ({self.receipt_id})"


class Checkpoint(models.Model):
    """A signed checkpoint (C2SP tlog-checkpoint in a signed note) of the first ``tree_size`` leaves."""

    tree_size = models.BigIntegerField(primary_key=True)
    root_hash = models.BinaryField(max_length=32)
    note = models.TextField(help_text="the signed note exactly as served")
    key_id = models.CharField(max_length=64, help_text="the receipt key that signed it")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-tree_size"]
        constraints = [
            models.CheckConstraint(condition=models.Q(tree_size__gte=0), name="log_checkpoint_size_positive")
        ]

    def __str__(self) -> str:
        return f"checkpoint of size {self.tree_size}"


class WitnessDeliveryStatus(models.TextChoices):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class WitnessDelivery(models.Model):
    """One checkpoint to send to one witness (a webhook endpoint); its id is the webhook id."""

    delivery_id = models.CharField(primary_key=True, max_length=40, editable=False)
    checkpoint = models.ForeignKey(Checkpoint, on_delete=models.PROTECT, related_name="witness_deliveries")
    endpoint = models.CharField(max_length=64, help_text="name of the webhook endpoint")
    status = models.CharField(
        max_length=20, choices=WitnessDeliveryStatus.choices, default=WitnessDeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.TextField(blank=True)
    attempt_log = models.JSONField(default=list, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.delivery_id} to {self.endpoint} ({self.status})"
