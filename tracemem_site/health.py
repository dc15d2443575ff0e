"""/healthz (the process answers) and /readyz (database and broker reachable)."""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from tracemem_site.celery import app


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


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
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503
    )


def _broker_check() -> str:
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=0, timeout=2)
        return "ok"
    except Exception as exc:
        return f"error: {type(exc).__name__}"
