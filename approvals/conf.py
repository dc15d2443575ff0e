"""Approval delivery settings: Django settings win, else the environment, else the defaults below."""

from __future__ import annotations

from django.conf import settings

from tracemem_site.env import env_int, env_str


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


def http_timeout_seconds() -> float:
    return float(
        getattr(settings, "TRACEMEM_DELIVERY_HTTP_TIMEOUT", env_int("TRACEMEM_DELIVERY_HTTP_TIMEOUT", 10))
    )


def email_link_max_age() -> int:
    """Email links die after this many seconds even when the approval lives longer."""
    return _int("TRACEMEM_EMAIL_LINK_MAX_AGE", 86400)


def default_route_id() -> str:
    return str(getattr(settings, "TRACEMEM_DEFAULT_ROUTE", env_str("TRACEMEM_DEFAULT_ROUTE", "")))


def public_url() -> str:
    return str(getattr(settings, "TRACEMEM_PUBLIC_URL", "http://127.0.0.1:8000")).rstrip("/")
