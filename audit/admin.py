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


def _actor(request: HttpRequest) -> Actor:
    return Actor.for_user(request.user)


admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class AuditedUserAdmin(UserAdmin):
    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = tuple(super().get_readonly_fields(request, obj))
        return fields if request.user.is_superuser else fields + _SUPERUSER_ONLY_FIELDS

    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        setattr(request, _BEFORE, selectors.user_access(obj.pk) if change else None)
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)  # groups and permissions are saved here
        services.access_change_record(
            actor=_actor(request),
            object_type="user",
            object_id=form.instance.pk,
            before=getattr(request, _BEFORE, None),
            after=selectors.user_access(form.instance.pk),
        )

    def delete_model(self, request: HttpRequest, obj: User) -> None:
        before, pk = selectors.user_access(obj.pk), obj.pk
        super().delete_model(request, obj)
        services.access_change_record(
            actor=_actor(request), object_type="user", object_id=pk, before=before, after=None
        )

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset:
            self.delete_model(request, user)


@admin.register(Group)
class AuditedGroupAdmin(GroupAdmin):
    def _superuser(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._superuser(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._superuser(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._superuser(request)

    def save_model(self, request: HttpRequest, obj: Group, form: Any, change: bool) -> None:
        setattr(request, _BEFORE, selectors.group_access(obj.pk) if change else None)
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        services.access_change_record(
            actor=_actor(request),
            object_type="group",
            object_id=form.instance.pk,
            before=getattr(request, _BEFORE, None),
            after=selectors.group_access(form.instance.pk),
        )

    def delete_model(self, request: HttpRequest, obj: Group) -> None:
        before, pk = selectors.group_access(obj.pk), obj.pk
        super().delete_model(request, obj)
        services.access_change_record(
            actor=_actor(request), object_type="group", object_id=pk, before=before, after=None
        )

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Group]) -> None:
        for group in queryset:
            self.delete_model(request, group)
