"""Users holding explicit admin permissions (issue 11: permissions, not ``is_staff``)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from agents.services import tokens as agent_tokens
from tracemem_core.actor import Actor
from tracemem_core.permissions import PERMISSIONS, READERS

# Every permission of the admin matrix plus the view permissions: what "staff" meant before.
ALL_ADMIN_PERMS: tuple[str, ...] = tuple(
    dict.fromkeys([*PERMISSIONS, *(perm for perms in READERS.values() for perm in perms)])
)


def permission(perm: str) -> Permission:
    app_label, codename = perm.split(".", 1)
    return Permission.objects.get(content_type__app_label=app_label, codename=codename)


def grant(user: Any, *perms: str) -> Any:
    """Give ``user`` the permissions and return it re-read (Django caches permissions per instance)."""
    user.user_permissions.add(*(permission(p) for p in perms))
    return get_user_model().objects.get(pk=user.pk)


def make_staff(username: str, *perms: str, password: str | None = None, **extra: Any) -> Any:
    """A staff user holding ``perms`` (all admin permissions when none are named)."""
    user = get_user_model().objects.create_user(
        username, f"{username}@example.com", password, is_staff=True, **extra
    )
    return grant(user, *(perms or ALL_ADMIN_PERMS))


def token_for(user: Any) -> str:
    return agent_tokens.personal_token_create(actor=Actor.system(), user=user).secret


class TokenClient:
    """The admin REST API as a person with a personal access token."""

    def __init__(self, user: Any) -> None:
        self.user = user
        self.client = Client()
        self.headers = {"HTTP_AUTHORIZATION": f"Token {token_for(user)}"}

    def get(self, path: str, data: Any = None) -> Any:
        return self.client.get(path, data or {}, **self.headers)

    def post(self, path: str, data: Any = None) -> Any:
        return self.client.post(path, data or {}, content_type="application/json", **self.headers)

    def patch(self, path: str, data: Any) -> Any:
        return self.client.patch(path, data, content_type="application/json", **self.headers)

    def delete(self, path: str) -> Any:
        return self.client.delete(path, **self.headers)

    def put(self, path: str, data: Any) -> Any:
        return self.client.put(path, data, content_type="application/json", **self.headers)
