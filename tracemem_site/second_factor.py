"""Two-factor sign-in gate: whoever must use a second factor reaches nothing but the sign-in and
two-factor pages until this session is verified with a TOTP code (django-otp's OTPMiddleware runs
first and tells whether it is). One place, so no page, admin screen or session-authenticated API
call can be reached with the password alone."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect

from agents.selectors import confirmed_device
from approvals.selectors import second_factor_required
from tracemem_core.errors import Unavailable
from tracemem_core.outage import database_outage
from tracemem_site.middleware import unavailable_page

VERIFY_URL = "/login/verify/"
ENROL_URL = "/account/two-factor/"
# Reachable before the second factor: signing in and out, and the enrolment page itself (exactly:
# not /account/two-factor/disable/, which must never be reachable with the password alone).
_OPEN_PREFIXES = ("/login/", "/logout/", "/static/", "/favicon.ico", "/healthz", "/readyz")


def _open(path: str) -> bool:
    return path == ENROL_URL or path.startswith(_OPEN_PREFIXES)


class SecondFactorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # Pages show no navigation (and start no htmx polling) while the second factor is pending.
        request.second_factor_pending = False  # type: ignore[attr-defined]
        try:
            user = request.user  # loads the session: the first database access of a request
            # OTPMiddleware gave every user is_verified(): a code was given in this session.
            pending = user.is_authenticated and not user.is_verified() and second_factor_required(user)  # type: ignore[attr-defined]
            has_device = pending and confirmed_device(user) is not None  # type: ignore[arg-type]
        except DatabaseError as exc:
            # Fail closed, and answer an outage as every door does: 503, nothing applied.
            outage = database_outage(exc)
            if outage is None:
                raise
            return _outage(request, outage)
        if pending:
            request.second_factor_pending = True  # type: ignore[attr-defined]
            if not _open(request.path):
                return _refusal(request, has_device=has_device)
        return self.get_response(request)


def _outage(request: HttpRequest, error: Unavailable) -> HttpResponse:
    if not (request.path.startswith("/api/") or request.path in ("/mcp", "/oauth/mcp")):
        return unavailable_page(error)
    response = JsonResponse(
        {"error": {"code": error.code, "message": error.message, "details": error.details}}, status=503
    )
    response["Retry-After"] = str(error.retry_after)
    return response


def _refusal(request: HttpRequest, *, has_device: bool) -> HttpResponse:
    if request.headers.get("HX-Request"):
        return HttpResponse("two-factor sign-in required", status=403, content_type="text/plain")
    if request.path.startswith("/api/") or request.path in ("/mcp", "/oauth/mcp"):
        return JsonResponse(
            {
                "error": {
                    "code": "permission_denied",
                    "message": f"finish two-factor sign-in in the browser first ({VERIFY_URL}), "
                    "or use a personal access token",
                    "details": {"reason": "second_factor_required"},
                }
            },
            status=403,
        )
    target = VERIFY_URL if has_device else ENROL_URL
    return redirect(f"{target}?next={quote(request.get_full_path())}")
