"""Django admin for agents and their keys. Every change goes through agents.services.

Keys are issued with the "Issue a new key" action on agents: the secret appears on the page that
action returns and nowhere else (not in a message, which would sit in a cookie or the session).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse

from agents.models import Agent, AgentKey
from agents.services import registry as agent_registry
from tracemem_core.actor import Actor
from tracemem_core.errors import DomainError
from tracemem_site.admin_perms import GuardedAdmin, request_has_perm


def _actor(request: HttpRequest) -> Actor:
    return Actor.for_user(request.user)


def _may_manage_some_keys(request: HttpRequest) -> bool:
    # Which agents exactly is decided per agent by the service (owners: only their own).
    return request_has_perm(request, "agents.manage_agent_keys") or request_has_perm(
        request, "agents.manage_own_agent_keys"
    )


class AgentKeyInline(admin.TabularInline):
    model = AgentKey
    fields = ("prefix", "name", "created_at", "expires_at", "last_used_at", "revoked_at", "key_state")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    @admin.display(description="state")
    def key_state(self, key: AgentKey) -> str:
        return str(key.state())

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Agent)
class AgentAdmin(GuardedAdmin, admin.ModelAdmin):
    change_perm = "agents.manage_agents"
    read_area = "agents"
    list_display = ("name", "agent_id", "owner", "disabled", "created_at")
    list_filter = ("disabled",)
    search_fields = ("name", "agent_id", "owner__username")
    fields = ("name", "description", "owner", "disabled")
    inlines = [AgentKeyInline]
    actions = ["issue_key", "disable_agents", "enable_agents"]

    def save_model(self, request: HttpRequest, obj: Agent, form: Any, change: bool) -> None:
        # The admin form validated the fields; the service does the write (and its own checks).
        actor = _actor(request)
        if change:
            updated = agent_registry.agent_update(
                actor=actor,
                agent=obj,
                name=obj.name,
                description=obj.description,
                owner=obj.owner,
                disabled=obj.disabled,
            )
        else:
            updated = agent_registry.agent_create(
                actor=actor, name=obj.name, owner=obj.owner, description=obj.description
            )
            if obj.disabled:
                updated = agent_registry.agent_update(actor=actor, agent=updated, disabled=True)
        obj.pk = updated.pk
        obj.agent_id = updated.agent_id
        obj.created_at = updated.created_at

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Agents own decisions (PROTECT); disable them instead.
        return False

    def has_manage_keys_permission(self, request: HttpRequest) -> bool:
        return _may_manage_some_keys(request)

    @admin.action(description="Issue a new key (shown once)", permissions=["manage_keys"])
    def issue_key(self, request: HttpRequest, queryset: QuerySet[Agent]) -> HttpResponse | None:
        issued: list[dict[str, str]] = []
        errors: list[str] = []
        for agent in queryset:
            try:
                result = agent_registry.agent_key_issue(actor=_actor(request), agent=agent)
            except DomainError as exc:
                errors.append(f"{agent.name}: {exc}")
                continue
            issued.append({"agent": agent.name, "name": result.key.name, "secret": result.secret})
        response = TemplateResponse(
            request,
            "admin/agents/issued_keys.html",
            {
                **self.admin_site.each_context(request),
                "title": "New agent keys",
                "issued": issued,
                "errors": errors,
                "back_url": reverse("admin:agents_agent_changelist"),
            },
        )
        # The page carries secrets: keep it out of every cache.
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Disable selected agents (all their keys stop)", permissions=["change"])
    def disable_agents(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        # One transaction for the whole action: a refusal (Redis down, 503 "nothing was changed")
        # on any agent rolls back the ones before it, so the page never says so while some changed.
        with transaction.atomic():
            for agent in queryset:
                agent_registry.agent_update(actor=_actor(request), agent=agent, disabled=True)
        self.message_user(request, f"Disabled {queryset.count()} agent(s).", messages.SUCCESS)

    @admin.action(description="Enable selected agents", permissions=["change"])
    def enable_agents(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        # One transaction for the whole action: a refusal (Redis down, 503 "nothing was changed")
        # on any agent rolls back the ones before it, so the page never says so while some changed.
        with transaction.atomic():
            for agent in queryset:
                agent_registry.agent_update(actor=_actor(request), agent=agent, disabled=False)
        self.message_user(request, f"Enabled {queryset.count()} agent(s).", messages.SUCCESS)


@admin.register(AgentKey)
class AgentKeyAdmin(GuardedAdmin, admin.ModelAdmin):
    change_perm = "agents.manage_agent_keys"
    read_area = "agents"
    list_display = ("prefix", "name", "agent", "created_at", "expires_at", "last_used_at", "key_state")
    list_filter = ("revoked_at",)
    search_fields = ("prefix", "name", "agent__name")
    fields = (
        "agent",
        "prefix",
        "name",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
        "rotated_from",
    )
    readonly_fields = fields
    actions = ["revoke_keys"]

    @admin.display(description="state")
    def key_state(self, key: AgentKey) -> str:
        return str(key.state())

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # issue keys from the agent list ("Issue a new key"), so the secret is shown once

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke instead: a revoked key stays visible for the audit

    def has_manage_keys_permission(self, request: HttpRequest) -> bool:
        return _may_manage_some_keys(request)

    @admin.action(
        description="Revoke selected keys (refused from the next request on)", permissions=["manage_keys"]
    )
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[AgentKey]) -> None:
        revoked = 0
        for key in queryset.select_related("agent"):
            try:
                agent_registry.agent_key_revoke(actor=_actor(request), key=key)
            except DomainError as exc:
                self.message_user(request, f"{key.prefix}…: {exc.message}", messages.ERROR)
            else:
                revoked += 1
        self.message_user(request, f"Revoked {revoked} key(s).", messages.SUCCESS)
