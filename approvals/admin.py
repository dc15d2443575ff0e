"""Admin for routes, integrations and the outbox. Secrets are write-only: never rendered back."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from approvals import selectors
from approvals.models import (
    Approval,
    ApprovalRoute,
    Delivery,
    SlackIntegration,
    Vote,
    WebhookCredential,
    WebhookEndpoint,
)
from approvals.services import credentials as approval_credentials
from approvals.services import integrations as approval_integrations
from approvals.services import routes as approval_routes
from tracemem_core.actor import Actor
from tracemem_core.errors import DomainError
from tracemem_core.permissions import is_superuser
from tracemem_site.admin_perms import GuardedAdmin, request_actor


def _destination_form(kind: approval_integrations.DestinationKind) -> type[forms.ModelForm]:
    """The admin form of a webhook endpoint or Slack integration: its secret fields render empty and
    a blank one keeps the stored value; validation is the service's (``clean_destination``), so the
    admin refuses exactly what the API refuses, with the same words."""

    class DestinationForm(forms.ModelForm):
        class Meta:
            model = kind.model
            fields = ("name", *kind.fields)
            widgets = {name: forms.PasswordInput(render_value=False) for name in kind.secrets}
            # http(s) URLs checked by the outbound rule, not by Django's URLField (which would also
            # take ftp:// and guess a scheme).
            field_classes = {kind.url_field: forms.CharField}

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if self.instance.pk:
                for name in kind.secrets:
                    self.fields[name].required = False
                    self.fields[name].help_text = "stored; leave blank to keep it"

        def destination_data(self) -> dict[str, Any]:
            """The fields as the service takes them: a blank secret is left out (kept)."""
            data = {name: self.cleaned_data.get(name) for name in kind.fields}
            return {name: value for name, value in data.items() if value not in (None, "")}

        def clean(self) -> dict[str, Any]:
            cleaned = super().clean()
            if not self.errors:
                try:
                    approval_integrations.clean_destination(
                        kind, self.destination_data(), creating=not self.instance.pk
                    )
                except DomainError as exc:
                    field = exc.details.get("field")
                    self.add_error(field if field in self.fields else None, exc.message)
            return cleaned

    return DestinationForm


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

    request_user: Any = None  # set by ApprovalRouteAdmin.get_form

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if not self.errors:
            if self.instance.pk:
                cleaned["route_id"] = self.instance.route_id
            try:
                route_id, fields = approval_routes.clean_route(_route_definition(cleaned))
                approval_routes.route_rules_check(
                    actor=Actor.for_user(self.request_user), route_id=route_id, fields=fields
                )
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

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        form.request_user = request.user
        return form

    def save_model(self, request: HttpRequest, obj: ApprovalRoute, form: Any, change: bool) -> None:
        actor = Actor.for_user(request.user)
        data = _route_definition({**form.cleaned_data, "route_id": obj.route_id})
        if change:
            saved = approval_routes.route_update(actor=actor, route_id=obj.route_id, data=data)
        else:
            saved = approval_routes.route_create(actor=actor, data=data)
        obj.pk = saved.pk

    def delete_model(self, request: HttpRequest, obj: ApprovalRoute) -> None:
        approval_routes.route_delete(actor=Actor.for_user(request.user), route_id=obj.route_id)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ApprovalRoute]) -> None:
        for route in queryset:
            self.delete_model(request, route)


class _DestinationAdmin(GuardedAdmin, admin.ModelAdmin):
    """Saved and deleted through the destination services: needs approvals.manage_integrations, and
    every change is in the audit log (secrets by name only). The name is fixed once created (routes
    refer to it)."""

    change_perm = "approvals.manage_integrations"
    kind: approval_integrations.DestinationKind

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("name",) if obj is not None else ()

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        actor = Actor.for_user(request.user)
        data = form.destination_data()
        if change:
            saved, _ = approval_integrations.destination_update(
                actor=actor, kind=self.kind, name=obj.name, data=data
            )
        else:
            saved = approval_integrations.destination_create(
                actor=actor, kind=self.kind, data={"name": obj.name, **data}
            )
        obj.pk = saved.pk

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        # Routes name destinations in their channels (no foreign key): shown as what protects them.
        deleted, counts, perms, protected = super().get_deleted_objects(objs, request)
        users = selectors.routes_naming(self.kind.channel, self.kind.channel_key)
        protected = [*protected, *(f"route {r} (uses {o.name})" for o in objs for r in users.get(o.name, []))]
        return deleted, counts, perms, protected

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        approval_integrations.destination_delete(
            actor=Actor.for_user(request.user), kind=self.kind, name=obj.name
        )

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for item in queryset:
            self.delete_model(request, item)


@admin.register(SlackIntegration)
class SlackIntegrationAdmin(_DestinationAdmin):
    kind = approval_integrations.SLACK_INTEGRATION
    read_area = kind.read_area
    form = _destination_form(kind)
    list_display = ("name", "api_base_url")

    def _may_change(self, request: HttpRequest) -> bool:
        # kind.superuser_only: it vouches for reviewers (the service refuses the same).
        actor = request_actor(request)
        return super()._may_change(request) and actor is not None and is_superuser(actor)


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(_DestinationAdmin):
    kind = approval_integrations.WEBHOOK_ENDPOINT
    read_area = kind.read_area
    form = _destination_form(kind)
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
    """Read-only: the outbox changes only through the worker, which records each outcome in the trace."""

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

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
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
        credential, secret = approval_credentials.webhook_credential_create(
            actor=Actor.for_user(request.user), user=obj.user, name=obj.name
        )
        obj.pk = credential.pk
        messages.warning(request, f"Webhook credential (shown once): {secret}")

    @admin.action(description="Revoke selected credentials", permissions=["revoke"])
    def revoke_credentials(self, request: HttpRequest, queryset: QuerySet[WebhookCredential]) -> None:
        for credential in queryset:
            approval_credentials.webhook_credential_revoke(
                actor=Actor.for_user(request.user), credential_id=credential.pk
            )
        self.message_user(request, f"Revoked {queryset.count()} credential(s).", messages.SUCCESS)
