"""The request id of the work in hand, and Django's LOGGING with it (no Django imports: settings
import this). ``tracemem_site.observability`` binds it per request; Celery's signals per task."""

from __future__ import annotations

import contextvars
import logging
import uuid
from typing import Any

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("tracemem_request_id", default=None)


def current_request_id() -> str | None:
    return _request_id.get()


def bind_request_id(value: str | None) -> contextvars.Token[str | None]:
    return _request_id.set(value)


def reset_request_id(token: contextvars.Token[str | None]) -> None:
    _request_id.reset(token)


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` ("-" outside a request) to every record, for text and JSON formats."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id() or "-"
        return True


# --- logging ------------------------------------------------------------------------------------

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(process)d"


def logging_config(*, fmt: str, level: str) -> dict[str, Any]:
    """Django's LOGGING: ``fmt`` is ``text`` (one readable line) or ``json`` (one JSON object per
    line, python-json-logger), both with the request id."""
    if fmt not in ("text", "json"):
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"TRACEMEM_LOG_FORMAT must be text or json, got {fmt!r}")
    formatter: dict[str, Any]
    if fmt == "json":
        formatter = {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": JSON_FIELDS,
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            "timestamp": False,
        }
    else:
        formatter = {"format": TEXT_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "tracemem_core.requestid.RequestIdFilter"}},
        "formatters": {"tracemem": formatter},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "filters": ["request_id"],
                "formatter": "tracemem",
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "mcp": {"level": "WARNING"},
            "mcp_server": {"level": "WARNING"},
            "httpx": {"level": "WARNING"},
            # django-axes logs every sign-in at INFO; its warnings (failures, lockouts) still show.
            "axes": {"level": "WARNING"},
        },
    }
