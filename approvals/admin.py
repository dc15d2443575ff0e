"""Admin for routes, integrations and the outbox. Secrets are write-only: never rendered back."""

from __future__ import annotations

import functools
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest

from approvals import services
from approvals.models import (
    Approval,
    ApprovalRoute,
    Delivery,
    SlackIntegration,
    Vote,
    WebhookCredential,
    WebhookEndpoint,
)
from tracemem_site.actor import Actor
from tracemem_site.admin_perms import GuardedAdmin
from tracemem_site.errors import DomainError


def _write_only(
    form_class_model: type, all_fields: tuple[str, ...], secret_fields: tuple[str, ...]
) -> type[forms.ModelForm]:
    """A ModelForm whose secret fields render empty; leaving one blank keeps the stored value."""

    class WriteOnlyForm(forms.ModelForm):
        class Meta:
            model = form_class_model
            fields = all_fields
            widgets = {name: forms.PasswordInput(render_value=False) for name in secret_fields}
            # Integration endpoints are HTTPS; say so instead of relying on Django's changing default.
            field_classes = {
                name: functools.partial(forms.URLField, assume_scheme="https")
                for name in all_fields
                if isinstance(form_class_model._meta.get_field(name), models.URLField)
            }

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if self.instance.pk:
                for name in secret_fields:
                    self.fields[name].required = False
                    self.fields[name].help_text = "stored; leave blank to keep it"

        def clean(self) -> dict[str, Any]:
            data = super().clean()
            for name in secret_fields:
                if self.instance.pk and not data.get(name):
                    data[name] = getattr(type(self.instance).objects.get(pk=self.instance.pk), name)
            return data

    return WriteOnlyForm


def _route_definition(cleaned: dict[str, Any]) -> dict[str, Any]:
    """The admin form's values as a route definition (the API's field names)."""
    group = cleaned.get("approver_group")
    return {
        "route_id": cleaned.get("route_id"),
        "name": cleaned.get("name"),
        "channels": cleaned.get("channels") or [],
        "approver_group": group.name if group is not None else None,
        "required_approvals": cleaned.get("required_approvals"),
        "require_rationale": bool(cleaned.get("require_rationale")),
        "expires_in_seconds": cleaned.get("expires_in_seconds"),
        "allow_agent_owner": bool(cleaned.get("allow_agent_owner")),
        "default": bool(cleaned.get("is_default")),
    }


class ApprovalRouteForm(forms.ModelForm):
    class Meta:
        model = ApprovalRoute
        fields = (
            "route_id",
            "name",
            "channels",
            "approver_group",
            "required_approvals",
            "require_rationale",
            "expires_in_seconds",
            "allow_agent_owner",
            "is_default",
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if not self.errors:
            if self.instance.pk:
                cleaned["route_id"] = self.instance.route_id
            try:
                services.clean_route(_route_definition(cleaned))
            except DomainError as exc:
                raise forms.ValidationError(exc.message) from None
        return cleaned


@admin.register(ApprovalRoute)
class ApprovalRouteAdmin(GuardedAdmin, admin.ModelAdmin):
    """Routes are saved through the route services (the API's rules, and an audit log entry)."""

    change_perm = "approvals.manage_routes"
    read_area = "routes"
    form = ApprovalRouteForm
    list_display = (
        "route_id",
        "name",
        "approver_group",
        "required_approvals",
        "require_rationale",
        "is_default",
    )
    search_fields = ("route_id", "name")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("route_id",) if obj is not None else ()

    def save_model(self, request: HttpRequest, obj: ApprovalRoute, form: Any, change: bool) -> None:
        actor = Actor.for_user(request.user)
        data = _route_definition({**form.cleaned_data, "route_id": obj.route_id})
        if change:
            saved = services.route_update(actor=actor, route_id=obj.route_id, data=data)
        else:
            saved = services.route_create(actor=actor, data=data)
        obj.pk = saved.pk

    def delete_model(self, request: HttpRequest, obj: ApprovalRoute) -> None:
        services.route_delete(actor=Actor.for_user(request.user), route_id=obj.route_id)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ApprovalRoute]) -> None:
        for route in queryset:
            self.delete_model(request, route)


class _IntegrationAdmin(GuardedAdmin, admin.ModelAdmin):
    """Saved and deleted through the integration services: needs approvals.manage_integrations,
    and every change is in the audit log (secrets by name only)."""

    change_perm = "approvals.manage_integrations"
    secret_fields: tuple[str, ...] = ()

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        changed = [name for name in self.secret_fields if form.data.get(name)]
        services.integration_save(actor=Actor.for_user(request.user), item=obj, changed_secrets=changed)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        services.integration_delete(actor=Actor.for_user(request.user), item=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for item in queryset:
            self.delete_model(request, item)


@admin.register(SlackIntegration)
class SlackIntegrationAdmin(_IntegrationAdmin):
    secret_fields = ("bot_token", "signing_secret")
    form = _write_only(
        SlackIntegration,
        ("name", "bot_token", "signing_secret", "api_base_url"),
        secret_fields,
    )
    list_display = ("name", "api_base_url")


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(_IntegrationAdmin):
    secret_fields = ("signing_secret",)
    form = _write_only(WebhookEndpoint, ("name", "url", "signing_secret"), secret_fields)
    list_display = ("name", "url")


class VoteInline(admin.TabularInline):
    model = Vote
    extra = 0
    can_delete = False
    readonly_fields = ("user", "choice", "rationale", "channel", "created_at")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class DeliveryInline(admin.TabularInline):
    model = Delivery
    extra = 0
    can_delete = False
    fields = ("delivery_id", "channel", "status", "attempts", "next_attempt_at", "last_error", "delivered_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Approval)
class ApprovalAdmin(admin.ModelAdmin):
    """Read-only: approvals change only through votes and expiry (the services)."""

    list_display = ("approval_id", "decision", "route", "status", "requested_at", "expires_at")
    list_filter = ("status", "route")
    inlines = (VoteInline, DeliveryInline)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = (
        "delivery_id",
        "approval",
        "channel",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
    )
    list_filter = ("status", "channel")
    readonly_fields = [f.name for f in Delivery._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(WebhookCredential)
class WebhookCredentialAdmin(GuardedAdmin, admin.ModelAdmin):
    """Issue a credential by adding one (the secret is shown once); revoke with the action. A
    credential is never edited (its user is who it votes as) nor deleted (kept for the audit)."""

    change_perm = "approvals.manage_integrations"
    list_display = ("name", "user", "prefix", "created_at", "revoked_at", "last_used_at")
    fields = ("name", "user")
    actions = ["revoke_credentials"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return self._may_change(request)

    def save_model(self, request: HttpRequest, obj: WebhookCredential, form: Any, change: bool) -> None:
        credential, secret = services.webhook_credential_create(
            actor=Actor.for_user(request.user), user=obj.user, name=obj.name
        )
        obj.pk = credential.pk
        messages.warning(request, f"Webhook credential (shown once): {secret}")

    @admin.action(description="Revoke selected credentials", permissions=["revoke"])
    def revoke_credentials(self, request: HttpRequest, queryset: QuerySet[WebhookCredential]) -> None:
        for credential in queryset:
            services.webhook_credential_revoke(
                actor=Actor.for_user(request.user), credential_id=credential.pk
            )
        self.message_user(request, f"Revoked {queryset.count()} credential(s).", messages.SUCCESS)
