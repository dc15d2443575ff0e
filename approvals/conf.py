"""Approval delivery settings, read from Django settings (``tracemem_site/settings.py`` reads the
environment and holds the defaults)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    from approvals.models import Approval


def max_attempts() -> int:
    """Attempts per delivery before it is marked ``failed``."""
    return max(1, int(settings.TRACEMEM_DELIVERY_MAX_ATTEMPTS))


def backoff_base_ms() -> int:
    """First retry delay; each further retry doubles it (30 s, 60 s, 120 s, …)."""
    return max(1, int(settings.TRACEMEM_DELIVERY_BACKOFF_MS))


def backoff_cap_ms() -> int:
    return max(1, int(settings.TRACEMEM_DELIVERY_BACKOFF_CAP_MS))


def lease_ms() -> int:
    """How long a claimed delivery is left alone before the re-dispatcher assumes its worker died."""
    return max(1, int(settings.TRACEMEM_DELIVERY_LEASE_MS))


def http_timeout_seconds() -> float:
    """The longest a receiver may keep one attempt waiting (webhook, Slack, SMTP); short, so a
    hanging receiver costs little and backs off like any failure."""
    return max(0.1, float(settings.TRACEMEM_DELIVERY_HTTP_TIMEOUT))


def connect_timeout_seconds() -> float:
    """How long to wait for a receiver to accept the connection (within the total above)."""
    return min(max(0.1, float(settings.TRACEMEM_DELIVERY_CONNECT_TIMEOUT)), http_timeout_seconds())


def destination_slots() -> int:
    """Attempts in flight at once to one destination (a webhook endpoint, a Slack integration, the
    SMTP server), per worker process, while it answers; a failing destination gets one."""
    return max(1, int(settings.TRACEMEM_DELIVERY_DESTINATION_SLOTS))


def email_link_max_age() -> int:
    """Email links die after this many seconds even when the approval lives longer."""
    return int(settings.TRACEMEM_EMAIL_LINK_MAX_AGE)


def default_route_id() -> str:
    return str(settings.TRACEMEM_DEFAULT_ROUTE)


def public_url() -> str:
    return str(getattr(settings, "TRACEMEM_PUBLIC_URL", "http://127.0.0.1:8000")).rstrip("/")


def review_url(approval: Approval) -> str:
    """The approval's page in the reviewer web UI."""
    return f"{public_url()}/review/{approval.approval_id}/"
