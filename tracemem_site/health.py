"""/healthz (the process answers) and /readyz (database and broker reachable)."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from tracemem_core import heartbeat
from tracemem_site.celery import app


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


class LivenessMiddleware:
    """Answers ``GET /healthz`` before anything reads the Host header: a probe addresses the
    container (127.0.0.1, a pod IP), which DJANGO_ALLOWED_HOSTS need not and should not list. It
    says only that the process answers; nothing else is reachable this way."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path == "/healthz" and request.method in ("GET", "HEAD"):
            request.tracemem_operation = "healthz"  # type: ignore[attr-defined]
            return JsonResponse({"status": "ok"})
        return self.get_response(request)


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # readiness reports, it does not raise
        checks["database"] = f"error: {type(exc).__name__}"
    if settings.CELERY_TASK_ALWAYS_EAGER:
        checks["broker"] = "inline (no broker configured)"
    else:
        checks["broker"] = _broker_check()
    ready = all(value == "ok" or value.startswith("inline") for value in checks.values())
    # Informational (readiness of this web process does not depend on them): seconds since the beat
    # last queued a task and since the periodic tick last ran; null = never seen.
    heartbeats = heartbeat.report()
    return JsonResponse(
        {
            "status": "ok" if ready else "unavailable",
            "checks": checks,
            "heartbeat_seconds_ago": heartbeats,
        },
        status=200 if ready else 503,
    )


def _broker_check() -> str:
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=0, timeout=2)
        return "ok"
    except Exception as exc:
        return f"error: {type(exc).__name__}"
