"""Helpers for the HTML door: who is signed in, as an Actor."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.http import HttpRequest

from tracemem_core.actor import Actor
from tracemem_core.permissions import has_perm, is_superuser, may_read


def web_user(request: HttpRequest) -> User:
    """The signed-in user; views call this only behind @login_required."""
    user = request.user
    if isinstance(user, AnonymousUser):
        raise PermissionError(
            "web_user() called on an anonymous request; decorate the view with @login_required"
        )
    return user


def web_actor(request: HttpRequest) -> Actor:
    return Actor.for_user(web_user(request))


def menu(request: HttpRequest) -> dict[str, Any]:
    """Context processor: which admin pages the main menu offers, by the same permissions the
    pages themselves check (a hidden link is a courtesy; the page still refuses)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    actor = Actor.for_user(user)
    return {
        "menu": {
            "agents": may_read(actor, "agents") or has_perm(actor, "agents.manage_own_agent_keys"),
            "policies": may_read(actor, "policies"),
            "products": may_read(actor, "products"),
            "routes": may_read(actor, "routes"),
            "audit": is_superuser(actor),
        }
    }


def client_ip(request: HttpRequest) -> str | None:
    """The client's address for sign-in throttling (django-axes' AXES_CLIENT_IP_CALLABLE).

    Behind ``TRACEMEM_TRUSTED_PROXY_COUNT`` reverse proxies, each of which appends the address it
    saw to ``X-Forwarded-For``, the client is the entry that many places from the end; entries
    before it were written by the client itself and are never trusted.
    """
    proxies = int(getattr(settings, "TRACEMEM_TRUSTED_PROXY_COUNT", 0))
    forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()]
    if proxies > 0 and len(forwarded) >= proxies:
        return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR")
