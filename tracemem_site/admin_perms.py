"""The Django admin asks the same permissions as every other door (``tracemem_core.permissions``).

Django's own add/change/delete permissions are not enough to change TraceMem's configuration in
the admin: each ModelAdmin names the permission of the matrix that its changes need. Its saves go
through the services, whose refusals (a ``DomainError``) become an error message on the page, with
the admin's transaction rolled back, rather than a server error.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from tracemem_core import safejson
from tracemem_core.actor import Actor
from tracemem_core.errors import DomainError
from tracemem_core.permissions import has_perm, may_read


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
    # JSON typed into an admin form is bounded like every other JSON the server takes.
    formfield_overrides = safejson.ADMIN_FORMFIELD_OVERRIDES

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

    def _refused(self, request: HttpRequest, exc: DomainError) -> HttpResponse:
        self.message_user(request, exc.message, messages.ERROR)  # type: ignore[attr-defined]
        return HttpResponseRedirect(request.get_full_path())

    # Django runs the add/change and delete views in a transaction: a refusal rolls it back whole.
    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().changeform_view(request, *args, **kwargs)  # type: ignore[misc]
        except DomainError as exc:
            return self._refused(request, exc)

    def delete_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().delete_view(request, *args, **kwargs)  # type: ignore[misc]
        except DomainError as exc:
            return self._refused(request, exc)

    def changelist_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # Actions and "delete selected" run from the list, one service call per object (each its
        # own transaction): a refusal stops the action there and says so.
        try:
            return super().changelist_view(request, *args, **kwargs)  # type: ignore[misc]
        except DomainError as exc:
            return self._refused(request, exc)
