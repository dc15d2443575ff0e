"""Calls to the shared cache (Redis in production) that never fail the request making them.

The cache is an optimisation and a shared counter, never the record: when it is unreachable the
caller gets ``None`` and carries on with its fallback (the rate limit counts per process). The first
failure is logged once and opens a short breaker, so while the store is down requests do not each
pay a connect timeout; after ``TRACEMEM_CACHE_RETRY_SECONDS`` the next call probes it again. Every
failed call is counted in ``tracemem_cache_errors_total{use=...}`` (:mod:`tracemem_site.metrics`).
Every use of the cache on the request path goes through :func:`guarded`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings

from tracemem_site import metrics

logger = logging.getLogger(__name__)
T = TypeVar("T")

_lock = threading.Lock()
_down_until = 0.0  # monotonic time until which the store is assumed down (0: believed up)


def retry_seconds() -> float:
    return float(getattr(settings, "TRACEMEM_CACHE_RETRY_SECONDS", 5))


def guarded(use: str, operation: Callable[[], T], *, fallback: str) -> T | None:
    """``operation()``, or None when the shared cache is (or was just found) unreachable.

    ``use`` names the caller in logs and metrics; ``fallback`` says what it does instead (logged).
    """
    global _down_until
    now = time.monotonic()
    if _down_until and now < _down_until:
        return None
    try:
        result = operation()
    except Exception as exc:  # any client error (connection, timeout, protocol) means "unavailable"
        metrics.incr("tracemem_cache_errors_total", use=use)
        with _lock:
            first = _down_until == 0.0
            _down_until = time.monotonic() + retry_seconds()
        if first:
            logger.warning(
                "the shared cache is unavailable (%s) for the %s; %s until it answers again",
                type(exc).__name__,
                use.replace("_", " "),
                fallback,
            )
        return None
    if _down_until:
        with _lock:
            recovered = _down_until != 0.0
            _down_until = 0.0
        if recovered:
            logger.warning("the shared cache answers again; the %s uses it again", use.replace("_", " "))
    return result


def reset() -> None:
    """Forget a remembered outage (tests, and a process that knows the store is back)."""
    global _down_until
    with _lock:
        _down_until = 0.0
