"""HTML door of a person's own account: the settings page (personal tokens, two-factor sign-in),
TOTP enrolment, and the second sign-in step. Every change goes through agents.services or
agents.services_twofactor; a new token's secret is handed to the next page through the session and
shown once, as for agent keys."""

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

from agents import selectors, services
from agents import services_twofactor as twofactor
from agents.serializers import token_out
from approvals.selectors import second_factor_required_by_policy
from tracemem_core.errors import DomainError, InvalidArgument
from tracemem_site.web import web_actor, web_user

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
            "issued": request.session.pop(_ISSUED_TOKEN, None),
            "two_factor_on": selectors.confirmed_device(user) is not None,
            "two_factor_required": second_factor_required_by_policy(user),
        },
    )
    response["Cache-Control"] = "no-store"  # it may carry a token shown once
    return response


@login_required
@require_POST
def token_create(request: HttpRequest) -> HttpResponse:
    days = request.POST.get("expires_in_days", "").strip()
    try:
        if days and not (days.isdigit() and 1 <= int(days) <= 3650):
            raise InvalidArgument(
                "expires in (days) must be a whole number from 1 to 3650", field="expires_in_days"
            )
        issued = services.personal_token_create(
            actor=web_actor(request),
            user=web_user(request),
            name=request.POST.get("name") or "default",
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
        token = services.personal_token_revoke(
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
