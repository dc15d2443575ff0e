"""Request ids, request metrics and structured logs (docs/operations.md, "Observability").

Every request gets an id: the caller's ``X-Request-ID`` when it is a plain token (letters, digits,
``._:-``, at most 128 characters, so a proxy's id carries through), a new one otherwise. It is
answered in the ``X-Request-ID`` header, put in REST error bodies (``request_id``), added to every
log line written while the request runs (``%(request_id)s``, or the JSON field ``request_id``), and
set as an attribute of the request's trace span. Tasks queued during a request carry it into the
worker's log lines (the ``tracemem_request_id`` task header).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

from django.core.signals import request_finished
from django.http import HttpRequest, HttpResponse

from tracemem_core import metrics
from tracemem_core.requestid import bind_request_id, new_request_id

HEADER = "X-Request-ID"
_META_KEY = "HTTP_X_REQUEST_ID"
_VALID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def door_of(path: str) -> str:
    if path.startswith("/api/"):
        return "rest"
    if path == "/mcp" or path.startswith(("/mcp/", "/oauth/mcp")):
        return "mcp"
    if path.startswith("/admin/"):
        return "admin"
    if path in ("/healthz", "/readyz", "/metrics") or path.startswith(("/static/", "/.well-known/")):
        return "other"
    return "html"


def operation_of(request: HttpRequest) -> str:
    """A bounded label: the MCP method or tool, else the URL pattern's name (never the raw path)."""
    named = getattr(request, "tracemem_operation", None)
    if named:
        return str(named)
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "static" if request.path.startswith("/static/") else "unmatched"
    return match.view_name or match._func_path


def request_id_for(offered: str) -> str:
    """The request's id: the caller's ``X-Request-ID`` (``offered``) when it is a plain token, else a new one."""
    return offered if _VALID.match(offered) else new_request_id()


class RequestMiddleware:
    """Outermost middleware: the request id, and the request's count and latency by door."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_for(request.META.get(_META_KEY, ""))
        request.request_id = request_id  # type: ignore[attr-defined]
        # Bound for the rest of this request, including Django's own "Forbidden: /x" line written
        # after the middleware returns; request_finished (below) unbinds it.
        bind_request_id(request_id)
        started = time.perf_counter()
        _annotate_span(request_id)
        response = self.get_response(request)
        response[HEADER] = request_id
        try:
            door, operation = door_of(request.path), operation_of(request)
            metrics.REQUESTS.labels(door, operation, str(response.status_code)).inc()
            metrics.REQUEST_SECONDS.labels(door, operation).observe(time.perf_counter() - started)
        except Exception:  # counting must never fail a request
            logging.getLogger(__name__).exception("counting a request failed")
        return response


def _annotate_span(request_id: str) -> None:
    from opentelemetry import trace

    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute("tracemem.request_id", request_id)


def _unbind(**kwargs: object) -> None:
    bind_request_id(None)


request_finished.connect(_unbind, dispatch_uid="tracemem-request-id")
