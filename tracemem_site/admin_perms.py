"""The Django admin asks the same permissions as every other door (``tracemem_site.permissions``).

Django's own add/change/delete permissions are not enough to change TraceMem's configuration in
the admin: each ModelAdmin names the permission of the matrix that its changes need.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from tracemem_site.actor import Actor
from tracemem_site.permissions import has_perm, may_read


def request_actor(request: HttpRequest) -> Actor | None:
    user = request.user
    return Actor.for_user(user) if user.is_authenticated else None


def request_has_perm(request: HttpRequest, perm: str) -> bool:
    actor = request_actor(request)
    return actor is not None and has_perm(actor, perm)


class GuardedAdmin:
    """ModelAdmin mixin: adding, changing and deleting need ``change_perm``; viewing needs one of the
    readers of ``read_area`` (or ``change_perm``). Subclasses may refuse more, never allow more."""

    change_perm: str = ""
    read_area: str | None = None

    def _may_change(self, request: HttpRequest) -> bool:
        return request_has_perm(request, self.change_perm)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return self._may_change(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may_change(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may_change(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        actor = request_actor(request)
        if actor is None:
            return False
        return self._may_change(request) or (self.read_area is not None and may_read(actor, self.read_area))
