"""Django admin: a read-only view of decisions and their trace. Nothing here can change a trace."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from decisions.models import Decision, TraceEvent


class _ReadOnly:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class TraceEventInline(_ReadOnly, admin.TabularInline):
    model = TraceEvent
    fields = ("seq", "type", "timestamp", "actor", "payload", "prev_hash", "hash")
    readonly_fields = fields
    ordering = ("seq",)
    extra = 0
    show_change_link = True


@admin.register(Decision)
class DecisionAdmin(_ReadOnly, admin.ModelAdmin):
    list_display = (
        "decision_id",
        "intent",
        "status",
        "automation_mode",
        "agent",
        "created_at",
        "event_count",
    )
    list_filter = ("status", "automation_mode")
    search_fields = ("decision_id", "intent", "agent__name")
    date_hierarchy = "created_at"
    inlines = [TraceEventInline]
    actions = None


@admin.register(TraceEvent)
class TraceEventAdmin(_ReadOnly, admin.ModelAdmin):
    list_display = ("decision", "seq", "type", "timestamp", "hash")
    list_filter = ("type",)
    search_fields = ("decision__decision_id", "event_id")
    ordering = ("decision", "seq")
    actions = None
