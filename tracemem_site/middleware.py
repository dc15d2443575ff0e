"""The HTML door's answer to a database outage: 503 with Retry-After, never a 500 page; and the
per-request commit tracking every door's outage answer relies on.

REST and MCP views map outages in their own exception handlers; this covers every other view
(review UI, explorer, admin, email links) through ``process_exception``, and ``server_error``
(``handler500``) covers an outage raised outside a view (e.g. by a middleware).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.html import escape
from django.views import defaults

from tracemem_core.errors import DomainError, NotFound, Unavailable
from tracemem_core.outage import database_outage, tracking_commits
from tracemem_core.requestid import current_request_id


def unavailable_page(error: Unavailable) -> HttpResponse:
    response = HttpResponse(
        "<!doctype html><title>TraceMem is unavailable</title><h1>Temporarily unavailable</h1>"
        f"<p>{escape(error.message)}.</p>",
        status=503,
        content_type="text/html; charset=utf-8",
    )
    response["Retry-After"] = str(error.retry_after)
    response._has_been_logged = True  # type: ignore[attr-defined]  # outage.py logged one line already
    return response


class DatabaseOutageMiddleware:
    """Tracks each request's commits (so an outage answer can say whether the call was applied)
    and turns an outage raised by an HTML view into a 503 page."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with tracking_commits():
            return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        error = database_outage(exception)
        return unavailable_page(error) if error is not None else None


class RefusalPageMiddleware:
    """The HTML door's one refusal mapping. A selector's or service's refusal that a view lets
    through becomes a page with the status the REST door would give (tracemem_core.errors):
    ``not_found`` is Django's 404 page, every other 4xx the refusal page carrying the message (which
    already says what to do next). The decision stays in the selector/service; this only gives it an
    HTML face. Views still catch a refusal themselves where they show it next to a form."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, Unavailable):
            return unavailable_page(exception)
        if not isinstance(exception, DomainError) or not 400 <= exception.http_status < 500:
            return None
        if isinstance(exception, NotFound):
            return defaults.page_not_found(request, Http404(exception.message))
        title = "Not allowed" if exception.http_status == 403 else "Not possible"
        context = {"message": exception.message, "title": title}
        return render(request, "ui/forbidden.html", context, status=exception.http_status)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """``handler404``: a path under ``/api/`` no view answers gets the API's JSON error body (with
    its request id, like every other API error); pages keep Django's HTML 404."""
    if not request.path.startswith("/api/"):
        return defaults.page_not_found(request, exception)
    body: dict[str, object] = {
        "error": {
            "code": "not_found",
            "message": f"no API endpoint at {request.path}; the endpoints are listed at /api/docs/",
            "details": {},
        }
    }
    request_id = current_request_id()
    if request_id:
        body["request_id"] = request_id
    return JsonResponse(body, status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: an outage that escaped every view still gets a 503."""
    exc = sys.exc_info()[1]
    error = database_outage(exc) if exc is not None else None
    if error is not None:
        return unavailable_page(error)
    return defaults.server_error(request)
