"""Approval delivery settings: Django settings win, else the environment, else the defaults below."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings

from tracemem_core.env import env_int, env_str

if TYPE_CHECKING:
    from approvals.models import Approval


def _int(name: str, default: int) -> int:
    return int(getattr(settings, name, env_int(name, default)))


def max_attempts() -> int:
    """Attempts per delivery before it is marked ``failed``."""
    return max(1, _int("TRACEMEM_DELIVERY_MAX_ATTEMPTS", 6))


def backoff_base_ms() -> int:
    """First retry delay; each further retry doubles it (30 s, 60 s, 120 s, …)."""
    return max(1, _int("TRACEMEM_DELIVERY_BACKOFF_MS", 30_000))


def backoff_cap_ms() -> int:
    return max(1, _int("TRACEMEM_DELIVERY_BACKOFF_CAP_MS", 3_600_000))


def lease_ms() -> int:
    """How long a claimed delivery is left alone before the re-dispatcher assumes its worker died."""
    return max(1, _int("TRACEMEM_DELIVERY_LEASE_MS", 120_000))


def _float(name: str, default: float) -> float:
    value = getattr(settings, name, None)
    if value is None:
        raw = env_str(name, "")
        value = float(raw) if raw.strip() else default
    return max(0.1, float(value))


def http_timeout_seconds() -> float:
    """The longest a receiver may keep one attempt waiting (webhook, Slack, SMTP); short, so a
    hanging receiver costs little and backs off like any failure."""
    return _float("TRACEMEM_DELIVERY_HTTP_TIMEOUT", 5.0)


def connect_timeout_seconds() -> float:
    """How long to wait for a receiver to accept the connection (within the total above)."""
    return min(_float("TRACEMEM_DELIVERY_CONNECT_TIMEOUT", 3.0), http_timeout_seconds())


def destination_slots() -> int:
    """Attempts in flight at once to one destination (a webhook endpoint, a Slack integration, the
    SMTP server), per worker process, while it answers; a failing destination gets one."""
    return max(1, _int("TRACEMEM_DELIVERY_DESTINATION_SLOTS", 4))


def email_link_max_age() -> int:
    """Email links die after this many seconds even when the approval lives longer."""
    return _int("TRACEMEM_EMAIL_LINK_MAX_AGE", 86400)


def default_route_id() -> str:
    return str(getattr(settings, "TRACEMEM_DEFAULT_ROUTE", env_str("TRACEMEM_DEFAULT_ROUTE", "")))


def public_url() -> str:
    return str(getattr(settings, "TRACEMEM_PUBLIC_URL", "http://127.0.0.1:8000")).rstrip("/")


def review_url(approval: Approval) -> str:
    """The approval's page in the reviewer web UI."""
    return f"{public_url()}/review/{approval.approval_id}/"
