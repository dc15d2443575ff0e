"""Calls to Redis (the shared cache and the Celery broker) that never fail the request making them.

Redis is an optimisation, a shared counter and a doorbell, never the record: when it is unreachable
— refused, or hung so that only timeouts tell — the caller gets ``None`` and carries on with its
fallback (the rate limit counts per process; an unqueued delivery waits in the outbox for the
beat's re-dispatch). The first failure is logged once and opens a short breaker, so while the store
is down requests do not each pay a timeout; after ``TRACEMEM_CACHE_RETRY_SECONDS`` the next call
probes it again. Every failed call is counted (:mod:`tracemem_core.metrics`):
``tracemem_cache_errors_total{use=...}`` for the cache, ``tracemem_broker_errors_total{use=...}``
for the broker. Every use of the cache on the request path goes through :func:`guarded`, every
publish of a task through :data:`broker`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings

from tracemem_core import metrics

logger = logging.getLogger(__name__)
T = TypeVar("T")


def retry_seconds() -> float:
    return float(getattr(settings, "TRACEMEM_CACHE_RETRY_SECONDS", 5))


class Breaker:
    """One Redis-backed dependency (``what``) whose failures are counted in ``metric``."""

    def __init__(self, what: str, metric: str) -> None:
        self.what, self.metric = what, metric
        self._lock = threading.Lock()
        self._down_until = 0.0  # monotonic time until which it is assumed down (0: believed up)

    def call(self, use: str, operation: Callable[[], T], *, fallback: str) -> T | None:
        """``operation()``, or None when the dependency is (or was just found) unreachable.

        ``use`` names the caller in logs and metrics; ``fallback`` says what it does instead (logged).
        """
        if self._down_until and time.monotonic() < self._down_until:
            return None
        try:
            result = operation()
        except Exception as exc:  # any client error (connection, timeout, protocol) means "unavailable"
            metrics.incr(self.metric, use=use)
            with self._lock:
                first = self._down_until == 0.0
                self._down_until = time.monotonic() + retry_seconds()
            if first:
                logger.warning(
                    "the %s is unavailable (%s) for the %s; %s until it answers again",
                    self.what,
                    type(exc).__name__,
                    use.replace("_", " "),
                    fallback,
                )
            return None
        if self._down_until:
            with self._lock:
                recovered = self._down_until != 0.0
                self._down_until = 0.0
            if recovered:
                logger.warning("the %s answers again; the %s uses it again", self.what, use.replace("_", " "))
        return result

    def reset(self) -> None:
        """Forget a remembered outage (tests, and a process that knows the store is back)."""
        with self._lock:
            self._down_until = 0.0


cache = Breaker("shared cache", "tracemem_cache_errors_total")
broker = Breaker("task broker", "tracemem_broker_errors_total")


def guarded(use: str, operation: Callable[[], T], *, fallback: str) -> T | None:
    """A call to the shared cache through its breaker (see :meth:`Breaker.call`)."""
    return cache.call(use, operation, fallback=fallback)


def reset() -> None:
    cache.reset()
    broker.reset()
