"""Django admin: browse policies; versions are read-only here (edit drafts in /policies/, where
publishing compiles and hashes them). A published version can never be changed from the admin.
Grants added or deleted here go through ``policy_grant`` / ``policy_grant_revoke``."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from policies.models import Policy, PolicyGrant, PolicyVersion
from policies.services import authoring as policy_authoring
from tracemem_core.actor import Actor
from tracemem_site.admin_perms import GuardedAdmin


class PolicyVersionInline(admin.TabularInline):
    model = PolicyVersion
    fields = ("version", "status", "name", "hash", "published_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class _ReadOnly(GuardedAdmin):
    read_area = "policies"

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Policy)
class PolicyAdmin(_ReadOnly, admin.ModelAdmin):
    """Read-only: policies are created and edited in /policies/ (or the API), through the services."""

    list_display = ("policy_id", "created_at")
    search_fields = ("policy_id",)
    inlines = [PolicyVersionInline]


@admin.register(PolicyVersion)
class PolicyVersionAdmin(_ReadOnly, admin.ModelAdmin):
    # Viewing is allowed (has_view_permission); every field is read-only and saving is refused.
    list_display = ("policy", "version", "status", "name", "hash", "published_at")
    list_filter = ("status",)
    search_fields = ("policy__policy_id", "name")


@admin.register(PolicyGrant)
class PolicyGrantAdmin(GuardedAdmin, admin.ModelAdmin):
    change_perm = "policies.grant_policies"
    read_area = "policies"
    list_display = ("policy", "agent", "created_at")
    autocomplete_fields = ()
    raw_id_fields = ("agent",)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a grant is added or deleted, never edited

    def save_model(self, request: HttpRequest, obj: PolicyGrant, form: Any, change: bool) -> None:
        grant = policy_authoring.policy_grant(
            actor=Actor.for_user(request.user), policy_id=obj.policy_id, agent_id=obj.agent_id
        )
        obj.pk = grant.pk

    def delete_model(self, request: HttpRequest, obj: PolicyGrant) -> None:
        policy_authoring.policy_grant_revoke(
            actor=Actor.for_user(request.user), policy_id=obj.policy_id, agent_id=obj.agent_id
        )

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[PolicyGrant]) -> None:
        for grant in queryset:
            self.delete_model(request, grant)
