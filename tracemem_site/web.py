"""Helpers for the HTML door: who is signed in, as an Actor."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User
from django.http import HttpRequest

from tracemem_site.actor import Actor


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
