"""OAuth connections in the Django admin: seen by whoever may read them, revoked through the service
(tokens deleted, an audit entry written), never edited by hand."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from oauth import services
from oauth.models import OAuthConnection
from tracemem_core.actor import Actor
from tracemem_core.errors import DomainError


@admin.register(OAuthConnection)
class OAuthConnectionAdmin(admin.ModelAdmin):
    list_display = ("client_name", "user", "agent", "created_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("user__username", "application__name", "application__client_id", "agent__name")
    readonly_fields = ("user", "application", "agent", "scope", "created_at", "updated_at", "revoked_at")
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        user = request.user
        return bool(
            user.is_active and (user.has_perm("oauth.view_oauthconnection") or user.has_perm(services.MANAGE))
        )

    @admin.action(description="Revoke the selected connections (their tokens stop at once)")
    def revoke(self, request: HttpRequest, queryset: QuerySet[OAuthConnection]) -> None:
        actor = Actor.for_user(request.user)
        done = 0
        for connection in queryset:
            try:
                services.connection_revoke(actor=actor, connection_id=connection.pk)
                done += 1
            except DomainError as exc:
                self.message_user(request, exc.message, messages.ERROR)
        self.message_user(request, f"Revoked {done} connection(s).")
