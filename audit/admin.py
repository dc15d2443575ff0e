"""Django admin for people and groups, audited: every change of someone's powers (active, staff and
superuser flags, group memberships, permissions) and of a group's permissions is logged.

Granting permissions or superuser status, and group memberships, are for superusers only here:
Django's own ``auth.change_user`` would otherwise let its holder grant themselves anything.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.db.models import QuerySet
from django.http import HttpRequest

from audit import selectors, services
from tracemem_site.actor import Actor

_BEFORE = "_tracemem_access_before"
_SUPERUSER_ONLY_FIELDS = ("is_superuser", "groups", "user_permissions")

admin.site.unregister(User)
admin.site.unregister(Group)


class _AuditedAccess:
    """Logs each save and delete of the ModelAdmin's object with ``snapshot`` before and after.
    Many-to-many fields (groups, permissions) are saved in ``save_related``, so the "after" is
    taken there; all of it runs in the admin's transaction, as does the log entry."""

    object_type: str = ""

    def snapshot(self, pk: int) -> dict[str, Any] | None:
        raise NotImplementedError

    def _record(self, request: HttpRequest, pk: int, before: Any, after: Any) -> None:
        services.access_change_record(
            actor=Actor.for_user(request.user),
            object_type=self.object_type,
            object_id=pk,
            before=before,
            after=after,
        )

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        setattr(request, _BEFORE, self.snapshot(obj.pk) if change else None)
        super().save_model(request, obj, form, change)  # type: ignore[misc]

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)  # type: ignore[misc]
        pk = form.instance.pk
        self._record(request, pk, getattr(request, _BEFORE, None), self.snapshot(pk))

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        before, pk = self.snapshot(obj.pk), obj.pk
        super().delete_model(request, obj)  # type: ignore[misc]
        self._record(request, pk, before, None)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for obj in queryset:
            self.delete_model(request, obj)


@admin.register(User)
class AuditedUserAdmin(_AuditedAccess, UserAdmin):
    object_type = "user"

    def snapshot(self, pk: int) -> dict[str, Any] | None:
        return selectors.user_access(pk)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = tuple(super().get_readonly_fields(request, obj))
        return fields if request.user.is_superuser else fields + _SUPERUSER_ONLY_FIELDS


@admin.register(Group)
class AuditedGroupAdmin(_AuditedAccess, GroupAdmin):
    object_type = "group"

    def snapshot(self, pk: int) -> dict[str, Any] | None:
        return selectors.group_access(pk)

    def _superuser(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._superuser(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._superuser(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._superuser(request)
