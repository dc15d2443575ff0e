"""Django admin: browse policies; versions are read-only here (edit drafts in /policies/, where
publishing compiles and hashes them). A published version can never be changed from the admin."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from policies.models import Policy, PolicyGrant, PolicyVersion


class PolicyVersionInline(admin.TabularInline):
    model = PolicyVersion
    fields = ("version", "status", "name", "hash", "published_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin):
    list_display = ("policy_id", "created_at")
    search_fields = ("policy_id",)
    inlines = [PolicyVersionInline]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PolicyVersion)
class PolicyVersionAdmin(admin.ModelAdmin):
    list_display = ("policy", "version", "status", "name", "hash", "published_at")
    list_filter = ("status",)
    search_fields = ("policy__policy_id", "name")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Viewing is allowed (has_view_permission); every field is read-only and saving is refused.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PolicyGrant)
class PolicyGrantAdmin(admin.ModelAdmin):
    list_display = ("policy", "agent", "created_at")
    autocomplete_fields = ()
    raw_id_fields = ("agent",)
