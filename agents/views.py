"""HTML door of agents and keys: list, create, issue, rotate, revoke — all through agents.services.

A freshly issued secret is handed from the POST to the redirected GET through the session
(popped on first display), so it is shown exactly once and never appears in a URL or a log.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import django_otp
import segno
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_http_methods, require_POST

from agents import selectors
from agents.models import Agent
from agents.selectors import agents_overview
from agents.serializers import token_out
from agents.services import registry as agent_registry
from agents.services import tokens as agent_tokens
from agents.services import twofactor
from approvals.selectors import second_factor_required_by_policy
from oauth import selectors as oauth_selectors
from tracemem_core.errors import DomainError, InvalidArgument
from tracemem_core.permissions import has_perm, require_perm
from tracemem_site import client_configs
from tracemem_site.web import web_actor, web_user

_SESSION_KEY = "tracemem_issued_key"


def _agent_or_404(request: HttpRequest, agent_id: str) -> Agent:
    return selectors.agent_for_admin(web_actor(request), agent_id)  # not_found: a 404 page


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
def agent_create(request: HttpRequest) -> HttpResponse:
    actor = web_actor(request)
    require_perm(actor, "agents.manage_agents")  # a refusal is a 403 page, not a message
    try:
        agent = agent_registry.agent_create(
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
def agent_detail(request: HttpRequest, agent_id: str) -> HttpResponse:
    agent = _agent_or_404(request, agent_id)
    issued: dict[str, Any] | None = request.session.pop(_SESSION_KEY, None)
    if issued and issued.get("agent_id") != agent.agent_id:
        issued = None
    context: dict[str, Any] = {
        "agent": agent,
        "keys": selectors.agent_keys(agent),
        "proposed_key_name": selectors.proposed_key_name(agent),
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
def key_issue(request: HttpRequest, agent_id: str) -> HttpResponse:
    agent = _agent_for_keys(request, agent_id)
    try:
        issued = agent_registry.agent_key_issue(
            actor=web_actor(request), agent=agent, name=request.POST.get("name") or None
        )
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        _remember_secret(request, agent, issued.secret, issued.key.key_id)
    return redirect(f"/agents/{agent.agent_id}/")


@login_required
@require_POST
def key_rotate(request: HttpRequest, agent_id: str, key_id: str) -> HttpResponse:
    agent = _agent_for_keys(request, agent_id)
    try:
        key = selectors.agent_key_by_id(agent, key_id)
        grace = request.POST.get("grace_seconds", "0")
        issued = agent_registry.agent_key_rotate(
            actor=web_actor(request),
            key=key,
            grace_seconds=int(grace) if grace.isascii() and grace.isdigit() else -1,
        )
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        _remember_secret(request, agent, issued.secret, issued.key.key_id)
        messages.success(request, f"Key {key.prefix}… rotated.")
    return redirect(f"/agents/{agent.agent_id}/")


@login_required
@require_POST
def key_revoke(request: HttpRequest, agent_id: str, key_id: str) -> HttpResponse:
    agent = _agent_for_keys(request, agent_id)
    try:
        key = agent_registry.agent_key_revoke(
            actor=web_actor(request), key=selectors.agent_key_by_id(agent, key_id)
        )
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Key {key.prefix}… revoked; it is refused from now on.")
    return redirect(f"/agents/{agent.agent_id}/")


_ISSUED_TOKEN = "tracemem_issued_token"


def _next_url(request: HttpRequest, default: str = "/") -> str:
    wanted = request.GET.get("next") or request.POST.get("next") or ""
    if wanted and url_has_allowed_host_and_scheme(
        wanted, {request.get_host()}, require_https=request.is_secure()
    ):
        return wanted
    return default


@login_required
def account(request: HttpRequest) -> HttpResponse:
    user = web_user(request)
    actor = web_actor(request)
    response = render(
        request,
        "agents/account.html",
        {
            "tokens": [token_out(t) for t in selectors.personal_tokens(actor)],
            "proposed_token_name": selectors.proposed_token_name(user),
            "issued": request.session.pop(_ISSUED_TOKEN, None),
            "two_factor_on": selectors.confirmed_device(user) is not None,
            "two_factor_required": second_factor_required_by_policy(user),
            "oauth_connections": oauth_selectors.connections_visible(actor),
        },
    )
    response["Cache-Control"] = "no-store"  # it may carry a token shown once
    return response


@login_required
@require_POST
def token_create(request: HttpRequest) -> HttpResponse:
    days = request.POST.get("expires_in_days", "").strip()
    try:
        if days and not (days.isascii() and days.isdigit() and 1 <= int(days) <= 3650):
            raise InvalidArgument(
                "expires in (days) must be a whole number from 1 to 3650", field="expires_in_days"
            )
        issued = agent_tokens.personal_token_create(
            actor=web_actor(request),
            user=web_user(request),
            name=request.POST.get("name") or None,
            expires_at=timezone.now() + timedelta(days=int(days)) if days else None,
        )
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        request.session[_ISSUED_TOKEN] = {"secret": issued.secret, "token_id": issued.token.token_id}
    return redirect("/account/")


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_id: str) -> HttpResponse:
    actor = web_actor(request)
    try:
        token = agent_tokens.personal_token_revoke(
            actor=actor, token=selectors.personal_token_by_id(actor, token_id)
        )
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Token {token.prefix}… revoked; it is refused from now on.")
    return redirect("/account/")


def _qr_svg(url: str) -> str:
    # Drawn inline as SVG: no image host, no script, nothing the Content-Security-Policy must allow.
    return mark_safe(segno.make(url, error="m").svg_inline(scale=4, dark="#111", light="#fff"))  # noqa: S308


@login_required
@require_http_methods(["GET", "POST"])
def two_factor(request: HttpRequest) -> HttpResponse:
    """Enrolment: a QR code and the secret; a code from the app turns two-factor sign-in on."""
    user = web_user(request)
    actor = web_actor(request)
    if selectors.confirmed_device(user) is not None:
        return redirect("/account/")
    device = twofactor.totp_enrolment_start(actor=actor)
    error = None
    if request.method == "POST":
        try:
            device = twofactor.totp_enrolment_confirm(actor=actor, code=request.POST.get("code"))
        except DomainError as exc:
            error = exc.message
        else:
            django_otp.login(request, device)  # this session has just proved the second factor
            messages.success(
                request, "Two-factor sign-in is on. You will be asked for a code when you sign in."
            )
            return redirect(_next_url(request, "/account/"))
    context: dict[str, Any] = {
        "qr_svg": _qr_svg(device.config_url),
        "secret": twofactor.secret_for_display(device),
        "error": error,
        "required": second_factor_required_by_policy(user),
        "next": _next_url(request, ""),
    }
    return render(request, "agents/two_factor.html", context, status=200)


@login_required
@require_POST
def two_factor_disable(request: HttpRequest) -> HttpResponse:
    try:
        twofactor.totp_disable(actor=web_actor(request))
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Two-factor sign-in is off.")
    return redirect("/account/")


@login_required
@require_http_methods(["GET", "POST"])
def login_verify(request: HttpRequest) -> HttpResponse:
    """The second sign-in step, for accounts with two-factor sign-in on."""
    user = web_user(request)
    if selectors.confirmed_device(user) is None:
        return redirect(f"/account/two-factor/?{urlencode({'next': _next_url(request)})}")
    error = None
    if request.method == "POST":
        try:
            device = twofactor.totp_verify(actor=web_actor(request), code=request.POST.get("code"))
        except DomainError as exc:
            error = exc.message
        else:
            django_otp.login(request, device)
            return redirect(_next_url(request))
    return render(request, "ui/login_verify.html", {"error": error, "next": _next_url(request, "")})
