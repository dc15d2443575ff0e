"""Django admin for people and groups, audited: every change of someone's powers (active, staff and
superuser flags, group memberships, permissions), of a group's permissions, and every password
reset is logged.

Adding, changing and deleting people and groups is for active superusers only here; Django's
``auth.*_user`` and ``auth.*_group`` permissions allow viewing at most. ``auth.change_user`` would
otherwise let its holder grant themselves anything, or take over any account — a superuser's
included — by setting its password, or its email (which email links and Slack votes go by).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django_otp.plugins.otp_totp.admin import TOTPDeviceAdmin
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit import selectors, services
from tracemem_core.actor import Actor
from tracemem_core.permissions import user_is_superuser

_BEFORE = "_tracemem_access_before"

admin.site.unregister(User)
admin.site.unregister(Group)
admin.site.unregister(TOTPDevice)


def _superuser(request: HttpRequest) -> bool:
    return user_is_superuser(request.user)


class _AuditedAccess:
    """Logs each save and delete of the ModelAdmin's object with ``snapshot`` before and after.
    Many-to-many fields (groups, permissions) are saved in ``save_related``, so the "after" is
    taken there; all of it runs in the admin's transaction, as does the log entry."""

    object_type: str = ""

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return _superuser(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _superuser(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _superuser(request)

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

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> HttpResponse:
        """Django's "change password" page (its permission check is ``has_change_permission``),
        logged — without the password — when it changed one, in the same transaction."""
        with transaction.atomic():
            before = User.objects.filter(pk=unquote(id)).values_list("password", flat=True).first()
            response = super().user_change_password(request, id, form_url)
            user = User.objects.filter(pk=unquote(id)).first()
            if before is not None and user is not None and user.password != before:
                services.password_change_record(actor=Actor.for_user(request.user), user=user)
        return response


@admin.register(Group)
class AuditedGroupAdmin(_AuditedAccess, GroupAdmin):
    object_type = "group"

    def snapshot(self, pk: int) -> dict[str, Any] | None:
        return selectors.group_access(pk)


@admin.register(TOTPDevice)
class SuperuserTOTPDeviceAdmin(TOTPDeviceAdmin):
    """Two-factor devices are sign-in credentials (their key makes a person's codes): only active
    superusers see or change them here (to remove a lost phone), whatever Django's otp_totp
    permissions say; the key of a saved device is never shown (OTP_ADMIN_HIDE_SENSITIVE_DATA)."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _superuser(request)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return _superuser(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return _superuser(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _superuser(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _superuser(request)
