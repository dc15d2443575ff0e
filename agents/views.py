"""HTML door of agents and keys: list, create, issue, rotate, revoke — all through agents.services.

A freshly issued secret is handed from the POST to the redirected GET through the session
(popped on first display), so it is shown exactly once and never appears in a URL or a log.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from agents import selectors, services
from agents.models import Agent
from agents.selectors_ui import agents_overview
from tracemem_site import client_configs
from tracemem_site.errors import DomainError, NotFound
from tracemem_site.permissions import has_perm, require_perm
from tracemem_site.web import refusal_as_403, web_actor, web_user

_SESSION_KEY = "tracemem_issued_key"


def _agent_or_404(request: HttpRequest, agent_id: str) -> Agent:
    try:
        return selectors.agent_for_admin(web_actor(request), agent_id)
    except NotFound:
        raise Http404("no such agent") from None


def _agent_for_keys(request: HttpRequest, agent_id: str) -> Agent:
    """The agent whose keys this person wants to change; a refusal is a 403 page (not a message)."""
    agent = _agent_or_404(request, agent_id)
    selectors.require_key_admin(web_actor(request), agent)
    return agent


def _client_configs(secret: str) -> list[dict[str, str]]:
    """The MCP area's ready-to-paste configs with the new key in the export line (shown once)."""
    snippets: list[dict[str, str]] = []
    seen: set[str] = set()
    for client_snippets in client_configs.all_client_configs(key=secret).values():
        for snippet in client_snippets:
            # Every client starts with the same `export TRACEMEM_API_KEY=…` line; show it once.
            if snippet.content in seen:
                continue
            seen.add(snippet.content)
            snippets.append({"name": snippet.title, "text": snippet.content})
    return snippets


@login_required
@refusal_as_403
def agent_list(request: HttpRequest) -> HttpResponse:
    actor = web_actor(request)
    agents = agents_overview(actor)
    oauth_configs = [
        {"name": snippet.title, "text": snippet.content}
        for client in client_configs.OAUTH_CLIENTS
        for snippet in client_configs.client_config(client)
    ]
    return render(
        request,
        "agents/list.html",
        {
            "agents": agents,
            "can_manage": has_perm(actor, "agents.manage_agents"),
            "oauth_configs": oauth_configs,
        },
    )


@login_required
@require_POST
@refusal_as_403
def agent_create(request: HttpRequest) -> HttpResponse:
    actor = web_actor(request)
    require_perm(actor, "agents.manage_agents")  # a refusal is a 403 page, not a message
    try:
        agent = services.agent_create(
            actor=actor,
            name=request.POST.get("name", ""),
            owner=web_user(request) if request.POST.get("owner_self") else None,
            description=request.POST.get("description", "")[:2000],
        )
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect("/agents/")
    messages.success(request, f"Agent {agent.name} created. Issue a key so it can connect.")
    return redirect(f"/agents/{agent.agent_id}/")


@login_required
@refusal_as_403
def agent_detail(request: HttpRequest, agent_id: str) -> HttpResponse:
    agent = _agent_or_404(request, agent_id)
    issued: dict[str, Any] | None = request.session.pop(_SESSION_KEY, None)
    if issued and issued.get("agent_id") != agent.agent_id:
        issued = None
    context: dict[str, Any] = {
        "agent": agent,
        "keys": selectors.agent_keys(agent),
        "can_manage": selectors.may_manage_keys(web_actor(request), agent),
        "issued": issued,
        "configs": _client_configs(issued["secret"]) if issued else [],
    }
    response = render(request, "agents/detail.html", context)
    if issued:
        # The one page that carries a secret must not be cached anywhere.
        response["Cache-Control"] = "no-store"
    return response


def _remember_secret(request: HttpRequest, agent: Agent, secret: str, key_id: str) -> None:
    request.session[_SESSION_KEY] = {"agent_id": agent.agent_id, "secret": secret, "key_id": key_id}


@login_required
@require_POST
@refusal_as_403
def key_issue(request: HttpRequest, agent_id: str) -> HttpResponse:
    agent = _agent_for_keys(request, agent_id)
    try:
        issued = services.agent_key_issue(
            actor=web_actor(request), agent=agent, name=request.POST.get("name") or "default"
        )
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        _remember_secret(request, agent, issued.secret, issued.key.key_id)
    return redirect(f"/agents/{agent.agent_id}/")


@login_required
@require_POST
@refusal_as_403
def key_rotate(request: HttpRequest, agent_id: str, key_id: str) -> HttpResponse:
    agent = _agent_for_keys(request, agent_id)
    try:
        key = selectors.agent_key_by_id(agent, key_id)
        grace = request.POST.get("grace_seconds", "0")
        issued = services.agent_key_rotate(
            actor=web_actor(request), key=key, grace_seconds=int(grace) if grace.isdigit() else -1
        )
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        _remember_secret(request, agent, issued.secret, issued.key.key_id)
        messages.success(request, f"Key {key.prefix}… rotated.")
    return redirect(f"/agents/{agent.agent_id}/")


@login_required
@require_POST
@refusal_as_403
def key_revoke(request: HttpRequest, agent_id: str, key_id: str) -> HttpResponse:
    agent = _agent_for_keys(request, agent_id)
    try:
        key = services.agent_key_revoke(
            actor=web_actor(request), key=selectors.agent_key_by_id(agent, key_id)
        )
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Key {key.prefix}… revoked; it is refused from now on.")
    return redirect(f"/agents/{agent.agent_id}/")
