"""Django admin: a read-only view of the receipt log's checkpoints and witness deliveries."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from receiptlog.models import Checkpoint, WitnessDelivery


class _ReadOnly:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Checkpoint)
class CheckpointAdmin(_ReadOnly, admin.ModelAdmin):
    list_display = ("tree_size", "key_id", "created_at")
    fields = ("tree_size", "key_id", "created_at", "note")
    readonly_fields = fields
    actions = None


@admin.register(WitnessDelivery)
class WitnessDeliveryAdmin(_ReadOnly, admin.ModelAdmin):
    list_display = (
        "delivery_id",
        "endpoint",
        "checkpoint",
        "status",
        "attempts",
        "last_error",
        "delivered_at",
    )
    list_filter = ("status", "endpoint")
    fields = (
        "delivery_id",
        "endpoint",
        "checkpoint",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
        "attempt_log",
        "delivered_at",
        "created_at",
    )
    readonly_fields = fields
    actions = None
