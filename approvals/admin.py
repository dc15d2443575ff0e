"""Admin for routes, integrations and the outbox. Secrets are write-only: never rendered back."""

from __future__ import annotations

import functools
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import models
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


@admin.register(ApprovalRoute)
class ApprovalRouteAdmin(admin.ModelAdmin):
    list_display = (
        "route_id",
        "name",
        "approver_group",
        "required_approvals",
        "require_rationale",
        "is_default",
    )
    search_fields = ("route_id", "name")


@admin.register(SlackIntegration)
class SlackIntegrationAdmin(admin.ModelAdmin):
    form = _write_only(
        SlackIntegration,
        ("name", "bot_token", "signing_secret", "api_base_url"),
        ("bot_token", "signing_secret"),
    )
    list_display = ("name", "api_base_url")


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = _write_only(WebhookEndpoint, ("name", "url", "signing_secret"), ("signing_secret",))
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
class WebhookCredentialAdmin(admin.ModelAdmin):
    """Issue credentials with the action on a user's behalf; the secret is shown once."""

    list_display = ("name", "user", "prefix", "created_at", "revoked_at", "last_used_at")
    fields = ("name", "user", "revoked_at")

    def save_model(self, request: HttpRequest, obj: WebhookCredential, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        credential, secret = services.webhook_credential_create(
            actor=Actor.for_user(request.user), user=obj.user, name=obj.name
        )
        obj.pk = credential.pk
        messages.warning(request, f"Webhook credential (shown once): {secret}")
